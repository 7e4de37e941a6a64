//! How the gateway names a serverless endpoint that misbehaves on `POST /start`, against a
//! real HTTP server on loopback that answers `/metadata` correctly (so the pool is accepted)
//! and then fails each start in one way: down, an error status, throttling, an answer that
//! is not an event stream. Waiting clients get the named error within seconds (not the 30 s
//! ready timeout), `GET /runner-configs` shows the pool's last error, and a throttled or
//! failing pool backs off instead of being hammered.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use common::TestGateway;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// What the endpoint does with a start.
#[derive(Clone, Copy)]
enum Mode {
    Status500,
    Throttle,
    NotAStream,
}

struct Endpoint {
    url: String,
    starts: Arc<AtomicUsize>,
    stop: CancellationToken,
}

async fn endpoint(mode: Mode) -> Endpoint {
    let starts = Arc::new(AtomicUsize::new(0));
    let counted = starts.clone();
    let app = Router::new()
        .route(
            "/api/rivet/metadata",
            get(|| async {
                axum::Json(json!({
                    "actorNames": {"counter": {"metadata": {}}},
                    "envoyProtocolVersion": 8,
                    "runtime": "rivetkit",
                    "version": "2.3.19",
                }))
            }),
        )
        .route(
            "/api/rivet/start",
            post(move |headers: HeaderMap| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    // The engine's headers arrive with every start.
                    assert!(headers.contains_key("x-rivet-endpoint"));
                    assert_eq!(headers["x-rivet-pool-name"], "bad");
                    assert_eq!(headers["x-rivet-namespace-name"], "default");
                    let resp: Response = match mode {
                        Mode::Status500 => {
                            (StatusCode::INTERNAL_SERVER_ERROR, "boom: no database").into_response()
                        }
                        Mode::Throttle => (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "3")],
                            "slow down",
                        )
                            .into_response(),
                        Mode::NotAStream => axum::Json(json!({"ok": true})).into_response(),
                    };
                    resp
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let until = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(until.cancelled_owned())
            .await
            .unwrap();
    });
    Endpoint {
        url: format!("http://{addr}/api/rivet"),
        starts,
        stop,
    }
}

async fn register(gw: &TestGateway, url: &str) {
    let resp = gw
        .http
        .put(gw.url("/runner-configs/bad?namespace=default"))
        .json(&json!({"datacenters": {"default": {"serverless": {"url": url, "request_lifespan": 60}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn create(gw: &TestGateway, key: &str) -> String {
    let (status, body) = gw
        .api_post(
            "/actors?namespace=default",
            json!({"name": "counter", "key": key, "runner_name_selector": "bad", "crash_policy": "sleep"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["actor"]["actor_id"].as_str().unwrap().to_owned()
}

/// An action on the actor: its status, error body, and how long the answer took.
async fn call(gw: &TestGateway, actor_id: &str) -> (u16, Value, Duration) {
    let asked = Instant::now();
    let resp = gw
        .http
        .post(gw.url(&format!("/gateway/{actor_id}/action/get")))
        .header("x-rivet-encoding", "json")
        .json(&json!({"args": []}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap(), asked.elapsed())
}

async fn last_error(gw: &TestGateway) -> Value {
    let (_, listed) = gw.api_get("/runner-configs?namespace=default").await;
    listed["runner_configs"]["bad"]["status"]["last_error"].clone()
}

#[tokio::test]
async fn an_error_status_is_named_with_what_the_endpoint_said() {
    let gw = TestGateway::start().await;
    let ep = endpoint(Mode::Status500).await;
    register(&gw, &ep.url).await;
    let id = create(&gw, "500").await;
    let (status, body, took) = call(&gw, &id).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (body["group"].as_str(), body["code"].as_str()),
        (Some("serverless"), Some("http_error"))
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("500") && message.contains("boom: no database"),
        "{message}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let err = last_error(&gw).await;
    assert_eq!(err["code"], "serverless.http_error", "{err}");
    assert!(ep.starts.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn an_answer_that_is_not_an_event_stream_is_named() {
    let gw = TestGateway::start().await;
    let ep = endpoint(Mode::NotAStream).await;
    register(&gw, &ep.url).await;
    let id = create(&gw, "json").await;
    let (status, body, _) = call(&gw, &id).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "invalid_response", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{body}"
    );
}

#[tokio::test]
async fn throttling_is_named_and_the_pool_backs_off_as_asked() {
    let gw = TestGateway::start().await;
    let ep = endpoint(Mode::Throttle).await;
    register(&gw, &ep.url).await;
    let a = create(&gw, "t1").await;
    let (status, body, _) = call(&gw, &a).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("throttled")),
        "{body}"
    );
    let after_first = ep.starts.load(Ordering::SeqCst);
    assert_eq!(after_first, 1, "one start, no retry storm");
    // Within the 3 s the endpoint asked for, other actors of the pool are told at once and
    // the endpoint is not called again.
    let b = create(&gw, "t2").await;
    let (status, body, took) = call(&gw, &b).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("throttled")),
        "{body}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(ep.starts.load(Ordering::SeqCst), after_first);
    // After the wait the pool is tried again.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (status, _, _) = call(&gw, &b).await;
    assert_eq!(status, 503);
    assert!(ep.starts.load(Ordering::SeqCst) > after_first);
}

#[tokio::test]
async fn an_endpoint_that_went_down_is_named_unreachable() {
    let gw = TestGateway::start().await;
    let ep = endpoint(Mode::Status500).await;
    register(&gw, &ep.url).await;
    ep.stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = create(&gw, "down").await;
    let (status, body, took) = call(&gw, &id).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unreachable")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains(&ep.url),
        "{body}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(last_error(&gw).await["code"], "serverless.unreachable");
}

/// The pool's `/metadata` is polled while the pool is in use: an endpoint that goes away
/// shows in `GET /runner-configs` without any actor having to fail on it first.
#[tokio::test]
async fn a_polled_endpoint_that_goes_away_shows_in_the_pool_status() {
    let gw = TestGateway::start().await;
    let ep = endpoint(Mode::Status500).await;
    register(&gw, &ep.url).await;
    let id = create(&gw, "polled").await;
    let _ = call(&gw, &id).await; // the pool is now in use on this node
    ep.stop.cancel();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let err = last_error(&gw).await;
        if err["code"] == "serverless.metadata_endpoint_unreachable" {
            assert!(
                err["message"].as_str().unwrap().contains("/metadata"),
                "{err}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the poll never noticed: {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
