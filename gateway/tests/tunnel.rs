//! Client traffic through `/gateway/...` and the tunnel to a fake runner, over real sockets:
//! an HTTP request that wakes an actor and the sleep/wake cycle after it, a hibernatable
//! WebSocket that survives its actor sleeping and gets its unacknowledged messages resent,
//! a runner that is lost with requests in flight or that reconnects while one waits, shutdown
//! with a request in flight, and the errors the gateway answers itself. Each test starts its
//! own gateway on `127.0.0.1:0` with a temporary store.
#![allow(clippy::unwrap_used)]

mod common;

use common::{reply, run_actor, FakeRunner, TestGateway, WAIT};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rivulet_wire::envoy::{
    HibernatingRequest, StopActorReason, ToEnvoy, ToEnvoyTunnelMessageKind, ToRivet,
    ToRivetTunnelMessageKind, ToRivetWebSocketClose, ToRivetWebSocketMessage,
    ToRivetWebSocketMessageAck, ToRivetWebSocketOpen,
};
use tokio_tungstenite::tungstenite::Message;

// === HTTP through the tunnel ===

#[tokio::test]
async fn http_request_wakes_the_actor_and_sleep_then_restarts_it_at_the_next_generation() {
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let actor_id = gw.create_actor("counter", "k").await;

    let req = gw.request("POST", &format!("/gateway/{actor_id}/action/x"), b"hello");
    let started = runner.expect_start().await;
    assert_eq!(started.actor_id, actor_id);
    // The engine numbers each generation's commands from 1 (docs/observed-envoy.md §12).
    assert_eq!((started.generation, started.checkpoint.index), (1, 1));
    assert_eq!(started.start.config.name.as_str(), "counter");
    assert_eq!(started.start.config.key.as_deref(), Some("k"));
    assert!(started.start.hibernating_requests.is_empty());
    runner.ack(&started.checkpoint);
    runner.running(&actor_id, 1);

    let (id, start) = runner.expect_http().await;
    assert_eq!(id.message_index, 0);
    assert_eq!(start.actor_id.as_str(), actor_id);
    assert_eq!(start.actor_generation, Some(1));
    assert_eq!(start.method.as_str(), "POST");
    assert_eq!(start.path.as_str(), "/action/x");
    assert_eq!(start.body.as_deref(), Some(b"hello".as_slice()));
    assert!(!start.stream);
    runner.respond(&id, 200, b"world");
    let got = reply(req).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"world");
    assert_eq!(
        got.headers.get("content-type").map(String::as_str),
        Some("text/plain")
    );

    // The request was delivered only once the actor ran, so the API says so already (the
    // record's write may still be in flight; the API shows the live state).
    let actor = gw.actor(&actor_id).await;
    assert!(!actor["connectable_ts"].is_null(), "{actor}");
    assert!(actor["sleep_ts"].is_null(), "{actor}");

    // The actor asks to sleep: stop command at the next command index, then stopped.
    runner.intent_sleep(&actor_id, 1);
    let (checkpoint, reason) = runner.expect_stop().await;
    assert_eq!(reason, StopActorReason::SleepIntent);
    assert_eq!((checkpoint.generation, checkpoint.index), (1, 2));
    runner.ack(&checkpoint);
    runner.stopped(&actor_id, 1, None);
    let actor = gw
        .wait_actor(&actor_id, "asleep", |a| !a["sleep_ts"].is_null())
        .await;
    assert!(actor["connectable_ts"].is_null(), "{actor}");
    assert!(actor.get("error").is_none(), "{actor}");

    // The next request wakes it as generation 2.
    let req = gw.request("GET", &format!("/gateway/{actor_id}/action/y"), b"");
    let again = runner.accept_start().await;
    assert_eq!((again.generation, again.checkpoint.index), (2, 1));
    let (id, start) = runner.expect_http().await;
    assert_eq!(start.actor_generation, Some(2));
    assert_eq!(start.path.as_str(), "/action/y");
    assert_eq!(start.body, None);
    runner.respond(&id, 201, b"again");
    let got = reply(req).await;
    assert_eq!(
        (got.status, got.body.as_slice()),
        (201, b"again".as_slice())
    );
}

