//! The actor core over real sockets: supervisors of sleeping actors unload and load again
//! from the store, and messages sent while they unload are not lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{reply, run_actor, TestGateway};

/// `rivulet_actors_loaded` from `/metrics`.
async fn loaded(gw: &TestGateway) -> u64 {
    let text = reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("rivulet_actors_loaded "))
        .expect("rivulet_actors_loaded in /metrics")
        .trim()
        .parse()
        .unwrap()
}

async fn wait_loaded(gw: &TestGateway, want: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = loaded(gw).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rivulet_actors_loaded stayed at {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_sleeping_actor_unloads_and_the_next_request_loads_it_again() {
    let gw = TestGateway::builder()
        .configure(|c| c.gateway.actor_unload_after_ms = 300)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "unload").await;
    let actor_id = started.actor_id.clone();
    assert_eq!(loaded(&gw).await, 1);

    runner.sleep_actor(&actor_id, started.generation).await;
    gw.wait_actor(&actor_id, "asleep", |a| !a["sleep_ts"].is_null())
        .await;
    wait_loaded(&gw, 0).await;

    // A request for the unloaded actor loads its supervisor from the store, which wakes it
    // at the next generation.
    let req = gw.request("POST", &format!("/gateway/{actor_id}/action/x"), b"again");
    let restarted = runner.accept_start().await;
    assert_eq!(restarted.actor_id, actor_id);
    assert_eq!(restarted.generation, started.generation + 1);
    let (id, start) = runner.expect_http().await;
    assert_eq!(start.actor_generation, Some(restarted.generation));
    runner.respond(&id, 200, b"served");
    let got = reply(req).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"served");
    assert_eq!(loaded(&gw).await, 1);
}

#[tokio::test]
async fn an_awake_actor_never_unloads() {
    let gw = TestGateway::builder()
        .configure(|c| c.gateway.actor_unload_after_ms = 100)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "awake").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(loaded(&gw).await, 1);
    // And it still serves.
    let req = gw.request("GET", &format!("/gateway/{}/ping", started.actor_id), b"");
    let (id, _) = runner.expect_http().await;
    runner.respond(&id, 200, b"pong");
    assert_eq!(reply(req).await.status, 200);
}

#[tokio::test]
async fn destroying_an_unloaded_actor_loads_it_and_destroys_it() {
    let gw = TestGateway::builder()
        .configure(|c| c.gateway.actor_unload_after_ms = 200)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "destroy-unloaded").await;
    runner
        .sleep_actor(&started.actor_id, started.generation)
        .await;
    wait_loaded(&gw, 0).await;
    let resp = reqwest::Client::new()
        .delete(gw.url(&format!("/actors/{}", started.actor_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.wait_actor(&started.actor_id, "destroyed", |a| {
        !a["destroy_ts"].is_null()
    })
    .await;
}
