//! A store that stops answering must give callers a clear, retryable error within the
//! configured deadline and leave nothing half-done. The backend here is the real embedded
//! store behind a switch that makes chosen calls hang, as a stalled disk or an unreachable
//! DynamoDB would.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rivulet_gateway::store::embedded::EmbeddedStore;
use rivulet_gateway::Config;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

mod store_support;
use store_support::hanging::Hanging;

#[tokio::test]
async fn hanging_store_gives_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Hanging::new(
        EmbeddedStore::open(&dir.path().join("db.redb")).unwrap(),
    ));
    let mut config = Config::for_tests(dir.path().to_path_buf());
    config.store_timeout_ms = 200;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(rivulet_gateway::run(
        listener,
        config,
        store.clone(),
        shutdown.clone(),
    ));

    let http = reqwest::Client::new();
    let body = json!({"name": "counter", "key": "k", "runner_name_selector": "default", "crash_policy": "sleep"});
    let create = || {
        http.post(format!("http://{addr}/actors?namespace=default"))
            .json(&body)
            .send()
    };

    store.hang.store(true, Ordering::SeqCst);
    let resp = create().await.unwrap();
    assert_eq!(resp.status(), 503);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["group"], "store");
    assert_eq!(err["code"], "unavailable");

    // Nothing was created while the store hung.
    let list: Value = http
        .get(format!(
            "http://{addr}/actors?namespace=default&name=counter&key=k"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["actors"].as_array().unwrap().len(), 0);

    // Once the store answers again, the same request succeeds.
    store.hang.store(false, Ordering::SeqCst);
    let resp = create().await.unwrap();
    assert_eq!(resp.status(), 200);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["actor"]["key"], "k");

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