// === hibernatable WebSocket ===

type ClientWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn client_text(client: &mut ClientWs) -> String {
    match tokio::time::timeout(WAIT, client.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("client expected a text message, got {other:?}"),
    }
}

/// Waits for the next client-to-actor WebSocket message of this socket: (index, text).
async fn actor_receives(runner: &mut FakeRunner, socket: ([u8; 4], [u8; 4])) -> (u16, String) {
    let msg = runner.expect_tunnel().await;
    assert_eq!(
        (msg.message_id.gateway_id, msg.message_id.request_id),
        socket,
        "message for another request: {msg:?}"
    );
    match msg.message_kind {
        ToEnvoyTunnelMessageKind::ToEnvoyWebSocketMessage(m) => {
            assert!(!m.binary, "text frames travel with binary=false");
            (
                msg.message_id.message_index,
                String::from_utf8(m.data.to_vec()).unwrap(),
            )
        }
        other => panic!("expected a WebSocket message, got {other:?}"),
    }
}

/// The actor accepts (or restores) a socket as hibernatable.
fn hibernatable_open() -> ToRivetTunnelMessageKind {
    ToRivetTunnelMessageKind::ToRivetWebSocketOpen(ToRivetWebSocketOpen {
        can_hibernate: true,
    })
}

/// The actor lets go of a socket for the gateway to hold while it sleeps or moves.
fn hibernate_close() -> ToRivetTunnelMessageKind {
    ToRivetTunnelMessageKind::ToRivetWebSocketClose(ToRivetWebSocketClose {
        code: Some(1000),
        reason: Some("hibernate".into()),
        hibernate: true,
    })
}

/// The actor has durably handled the client's messages up to `index`.
fn ack(index: u16) -> ToRivetTunnelMessageKind {
    ToRivetTunnelMessageKind::ToRivetWebSocketMessageAck(ToRivetWebSocketMessageAck { index })
}

fn ws_text(text: &str) -> ToRivetTunnelMessageKind {
    ToRivetTunnelMessageKind::ToRivetWebSocketMessage(ToRivetWebSocketMessage {
        data: text.as_bytes().to_vec().into(),
        binary: false,
    })
}

