//! The serverless URL entry, for platforms that call a URL (Vercel, Cloud Run, Lambda
//! function URLs): under a base path (default `/api/rivet`) it answers
//!
//! - `POST /start`: one actor's start command as the body, where to connect back in the
//!   `x-rivet-endpoint`, `x-rivet-namespace-name`, `x-rivet-pool-name` (or
//!   `x-rivet-runner-name`) and `x-rivet-token` headers. The answer is a server-sent event
//!   stream: `ping` at once and every second while the actor runs, `stopping` when it has
//!   stopped (or was handed back before `x-rivulet-deadline-ms`, if given), then the end.
//! - `GET /metadata`: the actor types and protocol version, as a gateway polls them.
//! - `GET /health`.
//!
//! The shapes follow RivetKit's serverless handler, so a gateway can call Rust and
//! JavaScript runners the same way.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::mpsc;

use super::Connections;
use crate::serverless::{parse_start_payload, Start, StartRequest, MAX_START_PAYLOAD};

/// How often the event stream says the request is alive.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The router, under `base` (e.g. `/api/rivet`; empty for the root).
pub fn router(conns: Arc<Connections>, base: &str) -> Router {
    let base = base.trim_end_matches('/');
    let routes = Router::new()
        .route("/start", post(start))
        .route("/metadata", get(metadata))
        .route("/health", get(health))
        .route("/", get(banner))
        .layer(DefaultBodyLimit::max(MAX_START_PAYLOAD))
        .with_state(conns);
    if base.is_empty() {
        routes
    } else {
        Router::new().nest(base, routes)
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"group": "serverless", "code": code, "message": message})),
    )
        .into_response()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

async fn start(State(conns): State<Arc<Connections>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(endpoint) = header(&headers, "x-rivet-endpoint") else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_header",
            "x-rivet-endpoint is required".into(),
        );
    };
    let Some(namespace) = header(&headers, "x-rivet-namespace-name") else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_header",
            "x-rivet-namespace-name is required".into(),
        );
    };
    let Some(pool_name) =
        header(&headers, "x-rivet-pool-name").or_else(|| header(&headers, "x-rivet-runner-name"))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_header",
            "x-rivet-pool-name is required".into(),
        );
    };
    let command = match parse_start_payload(&body) {
        Ok(c) => c,
        Err(err) => return error(StatusCode::BAD_REQUEST, "invalid_payload", err.to_string()),
    };
    let deadline = conns.deadline(
        header(&headers, "x-rivulet-deadline-ms")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms)),
    );
    let request = StartRequest {
        endpoint,
        namespace,
        pool_name,
        token: header(&headers, "x-rivet-token"),
        start: Start::Command(Box::new(command)),
    };
    // Connect first: a gateway that cannot be reached or refuses is an error answer, not a
    // stream that looks like a normal run.
    let lease = match conns.acquire(&request).await {
        Ok(lease) => lease,
        Err(err) => {
            return error(
                StatusCode::BAD_GATEWAY,
                "gateway_unreachable",
                format!("cannot connect to the gateway: {err}"),
            )
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    let serving = tokio::spawn(async move { conns.run(lease, request, deadline).await });
    tokio::spawn(async move {
        let mut serving = serving;
        let mut tick = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // A caller that went away only stops the pings; the actor keeps its
                    // own life until it stops or is handed back.
                    if tx.send(Ok(Bytes::from_static(b"event: ping\ndata:\n\n"))).await.is_err() {
                        let _ = (&mut serving).await;
                        return;
                    }
                }
                result = &mut serving => {
                    if let Err(err) = &result {
                        tracing::warn!(error = %err, "serverless request task failed");
                    }
                    let _ = tx.send(Ok(Bytes::from_static(b"event: stopping\ndata:\n\n"))).await;
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn metadata(State(conns): State<Arc<Connections>>) -> Json<serde_json::Value> {
    let names: serde_json::Map<String, serde_json::Value> = conns
        .runner()
        .registry()
        .names()
        .into_iter()
        .map(|n| (n.to_owned(), json!({"metadata": {}})))
        .collect();
    Json(json!({
        "actorNames": names,
        "envoy": {"kind": {"serverless": {}}, "version": 1},
        "envoyProtocolVersion": rivulet_wire::ENVOY_PROTOCOL_VERSION,
        // Gateways accept runners that call themselves rivetkit; this one is the Rust runner.
        "runtime": "rivetkit",
        "implementation": "rivulet-runner",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn health() -> Json<serde_json::Value> {
    Json(
        json!({"status": "ok", "runtime": "rivetkit", "implementation": "rivulet-runner", "version": env!("CARGO_PKG_VERSION")}),
    )
}

async fn banner() -> &'static str {
    "This is a Rivulet runner. POST /start with a start payload to run an actor.\n"
}
