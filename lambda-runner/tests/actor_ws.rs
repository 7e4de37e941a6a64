//! The `/connect` WebSocket (client-protocol v4) and raw `/websocket/...` sockets.

mod actor_support;

use std::sync::Arc;

use actor_support::{call_ok, field, int, start, text, Client, MemHost, SocketEvent};
use ciborium::Value;
use parking_lot::Mutex;
use rivulet_lambda_runner::actor::{ActorDef, ActorOptions, Conn, Registry, SocketId, StopReason};
use rivulet_lambda_runner::examples;
use rivulet_lambda_runner::protocol::{Encoding, Frame, ToClient};

#[tokio::test]
async fn init_comes_first_then_action_responses() {
    for encoding in [Encoding::Bare, Encoding::Json, Encoding::Cbor] {
        let host = MemHost::fresh();
        let runtime = start(&examples::registry(), "counter", &host, 1).await;
        let client = Client::connect(&runtime, &host, 1, encoding, None).await;

        let events = host.events(client.socket);
        // `/connect` sockets are hibernatable unless the actor opts out.
        assert_eq!(
            events.first(),
            Some(&SocketEvent::Accept(true)),
            "{encoding:?}"
        );
        match client.received().first() {
            Some(ToClient::Init {
                actor_id,
                connection_id,
            }) => {
                assert_eq!(actor_id, actor_support::ACTOR_ID);
                assert_eq!(connection_id.len(), 36, "a uuid");
            }
            other => panic!("expected Init first, got {other:?}"),
        }
        if encoding == Encoding::Json {
            assert!(events
                .iter()
                .all(|event| !matches!(event, SocketEvent::Send(Frame::Binary(_)))));
        }

        assert_eq!(client.call_ok(7, "increment", vec![int(5)]).await, int(5));
        assert_eq!(client.call_ok(8, "get", vec![]).await, int(5));

        client.action(9, "missing", vec![]);
        match client.answer(9).await {
            ToClient::Error(body) => {
                assert_eq!(body.action_id, Some(9));
                assert_eq!(
                    (body.group.as_str(), body.code.as_str()),
                    ("actor", "action_not_found")
                );
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert_eq!(
            client.closed(),
            None,
            "an action error leaves the socket open"
        );
        runtime.abort();
    }
}

#[tokio::test]
async fn broadcasts_reach_only_subscribers() {
    let host = MemHost::fresh();
    let runtime = start(&examples::registry(), "counter", &host, 1).await;
    let subscribed = Client::connect(&runtime, &host, 1, Encoding::Bare, None).await;
    let bystander = Client::connect(&runtime, &host, 2, Encoding::Json, None).await;
    subscribed.subscribe("newCount", true);

    // An action over HTTP broadcasts to the subscribed socket.
    assert_eq!(call_ok(&runtime, "increment", &[int(3)]).await, int(3));
    // An action on the socket itself: its event precedes its response, as with RivetKit.
    subscribed.call_ok(1, "increment", vec![int(4)]).await;
    assert_eq!(
        subscribed.events_named("newCount"),
        [Value::Array(vec![int(3)]), Value::Array(vec![int(7)])]
    );
    let order: Vec<&str> = subscribed
        .received()
        .iter()
        .map(|message| match message {
            ToClient::Init { .. } => "init",
            ToClient::Event { .. } => "event",
            ToClient::ActionResponse { .. } => "response",
            ToClient::Error(_) => "error",
        })
        .collect();
    assert_eq!(order, ["init", "event", "event", "response"]);

    // The bystander got nothing but its Init (its own call shows the queue has drained).
    bystander.call_ok(1, "get", vec![]).await;
    assert!(bystander.events_named("newCount").is_empty());

    // After unsubscribing, no more events.
    subscribed.subscribe("newCount", false);
    subscribed.call_ok(2, "increment", vec![int(1)]).await;
    assert_eq!(subscribed.events_named("newCount").len(), 2);
    runtime.abort();
}

#[tokio::test]
async fn a_rejected_connection_sees_the_user_error() {
    let host = MemHost::fresh();
    let runtime = start(&examples::registry(), "chat", &host, 1).await;
    for (socket, params) in [(1, None), (2, Some(r#"{"user":"  "}"#))] {
        let client = Client::connect(&runtime, &host, socket, Encoding::Json, params).await;
        let events = host.events(client.socket);
        assert_eq!(events.first(), Some(&SocketEvent::Accept(false)));
        match client.received().as_slice() {
            [ToClient::Error(body)] => {
                assert_eq!(
                    (body.group.as_str(), body.code.as_str()),
                    ("user", "missing_user")
                );
                assert_eq!(body.message, "a user name is required to join the chat");
                assert_eq!(body.action_id, None);
            }
            other => panic!("expected one error, got {other:?}"),
        }
        assert_eq!(
            client.closed(),
            Some((1011, "user.missing_user".to_owned()))
        );
    }
    runtime.abort();
}

#[tokio::test]
async fn chat_posts_carry_the_connection_user() {
    let host = MemHost::fresh();
    let runtime = start(&examples::registry(), "chat", &host, 1).await;
    let alice = Client::connect(
        &runtime,
        &host,
        1,
        Encoding::Bare,
        Some(r#"{"user":"alice"}"#),
    )
    .await;
    let bob = Client::connect(
        &runtime,
        &host,
        2,
        Encoding::Json,
        Some(r#"{"user":"bob"}"#),
    )
    .await;
    alice.subscribe("message", true);
    bob.subscribe("message", true);

    let posted = bob.call_ok(1, "post", vec![text("hello")]).await;
    assert_eq!(field(&posted, "user"), Some(&text("bob")));
    assert_eq!(field(&posted, "ts"), Some(&int(1_700_000_000_000)));
    alice
        .host
        .wait_until("alice sees the message", |_| {
            !alice.events_named("message").is_empty()
        })
        .await;
    assert_eq!(
        alice.events_named("message"),
        [Value::Array(vec![posted.clone()])]
    );
    assert_eq!(
        alice.call_ok(1, "history", vec![]).await,
        Value::Array(vec![posted])
    );
    runtime.abort();
}

type Log = Arc<Mutex<Vec<String>>>;

fn tracked_actor(log: Log) -> ActorDef<(), serde_json::Value, String> {
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    ActorDef::new()
        .conn_state(|_c, params: Option<serde_json::Value>| async move {
            Ok(params
                .and_then(|params| {
                    params
                        .get("name")
                        .and_then(|name| name.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_default())
        })
        .on_connect(move |_c, conn: Conn<serde_json::Value, String>| {
            l1.lock()
                .push(format!("connect {}", conn.state(String::clone)));
            async { Ok(()) }
        })
        .on_disconnect(move |_c, conn: Conn<serde_json::Value, String>| {
            l2.lock()
                .push(format!("disconnect {}", conn.state(String::clone)));
            async { Ok(()) }
        })
        .on_sleep(move |_c| {
            l3.lock().push("sleep".to_owned());
            async { Ok(()) }
        })
        .action("kick", |c, ()| async move {
            if let Some(conn) = c.conn() {
                conn.disconnect("kicked").await;
            }
            Ok(())
        })
        .action("whisper", |c, (to, what): (String, String)| async move {
            for conn in c.conns() {
                if conn.state(|name| *name == to) {
                    conn.send("whisper", (what.clone(),));
                }
            }
            Ok(c.conns().len())
        })
}

#[tokio::test]
async fn connections_have_state_and_disconnect_hooks() {
    let log = Log::default();
    let registry = Registry::new().register("tracked", tracked_actor(log.clone()));
    let host = MemHost::fresh();
    let runtime = start(&registry, "tracked", &host, 1).await;
    let ann = Client::connect(
        &runtime,
        &host,
        1,
        Encoding::Json,
        Some(r#"{"name":"ann"}"#),
    )
    .await;
    let ben = Client::connect(
        &runtime,
        &host,
        2,
        Encoding::Bare,
        Some(r#"{"name":"ben"}"#),
    )
    .await;

    // `conn.send` reaches one connection, without a subscription.
    assert_eq!(
        ann.call_ok(1, "whisper", vec![text("ben"), text("psst")])
            .await,
        int(2)
    );
    ben.host
        .wait_until("ben's whisper", |_| !ben.events_named("whisper").is_empty())
        .await;
    assert!(ann.events_named("whisper").is_empty());

    // The client closing runs on_disconnect.
    runtime.ws_closed(ann.socket);
    ben.call_ok(2, "whisper", vec![text("nobody"), text("x")])
        .await;
    assert!(log.lock().contains(&"disconnect ann".to_owned()));

    // The actor closing a connection closes its socket and runs on_disconnect once.
    ben.action(3, "kick", vec![]);
    host.wait_until("ben is closed", |_| ben.closed().is_some())
        .await;
    assert_eq!(ben.closed(), Some((1000, "kicked".to_owned())));
    runtime.ws_closed(ben.socket);

    runtime.stop(StopReason::Sleep).await.expect("stop");
    assert_eq!(
        *log.lock(),
        [
            "connect ann",
            "connect ben",
            "disconnect ann",
            "disconnect ben",
            "sleep"
        ]
    );
}

#[tokio::test]
async fn stopping_closes_connections_that_cannot_hibernate() {
    let log = Log::default();
    let registry = Registry::new().register(
        "tracked",
        tracked_actor(log.clone()).can_hibernate(|_| false),
    );
    let host = MemHost::fresh();
    let runtime = start(&registry, "tracked", &host, 1).await;
    let ann = Client::connect(
        &runtime,
        &host,
        1,
        Encoding::Json,
        Some(r#"{"name":"ann"}"#),
    )
    .await;
    runtime.stop(StopReason::Sleep).await.expect("stop");
    assert_eq!(ann.closed(), Some((1000, "actor.stopping".to_owned())));
    assert_eq!(*log.lock(), ["connect ann", "sleep", "disconnect ann"]);
    // New sockets are refused once stopped.
    assert!(runtime
        .ws_open(
            SocketId(9),
            "/connect".to_owned(),
            actor_support::connect_headers(Encoding::Json, None)
        )
        .await
        .is_err());
}

fn echo_actor() -> ActorDef<Vec<String>> {
    ActorDef::new()
        .state(Vec::new())
        .on_websocket(|c, socket, request| async move {
            c.update(|seen| seen.push(format!("open {}", request.path)));
            socket.send_text(format!("welcome {}", socket.path()));
            Ok(())
        })
        .on_websocket_message(|c, socket, frame| async move {
            match frame {
                Frame::Text(text) if text == "bye" => socket.close(1000, "bye"),
                Frame::Text(text) => socket.send_text(text.to_uppercase()),
                Frame::Binary(data) => {
                    socket.send_binary(data.into_iter().rev().collect::<Vec<u8>>())
                }
            }
            c.update(|seen| seen.push("message".to_owned()));
            Ok(())
        })
        .on_websocket_close(|c, _socket| async move {
            c.update(|seen| seen.push("close".to_owned()));
            Ok(())
        })
        .action("seen", |c, ()| async move { Ok(c.state(Vec::clone)) })
}

#[tokio::test]
async fn raw_websockets_are_driven_by_the_actors_handlers() {
    let registry = Registry::new().register("echo", echo_actor());
    let host = MemHost::fresh();
    let runtime = start(&registry, "echo", &host, 1).await;
    let socket = SocketId(5);
    runtime
        .ws_open(socket, "/websocket/feed?x=1".to_owned(), Default::default())
        .await
        .expect("offered");
    runtime.ws_message(socket, 1, Frame::Text("hi".to_owned()));
    runtime.ws_message(socket, 2, Frame::Binary(vec![1, 2, 3]));
    runtime.ws_message(socket, 3, Frame::Text("bye".to_owned()));
    host.wait_until("the close", |host| {
        host.events(socket)
            .iter()
            .any(|event| matches!(event, SocketEvent::Close(..)))
    })
    .await;
    assert_eq!(
        host.events(socket),
        [
            SocketEvent::Accept(false),
            SocketEvent::Send(Frame::Text("welcome /feed?x=1".to_owned())),
            SocketEvent::Send(Frame::Text("HI".to_owned())),
            SocketEvent::Send(Frame::Binary(vec![3, 2, 1])),
            SocketEvent::Close(1000, "bye".to_owned()),
        ]
    );
    runtime.ws_closed(socket);
    let seen = call_ok(&runtime, "seen", &[]).await;
    assert_eq!(
        seen,
        Value::Array(
            ["open /feed?x=1", "message", "message", "message", "close"]
                .into_iter()
                .map(text)
                .collect()
        )
    );

    // Without a raw handler, or on an unknown path, the socket is refused.
    let counter_host = MemHost::fresh();
    let counter = start(&examples::registry(), "counter", &counter_host, 1).await;
    counter
        .ws_open(SocketId(6), "/websocket/x".to_owned(), Default::default())
        .await
        .expect("offered");
    assert_eq!(
        counter_host.events(SocketId(6)),
        [SocketEvent::Close(1011, "actor.not_found".to_owned())]
    );
    runtime
        .ws_open(SocketId(7), "/nowhere".to_owned(), Default::default())
        .await
        .expect("offered");
    assert_eq!(
        host.events(SocketId(7)),
        [SocketEvent::Close(1011, "actor.not_found".to_owned())]
    );
    runtime.abort();
    counter.abort();
}

/// A hibernatable connection outlives its instance: at the stop its socket is handed to the
/// carrier (not closed, no `on_disconnect`), its record goes in the final save, and the next
/// instance, told the socket is still held, takes it back with its params, state and
/// subscriptions. A client message resent with an index already taken is dropped; messages
/// taken are acknowledged once durable.
#[tokio::test]
async fn a_hibernatable_connection_outlives_its_instance_and_takes_each_message_once() {
    let registry = examples::registry();
    let host = MemHost::fresh();
    let runtime = start(&registry, "chat", &host, 1).await;
    let ann = Client::connect(
        &runtime,
        &host,
        1,
        Encoding::Bare,
        Some(r#"{"user":"ann"}"#),
    )
    .await;
    ann.subscribe("message", true); // message 1
    let first = ann.call_ok(1, "post", vec![text("hello")]).await; // message 2
    assert_eq!(field(&first, "user"), Some(&text("ann")));
    // The post's save carried the connection's record; the gateway is told both are taken.
    host.wait_until("the ack", |h| h.acks.lock().get(&ann.socket) == Some(&2))
        .await;
    // A read changes nothing: it is acknowledged as soon as it is answered, and writes nothing
    // (its index rides with the next save).
    let puts = host.puts.load(std::sync::atomic::Ordering::SeqCst);
    ann.call_ok(9, "history", vec![]).await; // message 3
    host.wait_until("the read's ack", |h| {
        h.acks.lock().get(&ann.socket) == Some(&3)
    })
    .await;
    assert_eq!(
        host.puts.load(std::sync::atomic::Ordering::SeqCst),
        puts,
        "a read writes nothing"
    );

    runtime.stop(StopReason::GoingAway).await.expect("stop");
    assert_eq!(
        host.events(ann.socket).last(),
        Some(&SocketEvent::Hibernate)
    );
    assert_eq!(ann.closed(), None, "the client's socket stays open");

    // The next instance, on the same KV, with the socket still held by the gateway.
    let (runtime, next) =
        actor_support::restart_holding(&registry, "chat", &host, 2, vec![ann.socket]).await;
    assert_eq!(next.events(ann.socket), [SocketEvent::Accept(true)]);
    let ann = ann.restored(&runtime, &next);

    // The gateway resends message 2 (unacknowledged in its view): dropped, not posted twice.
    ann.send_frame_at(
        2,
        &rivulet_lambda_runner::protocol::ToServer::ActionRequest {
            id: 1,
            name: "post".into(),
            args: Value::Array(vec![text("hello")]),
        },
    );
    // A new message: the connection's user (state) and subscription came back with it.
    let second = ann.call_ok(2, "post", vec![text("again")]).await;
    assert_eq!(field(&second, "user"), Some(&text("ann")));
    next.wait_until("the event", |_| !ann.events_named("message").is_empty())
        .await;
    assert_eq!(
        ann.events_named("message"),
        [Value::Array(vec![second.clone()])]
    );
    assert_eq!(
        ann.call_ok(3, "history", vec![]).await,
        Value::Array(vec![first, second])
    );
    runtime.abort();
}

/// A held socket whose connection is not stored is closed; a stored connection whose socket
/// the carrier no longer holds is gone: its record is deleted and `on_disconnect` runs.
#[tokio::test]
async fn restore_drops_what_does_not_match() {
    let log = Log::default();
    let registry = Registry::new().register("tracked", tracked_actor(log.clone()));
    let host = MemHost::fresh();
    let runtime = start(&registry, "tracked", &host, 1).await;
    let _ann = Client::connect(
        &runtime,
        &host,
        1,
        Encoding::Json,
        Some(r#"{"name":"ann"}"#),
    )
    .await;
    runtime.stop(StopReason::Sleep).await.expect("stop");
    assert_eq!(*log.lock(), ["connect ann", "sleep"]);
    let stored = |h: &MemHost| {
        h.store
            .lock()
            .keys()
            .filter(|k| k.first() == Some(&4))
            .count()
    };
    assert_eq!(stored(&host), 1, "the connection is stored");

    let (runtime, next) =
        actor_support::restart_holding(&registry, "tracked", &host, 2, vec![SocketId(99)]).await;
    assert_eq!(
        next.events(SocketId(99)),
        [SocketEvent::Close(1011, "ws.stale_metadata".to_owned())]
    );
    assert_eq!(*log.lock(), ["connect ann", "sleep", "disconnect ann"]);
    assert_eq!(stored(&next), 0, "the gone connection's record is deleted");
    runtime.abort();
}

/// More kept connections changed since the last save than one put may carry: the stop
/// saves until every record is written, so every held socket is taken back by the next
/// instance (a socket handed on without its record would be closed there).
#[tokio::test]
async fn a_stop_writes_every_kept_connection_before_handing_its_socket_on() {
    const N: u64 = 250;
    let log = Log::default();
    let def = tracked_actor(log.clone()).options(ActorOptions {
        // No save runs on its own during the test: every record is still unwritten at the stop.
        state_save_interval: std::time::Duration::from_secs(3600),
        ..ActorOptions::default()
    });
    let registry = Registry::new().register("tracked", def);
    let host = MemHost::fresh();
    let runtime = start(&registry, "tracked", &host, 1).await;
    let mut clients = Vec::new();
    for i in 0..N {
        let params = format!(r#"{{"name":"c{i}"}}"#);
        clients
            .push(Client::connect(&runtime, &host, 100 + i, Encoding::Json, Some(&params)).await);
    }
    runtime.stop(StopReason::Sleep).await.expect("stop");
    let stored = host
        .store
        .lock()
        .keys()
        .filter(|k| k.first() == Some(&4))
        .count();
    assert_eq!(
        stored as u64, N,
        "every kept connection's record is written"
    );
    for client in &clients {
        assert_eq!(
            host.events(client.socket).last(),
            Some(&SocketEvent::Hibernate)
        );
    }

    let (runtime, next) = actor_support::restart_holding(
        &registry,
        "tracked",
        &host,
        2,
        clients.iter().map(|c| c.socket).collect(),
    )
    .await;
    for client in &clients {
        assert_eq!(next.events(client.socket), [SocketEvent::Accept(true)]);
    }
    assert!(
        !log.lock().iter().any(|l| l.starts_with("disconnect")),
        "no connection was lost: {:?}",
        log.lock()
    );
    runtime.abort();
}

/// Destroying the actor ends hibernatable connections too.
#[tokio::test]
async fn destroy_closes_hibernatable_connections() {
    let log = Log::default();
    let registry = Registry::new().register("tracked", tracked_actor(log.clone()));
    let host = MemHost::fresh();
    let runtime = start(&registry, "tracked", &host, 1).await;
    let ann = Client::connect(
        &runtime,
        &host,
        1,
        Encoding::Json,
        Some(r#"{"name":"ann"}"#),
    )
    .await;
    runtime.stop(StopReason::Destroy).await.expect("stop");
    assert_eq!(ann.closed(), Some((1000, "actor.stopping".to_owned())));
    assert_eq!(*log.lock(), ["connect ann", "disconnect ann"]);
}