/// A client WebSocket to `url`, open within [`WAIT`].
async fn connect_client(url: &str) -> ClientWs {
    let (client, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap();
    client
}

/// `n` client sockets to a sleeping actor, which the first wakes; the runner accepts each,
/// hibernatable or not.
async fn open_sockets(
    runner: &mut FakeRunner,
    url: &str,
    n: usize,
    can_hibernate: bool,
) -> Vec<ClientWs> {
    let mut clients = Vec::new();
    for k in 0..n {
        let client = connect_client(url).await;
        if k == 0 {
            runner.accept_start().await;
        }
        let open = runner.expect_tunnel().await;
        runner.tunnel(
            open.message_id.gateway_id,
            open.message_id.request_id,
            ToRivetTunnelMessageKind::ToRivetWebSocketOpen(ToRivetWebSocketOpen { can_hibernate }),
        );
        clients.push(client);
    }
    clients
}

#[tokio::test]
async fn hibernating_websocket_survives_sleep_and_gets_unacked_messages_resent() {
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let actor_id = gw.create_actor("counter", "hws").await;
    let url = gw.ws_url(&format!("/gateway/{actor_id}/connect"));
    let mut client = connect_client(&url).await;

    let first = runner.accept_start().await;
    assert_eq!(first.generation, 1);
    let open = runner.expect_tunnel().await;
    assert_eq!(open.message_id.message_index, 0);
    match &open.message_kind {
        ToEnvoyTunnelMessageKind::ToEnvoyWebSocketOpen(o) => {
            assert_eq!(o.actor_id.as_str(), actor_id);
            assert_eq!(o.actor_generation, Some(1));
            assert_eq!(o.path.as_str(), "/connect");
        }
        other => panic!("expected a WebSocket open, got {other:?}"),
    }
    let socket = (open.message_id.gateway_id, open.message_id.request_id);
    let (gid, rid) = socket;
    runner.tunnel(gid, rid, hibernatable_open());

    for (n, text) in [(1u16, "m1"), (2, "m2")] {
        client.send(Message::Text(text.into())).await.unwrap();
        assert_eq!(
            actor_receives(&mut runner, socket).await,
            (n, text.to_string())
        );
        runner.tunnel(gid, rid, ws_text(&format!("echo {text}")));
        assert_eq!(client_text(&mut client).await, format!("echo {text}"));
    }

    // The actor has durably handled message 1 only, then hibernates the socket and sleeps.
    runner.tunnel(gid, rid, ack(1));
    runner.tunnel(gid, rid, hibernate_close());
    runner.sleep_actor(&actor_id, 1).await;
    gw.wait_actor(&actor_id, "asleep", |a| !a["sleep_ts"].is_null())
        .await;

    // The client never noticed; its next message wakes the actor, which restores the socket.
    client.send(Message::Text("m3".into())).await.unwrap();
    let second = runner.expect_start().await;
    assert_eq!(second.generation, 2);
    assert_eq!(
        second.start.hibernating_requests,
        vec![HibernatingRequest {
            gateway_id: gid,
            request_id: rid,
        }]
    );
    runner.ack(&second.checkpoint);
    runner.running(&actor_id, 2);
    runner.tunnel(gid, rid, hibernatable_open());

    // Exactly the unacknowledged messages, with their original indices, in order: no new
    // open (index 0) and nothing at or below the acknowledged index 1.
    assert_eq!(
        actor_receives(&mut runner, socket).await,
        (2, "m2".to_string())
    );
    assert_eq!(
        actor_receives(&mut runner, socket).await,
        (3, "m3".to_string())
    );
    runner.tunnel(gid, rid, ws_text("echo m3"));
    assert_eq!(client_text(&mut client).await, "echo m3");
    client.send(Message::Text("m4".into())).await.unwrap();
    assert_eq!(
        actor_receives(&mut runner, socket).await,
        (4, "m4".to_string())
    );

    // The client leaves: the actor hears the close at the next index, and the socket is no
    // longer restored when the actor starts again.
    client.close(None).await.unwrap();
    let close = runner.expect_tunnel().await;
    assert_eq!(
        (close.message_id.gateway_id, close.message_id.request_id),
        socket
    );
    assert_eq!(close.message_id.message_index, 5);
    assert!(
        matches!(
            close.message_kind,
            ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(_)
        ),
        "{close:?}"
    );
    runner.sleep_actor(&actor_id, 2).await;
    gw.wait_actor(&actor_id, "asleep", |a| !a["sleep_ts"].is_null())
        .await;
    gw.wake(&actor_id).await;
    let third = runner.accept_start().await;
    assert_eq!(third.generation, 3);
    assert!(
        third.start.hibernating_requests.is_empty(),
        "{:?}",
        third.start.hibernating_requests
    );
}

/// A runner going away hands its actor to another runner. From the moment the gateway
/// decides that (stop sent to the old instance), client messages are held for the next
/// instance rather than sent to the stopping one, and requests wait for it; the next
/// generation starts only once the old one reported stopped.
#[tokio::test]
async fn a_hand_over_holds_client_messages_for_the_next_instance() {
    let gw = TestGateway::start().await;
    let mut old = gw.runner().envoy_key("runner-old").connect().await;
    let actor_id = gw.create_actor("counter", "handover").await;
    let url = gw.ws_url(&format!("/gateway/{actor_id}/connect"));
    let mut client = connect_client(&url).await;
    assert_eq!(old.accept_start().await.generation, 1);
    let open = old.expect_tunnel().await;
    let socket = (open.message_id.gateway_id, open.message_id.request_id);
    let (gid, rid) = socket;
    old.tunnel(gid, rid, hibernatable_open());
    client.send(Message::Text("m1".into())).await.unwrap();
    assert_eq!(actor_receives(&mut old, socket).await, (1, "m1".into()));
    old.tunnel(gid, rid, ack(1));

    let mut new = gw.runner().envoy_key("runner-new").connect().await;
    old.send(ToRivet::ToRivetStopping);
    let (checkpoint, reason) = old.expect_stop().await;
    assert_eq!(reason, StopActorReason::GoingAway);
    assert_eq!(checkpoint.generation, 1);
    old.ack(&checkpoint);

    // Sent while the old instance stops: held, not sent to it.
    client.send(Message::Text("m2".into())).await.unwrap();
    let during = gw.request("POST", &format!("/gateway/{actor_id}/action/during"), b"");
    tokio::time::sleep(Duration::from_millis(200)).await;
    old.tunnel(gid, rid, hibernate_close());
    let frames = old.frames_until_barrier().await;
    assert!(
        !frames
            .iter()
            .any(|f| matches!(f, ToEnvoy::ToEnvoyTunnelMessage(_))),
        "the stopping instance got client traffic: {frames:?}"
    );
    old.stopped(&actor_id, 1, None);

    let second = new.expect_start().await;
    assert_eq!(second.generation, 2);
    assert_eq!(
        second.start.hibernating_requests,
        vec![HibernatingRequest {
            gateway_id: gid,
            request_id: rid,
        }]
    );
    new.ack(&second.checkpoint);
    new.running(&actor_id, 2);
    let (id, start) = new.expect_http().await;
    assert_eq!(start.actor_generation, Some(2));
    new.respond(&id, 200, b"moved");
    let got = reply(during).await;
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, b"moved".as_slice())
    );
    new.tunnel(gid, rid, hibernatable_open());
    assert_eq!(actor_receives(&mut new, socket).await, (2, "m2".into()));
    new.tunnel(gid, rid, ws_text("echo m2"));
    assert_eq!(client_text(&mut client).await, "echo m2");
}

