//! Persistent state, input, vars and lifecycle hooks of the actor runtime, driven through an
//! in-memory host (see `actor_support`).

mod actor_support;

use std::sync::Arc;
use std::time::Duration;

use actor_support::{call_ok, int, start, start_info, MemHost, Store};
use parking_lot::Mutex;
use rivulet_lambda_runner::actor::{
    ActorDef, ActorError, ActorOptions, Host, Registry, StopReason,
};
use rivulet_lambda_runner::examples;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The count a fresh runtime loads from a copy of `store` (so the check cannot disturb it).
async fn stored_count(store: &Store) -> i64 {
    let copy = Store::new(Mutex::new(store.lock().clone()));
    let host = MemHost::new(copy, Arc::new(0.into()));
    let runtime = start(&examples::registry(), "counter", &host, 99).await;
    let count = call_ok(&runtime, "get", &[]).await;
    runtime.abort();
    i64::try_from(count.as_integer().expect("count is an integer")).expect("count fits")
}

#[tokio::test]
async fn state_persists_across_sleep_and_start() {
    let registry = examples::registry();
    let host = MemHost::fresh();
    let first = start(&registry, "counter", &host, 1).await;
    assert_eq!(call_ok(&first, "increment", &[int(5)]).await, int(5));
    assert_eq!(call_ok(&first, "increment", &[int(2)]).await, int(7));
    first.stop(StopReason::Sleep).await.expect("stop saves");

    let host2 = host.next_generation();
    let second = start(&registry, "counter", &host2, 2).await;
    assert_eq!(call_ok(&second, "get", &[]).await, int(7));
    assert_eq!(call_ok(&second, "increment", &[int(1)]).await, int(8));
    second.stop(StopReason::Sleep).await.expect("stop saves");
    assert_eq!(stored_count(&host.store).await, 8);
}

#[tokio::test]
async fn requests_after_stop_are_refused() {
    let host = MemHost::fresh();
    let runtime = start(&examples::registry(), "counter", &host, 1).await;
    runtime.stop(StopReason::Sleep).await.expect("stop");
    let (status, outcome) = actor_support::call(
        &runtime,
        rivulet_lambda_runner::protocol::Encoding::Json,
        "get",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 503);
    let error = outcome.expect_err("refused");
    assert_eq!(
        (error.group.as_str(), error.code.as_str()),
        ("actor", "stopping")
    );
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct Saved {
    value: i64,
    #[serde(with = "serde_bytes_compat")]
    blob: Vec<u8>,
}

/// The blob as one CBOR byte string (not an array of numbers), so its size is its length.
mod serde_bytes_compat {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let value = ciborium::Value::deserialize(d)?;
        match value {
            ciborium::Value::Bytes(b) => Ok(b),
            _ => Err(serde::de::Error::custom("expected bytes")),
        }
    }
}

fn saving_actor(interval: Duration) -> ActorDef<Saved> {
    ActorDef::new()
        .state(Saved::default())
        .options(ActorOptions {
            state_save_interval: interval,
            ..ActorOptions::default()
        })
        .action("set", |c, (value,): (i64,)| async move {
            c.update(|s| s.value = value);
            Ok(())
        })
        .action_unsaved("set_unsaved", |c, (value,): (i64,)| async move {
            c.update(|s| s.value = value);
            Ok(())
        })
        .action("grow", |c, (bytes,): (usize,)| async move {
            c.update(|s| s.blob = vec![7; bytes]);
            Ok(())
        })
        .action("set_and_save", |c, (value,): (i64,)| async move {
            c.update(|s| s.value = value);
            c.save_state().await?;
            Ok(())
        })
        .action("get", |c, ()| async move { Ok(c.state(|s| s.value)) })
}

const HOUR: Duration = Duration::from_secs(3600);

async fn stored_value(store: &Store) -> i64 {
    let copy = Store::new(Mutex::new(store.lock().clone()));
    let host = MemHost::new(copy, Arc::new(0.into()));
    let registry = Registry::new().register("saved", saving_actor(HOUR));
    let runtime = start(&registry, "saved", &host, 99).await;
    let value = call_ok(&runtime, "get", &[]).await;
    runtime.abort();
    i64::try_from(value.as_integer().expect("integer")).expect("fits")
}

