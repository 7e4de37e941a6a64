//! The actor core over real sockets: supervisors of sleeping actors unload and load again
//! from the store, messages sent while they unload are not lost, and a burst of client
//! traffic slows clients without ever cutting the runner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use common::{reply, run_actor, Incoming, TestGateway};
use rivulet_wire::envoy::{
    ActorCheckpoint, ActorIntent, Event, EventActorIntent, EventActorSetAlarm, EventWrapper,
    ToEnvoy, ToEnvoyTunnelMessageKind, ToRivet, ToRivetTunnelMessageKind, ToRivetWebSocketOpen,
};

mod store_support;

/// The gateway's `/metrics` text.
async fn metrics(gw: &TestGateway) -> String {
    reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `rivulet_actors_loaded` from `/metrics`.
async fn loaded(gw: &TestGateway) -> u64 {
    metrics(gw)
        .await
        .lines()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sockets_closing_at_once_slows_clients_and_keeps_the_runner() {
    // 5,000 sockets on one actor close at once while the runner is not reading. Each close
    // is a frame towards the runner; before backpressure they filled the runner's queue and
    // the gateway cut the runner's connection. Now the clients wait for room.
    const SOCKETS: usize = 5_000;
    let gw = TestGateway::builder()
        .configure(|c| c.envoy.outbound_queue_frames = 256)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "burst").await;
    let url = gw.ws_url(&format!("/gateway/{}/connect", started.actor_id));

    let (go, go_rx) = tokio::sync::watch::channel(false);
    let connecting = Arc::new(tokio::sync::Semaphore::new(200));
    let clients: Vec<_> = (0..SOCKETS)
        .map(|_| {
            let url = url.clone();
            let mut go_rx = go_rx.clone();
            let connecting = connecting.clone();
            tokio::spawn(async move {
                let permit = connecting.acquire_owned().await.unwrap();
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                drop(permit);
                go_rx.wait_for(|go| *go).await.unwrap();
                let _ = ws.close(None).await;
            })
        })
        .collect();

    // The actor accepts every socket.
    let mut opened = 0;
    while opened < SOCKETS {
        let msg = runner.expect_tunnel().await;
        match msg.message_kind {
            ToEnvoyTunnelMessageKind::ToEnvoyWebSocketOpen(_) => {
                runner.tunnel(
                    msg.message_id.gateway_id,
                    msg.message_id.request_id,
                    ToRivetTunnelMessageKind::ToRivetWebSocketOpen(ToRivetWebSocketOpen {
                        can_hibernate: false,
                    }),
                );
                opened += 1;
            }
            other => panic!("expected a WebSocket open, got {other:?}"),
        }
    }

    runner.pause_reading(true);
    go.send(true).unwrap();
    for client in clients {
        client.await.unwrap();
    }
    // Let the closes pile up against the paused runner.
    tokio::time::sleep(Duration::from_millis(500)).await;
    runner.pause_reading(false);

    let mut closed = 0;
    while closed < SOCKETS {
        match runner.next().await {
            Incoming::Frame(ToEnvoy::ToEnvoyTunnelMessage(msg)) => match msg.message_kind {
                ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(_) => closed += 1,
                other => panic!("expected a WebSocket close, got {other:?}"),
            },
            Incoming::Frame(ToEnvoy::ToEnvoyPing(_) | ToEnvoy::ToEnvoyAckEvents(_)) => {}
            other => {
                panic!("the runner's connection must stay up; got {other:?} after {closed} closes")
            }
        }
    }

    // Still the same connection, still serving.
    let req = gw.request("GET", &format!("/gateway/{}/after", started.actor_id), b"");
    let (id, _) = runner.expect_http().await;
    runner.respond(&id, 200, b"ok");
    assert_eq!(reply(req).await.status, 200);
}

/// The store requests the gateway has made so far (`/metrics`).
async fn store_requests(gw: &TestGateway) -> u64 {
    metrics(gw)
        .await
        .lines()
        .filter(|l| l.starts_with("rivulet_store_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// A request by key that creates and wakes its actor, answered; returns the start.
async fn first_request(
    gw: &TestGateway,
    runner: &mut common::FakeRunner,
    path: &str,
) -> common::Started {
    let req = gw.request("POST", path, b"1");
    let started = runner.accept_start().await;
    let (id, _) = runner.expect_http().await;
    runner.respond(&id, 200, b"1");
    assert_eq!(reply(req).await.status, 200);
    gw.wait_actor(&started.actor_id, "connectable", |a| {
        !a["connectable_ts"].is_null()
    })
    .await;
    started
}

#[tokio::test]
async fn requests_by_key_to_an_awake_actor_read_nothing_from_the_store() {
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let path = "/gateway/counter/action/x?rvt-method=getOrCreate&rvt-runner=default&rvt-key=hot";

    // The first request creates the actor and wakes it: that costs store requests.
    let started = first_request(&gw, &mut runner, path).await;

    let before = store_requests(&gw).await;
    for i in 0..20 {
        let req = gw.request("POST", path, b"n");
        let (id, start) = runner.expect_http().await;
        assert_eq!(start.actor_id.as_str(), started.actor_id);
        runner.respond(&id, 200, i.to_string().as_bytes());
        assert_eq!(reply(req).await.status, 200);
    }
    // The same with the `get` method.
    let req = gw.request(
        "POST",
        "/gateway/counter/action/x?rvt-method=get&rvt-key=hot",
        b"n",
    );
    let (id, _) = runner.expect_http().await;
    runner.respond(&id, 200, b"ok");
    assert_eq!(reply(req).await.status, 200);
    assert_eq!(store_requests(&gw).await - before, 0);
}

#[tokio::test]
async fn a_key_whose_actor_was_destroyed_gets_a_new_actor() {
    // The cached id of a destroyed actor must not be used: getOrCreate makes a new one.
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let path = "/gateway/counter/action/x?rvt-method=getOrCreate&rvt-runner=default&rvt-key=gone";
    let first = first_request(&gw, &mut runner, path).await;

    let destroy = tokio::spawn({
        let url = gw.url(&format!("/actors/{}", first.actor_id));
        async move {
            reqwest::Client::new()
                .delete(url)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let (checkpoint, _) = runner.expect_stop().await;
    runner.ack(&checkpoint);
    runner.stopped(&first.actor_id, first.generation, None);
    assert_eq!(destroy.await.unwrap(), 200);

    let req = gw.request("POST", path, b"2");
    let second = runner.accept_start().await;
    assert_ne!(second.actor_id, first.actor_id);
    let (id, start) = runner.expect_http().await;
    assert_eq!(start.actor_id.as_str(), second.actor_id);
    runner.respond(&id, 200, b"2");
    assert_eq!(reply(req).await.status, 200);
}

#[tokio::test]
async fn an_unloaded_actors_alarm_fires_on_time_without_the_store_scan() {
    // The store scan is pushed out of reach: only this node's wheel can fire the alarm.
    let gw = TestGateway::builder()
        .configure(|c| {
            c.gateway.actor_unload_after_ms = 200;
            c.gateway.alarm_scan_interval_ms = 3_600_000;
        })
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "alarm").await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let due = now_ms + 2_000;
    runner.event(
        &started.actor_id,
        started.generation,
        Event::EventActorSetAlarm(EventActorSetAlarm {
            alarm_ts: Some(due),
        }),
    );
    runner
        .sleep_actor(&started.actor_id, started.generation)
        .await;
    wait_loaded(&gw, 0).await;

    let woke = runner.accept_start().await;
    assert_eq!(woke.actor_id, started.actor_id);
    assert_eq!(woke.generation, started.generation + 1);
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(at >= due, "woke {} ms before the alarm", due - at);
}

#[tokio::test]
async fn a_node_whose_registration_is_taken_stops_its_actors() {
    // Another process registers this node's id: the old incarnation's leases bind nobody any
    // more, so this node must stop the instances it runs (another node may start them).
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn rivulet_gateway::store::Store> = Arc::new(
        rivulet_gateway::store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap(),
    );
    let gw = TestGateway::builder()
        .store(store.clone())
        .configure(|c| c.cluster.lease_ms = 600)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "fenced").await;
    let lease = store
        .get_lease(&started.actor_id)
        .await
        .unwrap()
        .expect("the running actor's lease");
    store
        .register_node(&lease.node_id, "http://elsewhere", 0, 60_000)
        .await
        .unwrap();
    let (checkpoint, reason) = runner.expect_stop().await;
    assert_eq!(checkpoint.actor_id.as_str(), started.actor_id);
    assert_eq!(reason, rivulet_wire::envoy::StopActorReason::GoingAway);
}

#[tokio::test]
async fn a_key_cached_on_one_node_follows_a_destroy_and_recreate_on_another() {
    // Two nodes on one store. Node A served the key's first actor (and keeps key -> id in
    // memory); node B destroys it and creates a new actor under the same key. A request by key
    // through A must reach the new actor, wherever it runs.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn rivulet_gateway::store::Store> = Arc::new(
        rivulet_gateway::store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap(),
    );
    let node = |id: &'static str| {
        TestGateway::builder()
            .store(store.clone())
            .configure(move |c| c.cluster.node_id = Some(id.into()))
    };
    let a = node("node-a").start().await;
    let b = node("node-b").start().await;
    let mut runner_a = a.runner().envoy_key("runner-a").connect().await;
    let mut runner_b = b.runner().envoy_key("runner-b").connect().await;
    let create =
        "/gateway/counter/action/x?rvt-method=getOrCreate&rvt-runner=default&rvt-key=moving";

    let first = first_request(&a, &mut runner_a, create).await;
    runner_a
        .sleep_actor(&first.actor_id, first.generation)
        .await;
    a.wait_actor(&first.actor_id, "asleep", |x| !x["sleep_ts"].is_null())
        .await;
    let status = b
        .http
        .delete(b.url(&format!("/actors/{}", first.actor_id)))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let second = first_request(&b, &mut runner_b, create).await;
    assert_ne!(second.actor_id, first.actor_id);

    let req = a.request(
        "POST",
        "/gateway/counter/action/y?rvt-method=get&rvt-key=moving",
        b"",
    );
    let (id, start) = runner_b.expect_http().await;
    assert_eq!(start.actor_id.as_str(), second.actor_id);
    runner_b.respond(&id, 200, b"new");
    let got = reply(req).await;
    assert_eq!((got.status, got.body.as_slice()), (200, b"new".as_slice()));
}

#[tokio::test]
async fn a_runner_flooding_one_actor_with_events_is_disconnected_with_a_named_reason() {
    // The supervisor is stuck on a record write (its store hangs), so the events a runner
    // sends queue in its mailbox; past what the protocol can produce, the runner is broken
    // and its connection ends with `ws.too_many_events` (it reconnects and replays).
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_support::hanging::Hanging::new(
        rivulet_gateway::store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap(),
    ));
    let gw = TestGateway::builder()
        .store(store.clone())
        .configure(|c| c.store_timeout_ms = 30_000)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "flood").await;
    store.hang_updates.store(true, Ordering::SeqCst);
    // An alarm change makes the supervisor write the record, where it now waits.
    runner.event(
        &started.actor_id,
        started.generation,
        Event::EventActorSetAlarm(EventActorSetAlarm { alarm_ts: Some(1) }),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let flood: Vec<EventWrapper> = (0..=rivulet_gateway::actor::mailbox::MAX_EVENTS as i64)
        .map(|i| EventWrapper {
            checkpoint: ActorCheckpoint {
                actor_id: started.actor_id.clone().into(),
                generation: started.generation,
                index: 1_000 + i,
            },
            inner: Event::EventActorIntent(EventActorIntent {
                intent: ActorIntent::ActorIntentSleep,
            }),
        })
        .collect();
    runner.send(ToRivet::ToRivetEvents(flood));
    let (code, reason) = runner.expect_close().await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("ws.too_many_events"), "{reason}");
    store.hang_updates.store(false, Ordering::SeqCst);
}