#[tokio::test]
async fn websocket_to_an_unknown_actor_is_closed_with_the_error_code() {
    let gw = TestGateway::start().await;
    let url = gw.ws_url("/gateway/no-such-actor/connect");
    let mut client = connect_client(&url).await;
    match tokio::time::timeout(WAIT, client.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            assert_eq!(u16::from(frame.code), 1011);
            assert!(
                frame.reason.starts_with("actor.not_found"),
                "{}",
                frame.reason
            );
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

// === lost runner ===

/// A gateway that loses a runner 300 ms after its connection ends. With `silent_after_ms`
/// it also ends a connection whose pongs stop for that long (pings every 100 ms); the
/// margin is there because a live runner on a loaded machine must never look silent.
async fn fast_loss_gateway(silent_after_ms: Option<u64>) -> TestGateway {
    let mut builder = TestGateway::builder().lost_threshold_ms(300);
    if let Some(timeout) = silent_after_ms {
        builder = builder.ping_interval_ms(100).ping_timeout_ms(timeout);
    }
    builder.start().await
}

/// After the runner is lost: the in-flight request got a 503, the actor sleeps with an
/// error, and a new runner serves the next request at the next generation.
async fn assert_recovers_after_loss(
    gw: &TestGateway,
    actor_id: &str,
    in_flight: tokio::task::JoinHandle<common::HttpReply>,
) {
    let got = reply(in_flight).await;
    assert_eq!(got.status, 503, "{:?}", String::from_utf8_lossy(&got.body));
    let body = got.json();
    assert_eq!(body["group"], "guard", "{body}");
    assert_eq!(body["code"], "service_unavailable", "{body}");

    let actor = gw
        .wait_actor(actor_id, "asleep after losing its runner", |a| {
            !a["sleep_ts"].is_null()
        })
        .await;
    assert!(actor.get("error").is_some_and(|e| !e.is_null()), "{actor}");
    assert!(actor["connectable_ts"].is_null(), "{actor}");

    let mut replacement = gw.runner().connect().await;
    let req = gw.request("POST", &format!("/gateway/{actor_id}/action/again"), b"");
    let started = replacement.accept_start().await;
    assert_eq!(started.actor_id, actor_id);
    assert_eq!(started.generation, 2);
    let (id, start) = replacement.expect_http().await;
    assert_eq!(start.actor_generation, Some(2));
    replacement.respond(&id, 200, b"back");
    let got = reply(req).await;
    assert_eq!((got.status, got.body.as_slice()), (200, b"back".as_slice()));
}

#[tokio::test]
async fn runner_that_stops_answering_pings_is_lost_and_its_actor_recovers_elsewhere() {
    let gw = fast_loss_gateway(Some(1_500)).await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "lost-silent").await;
    let req = gw.request(
        "POST",
        &format!("/gateway/{}/action/slow", started.actor_id),
        b"",
    );
    let _ = runner.expect_http().await; // in flight, never answered
    runner.answer_pings(false);
    let (code, reason) = runner.expect_close().await;
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.starts_with("ws.timed_out"), "{reason}");
    assert_recovers_after_loss(&gw, &started.actor_id, req).await;
}