fn puts(host: &MemHost) -> usize {
    host.puts.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn an_action_replies_only_once_its_change_is_saved() {
    // An interval longer than the test: no background save can be what wrote it.
    let registry = Registry::new().register("saved", saving_actor(HOUR));
    let host = MemHost::fresh();
    let runtime = start(&registry, "saved", &host, 1).await;
    // Creation saved the initial state, once.
    assert_eq!(puts(&host), 1);
    for value in 1..=3 {
        call_ok(&runtime, "set", &[int(value)]).await;
        assert_eq!(
            stored_value(&host.store).await,
            value,
            "durable at the reply"
        );
    }
    assert_eq!(puts(&host), 4, "one save per changing action");
    // A read changes nothing and writes nothing.
    call_ok(&runtime, "get", &[]).await;
    assert_eq!(puts(&host), 4);
    runtime.abort();
}

#[tokio::test]
async fn unsaved_actions_wait_for_the_interval_and_explicit_saves_do_not() {
    let registry = Registry::new().register("saved", saving_actor(HOUR));
    let host = MemHost::fresh();
    let runtime = start(&registry, "saved", &host, 1).await;
    assert_eq!(puts(&host), 1);

    for value in 1..=10 {
        call_ok(&runtime, "set_unsaved", &[int(value)]).await;
    }
    assert_eq!(
        puts(&host),
        1,
        "changes within the interval are not written yet"
    );
    assert_eq!(stored_value(&host.store).await, 0);

    // An explicit save is durable when the action returns.
    call_ok(&runtime, "set_and_save", &[int(42)]).await;
    assert_eq!(puts(&host), 2);
    assert_eq!(stored_value(&host.store).await, 42);

    // Unsaved changes are written once, by the stop.
    call_ok(&runtime, "set_unsaved", &[int(43)]).await;
    call_ok(&runtime, "set_unsaved", &[int(44)]).await;
    runtime.stop(StopReason::Sleep).await.expect("stop saves");
    assert_eq!(puts(&host), 3);
    assert_eq!(stored_value(&host.store).await, 44);
}

#[tokio::test]
async fn a_change_too_large_to_save_fails_its_action_and_is_undone() {
    let registry = Registry::new().register("saved", saving_actor(HOUR));
    let host = MemHost::fresh();
    let runtime = start(&registry, "saved", &host, 1).await;
    call_ok(&runtime, "set", &[int(5)]).await;
    call_ok(&runtime, "grow", &[int(100_000)]).await;

    let (status, outcome) = actor_support::call(
        &runtime,
        rivulet_lambda_runner::protocol::Encoding::Json,
        "grow",
        &[int(2_000_000)],
        None,
    )
    .await;
    let error = outcome.expect_err("a 2 MB state cannot be saved");
    assert_eq!(
        (error.group.as_str(), error.code.as_str()),
        ("state", "too_large"),
        "{status} {error:?}"
    );
    assert!(error.message.contains("undone"), "{}", error.message);
    // The actor goes on from its last saved state, and keeps working.
    assert_eq!(call_ok(&runtime, "get", &[]).await, int(5));
    call_ok(&runtime, "set", &[int(6)]).await;
    runtime
        .stop(StopReason::Sleep)
        .await
        .expect("the stop saves");
    assert_eq!(stored_value(&host.store).await, 6);
}

#[tokio::test]
async fn changes_are_saved_in_the_background_after_the_interval() {
    let registry = Registry::new().register("saved", saving_actor(Duration::from_millis(50)));
    let host = MemHost::fresh();
    let runtime = start(&registry, "saved", &host, 1).await;
    call_ok(&runtime, "set", &[int(7)]).await;
    let store = Arc::clone(&host.store);
    // No request and no stop: only the background saver can write it.
    host.wait_until("the background save", |host| puts(host) >= 2)
        .await;
    assert_eq!(stored_value(&store).await, 7);
    runtime.abort();
}

#[derive(Clone, Serialize, Deserialize)]
struct Seeded {
    start: i64,
    label: String,
}

#[derive(Deserialize)]
struct SeedInput {
    start: i64,
    label: String,
}

fn seeded_actor() -> ActorDef<Seeded> {
    ActorDef::new()
        .create_state(|info, input: Option<SeedInput>| async move {
            let input = input.ok_or_else(|| ActorError::internal("input required"))?;
            Ok(Seeded {
                start: input.start,
                label: format!("{}:{}", info.key().unwrap_or("-"), input.label),
            })
        })
        .action("get", |c, ()| async move {
            Ok(c.state(|s| (s.start, s.label.clone())))
        })
}

fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).expect("cbor");
    bytes
}

