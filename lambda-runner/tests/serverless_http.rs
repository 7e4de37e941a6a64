//! The serverless URL entry (`POST /api/rivet/start`, answered with server-sent events) over
//! real sockets, with the real gateway: the start connects back and serves the actor, the
//! stream pings while it runs and says `stopping` once it stopped; bad starts get clear 400s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod envoy_support;

use std::sync::Arc;
use std::time::Duration;

use envoy_support::TestGateway;
use rivulet_lambda_runner::entry::{http, Connections};
use rivulet_lambda_runner::runner::Runner;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn start_command(actor_id: &str, generation: u32) -> Vec<u8> {
    envoy_support::counter_start_payload(actor_id, "web", generation)
}

/// The serverless runner on a loopback port; returns its base URL.
async fn serve_runner() -> (String, CancellationToken) {
    let cancel = CancellationToken::new();
    let conns = Arc::new(Connections::new(
        Runner::new(rivulet_lambda_runner::examples::registry()),
        Duration::from_secs(2),
        cancel.clone(),
    ));
    let app = http::router(conns, "/api/rivet");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = cancel.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap();
    });
    (format!("http://{addr}/api/rivet"), cancel)
}

/// Reads the event stream until `want` appears; returns everything read.
async fn read_until(resp: &mut reqwest::Response, want: &str, seen: &mut String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(want) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} in the stream; got {seen:?}"))
            .unwrap();
        match chunk {
            Some(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            None => panic!("stream ended before {want:?}; got {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_serves_its_actor_and_the_stream_ends_when_it_stops() {
    let gw = TestGateway::start().await;
    let resp = gw
        .http
        .put(gw.url("/runner-configs/web?namespace=default"))
        .json(&json!({"datacenters": {"default": {"normal": {}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, created) = gw
        .api_post(
            "/actors?namespace=default",
            json!({"name": "counter", "key": "web", "runner_name_selector": "web", "crash_policy": "sleep"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let actor_id = created["actor"]["actor_id"].as_str().unwrap().to_string();
    let (base, _cancel) = serve_runner().await;
    let http = reqwest::Client::new();

    let meta: Value = http
        .get(format!("{base}/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta["actorNames"]["counter"].is_object(), "{meta}");
    assert!(meta["actorNames"]["chat"].is_object(), "{meta}");
    assert_eq!(meta["envoyProtocolVersion"], 8);

    // The actor waits for a runner of its pool; the start brings one.
    gw.wake(&actor_id).await;
    let mut stream = http
        .post(format!("{base}/start"))
        .header("x-rivet-endpoint", format!("http://{}", gw.addr))
        .header("x-rivet-namespace-name", "default")
        .header("x-rivet-pool-name", "web")
        .body(start_command(&actor_id, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut seen = String::new();
    read_until(&mut stream, "event: ping", &mut seen).await;

    let resp = gw
        .http
        .post(gw.url(&format!("/gateway/{actor_id}/action/increment")))
        .header("x-rivet-encoding", "json")
        .json(&json!({"args": [3]}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["output"], 3);
    assert!(!seen.contains("stopping"), "still running: {seen:?}");

    let (status, body) = gw
        .api_post(
            &format!("/actors/{actor_id}/sleep?namespace=default"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    read_until(&mut stream, "event: stopping", &mut seen).await;
    let end = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("the stream ends after stopping")
        .unwrap();
    assert_eq!(end, None, "nothing after stopping");
    gw.wait_actor(&actor_id, "asleep", |a| !a["sleep_ts"].is_null())
        .await;
}

#[tokio::test]
async fn bad_starts_are_refused_with_clear_errors() {
    let (base, _cancel) = serve_runner().await;
    let http = reqwest::Client::new();
    let missing = http
        .post(format!("{base}/start"))
        .header("x-rivet-namespace-name", "default")
        .header("x-rivet-pool-name", "web")
        .body(start_command("a", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "missing_header", "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("x-rivet-endpoint"));

    let garbage = http
        .post(format!("{base}/start"))
        .header("x-rivet-endpoint", "http://127.0.0.1:1")
        .header("x-rivet-namespace-name", "default")
        .header("x-rivet-pool-name", "web")
        .body(&b"\x08\x00not a frame"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let body: Value = garbage.json().await.unwrap();
    assert_eq!(body["code"], "invalid_payload", "{body}");

    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
}

/// Registering a URL pool fetches the endpoint's `/metadata` first: the Rust runner's HTTP
/// entry is accepted (its actor names become known to the gateway); an endpoint that is down,
/// answers an error or is not a runner is refused with a named 400 and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_pools_are_checked_against_their_metadata_before_they_are_accepted() {
    let gw = TestGateway::start().await;
    let (base, _cancel) = serve_runner().await;
    let put = |pool: &'static str, body: Value| {
        let req = gw
            .http
            .put(gw.url(&format!("/runner-configs/{pool}?namespace=default")))
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    let (status, body) = put(
        "rust",
        json!({"datacenters": {"default": {"serverless": {"url": base, "request_lifespan": 30}}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["endpoint_config_changed"], true);
    let (_, names) = gw.api_get("/actors/names?namespace=default").await;
    assert!(names["names"].get("counter").is_some(), "{names}");
    let (_, listed) = gw.api_get("/runner-configs?namespace=default").await;
    let stored = &listed["runner_configs"]["rust"]["datacenters"]["default"]["serverless"];
    assert_eq!(stored["drain_grace_period"], 3, "{listed}");
    assert_eq!(stored["url"], base.as_str());
    // The same body again changes nothing.
    let (_, body) = put(
        "rust",
        json!({"datacenters": {"default": {"serverless": {"url": base, "request_lifespan": 30}}}}),
    )
    .await;
    assert_eq!(body["endpoint_config_changed"], false);

    // Nothing listens on a port that was just closed.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (status, body) = put(
        "down",
        json!({"serverless": {"url": format!("http://{closed}/api/rivet"), "request_lifespan": 30}}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("endpoint_unreachable")),
        "{body}"
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains(&closed.to_string()));

    // The runner's base path is wrong: its router answers 404.
    let wrong = base.trim_end_matches("/api/rivet").to_owned() + "/nope";
    let (status, body) = put(
        "wrong",
        json!({"serverless": {"url": wrong, "request_lifespan": 30}}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("endpoint_error")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("404"), "{body}");

    // A gateway is not a runner.
    let (status, body) = put(
        "gateway",
        json!({"serverless": {"url": gw.url(""), "request_lifespan": 30}}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_metadata")),
        "{body}"
    );

    let (status, body) = put(
        "grace",
        json!({"serverless": {"url": base, "request_lifespan": 30, "drain_grace_period": 30}}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );

    let (_, listed) = gw.api_get("/runner-configs?namespace=default").await;
    let pools: Vec<&String> = listed["runner_configs"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(pools, ["rust"], "refused pools are not stored");
}