#[tokio::test]
async fn runner_that_drops_its_connection_is_lost_and_its_actor_recovers_elsewhere() {
    let gw = fast_loss_gateway(None).await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "lost-dropped").await;
    let req = gw.request(
        "POST",
        &format!("/gateway/{}/action/slow", started.actor_id),
        b"",
    );
    let _ = runner.expect_http().await;
    runner.disconnect().await;
    assert_recovers_after_loss(&gw, &started.actor_id, req).await;
}

#[tokio::test]
async fn request_sent_while_the_runner_reconnects_reaches_it_once_it_is_back() {
    // A short ready timeout, so a request that is never delivered fails well inside WAIT.
    let gw = TestGateway::builder()
        .configure(|c| c.gateway.actor_ready_timeout_ms = 3_000)
        .start()
        .await;
    let mut runner = gw.runner().envoy_key("envoy-blip").connect().await;
    let started = run_actor(&gw, &mut runner, "blip").await;
    // The connection drops; the runner keeps its actors and reconnects well within the lost
    // threshold (15 s), so the actor stays running throughout.
    runner.disconnect().await;
    gw.wait_envoys("empty after the disconnect", |e| e.is_empty())
        .await;
    let mut req = gw.request(
        "POST",
        &format!("/gateway/{}/action/x", started.actor_id),
        b"",
    );
    let mut runner = gw.runner().envoy_key("envoy-blip").connect().await;
    tokio::select! {
        (id, start) = runner.expect_http() => {
            assert_eq!(start.actor_generation, Some(started.generation));
            runner.respond(&id, 200, b"back");
        }
        got = &mut req => {
            let got = got.unwrap();
            panic!(
                "the request was never sent to the reconnected runner; the client got {} {}",
                got.status,
                String::from_utf8_lossy(&got.body)
            );
        }
    }
    let got = reply(req).await;
    assert_eq!((got.status, got.body.as_slice()), (200, b"back".as_slice()));
}

// === shutdown with requests in flight ===

#[tokio::test]
async fn request_in_flight_when_shutdown_starts_still_gets_its_response() {
    let mut gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "drain").await;
    let req = gw.request(
        "POST",
        &format!("/gateway/{}/action/x", started.actor_id),
        b"",
    );
    let (id, _) = runner.expect_http().await;
    // Stop accepting, then drain: the actor answers right after the signal.
    gw.begin_shutdown();
    runner.respond(&id, 200, b"drained");
    let got = reply(req).await;
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, b"drained".as_slice())
    );
    gw.stop_within(WAIT).await.unwrap();
}

#[tokio::test]
async fn shutdown_does_not_wait_past_its_drain_deadline_for_a_silent_actor() {
    let mut gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "silent").await;
    let req = gw.request(
        "POST",
        &format!("/gateway/{}/action/x", started.actor_id),
        b"",
    );
    let _ = runner.expect_http().await; // never answered
                                        // The gateway drains for at most 10 s (`DRAIN_DEADLINE`), then must stop.
    gw.stop_within(Duration::from_secs(15)).await.unwrap();
    // Stopped means the client was answered or cut off, not left waiting.
    let outcome = tokio::time::timeout(WAIT, req).await;
    assert!(outcome.is_ok(), "the client request outlived the gateway");
}

// === errors the gateway answers itself ===

