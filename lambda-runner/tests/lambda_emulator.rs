//! The AWS Lambda entry under a real Lambda runtime emulator (`cargo lambda watch`, from
//! PyPI, installed by `infra/cargo-lambda.sh`): an invocation carries one actor's start
//! command, the function connects back to a real gateway, serves the actor's actions, and at
//! its deadline minus the drain margin hands the actor back (state flushed) and returns. A
//! second invocation serves the same actor again from the saved state.
//!
//! `CARGO_LAMBDA` names the emulator binary; without it the test looks in the cache and,
//! when the emulator is not installed, says so and passes unless `RIVULET_REQUIRE_LAMBDA=1`
//! (set by `scripts/test.sh`, which installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod envoy_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use envoy_support::TestGateway;
use serde_json::{json, Value};
use tokio::process::Child;

/// Seconds the emulator gives each invocation.
const FUNCTION_TIMEOUT_S: u64 = 60;
/// How long one invocation may serve (the pool's request lifespan).
const MAX_INVOCATION_MS: u64 = 12_000;
/// Kept back before that: the actor is handed back this long before it.
const DRAIN_MARGIN_MS: u64 = 4_000;

fn cargo_lambda() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CARGO_LAMBDA") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("RIVULET_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rivulet")))?;
    let bin = cache.join("venv-cargo-lambda/bin/cargo-lambda");
    bin.exists().then_some(bin)
}

/// cargo-lambda, or `None` (the test skips) when it is not installed; under
/// `RIVULET_REQUIRE_LAMBDA=1` (the test command) a missing one fails instead.
fn cargo_lambda_or_skip() -> Option<PathBuf> {
    let bin = cargo_lambda();
    if bin.is_none() {
        assert!(
            std::env::var("RIVULET_REQUIRE_LAMBDA").as_deref() != Ok("1"),
            "cargo-lambda is required (RIVULET_REQUIRE_LAMBDA=1) but not installed; run infra/cargo-lambda.sh"
        );
        eprintln!("SKIPPED: cargo-lambda is not installed (infra/cargo-lambda.sh installs it)");
    }
    bin
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `cargo lambda watch` serving the `rivulet-runner` binary on a free loopback port.
async fn emulator(bin: &PathBuf) -> (Child, u16) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new(bin)
        .args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--bin",
            "rivulet-runner",
            "--package",
            "rivulet-lambda-runner",
            "--ignore-changes",
            // As on Lambda, where each concurrent invocation gets its own execution
            // environment: a standby request runs beside the one it replaces.
            "--concurrency",
            "4",
            "--timeout",
            &FUNCTION_TIMEOUT_S.to_string(),
            "--env-var",
            &format!("RIVULET_DRAIN_MARGIN_MS={DRAIN_MARGIN_MS},RIVULET_MAX_INVOCATION_MS={MAX_INVOCATION_MS}"),
        ])
        .current_dir(workspace_root())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start cargo lambda watch");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the emulator did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, port)
}

/// A start payload for `counter`, base64 as the Lambda event carries it.
fn start_payload(actor_id: &str, key: &str, generation: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(envoy_support::counter_start_payload(
        actor_id, key, generation,
    ))
}

/// Invokes the function in the background; the answer comes when the invocation ends.
fn invoke(port: u16, event: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{port}/2015-03-31/functions/rivulet-runner/invocations"
            ))
            .json(&event)
            .timeout(Duration::from_secs(900))
            .send()
            .await
            .expect("invoke");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    })
}

/// The emulator builds the function on its first invocation (minutes on a new machine, whose
/// build cache is empty): throwaway invocations with a bad event pay for that before anything
/// waits on it. While the build runs the emulator answers 408 once the function timeout
/// passes; the build goes on, so ask again, within a bound.
async fn warm_up(port: u16) {
    let build_deadline = tokio::time::Instant::now() + Duration::from_secs(1200);
    let (status, warm) = loop {
        let (status, warm) = invoke(
            port,
            json!({"endpoint": "http://127.0.0.1:1", "namespace": "default", "poolName": "lambda", "payload": ""}),
        )
        .await
        .unwrap();
        if status != 408 || tokio::time::Instant::now() > build_deadline {
            break (status, warm);
        }
        eprintln!("the emulator is still building the function; invoking again");
    };
    assert!(
        warm.to_string().contains("InvalidStart"),
        "a bad event fails clearly (status {status}): {warm}"
    );
}

