//! Scheduling and the actor's own lifecycle requests (sleep, destroy, idle sleep), and what the
//! runtime does when its queue is full or it stops with work queued.

mod actor_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actor_support::{call, call_ok, int, start, text, Client, MemHost};
use ciborium::Value;
use parking_lot::Mutex;
use rivulet_lambda_runner::actor::{ActorDef, ActorOptions, Registry, StopReason};
use rivulet_lambda_runner::protocol::Encoding;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Clone, Default, Serialize, Deserialize)]
struct Reminders {
    fired: Vec<String>,
}

fn reminder_actor(log: Arc<Mutex<Vec<String>>>) -> ActorDef<Reminders> {
    ActorDef::new()
        .state(Reminders::default())
        .action("remind_later", |c, (ms, what): (u64, String)| async move {
            c.schedule()
                .after(Duration::from_millis(ms), "remind", (what,))
                .await
        })
        .action("remind_at", |c, (at, what): (i64, String)| async move {
            c.schedule().at(at, "remind", (what,)).await
        })
        .action("cancel", |c, (id,): (String,)| async move {
            c.schedule().cancel(&id).await
        })
        .action(
            "pending",
            |c, ()| async move { Ok(c.schedule().list().len()) },
        )
        .action("remind", |c, (what,): (String,)| async move {
            c.update(|s| s.fired.push(what));
            Ok(())
        })
        .action(
            "fired",
            |c, ()| async move { Ok(c.state(|s| s.fired.clone())) },
        )
        .action("self_destruct", |c, ()| async move {
            c.destroy();
            Ok(())
        })
        .action("nap", |c, ()| async move {
            c.sleep();
            Ok(())
        })
        .on_destroy(move |_c| {
            log.lock().push("on_destroy".to_owned());
            async { Ok(()) }
        })
}

fn registry() -> (Registry, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    (
        Registry::new().register("reminders", reminder_actor(log.clone())),
        log,
    )
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().copied().map(text).collect())
}

fn schedule_keys(host: &MemHost) -> usize {
    host.store
        .lock()
        .keys()
        .filter(|key| key.first() == Some(&0x02))
        .count()
}

#[tokio::test]
async fn a_scheduled_action_sets_the_alarm_and_fires_after_a_restart() {
    let (registry, _) = registry();
    let host = MemHost::fresh();
    let now = host.clock.load(Ordering::SeqCst);
    let first = start(&registry, "reminders", &host, 1).await;
    assert_eq!(
        host.last_alarm(),
        Some(None),
        "start pushes the (empty) alarm"
    );

    call_ok(&first, "remind_later", &[int(60_000), text("water plants")]).await;
    assert_eq!(host.last_alarm(), Some(Some(now + 60_000)));
    assert_eq!(
        schedule_keys(&host),
        1,
        "persisted before the action returned"
    );
    first.stop(StopReason::Sleep).await.expect("sleep");
    assert_eq!(
        call_ok_fired(&host, &registry, 2).await,
        strings(&[]),
        "not due yet"
    );

    // The gateway wakes the actor at its alarm; the due action runs before anything else.
    host.clock.fetch_add(60_000, Ordering::SeqCst);
    let host3 = host.next_generation();
    let third = start(&registry, "reminders", &host3, 3).await;
    assert_eq!(
        call_ok(&third, "fired", &[]).await,
        strings(&["water plants"])
    );
    assert_eq!(host3.last_alarm(), Some(None), "nothing left to wake for");
    assert_eq!(schedule_keys(&host), 0);
    third.abort();
}

/// Starts a generation, reads `fired`, and stops it again.
async fn call_ok_fired(host: &MemHost, registry: &Registry, generation: u32) -> Value {
    let next = host.next_generation();
    let runtime = start(registry, "reminders", &next, generation).await;
    let fired = call_ok(&runtime, "fired", &[]).await;
    runtime.stop(StopReason::Sleep).await.expect("sleep");
    fired
}