#[tokio::test]
async fn gateway_errors_are_json_with_the_engine_codes() {
    let gw = TestGateway::builder().max_body_bytes(1024).start().await;

    let got = reply(gw.request("GET", "/gateway/no-such-actor/action/x", b"")).await;
    assert_eq!(got.status, 404);
    let body = got.json();
    assert_eq!(
        (body["group"].as_str(), body["code"].as_str()),
        (Some("actor"), Some("not_found")),
        "{body}"
    );
    assert!(body["message"].is_string(), "{body}");

    let got = reply(gw.request(
        "GET",
        "/gateway/counter/action/x?rvt-namespace=default&rvt-method=get&rvt-key=missing",
        b"",
    ))
    .await;
    assert_eq!(got.status, 404);
    let body = got.json();
    assert_eq!(
        (body["group"].as_str(), body["code"].as_str()),
        (Some("actor"), Some("not_found")),
        "{body}"
    );

    for bad in [
        "/gateway/counter/x?rvt-method=bogus",
        "/gateway/counter/x?rvt-method=get&rvt-bogus=1",
        "/gateway/counter/x?rvt-method=get&rvt-method=get",
        "/gateway/counter/x?rvt-method=getOrCreate",
    ] {
        let got = reply(gw.request("GET", bad, b"")).await;
        assert_eq!(got.status, 400, "{bad}");
        let body = got.json();
        assert_eq!(
            (body["group"].as_str(), body["code"].as_str()),
            (Some("api"), Some("bad_request")),
            "{bad}: {body}"
        );
    }

    let actor_id = gw.create_actor("counter", "big-body").await;
    let got = reply(gw.request(
        "POST",
        &format!("/gateway/{actor_id}/action/x"),
        &[0u8; 2048],
    ))
    .await;
    assert_eq!(got.status, 413);
    assert_eq!(got.json()["code"], "incoming_too_long");
}

// === streamed responses ===

/// A streamed response (server-sent events from a raw handler) reaches the client chunk by
/// chunk, before the actor finishes it, and the runner gets its flow-control credit back.
#[tokio::test]
async fn streamed_response_reaches_the_client_chunk_by_chunk() {
    use rivulet_wire::envoy::{ToRivetResponseChunk, ToRivetResponseStart};
    use std::collections::BTreeMap;

    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "stream").await;
    let url = gw.url(&format!("/gateway/{}/request/events", started.actor_id));
    let client = tokio::spawn(async move {
        let resp = reqwest::Client::new().get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        resp
    });
    let (id, start) = runner.expect_http().await;
    assert!(
        start.response_stream,
        "the gateway accepts streamed responses"
    );
    let headers = BTreeMap::from([("content-type".into(), "text/event-stream".into())]);
    runner.tunnel(
        id.gateway_id,
        id.request_id,
        ToRivetTunnelMessageKind::ToRivetResponseStart(ToRivetResponseStart {
            status: 200,
            headers,
            body: None,
            stream: true,
        }),
    );
    let chunk = |body: &str, finish: bool| {
        ToRivetTunnelMessageKind::ToRivetResponseChunk(ToRivetResponseChunk {
            body: body.as_bytes().to_vec().into(),
            finish,
        })
    };
    runner.tunnel(id.gateway_id, id.request_id, chunk("data: one\n\n", false));
    let mut resp = tokio::time::timeout(WAIT, client).await.unwrap().unwrap();
    // The first event arrives while the stream is still open.
    let first = tokio::time::timeout(WAIT, resp.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some(b"data: one\n\n".as_slice()));
    // Credit for the consumed bytes goes back to the runner.
    let update = runner.expect_tunnel().await;
    match update.message_kind {
        ToEnvoyTunnelMessageKind::ToEnvoyResponseBodyWindowUpdate(w) => {
            assert_eq!(w.consumed_bytes, 11);
            assert_eq!(update.message_id.message_index, 1);
        }
        other => panic!("expected a window update, got {other:?}"),
    }
    runner.tunnel(id.gateway_id, id.request_id, chunk("data: two\n\n", true));
    let second = tokio::time::timeout(WAIT, resp.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.as_deref(), Some(b"data: two\n\n".as_slice()));
    let end = tokio::time::timeout(WAIT, resp.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, None, "the body ends with the final chunk");
}