#[tokio::test]
async fn input_builds_the_state_once() {
    let registry = Registry::new().register("seeded", seeded_actor());
    let host = MemHost::fresh();
    let input = cbor(&serde_json::json!({"start": 40, "label": "hello"}));
    let as_host: Arc<dyn Host> = host.clone();
    let first = registry
        .start(
            "seeded",
            start_info(1, Some(input)),
            as_host,
            CancellationToken::new(),
        )
        .await
        .expect("start with input");
    let expected = ciborium::Value::Array(vec![int(40), actor_support::text("room-1:hello")]);
    assert_eq!(call_ok(&first, "get", &[]).await, expected);
    first.stop(StopReason::Sleep).await.expect("stop");

    // A later start loads the state; its input (if any) is not used again.
    let other = cbor(&serde_json::json!({"start": 1, "label": "other"}));
    let host2 = host.next_generation();
    let as_host: Arc<dyn Host> = host2.clone();
    let second = registry
        .start(
            "seeded",
            start_info(2, Some(other)),
            as_host,
            CancellationToken::new(),
        )
        .await
        .expect("restart");
    assert_eq!(call_ok(&second, "get", &[]).await, expected);
    second.abort();

    // A create that fails leaves no actor behind.
    let empty = MemHost::fresh();
    let as_host: Arc<dyn Host> = empty.clone();
    let failed = registry
        .start(
            "seeded",
            start_info(1, None),
            as_host,
            CancellationToken::new(),
        )
        .await;
    assert!(
        failed.is_err(),
        "create_state without input fails the start"
    );
    assert!(empty.store.lock().is_empty());
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct Tally {
    count: i64,
}

type Log = Arc<Mutex<Vec<String>>>;

fn lifecycle_actor(log: Log) -> ActorDef<Tally, serde_json::Value, (), i64> {
    let push = |log: &Log, entry: &str| log.lock().push(entry.to_owned());
    let (l1, l2, l3, l4, l5, l6, l7) = (
        log.clone(),
        log.clone(),
        log.clone(),
        log.clone(),
        log.clone(),
        log.clone(),
        log.clone(),
    );
    ActorDef::new()
        .create_state(move |_info, _input: Option<()>| {
            push(&l1, "create_state");
            async { Ok(Tally::default()) }
        })
        .on_create(move |_c, _input: Option<()>| {
            push(&l2, "on_create");
            async { Ok(()) }
        })
        .vars(move |_c| {
            push(&l3, "vars");
            async { Ok(0) }
        })
        .on_wake(move |_c| {
            push(&l4, "on_wake");
            async { Ok(()) }
        })
        .on_sleep(move |_c| {
            push(&l5, "on_sleep");
            async { Ok(()) }
        })
        .on_destroy(move |_c| {
            push(&l6, "on_destroy");
            async { Ok(()) }
        })
        .on_state_change(move |_c, state| push(&l7, &format!("state_change {}", state.count)))
        .action("bump", |c, ()| async move {
            let ephemeral = c.vars(|v| {
                *v += 1;
                *v
            });
            let count = c.update(|s| {
                s.count += 1;
                s.count
            });
            Ok((count, ephemeral))
        })
}

#[tokio::test]
async fn hooks_run_in_rivetkit_order_and_vars_are_not_persisted() {
    let log = Log::default();
    let registry = Registry::new().register("life", lifecycle_actor(log.clone()));
    let host = MemHost::fresh();

    let first = start(&registry, "life", &host, 1).await;
    let pair = |a: i64, b: i64| ciborium::Value::Array(vec![int(a), int(b)]);
    assert_eq!(call_ok(&first, "bump", &[]).await, pair(1, 1));
    assert_eq!(call_ok(&first, "bump", &[]).await, pair(2, 2));
    first.stop(StopReason::Sleep).await.expect("stop");
    assert_eq!(
        *log.lock(),
        [
            "create_state",
            "on_create",
            "vars",
            "on_wake",
            "state_change 1",
            "state_change 2",
            "on_sleep"
        ]
    );

    log.lock().clear();
    let second = start(&registry, "life", &host.next_generation(), 2).await;
    // The state survived; the vars were built afresh.
    assert_eq!(call_ok(&second, "bump", &[]).await, pair(3, 1));
    second.stop(StopReason::Destroy).await.expect("stop");
    assert_eq!(
        *log.lock(),
        ["vars", "on_wake", "state_change 3", "on_destroy"]
    );
}

#[tokio::test]
async fn mutating_state_inside_on_state_change_is_refused() {
    let def: ActorDef<Tally> = ActorDef::new()
        .state(Tally::default())
        .on_state_change(|c, _state| c.update(|s| s.count += 100))
        .action("bump", |c, ()| async move {
            c.update(|s| s.count += 1);
            Ok(())
        })
        .action("get", |c, ()| async move { Ok(c.state(|s| s.count)) });
    let registry = Registry::new().register("bad", def);
    let host = MemHost::fresh();
    let runtime = start(&registry, "bad", &host, 1).await;
    let (status, outcome) = actor_support::call(
        &runtime,
        rivulet_lambda_runner::protocol::Encoding::Json,
        "bump",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(outcome.expect_err("masked").code, "internal_error");
    // The actor survives the panic and the first change stands.
    assert_eq!(call_ok(&runtime, "get", &[]).await, int(1));
    runtime.abort();
}
