//! `GET /metrics` after a small workload on the real gateway with a `process` pool of the real
//! runner: every family is there, and its values are the workload's: one wake, the moves the
//! actor's generation counts, the requests that ended, one client socket held while the
//! actor sleeps, store calls timed as counted, and the errors answered by code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod envoy_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use envoy_support::TestGateway;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The exposition's samples: `name{labels}` → value.
async fn scrape(gw: &TestGateway) -> HashMap<String, f64> {
    let resp = gw.http.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("sample line");
            (name.to_owned(), value.parse().expect("numeric sample"))
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, sample: &str) -> f64 {
    *m.get(sample)
        .unwrap_or_else(|| panic!("no sample {sample}; have {:?}", keys(m)))
}

fn keys(m: &HashMap<String, f64>) -> Vec<&String> {
    let mut k: Vec<_> = m.keys().collect();
    k.sort();
    k
}

/// Re-scrapes until `done` holds (bounded).
async fn scrape_until(
    gw: &TestGateway,
    what: &str,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = scrape(gw).await;
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "metrics never showed {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_the_workload() {
    let gw = TestGateway::start_with(|c| c.gateway.allow_process_pools = true).await;
    let resp = gw
        .http
        .put(gw.url("/runner-configs/proc?namespace=default"))
        .json(&json!({"datacenters": {"default": {"process": {
            "command": format!("{} once", env!("CARGO_BIN_EXE_rivulet-runner")),
            "request_lifespan": 4, "drain_grace_period": 1,
            "env": {"RIVET_LOG_LEVEL": "warn"}}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = gw
        .api_post(
            "/actors?namespace=default",
            json!({"name": "counter", "key": "metered", "runner_name_selector": "proc", "crash_policy": "sleep"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["actor"]["actor_id"].as_str().unwrap().to_owned();

    // Two errors by code: an actor that does not exist, twice.
    for _ in 0..2 {
        let resp = gw
            .http
            .post(gw.url("/gateway/nosuchactor/action/x"))
            .header("x-rivet-encoding", "json")
            .json(&json!({"args": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    // Actions for 5.5 s: one wake (the first), then the actor moves at least once.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(5_500) {
        let (status, body) = gw.action(&id, "increment", json!([1])).await;
        assert_eq!(status, 200, "{body}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let generation = gw.record(&id).await.generation;
    assert!(generation >= 2, "the actor moved: generation {generation}");
    let moves = f64::from(generation - 1);

    // A client on the actor's socket; then the actor is made to sleep and the gateway holds it.
    let mut req = gw
        .url(&format!("/gateway/{id}/connect"))
        .replace("http", "ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "rivet, rivet_encoding.json".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let init = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("init in time")
        .unwrap()
        .unwrap();
    assert!(init.to_text().unwrap().contains("Init"), "{init:?}");
    let (status, body) = gw
        .api_post(&format!("/actors/{id}/sleep?namespace=default"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let m = scrape_until(&gw, "the held socket and the sleeping actor", |m| {
        m.get("rivulet_client_sockets{state=\"hibernating\"}") == Some(&1.0)
            && m.get("rivulet_actors{phase=\"sleeping\"}") == Some(&1.0)
    })
    .await;
    assert_eq!(get(&m, "rivulet_client_sockets{state=\"open\"}"), 1.0);
    assert_eq!(get(&m, "rivulet_actors{phase=\"running\"}"), 0.0);

    // Every request that ended is counted once, with the time it was open.
    let m = scrape_until(&gw, "every request ended", |m| {
        m.get("rivulet_serverless_invocations_total{outcome=\"finished\",pool=\"proc\"}")
            .is_some_and(|v| *v > moves)
    })
    .await;
    let finished = get(
        &m,
        "rivulet_serverless_invocations_total{outcome=\"finished\",pool=\"proc\"}",
    );
    // Each served instance ended; a standby started ahead of the last move may have too.
    assert!(
        finished <= moves + 2.0,
        "finished {finished}, moves {moves}"
    );
    let seconds = get(
        &m,
        "rivulet_serverless_request_seconds_total{pool=\"proc\"}",
    );
    assert!(
        seconds >= moves * 2.0,
        "{seconds} s over {finished} requests"
    );

    // The wake and the moves.
    assert_eq!(get(&m, "rivulet_actor_wakes_total"), 1.0);
    assert_eq!(get(&m, "rivulet_actor_wake_seconds_count"), 1.0);
    assert_eq!(get(&m, "rivulet_migrations_total{pool=\"proc\"}"), moves);
    assert_eq!(
        get(&m, "rivulet_migration_pause_seconds_count{pool=\"proc\"}"),
        moves
    );
    assert!(get(&m, "rivulet_migration_pause_seconds_sum{pool=\"proc\"}") < moves * 5.0);

    // Errors by code.
    assert_eq!(
        get(&m, "rivulet_errors_total{code=\"actor.not_found\"}"),
        2.0
    );

    // Store calls: each call counted with its latency; the actor's record was written.
    let calls: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("rivulet_store_calls_total{call=\"update_actor\""))
        .map(|(_, v)| v)
        .sum();
    assert!(calls >= moves + 1.0, "update_actor calls {calls}");
    assert_eq!(
        get(
            &m,
            "rivulet_store_call_seconds_count{call=\"update_actor\"}"
        ),
        calls
    );
    assert!(get(&m, "rivulet_store_requests_total{operation=\"write\"}") >= 1.0);

    // A message on the held socket wakes the actor; once it is acknowledged, nothing is kept.
    ws.send(Message::text(
        r#"{"body":{"tag":"ActionRequest","val":{"id":["$BigInt","1"],"name":"get","args":[]}}}"#,
    ))
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let msg = ws.next().await.unwrap().unwrap();
            if msg.to_text().unwrap_or("").contains("ActionResponse") {
                return msg;
            }
        }
    })
    .await
    .expect("an answer on the held socket");
    assert!(
        answer
            .to_text()
            .unwrap()
            .contains(&format!("\"output\":{n}")),
        "{answer:?}"
    );
    let m = scrape_until(
        &gw,
        "the socket attached and its message acknowledged",
        |m| {
            m.get("rivulet_client_sockets{state=\"hibernating\"}") == Some(&0.0)
                && m.get("rivulet_replay_buffered_bytes") == Some(&0.0)
                && m.get("rivulet_actors{phase=\"running\"}") == Some(&1.0)
        },
    )
    .await;
    assert_eq!(get(&m, "rivulet_actor_wakes_total"), 2.0);
    ws.close(None).await.unwrap();
}
