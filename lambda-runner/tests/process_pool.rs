//! A `process` pool end to end: the real gateway invokes `rivulet-runner once` (a real
//! process per request) for each actor; the runner connects back, claims the actor and serves
//! it; before the request's lifespan ends the actor moves to a fresh process, keeping its
//! state; and a request that dies before connecting is a named error at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod envoy_support;

use std::time::{Duration, Instant};

use envoy_support::TestGateway;
use serde_json::{json, Value};

async fn put_pool(gw: &TestGateway, pool: &str, spec: Value) {
    let resp = gw
        .http
        .put(gw.url(&format!("/runner-configs/{pool}?namespace=default")))
        .json(&json!({ "datacenters": { "default": { "process": spec } } }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
}

async fn create(gw: &TestGateway, pool: &str, key: &str, policy: &str) -> String {
    let (status, body) = gw
        .api_post(
            "/actors?namespace=default",
            json!({"name": "counter", "key": key, "runner_name_selector": pool, "crash_policy": policy}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["actor"]["actor_id"].as_str().unwrap().to_owned()
}

fn runner_command() -> String {
    format!("{} once", env!("CARGO_BIN_EXE_rivulet-runner"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_pool_serves_its_actor_and_moves_it_to_fresh_processes() {
    let gw = TestGateway::start_with(|c| c.gateway.allow_process_pools = true).await;
    // Each process lives 4 s; the actor moves 1 s before that.
    put_pool(
        &gw,
        "proc",
        json!({"command": runner_command(), "request_lifespan": 4, "drain_grace_period": 1,
               "env": {"RIVET_LOG_LEVEL": "warn"}}),
    )
    .await;
    let id = create(&gw, "proc", "moving", "sleep").await;

    // Increments for 9 s: the actor lives in at least three processes in turn, and every
    // acknowledged increment is there afterwards, in order.
    let started = Instant::now();
    let mut expected = 0;
    while started.elapsed() < Duration::from_secs(9) {
        let (status, body) = gw.action(&id, "increment", json!([1])).await;
        assert_eq!(status, 200, "after {expected}: {body}");
        expected += 1;
        assert_eq!(body["output"], expected, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = gw.record(&id).await;
    assert!(
        record.generation >= 3,
        "the actor should have moved at least twice, generation {}",
        record.generation
    );
    let (status, body) = gw.action(&id, "get", json!([])).await;
    assert_eq!((status, body["output"].clone()), (200, json!(expected)));
}

/// The next request is started before the move (a standby: the runner connects and waits,
/// unclaimed), so at the deadline the actor is handed to a process that is already connected.
/// The record then names the standby's envoy key, which only the gateway's standby path
/// chooses; the state moved with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_lands_on_a_standby_started_before_the_deadline() {
    let gw = TestGateway::start_with(|c| c.gateway.allow_process_pools = true).await;
    // Move at 8 s; the standby is started 2 s before, time enough for a debug build to connect.
    put_pool(
        &gw,
        "warm",
        json!({"command": runner_command(), "request_lifespan": 12, "drain_grace_period": 4,
               "env": {"RIVET_LOG_LEVEL": "warn"}}),
    )
    .await;
    let id = create(&gw, "warm", "standby", "sleep").await;
    let (status, body) = gw.action(&id, "increment", json!([5])).await;
    assert_eq!((status, body["output"].clone()), (200, json!(5)), "{body}");
    // Running is persisted just after the reply may have left; wait for the record.
    let first = loop {
        let record = gw.record(&id).await;
        if record.connectable_ts.is_some() {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first.generation, 1);
    let first_key = first.envoy_key.clone().unwrap();
    assert!(!first_key.starts_with("standby-"), "{first_key}");

    let waited = Instant::now();
    let moved = loop {
        let record = gw.record(&id).await;
        if record.generation >= 2 && record.connectable_ts.is_some() {
            break record;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "no move: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let key = moved.envoy_key.clone().unwrap();
    assert!(
        key.starts_with(&format!("standby-{id}-2-")),
        "generation 2 should run on the standby, not a fresh request: {key}"
    );
    let (status, body) = gw.action(&id, "increment", json!([1])).await;
    assert_eq!((status, body["output"].clone()), (200, json!(6)), "{body}");
}

/// A standby the gateway gave up before its runner connected (the move went ahead without
/// it) is told so at connect and ends at once, unused and without error, instead of idling
/// until its lifespan ends (a Lambda invocation cannot be cancelled from outside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_no_longer_expected_ends_at_once_unused() {
    let gw = TestGateway::start().await;
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rivulet-runner"))
        .args(["once", "--endpoint", &gw.url(""), "--lifespan-ms", "60000"])
        .env("RIVULET_STANDBY_KEY", "standby-nobody-2-abc")
        .env("RIVET_LOG_LEVEL", "info")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("standby request not needed"), "{log}");
    assert!(log.contains("Unused"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(30), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_dies_before_connecting_is_a_named_error_at_once() {
    let gw = TestGateway::start_with(|c| c.gateway.allow_process_pools = true).await;
    put_pool(
        &gw,
        "broken",
        json!({"command": "echo 'no runner here' >&2; exit 3", "request_lifespan": 30}),
    )
    .await;
    let id = create(&gw, "broken", "never", "sleep").await;
    let asked = Instant::now();
    let (status, body) = gw.action(&id, "get", json!([])).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["group"], "serverless", "{body}");
    assert_eq!(body["code"], "ended_early", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(message.contains("no runner here"), "{message}");
    // Well before the 30 s ready timeout.
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
}

/// The runner process killed in the middle of its request (SIGKILL, nothing flushed) is a
/// crash under the actor's policy: restarted in a fresh process, put to sleep until the next
/// request, or destroyed. Saved state survives the first two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_request_follows_the_crash_policy() {
    let gw = TestGateway::start_with(|c| c.gateway.allow_process_pools = true).await;
    let dir = tempfile::tempdir().unwrap();
    for policy in ["restart", "sleep", "destroy"] {
        let pidfile = dir.path().join(format!("{policy}.pid"));
        let pool = format!("kill-{policy}");
        put_pool(
            &gw,
            &pool,
            json!({"command": format!("echo $$ > {}; exec {}", pidfile.display(), runner_command()),
                   "request_lifespan": 60, "env": {"RIVET_LOG_LEVEL": "warn"}}),
        )
        .await;
        let id = create(&gw, &pool, &format!("victim-{policy}"), policy).await;
        let (status, body) = gw.action(&id, "increment", json!([7])).await;
        assert_eq!(
            (status, body["output"].clone()),
            (200, json!(7)),
            "{policy}"
        );
        // Let the runner save the state it acknowledged.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let record = gw.record(&id).await;
            let settled = match policy {
                "destroy" => record.destroy_ts.is_some(),
                "sleep" => record.sleep_ts.is_some(),
                _ => record.generation >= 2 && record.connectable_ts.is_some(),
            };
            if settled {
                assert!(record.error.is_some(), "{policy}: the crash is recorded");
                break;
            }
            assert!(Instant::now() < deadline, "{policy}: {record:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, body) = gw.action(&id, "get", json!([])).await;
        match policy {
            "destroy" => assert_eq!(status, 404, "{body}"),
            _ => assert_eq!(
                (status, body["output"].clone()),
                (200, json!(7)),
                "{policy}: {body}"
            ),
        }
    }
}

/// Actions arriving as the actor moves (ten actors called back to back, moving every 4 s):
/// each gets exactly one reply, in order, and nothing is applied twice; the old process's
/// replies leave before it closes its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_in_flight_at_a_move_get_exactly_one_reply() {
    let gw = TestGateway::start_with(|c| c.gateway.allow_process_pools = true).await;
    put_pool(
        &gw,
        "busy",
        // A lifespan that leaves a loaded machine time to start ten processes at once.
        json!({"command": runner_command(), "request_lifespan": 6, "drain_grace_period": 2,
               "env": {"RIVET_LOG_LEVEL": "warn"}}),
    )
    .await;
    let mut callers = Vec::new();
    for i in 0..10 {
        let id = create(&gw, "busy", &format!("busy-{i}"), "sleep").await;
        let gw = &gw;
        callers.push(async move {
            let started = Instant::now();
            let mut expected = 0;
            while started.elapsed() < Duration::from_secs(13) {
                let (status, body) = gw.action(&id, "increment", json!([1])).await;
                assert_eq!(status, 200, "actor {i} after {expected}: {body}");
                expected += 1;
                assert_eq!(body["output"], expected, "actor {i}: {body}");
            }
            let record = gw.record(&id).await;
            assert!(
                record.generation >= 3,
                "actor {i} moved: {}",
                record.generation
            );
        });
    }
    futures_util::future::join_all(callers).await;
}

/// A pool's `max_concurrent_actors` holds: past it an actor waits in the pool's queue
/// (listed as waiting) and starts once a slot frees; the queue is as long as the pool is
/// large, and past that a request is told at once, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_queues_actors_and_refuses_past_its_queue() {
    let gw = TestGateway::start_with(|c| c.gateway.allow_process_pools = true).await;
    put_pool(
        &gw,
        "one",
        json!({"command": runner_command(), "request_lifespan": 60, "max_concurrent_actors": 1,
               "env": {"RIVET_LOG_LEVEL": "warn"}}),
    )
    .await;
    let a = create(&gw, "one", "first", "sleep").await;
    let b = create(&gw, "one", "second", "sleep").await;
    let c = create(&gw, "one", "third", "sleep").await;
    assert_eq!(gw.action(&a, "increment", json!([1])).await.0, 200);

    let waiting = {
        let gw_url = gw.url(&format!("/gateway/{b}/action/increment"));
        let http = gw.http.clone();
        tokio::spawn(async move {
            let resp = http
                .post(gw_url)
                .header("x-rivet-encoding", "json")
                .json(&json!({"args": [5]}))
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        })
    };
    let status = || async {
        let (_, listed) = gw.api_get("/runner-configs?namespace=default").await;
        listed["runner_configs"]["one"]["status"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while status().await["actors_waiting"] != 1 {
        assert!(Instant::now() < deadline, "{}", status().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status().await["actors_running"], 1);

    // The queue is full: told at once.
    let asked = Instant::now();
    let (code, body) = gw.action(&c, "get", json!([])).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (503, Some("pool_full")),
        "{body}"
    );
    assert!(asked.elapsed() < Duration::from_secs(10));

    // The first actor sleeps; its request ends and the waiting one starts.
    let (code, body) = gw
        .api_post(&format!("/actors/{a}/sleep?namespace=default"), json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = waiting.await.unwrap();
    assert_eq!((code, body["output"].clone()), (200, json!(5)), "{body}");
    // The third actor, woken and refused a place earlier, took the freed place in the
    // queue: it starts when the second one's slot frees.
    let now = status().await;
    assert_eq!(
        (now["actors_running"].clone(), now["actors_waiting"].clone()),
        (json!(1), json!(1)),
        "{now}"
    );
}
