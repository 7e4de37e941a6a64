//! The envoy client against the real gateway, in-process over loopback sockets: connect and
//! init, actor start and running, client HTTP through the tunnel, KV with generation
//! fencing, alarms, a gateway restart with replayed events and adoption, and graceful
//! shutdown.
#![allow(clippy::unwrap_used)]

mod envoy_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use envoy_support::{connect, recorder, reply, Proxy, TestGateway, WAIT};
use rivulet_lambda_runner::envoy::{EnvoyClient, EnvoyConfig, EnvoyError, ListQuery};
use rivulet_wire::envoy::{StopActorReason, ToEnvoyTunnelMessageKind};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn keys(entries: &[rivulet_lambda_runner::envoy::KvEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.key).to_string())
        .collect()
}

#[tokio::test]
async fn connects_announces_itself_and_answers_pings() {
    // Pings every 50 ms and a 400 ms timeout: without pongs the gateway would drop us.
    let gw = TestGateway::start_with(|c| {
        c.envoy.ping_interval_ms = 50;
        c.envoy.ping_timeout_ms = 400;
    })
    .await;
    let (handler, _seen) = recorder();
    let client = connect(&gw, handler).await;
    assert!(client.is_connected());
    let init = client.protocol_metadata().unwrap();
    assert_eq!(init.envoy_lost_threshold, gw.config.envoy.lost_threshold_ms);

    let key = client.envoy_key().to_string();
    let envoys = gw
        .wait_envoys("listing the client", |e| {
            e.iter().any(|v| v["envoy_key"] == key.as_str())
        })
        .await;
    let me = envoys
        .iter()
        .find(|v| v["envoy_key"] == key.as_str())
        .unwrap();
    assert_eq!(me["pool_name"], "default");
    assert_eq!(me["version"], 1);
    assert_eq!(me["metadata"]["rivulet"]["runner"], "lambda-runner");
    let connected_ts = me["create_ts"].as_i64().unwrap();

    // The names are stored as the runner's metadata frame is handled, which may finish just
    // after the listing above shows that frame's metadata.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, names) = gw.api_get("/actors/names?namespace=default").await;
        assert_eq!(status, 200);
        if names["names"]["counter"]["metadata"] == json!({"icon": "c"}) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner's actor names were never listed: {names}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Pongs keep the same connection alive across many ping timeouts.
    let envoys = gw
        .wait_envoys("answering pings for three ping timeouts", |e| {
            e.iter().any(|v| {
                v["envoy_key"] == key.as_str()
                    && v["last_ping_ts"].as_i64().unwrap() - connected_ts > 1200
            })
        })
        .await;
    let me = envoys
        .iter()
        .find(|v| v["envoy_key"] == key.as_str())
        .unwrap();
    assert_eq!(
        me["create_ts"].as_i64().unwrap(),
        connected_ts,
        "the connection was replaced: pongs did not keep it alive"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn a_refused_connection_reports_the_gateways_reason() {
    let gw = TestGateway::start_with(|c| c.auth_token = Some("secret".into())).await;
    let (handler, _seen) = recorder();
    let err = EnvoyClient::connect(gw.envoy_config(), handler.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    match err {
        EnvoyError::Refused { code, .. } => assert_eq!(code, "ws.unauthorized"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let config = EnvoyConfig {
        token: Some("secret".into()),
        ..gw.envoy_config()
    };
    let client = EnvoyClient::connect(config, handler, CancellationToken::new())
        .await
        .unwrap();
    assert!(client.is_connected());
    client.shutdown().await;
}

#[tokio::test]
async fn an_actor_starts_runs_and_serves_http_through_the_tunnel() {
    let gw = TestGateway::start().await;
    let (handler, mut seen) = recorder();
    let _client = connect(&gw, handler).await;
    let actor_id = gw.create_actor("counter", "k1").await;

    let req = gw.request("POST", &format!("/gateway/{actor_id}/echo?x=1"), b"hello");
    let start = seen.start().await;
    assert_eq!(start.actor_id, actor_id);
    assert_eq!(start.generation, 1);
    assert_eq!(start.config.name, "counter");
    assert_eq!(start.config.key.as_deref(), Some("k1"));

    let resp = reply(req).await;
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        resp.headers.get("x-runner").map(String::as_str),
        Some("rust")
    );
    let body = resp.json();
    assert_eq!(body["actor_id"], actor_id.as_str());
    assert_eq!(body["generation"], 1);
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/echo?x=1");
    assert_eq!(body["body"], "hello");
    assert_eq!(body["header"], "yes");

    let msg = seen.tunnel().await;
    assert!(matches!(
        msg.message_kind,
        ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(_)
    ));
    gw.wait_actor(&actor_id, "connectable", |a| !a["connectable_ts"].is_null())
        .await;
}

#[tokio::test]
async fn kv_round_trips_and_is_fenced_by_generation() {
    let gw = TestGateway::start().await;
    let (handler, mut seen) = recorder();
    let client = connect(&gw, handler).await;
    let actor_id = gw.create_actor("counter", "kv").await;
    gw.wake(&actor_id).await;
    let generation = seen.start().await.generation;
    let gen = Some(generation);
    let a = actor_id.as_str();

    client
        .kv_put(
            a,
            gen,
            vec![(b("k/a"), b("1")), (b("k/b"), b("2")), (b("x/c"), b("3"))],
        )
        .await
        .unwrap();
    let got = client
        .kv_get(a, gen, vec![b("k/a"), b("k/b"), b("nope")])
        .await
        .unwrap();
    assert_eq!(keys(&got), ["k/a", "k/b"]);
    assert_eq!(got[1].value, b("2"));
    assert!(got[0].update_ts > 0);

    let listed = client
        .kv_list(a, gen, ListQuery::Prefix(b("k/")), false, None)
        .await
        .unwrap();
    assert_eq!(keys(&listed), ["k/a", "k/b"]);
    let last = client
        .kv_list(a, gen, ListQuery::All, true, Some(1))
        .await
        .unwrap();
    assert_eq!(keys(&last), ["x/c"]);
    let range = client
        .kv_list(
            a,
            gen,
            ListQuery::Range {
                start: b("k/b"),
                end: b("x/c"),
                exclusive: false,
            },
            false,
            None,
        )
        .await
        .unwrap();
    assert_eq!(keys(&range), ["k/b", "x/c"]);

    client.kv_delete(a, gen, vec![b("k/a")]).await.unwrap();
    assert!(client
        .kv_get(a, gen, vec![b("k/a")])
        .await
        .unwrap()
        .is_empty());
    client
        .kv_delete_range(a, gen, b("k/"), b("k0"))
        .await
        .unwrap();
    let all = client
        .kv_list(a, gen, ListQuery::All, false, None)
        .await
        .unwrap();
    assert_eq!(keys(&all), ["x/c"]);
    client.kv_drop(a, gen).await.unwrap();
    assert!(client
        .kv_list(a, gen, ListQuery::All, false, None)
        .await
        .unwrap()
        .is_empty());

    // A generation that is not running here is refused before anything is sent.
    let err = client
        .kv_get(a, Some(generation + 1), vec![b("x")])
        .await
        .unwrap_err();
    assert!(matches!(err, EnvoyError::ActorNotRunning { .. }), "{err:?}");

    client
        .kv_put(a, gen, vec![(b("kept"), b("v"))])
        .await
        .unwrap();
    // Sleep: the generation ends here and on the gateway.
    client.intent_sleep(a, generation).unwrap();
    let stop = seen.stop().await;
    assert_eq!(stop.reason, StopActorReason::SleepIntent);
    gw.wait_actor(a, "asleep", |v| !v["sleep_ts"].is_null())
        .await;
    let err = client.kv_get(a, gen, vec![b("kept")]).await.unwrap_err();
    assert!(matches!(err, EnvoyError::ActorNotRunning { .. }), "{err:?}");
    // Unfenced here, the gateway fences it: the actor does not run on this envoy.
    let err = client.kv_get(a, None, vec![b("kept")]).await.unwrap_err();
    assert!(matches!(err, EnvoyError::Kv(_)), "{err:?}");

    gw.wake(a).await;
    let next = seen.start().await;
    assert_eq!(next.generation, generation + 1);
    let got = client
        .kv_get(a, Some(next.generation), vec![b("kept")])
        .await
        .unwrap();
    assert_eq!(got[0].value, b("v"));
}

#[tokio::test]
async fn an_alarm_wakes_the_actor_after_it_slept() {
    let gw = TestGateway::start().await;
    let (handler, mut seen) = recorder();
    let client = connect(&gw, handler).await;
    let actor_id = gw.create_actor("counter", "alarm").await;
    gw.wake(&actor_id).await;
    let first = seen.start().await;

    let at = now_ms() + 1500;
    client
        .set_alarm(&actor_id, first.generation, Some(at))
        .unwrap();
    client.intent_sleep(&actor_id, first.generation).unwrap();
    let stop = seen.stop().await;
    assert_eq!(stop.generation, first.generation);
    assert_eq!(stop.reason, StopActorReason::SleepIntent);
    gw.wait_actor(&actor_id, "asleep", |v| !v["sleep_ts"].is_null())
        .await;

    // Nothing else wakes it: the next start comes from the alarm, not before it is due.
    let woken = seen.start().await;
    assert!(now_ms() >= at, "woke before the alarm was due");
    assert_eq!(woken.actor_id, actor_id);
    assert_eq!(woken.generation, first.generation + 1);
}

#[tokio::test]
async fn the_client_survives_a_gateway_restart_and_replays_events() {
    let mut gw = TestGateway::start().await;
    let (handler, mut seen) = recorder();
    let config = EnvoyConfig {
        reconnect_max: Duration::from_secs(1),
        ..gw.envoy_config()
    };
    let client = EnvoyClient::connect(config, handler, CancellationToken::new())
        .await
        .unwrap();
    let key = client.envoy_key().to_string();
    let served = gw.create_actor("counter", "served").await;
    let sleeper = gw.create_actor("counter", "sleeper").await;
    gw.wake(&served).await;
    let served_gen = seen.start().await.generation;
    gw.wake(&sleeper).await;
    let sleeper_gen = seen.start().await.generation;
    gw.wait_actor(&sleeper, "connectable", |a| !a["connectable_ts"].is_null())
        .await;
    gw.wait_actor(&served, "connectable", |a| !a["connectable_ts"].is_null())
        .await;
    client
        .kv_put(&served, Some(served_gen), vec![(b("before"), b("1"))])
        .await
        .unwrap();

    gw.stop().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.is_connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "client never noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While the gateway is away: events go to the history, KV waits for a connection.
    let alarm_at = now_ms() + 3_600_000;
    client
        .set_alarm(&served, served_gen, Some(alarm_at))
        .unwrap();
    client.intent_sleep(&sleeper, sleeper_gen).unwrap();

    gw.resume().await;
    gw.wait_envoys("the client back", |e| {
        e.iter().any(|v| v["envoy_key"] == key.as_str())
    })
    .await;
    // The replayed sleep intent is honoured by the new gateway.
    let stop = seen.stop().await;
    assert_eq!(stop.actor_id, sleeper);
    assert_eq!(stop.generation, sleeper_gen);
    assert_eq!(stop.reason, StopActorReason::SleepIntent);
    gw.wait_actor(&sleeper, "asleep", |a| !a["sleep_ts"].is_null())
        .await;

    // The other actor was adopted: same generation, no new start, still serving.
    let resp = reply(gw.request("GET", &format!("/gateway/{served}/after"), b"")).await;
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.json()["generation"], served_gen);
    assert!(!seen.has_start(), "the adopted actor was started again");
    // Its alarm set while the gateway was away arrived with the replay.
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw.record(&served).await.alarm_ts != Some(alarm_at) {
        assert!(tokio::time::Instant::now() < deadline, "alarm never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = client
        .kv_get(&served, Some(served_gen), vec![b("before")])
        .await
        .unwrap();
    assert_eq!(keys(&got), ["before"]);
    client.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_reconnects_and_resends_what_was_in_flight() {
    let gw = TestGateway::start().await;
    let proxy = Proxy::start(gw.addr).await;
    let (handler, mut seen) = recorder();
    let config = EnvoyConfig {
        reconnect_max: Duration::from_millis(500),
        ..EnvoyConfig::new(format!("http://{}", proxy.addr))
    };
    let client = EnvoyClient::connect(config, handler, CancellationToken::new())
        .await
        .unwrap();
    let actor_id = gw.create_actor("counter", "flaky").await;
    gw.wake(&actor_id).await;
    let generation = seen.start().await.generation;
    gw.wait_actor(&actor_id, "connectable", |a| !a["connectable_ts"].is_null())
        .await;

    proxy.cut();
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.is_connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "client never noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alarm_at = now_ms() + 3_600_000;
    client
        .set_alarm(&actor_id, generation, Some(alarm_at))
        .unwrap();
    let put = {
        let client = client.clone();
        let actor_id = actor_id.clone();
        tokio::spawn(async move {
            client
                .kv_put(&actor_id, Some(generation), vec![(b("during"), b("2"))])
                .await
        })
    };
    proxy.restore();

    tokio::time::timeout(WAIT, put)
        .await
        .expect("kv put made while disconnected never completed")
        .unwrap()
        .unwrap();
    assert!(client.is_connected());
    let got = client
        .kv_get(&actor_id, Some(generation), vec![b("during")])
        .await
        .unwrap();
    assert_eq!(got[0].value, b("2"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw.record(&actor_id).await.alarm_ts != Some(alarm_at) {
        assert!(tokio::time::Instant::now() < deadline, "alarm never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The actor kept running through the drop: same generation, no second start.
    let resp = reply(gw.request("GET", &format!("/gateway/{actor_id}/still"), b"")).await;
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.json()["generation"], generation);
    assert!(!seen.has_start(), "the actor was started again");
    client.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_actors_through_the_gateway_and_leaves() {
    let gw = TestGateway::start().await;
    let (handler, mut seen) = recorder();
    let client = connect(&gw, handler).await;
    let key = client.envoy_key().to_string();
    let actor_id = gw.create_actor("counter", "bye").await;
    gw.wake(&actor_id).await;
    let start = seen.start().await;
    gw.wait_actor(&actor_id, "connectable", |a| !a["connectable_ts"].is_null())
        .await;

    tokio::time::timeout(Duration::from_secs(20), client.shutdown())
        .await
        .expect("shutdown is bounded");
    let stop = seen.stop().await;
    assert_eq!(stop.actor_id, actor_id);
    assert_eq!(stop.generation, start.generation);
    assert_eq!(stop.reason, StopActorReason::GoingAway);

    // The gateway saw the stop before the goodbye: the actor sleeps for want of a runner.
    let actor = gw
        .wait_actor(&actor_id, "asleep", |a| !a["sleep_ts"].is_null())
        .await;
    assert_eq!(actor["error"], "no_envoys");
    gw.wait_envoys("without the client", |e| {
        e.iter().all(|v| v["envoy_key"] != key.as_str())
    })
    .await;
    assert!(!client.is_connected());
    assert_eq!(
        client.kv_get(&actor_id, None, vec![b("x")]).await,
        Err(EnvoyError::Shutdown)
    );
    assert_eq!(
        client.actor_running(&actor_id, start.generation),
        Err(EnvoyError::Shutdown)
    );
}