/// A client that stops reading while its actor keeps sending: once a message has waited
/// `client_write_timeout_ms` for it, its socket is closed with 1008
/// `guard.client_not_reading` and the actor is told; the runner is never held up, and another
/// client of the same actor keeps working.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_named_and_others_keep_working() {
    let gw = TestGateway::builder()
        .configure(|c| c.gateway.client_write_timeout_ms = 300)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let actor_id = gw.create_actor("counter", "slow").await;
    let url = gw.ws_url(&format!("/gateway/{actor_id}/connect"));
    let mut stuck = connect_client(&url).await;
    runner.accept_start().await;
    let open = runner.expect_tunnel().await;
    let stuck_socket = (open.message_id.gateway_id, open.message_id.request_id);
    let plain_open = || {
        ToRivetTunnelMessageKind::ToRivetWebSocketOpen(ToRivetWebSocketOpen {
            can_hibernate: false,
        })
    };
    runner.tunnel(stuck_socket.0, stuck_socket.1, plain_open());
    let mut other = connect_client(&url).await;
    let open = runner.expect_tunnel().await;
    let other_socket = (open.message_id.gateway_id, open.message_id.request_id);
    runner.tunnel(other_socket.0, other_socket.1, plain_open());

    // 64 MiB towards a client that reads nothing: more than loopback and the gateway's write
    // buffer take, so a send waits, and then gives up.
    let chunk = "x".repeat(1024 * 1024);
    for _ in 0..64 {
        runner.tunnel(stuck_socket.0, stuck_socket.1, ws_text(&chunk));
    }
    let closed = loop {
        let msg = runner.expect_tunnel().await;
        if (msg.message_id.gateway_id, msg.message_id.request_id) != stuck_socket {
            continue;
        }
        if let ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(c) = msg.message_kind {
            break c;
        }
    };
    assert_eq!(closed.code, Some(1008));

    // The other client is unaffected.
    other
        .send(Message::Text("still here".into()))
        .await
        .unwrap();
    assert_eq!(
        actor_receives(&mut runner, other_socket).await,
        (1, "still here".to_string())
    );
    runner.tunnel(other_socket.0, other_socket.1, ws_text("yes"));
    assert_eq!(client_text(&mut other).await, "yes");

    // The stuck client, reading at last, finds its socket ended: data, then the named close
    // if it fitted, or a reset; never an open socket.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stuck.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the stuck socket ends");
    if let Some(reason) = ended {
        assert!(reason.starts_with("guard.client_not_reading"), "{reason}");
    }
}

/// A node holds at most `max_client_sockets` client WebSockets: the next upgrade is refused
/// with 503 `guard.too_many_sockets` and `retry-after`, and a freed place is taken again.
#[tokio::test]
async fn client_sockets_past_the_node_cap_are_refused_named() {
    let gw = TestGateway::builder()
        .configure(|c| c.gateway.max_client_sockets = 2)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let actor_id = gw.create_actor("counter", "cap").await;
    let url = gw.ws_url(&format!("/gateway/{actor_id}/connect"));
    let mut open = open_sockets(&mut runner, &url, 2, false).await;
    let refused = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = refused else {
        panic!("expected an HTTP refusal, got {refused:?}");
    };
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(b"1".as_slice())
    );
    let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
    assert!(body.contains("too_many_sockets"), "{body}");

    // One closes; its place is free again.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok(_) => break,
            Err(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the place never freed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

// === parked client sockets ===

/// A client frame written by hand (masked, as clients must), so a test can split it or
/// fragment a message the way a slow client or a large message would.
fn raw_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut f = vec![
        (if fin { 0x80 } else { 0 }) | opcode,
        0x80 | payload.len() as u8,
    ];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

async fn write_raw(client: &mut ClientWs, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    match client.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.write_all(bytes).await.unwrap(),
        _ => unreachable!("loopback sockets are plain"),
    }
}