#[tokio::test]
async fn due_actions_run_in_order_on_alarm_and_can_be_cancelled() {
    let (registry, _) = registry();
    let host = MemHost::fresh();
    let now = host.clock.load(Ordering::SeqCst);
    let runtime = start(&registry, "reminders", &host, 1).await;
    call_ok(&runtime, "remind_at", &[int(now + 2_000), text("second")]).await;
    call_ok(&runtime, "remind_at", &[int(now + 1_000), text("first")]).await;
    let doomed = call_ok(&runtime, "remind_at", &[int(now + 1_500), text("never")]).await;
    assert_eq!(
        host.last_alarm(),
        Some(Some(now + 1_000)),
        "the earliest is the alarm"
    );
    assert_eq!(
        call_ok(&runtime, "cancel", std::slice::from_ref(&doomed)).await,
        Value::Bool(true)
    );
    assert_eq!(
        call_ok(&runtime, "cancel", &[doomed]).await,
        Value::Bool(false)
    );

    runtime.alarm().await.expect("alarm");
    assert_eq!(
        call_ok(&runtime, "fired", &[]).await,
        strings(&[]),
        "nothing due yet"
    );

    host.clock.fetch_add(2_000, Ordering::SeqCst);
    runtime.alarm().await.expect("alarm");
    assert_eq!(
        call_ok(&runtime, "fired", &[]).await,
        strings(&["first", "second"])
    );
    assert_eq!(call_ok(&runtime, "pending", &[]).await, int(0));
    assert_eq!(host.last_alarm(), Some(None));
    runtime.abort();
}

#[tokio::test]
async fn the_actor_can_ask_to_be_destroyed_or_to_sleep() {
    let (registry, log) = registry();
    let host = MemHost::fresh();
    let runtime = start(&registry, "reminders", &host, 1).await;
    call_ok(&runtime, "nap", &[]).await;
    assert_eq!(host.sleep_requests.load(Ordering::SeqCst), 1);
    call_ok(&runtime, "self_destruct", &[]).await;
    call_ok(&runtime, "self_destruct", &[]).await;
    assert_eq!(
        host.destroy_requests.load(Ordering::SeqCst),
        1,
        "asked once"
    );
    assert!(log.lock().is_empty(), "on_destroy waits for the stop");
    // The glue answers the request with a destroy stop.
    runtime.stop(StopReason::Destroy).await.expect("destroy");
    assert_eq!(*log.lock(), ["on_destroy"]);
}

fn sleepy_counter() -> ActorDef<i64> {
    ActorDef::new()
        .state(0)
        .options(ActorOptions {
            sleep_timeout: Duration::from_millis(400),
            ..ActorOptions::default()
        })
        // Clients that connect with `{"stay": true}` keep the actor awake.
        .can_hibernate(|params: Option<&serde_json::Value>| {
            params.and_then(|p| p.get("stay")) != Some(&serde_json::Value::Bool(true))
        })
        .action("bump", |c, ()| async move {
            Ok(c.update(|n| {
                *n += 1;
                *n
            }))
        })
}