async fn action(gw: &TestGateway, actor_id: &str, name: &str, args: Value) -> Value {
    let resp = gw
        .http
        .post(gw.url(&format!("/gateway/{actor_id}/action/{name}")))
        .header("x-rivet-encoding", "json")
        .json(&json!({ "args": args }))
        .timeout(Duration::from_secs(180))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{name}: {body}");
    body["output"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_serves_its_actor_and_hands_it_back_at_the_deadline() {
    let Some(bin) = cargo_lambda_or_skip() else {
        return;
    };
    let gw = TestGateway::start().await;
    let (status, body) = {
        let resp = gw
            .http
            .put(gw.url("/runner-configs/lambda?namespace=default"))
            .json(&json!({"datacenters": {"default": {"normal": {}}}}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(status, 200, "runner config: {body}");
    let (status, created) = gw
        .api_post(
            "/actors?namespace=default",
            json!({"name": "counter", "key": "lambda", "runner_name_selector": "lambda", "crash_policy": "sleep"}),
        )
        .await;
    assert_eq!(status, 200, "create: {created}");
    let actor_id = created["actor"]["actor_id"].as_str().unwrap().to_string();
    let (_emulator, port) = emulator(&bin).await;
    warm_up(port).await;

    // First invocation: generation 1, the actor's first start.
    let event = |generation| {
        json!({
            "endpoint": format!("http://{}", gw.addr),
            "namespace": "default",
            "poolName": "lambda",
            "payload": start_payload(&actor_id, "lambda", generation),
        })
    };
    // As a gateway with a serverless pool does, the actor is waiting for a runner of its
    // pool when the invocation brings one (the wake is queued before the invocation).
    gw.wake(&actor_id).await;
    let first = invoke(port, event(1));
    assert_eq!(
        action(&gw, &actor_id, "increment", json!([5])).await,
        json!(5)
    );
    assert_eq!(
        action(&gw, &actor_id, "increment", json!([2])).await,
        json!(7)
    );
    let (status, answer) = first.await.unwrap();
    assert_eq!(status, 200, "invocation: {answer}");
    assert_eq!(answer["outcome"], "deadline", "{answer}");
    assert_eq!(answer["actorId"], actor_id.as_str());
    assert_eq!(answer["generation"], 1);
    // Handed back: the gateway stopped it (no other runner of the pool, so it sleeps).
    gw.wait_actor(&actor_id, "asleep", |a| !a["sleep_ts"].is_null())
        .await;

    // Second invocation: the next generation, from the state the first one flushed.
    gw.wake(&actor_id).await;
    let second = invoke(port, event(2));
    assert_eq!(action(&gw, &actor_id, "get", json!([])).await, json!(7));
    // Asking it to sleep ends the invocation before its deadline.
    let (status, body) = gw
        .api_post(
            &format!("/actors/{actor_id}/sleep?namespace=default"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "sleep: {body}");
    let (status, answer) = second.await.unwrap();
    assert_eq!(status, 200, "invocation: {answer}");
    assert_eq!(answer["outcome"], "actor_stopped", "{answer}");
    assert_eq!(answer["generation"], 2);
}

#[tokio::test]
async fn a_bad_event_fails_the_invocation_with_a_clear_error() {
    // No emulator needed: the handler's validation, as the runtime would call it.
    let bad = rivulet_lambda_runner::serverless::LambdaStart {
        endpoint: "http://127.0.0.1:1".into(),
        namespace: "default".into(),
        pool_name: "lambda".into(),
        token: None,
        payload: base64::engine::general_purpose::STANDARD.encode(b"\x08\x00garbage"),
        standby_key: None,
    };
    let err = bad.into_request().unwrap_err().to_string();
    assert!(err.contains("not a valid envoy frame"), "{err}");
}

/// A `lambda` pool: the gateway itself invokes the function through `aws-sdk-lambda` (its
/// endpoint pointed at the emulator by the standard `AWS_ENDPOINT_URL_LAMBDA`), once per
/// actor request, and moves the actor to a fresh invocation before the pool's lifespan ends,
/// every acknowledged increment kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_pool_is_invoked_by_the_gateway_through_the_sdk() {
    let Some(bin) = cargo_lambda_or_skip() else {
        return;
    };
    let (_emulator, port) = emulator(&bin).await;
    warm_up(port).await;
    // What the SDK reads; the emulator accepts any credentials.
    std::env::set_var(
        "AWS_ENDPOINT_URL_LAMBDA",
        format!("http://127.0.0.1:{port}"),
    );
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");

    let gw = TestGateway::start().await;
    // The function hands its actor back by itself at 8 s (its max invocation less its
    // margin); the pool moves it first, at 10 - 4 = 6 s.
    let resp = gw
        .http
        .put(gw.url("/runner-configs/lam?namespace=default"))
        .json(&json!({"datacenters": {"default": {"lambda": {
            "function": "rivulet-runner", "request_lifespan": 10, "drain_grace_period": 4,
        }}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let (status, created) = gw
        .api_post(
            "/actors?namespace=default",
            json!({"name": "counter", "key": "by-sdk", "runner_name_selector": "lam", "crash_policy": "sleep"}),
        )
        .await;
    assert_eq!(status, 200, "create: {created}");
    let actor_id = created["actor"]["actor_id"].as_str().unwrap().to_string();

    let started = std::time::Instant::now();
    let mut expected = 0;
    while started.elapsed() < Duration::from_secs(15) {
        expected += 1;
        assert_eq!(
            action(&gw, &actor_id, "increment", json!([1])).await,
            json!(expected)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, listed) = gw.api_get("/runner-configs?namespace=default").await;
    let invocations = listed["runner_configs"]["lam"]["status"]["invocations"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        invocations >= 2,
        "the actor should have moved to a fresh invocation: {listed}"
    );
    // The move landed on a standby invocation (started idle before the deadline, with a
    // gateway-chosen key), not on a request invoked after the old one stopped.
    let record = gw.record(&actor_id).await;
    let key = record.envoy_key.clone().unwrap_or_default();
    assert!(
        key.starts_with(&format!("standby-{actor_id}-")),
        "generation {} runs on {key}",
        record.generation
    );
    assert_eq!(
        action(&gw, &actor_id, "get", json!([])).await,
        json!(expected)
    );
}