/// `rivulet_client_sockets{state="parked"}` from `/metrics`.
async fn parked_sockets(gw: &TestGateway) -> u64 {
    let text = reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("rivulet_client_sockets{state=\"parked\"} "))
        .and_then(|v| v.parse().ok())
        .expect("the parked sockets gauge")
}

async fn wait_parked(gw: &TestGateway, want: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while parked_sockets(gw).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "parked sockets never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An idle socket puts its codec down and picks it up again on either side's next message,
/// losing nothing: not a message for the client, not a message from it, not a message the
/// client fragmented or a frame it sent in pieces with pauses longer than the idle time (the
/// socket does not park in the middle of either), and pings are still answered.
/// Parked sockets wait in no task and keep no shutdown waiter: the shutdown reaches them
/// through their routes, and each client is told 1001 `ws.going_away`.
#[tokio::test]
async fn shutdown_closes_parked_sockets_as_going_away() {
    let mut gw = TestGateway::builder()
        .configure(|c| c.gateway.client_park_after_ms = 100)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let actor_id = gw.create_actor("counter", "parked-shutdown").await;
    let url = gw.ws_url(&format!("/gateway/{actor_id}/connect"));
    let mut clients = open_sockets(&mut runner, &url, 3, true).await;
    wait_parked(&gw, 3).await;

    gw.begin_shutdown();
    for client in &mut clients {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 1001);
                assert!(frame.reason.starts_with("ws.going_away"), "{frame:?}");
            }
            other => panic!("expected a going-away close, got {other:?}"),
        }
    }
    gw.stop_within(WAIT).await.unwrap();
}

#[tokio::test]
async fn a_parked_socket_loses_nothing_either_way() {
    let gw = TestGateway::builder()
        .configure(|c| c.gateway.client_park_after_ms = 100)
        .start()
        .await;
    let mut runner = gw.runner().connect().await;
    let actor_id = gw.create_actor("counter", "parked").await;
    let url = gw.ws_url(&format!("/gateway/{actor_id}/connect"));
    let mut client = connect_client(&url).await;
    runner.accept_start().await;
    let open = runner.expect_tunnel().await;
    let socket = (open.message_id.gateway_id, open.message_id.request_id);
    let (gid, rid) = socket;
    runner.tunnel(gid, rid, hibernatable_open());

    // Idle: parked. A message for the client picks it up.
    wait_parked(&gw, 1).await;
    runner.tunnel(gid, rid, ws_text("to the client"));
    assert_eq!(client_text(&mut client).await, "to the client");

    // Parked again; the client's message picks it up.
    wait_parked(&gw, 1).await;
    client.send(Message::Text("m1".into())).await.unwrap();
    assert_eq!(actor_receives(&mut runner, socket).await, (1, "m1".into()));

    // A message in two fragments with a pause longer than the idle time between them.
    wait_parked(&gw, 1).await;
    write_raw(&mut client, &raw_frame(false, 1, b"frag-")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        parked_sockets(&gw).await,
        0,
        "a half message keeps the codec"
    );
    write_raw(&mut client, &raw_frame(true, 0, b"ment")).await;
    assert_eq!(
        actor_receives(&mut runner, socket).await,
        (2, "frag-ment".into())
    );

    // One frame sent in two pieces with the same pause, split inside its header.
    wait_parked(&gw, 1).await;
    let frame = raw_frame(true, 1, b"split");
    write_raw(&mut client, &frame[..3]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    write_raw(&mut client, &frame[3..]).await;
    assert_eq!(
        actor_receives(&mut runner, socket).await,
        (3, "split".into())
    );

    // A ping to a parked socket is answered.
    wait_parked(&gw, 1).await;
    client
        .send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, client.next()).await {
        Ok(Some(Ok(Message::Pong(data)))) => assert_eq!(&data[..], b"still there?"),
        other => panic!("expected the pong, got {other:?}"),
    }

    // The client leaves while parked: the actor hears it.
    wait_parked(&gw, 1).await;
    drop(client);
    let close = runner.expect_tunnel().await;
    assert!(
        matches!(
            close.message_kind,
            ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(_)
        ),
        "{close:?}"
    );
    wait_parked(&gw, 0).await;
}