#[tokio::test]
async fn an_idle_actor_asks_to_sleep_unless_a_client_keeps_it_awake() {
    let registry = Registry::new().register("sleepy", sleepy_counter());
    let host = MemHost::fresh();
    let runtime = start(&registry, "sleepy", &host, 1).await;
    call_ok(&runtime, "bump", &[]).await;
    host.wait_until("a sleep request", |host| {
        host.sleep_requests.load(Ordering::SeqCst) == 1
    })
    .await;
    runtime.abort();

    // A hibernatable client does not keep it awake: the gateway holds its socket.
    let host = MemHost::fresh();
    let runtime = start(&registry, "sleepy", &host, 1).await;
    let _client = Client::connect(&runtime, &host, 1, Encoding::Json, None).await;
    host.wait_until("a sleep request", |host| {
        host.sleep_requests.load(Ordering::SeqCst) == 1
    })
    .await;
    runtime.abort();

    let host = MemHost::fresh();
    let runtime = start(&registry, "sleepy", &host, 1).await;
    let client =
        Client::connect(&runtime, &host, 1, Encoding::Json, Some(r#"{"stay":true}"#)).await;
    // Many sleep timeouts pass with the socket open...
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        host.sleep_requests.load(Ordering::SeqCst),
        0,
        "a socket that cannot hibernate keeps it awake"
    );
    // ...and once it closes the actor asks to sleep.
    runtime.ws_closed(client.socket);
    host.wait_until("a sleep request", |host| {
        host.sleep_requests.load(Ordering::SeqCst) == 1
    })
    .await;
    runtime.abort();
}

fn gated_actor(entered: Arc<Notify>, release: Arc<Notify>) -> ActorDef<i64> {
    ActorDef::new()
        .state(0)
        .options(ActorOptions {
            queue_capacity: 1,
            ..ActorOptions::default()
        })
        .action("block", move |c, ()| {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                entered.notify_one();
                release.notified().await;
                Ok(c.update(|n| {
                    *n += 1;
                    *n
                }))
            }
        })
        .action("get", |c, ()| async move { Ok(c.state(|n| *n)) })
}

/// Polls a future once, so a request reaches the actor's queue without being awaited.
async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) {
    tokio::select! {
        biased;
        _ = future => panic!("finished early"),
        () = std::future::ready(()) => {}
    }
}

#[tokio::test]
async fn a_full_queue_refuses_work_at_once_and_a_stop_overtakes_queued_work() {
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let registry = Registry::new().register("gated", gated_actor(entered.clone(), release.clone()));
    let host = MemHost::fresh();
    let runtime = start(&registry, "gated", &host, 1).await;
    let client = Client::connect(&runtime, &host, 1, Encoding::Json, None).await;
    let request = |name: &str| actor_support::action_request(Encoding::Json, name, &[], None);

    let mut running = Box::pin(runtime.handle_http(request("block")));
    poll_once(&mut running).await;
    entered.notified().await;
    let mut queued = Box::pin(runtime.handle_http(request("block")));
    poll_once(&mut queued).await;

    // The queue (capacity 1) is full: an HTTP request is refused at once...
    let (status, outcome) = call(&runtime, Encoding::Json, "get", &[], None).await;
    assert_eq!(status, 503);
    let error = outcome.expect_err("overloaded");
    assert_eq!(
        (error.group.as_str(), error.code.as_str()),
        ("actor", "overloaded")
    );
    // ...and a socket message closes its socket.
    client.action(1, "get", vec![]);
    assert_eq!(client.closed(), Some((1011, "actor.overloaded".to_owned())));

    // Both queued calls finish once released.
    release.notify_one();
    assert_eq!(running.await.status, 200);
    entered.notified().await;
    release.notify_one();
    let second = queued.await;
    assert_eq!(
        actor_support::action_outcome(Encoding::Json, &second).expect("ok"),
        int(2)
    );

    // A stop waits for the running action but answers queued work with `actor.stopping`.
    let mut running = Box::pin(runtime.handle_http(request("block")));
    poll_once(&mut running).await;
    entered.notified().await;
    let mut queued = Box::pin(runtime.handle_http(request("get")));
    poll_once(&mut queued).await;
    let mut stopping = Box::pin(runtime.stop(StopReason::Sleep));
    poll_once(&mut stopping).await;
    release.notify_one();
    assert_eq!(running.await.status, 200);
    let refused = queued.await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        actor_support::action_outcome(Encoding::Json, &refused)
            .expect_err("stopping")
            .code,
        "stopping"
    );
    stopping.await.expect("stopped");

    // What the running action did was saved by the stop.
    let next = host.next_generation();
    let again = start(&registry, "gated", &next, 2).await;
    assert_eq!(call_ok(&again, "get", &[]).await, int(3));
    again.abort();
}
