//! The behaviour every [`Store`] backend must show, written once and run against each backend.
//!
//! Each case is a `pub async fn` taking a fresh, empty `Arc<dyn Store>` and panicking on the
//! first deviation; [`store_conformance_tests!`](crate::store_conformance_tests) turns the whole
//! list into one `#[tokio::test]` per case for a backend, so a failure names the backend and the
//! case. The cases live in the library (not under `tests/`) so that every backend's test crate
//! can share them; they use plain `assert!`s and cost nothing unless called.
//!
//! The SQLite and fencing cases matter most: a bug there corrupts user data silently, so they
//! check not only that a bad request fails but that it changed nothing.

use crate::store::NodeLease;
use std::fmt::Debug;
use std::sync::Arc;

use super::{
    ActorRecord, CrashPolicy, KvEntry, KvQuery, Lease, LeaseClaim, Namespace, RunnerConfigRecord,
    SqliteCommit, SqliteFinalize, SqliteRead, SqliteSegment, Store, StoreError, StoreResult,
};

/// Generates one `#[tokio::test]` per conformance case for a backend.
///
/// The argument is an expression that can be called with no arguments and returns a future of
/// a fresh, empty `Arc<dyn Store>`; it is evaluated once per test:
///
/// ```ignore
/// rivulet_gateway::store_conformance_tests!(|| async { fresh_store().await });
/// ```
///
/// Invoke it inside its own `mod` to run several backends in one test crate.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@cases ($make)
            namespace_create_get_list
            runner_config_put_get_list_delete
            actor_names_put_list
            actor_create_get
            actor_create_duplicate_id_rejected
            actor_get_by_key
            actor_list_order_and_filters
            actor_update_checks_revision
            actor_update_unknown_not_found
            actor_key_taken
            actor_key_reusable_after_destroy
            actor_key_concurrent_creates_one_wins
            actor_key_scoped_by_namespace_and_name
            alarms_due_soonest_first
            clear_actor_data_removes_kv_and_pages
            kv_put_get
            kv_list_all_ordered
            kv_list_range
            kv_list_prefix
            kv_list_reverse_and_limit
            kv_delete_and_delete_range
            kv_drop
            kv_stale_generation_changes_nothing
            kv_unknown_actor_not_found
            kv_actors_isolated
            sqlite_fresh_actor_reads_none
            sqlite_commit_advances_head
            sqlite_wrong_head_rejected
            sqlite_stale_generation_rejected
            sqlite_unknown_actor_not_found
            sqlite_shrink_drops_pages
            sqlite_many_pages_one_commit
            sqlite_reads_see_one_commit
            sqlite_actors_isolated
            sqlite_staged_invisible_until_finalize
            sqlite_finalize_missing_segment_rejected
            sqlite_finalize_extra_segment_rejected
            sqlite_finalize_wrong_txid_rejected
            sqlite_segment_out_of_order_rejected
            sqlite_segment_page_outside_bounds_rejected
            sqlite_segment_without_stage_rejected
            sqlite_stage_abandoned_by_new_begin
            sqlite_commit_invalidates_open_stage
            sqlite_zombie_stage_cannot_finalize
            node_register_renew_reregister
            lease_take_refuse_release
            lease_of_a_dead_node_can_be_taken
            lease_retaken_by_same_node_fences_old_holder
            lease_concurrent_takers_one_wins
        );
    };
    (@cases ($make:expr) $($case:ident)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::store::Store> = ($make)().await;
                $crate::store::conformance::$case(store).await;
            }
        )*
    };
}

// === helpers ===

/// Namespace id most cases work in.
const NS: &str = "ns-conformance";
/// A second namespace, to check isolation.
const NS2: &str = "ns-other";
/// SQLite page size rivetkit uses.
const PAGE: usize = 4096;

/// Unwraps a store result, naming the step that failed.
fn must<T>(r: StoreResult<T>, step: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{step}: unexpected store error {e:?}"),
    }
}

/// Unwraps a store error, naming the step that should have failed.
fn must_fail<T: Debug>(r: StoreResult<T>, step: &str) -> StoreError {
    match r {
        Ok(v) => panic!("{step}: expected an error, got Ok({v:?})"),
        Err(e) => e,
    }
}

/// A live actor record in [`NS`] at generation 1.
fn actor(id: &str, name: &str, key: Option<&str>) -> ActorRecord {
    ActorRecord {
        actor_id: id.to_owned(),
        namespace_id: NS.to_owned(),
        name: name.to_owned(),
        key: key.map(str::to_owned),
        runner_name_selector: "default".to_owned(),
        crash_policy: CrashPolicy::Sleep,
        input: Some(vec![0xa0]),
        create_ts: 1_000,
        start_ts: None,
        pending_allocation_ts: None,
        connectable_ts: None,
        sleep_ts: None,
        reschedule_ts: None,
        destroy_ts: None,
        error: None,
        generation: 1,
        envoy_key: None,
        envoy_instance: None,
        alarm_ts: None,
        revision: 0,
    }
}

/// Creates a keyless live actor at generation 1.
async fn new_actor(store: &dyn Store, id: &str) -> ActorRecord {
    let a = actor(id, "counter", None);
    must(store.create_actor(a.clone()).await, "create actor");
    a
}

/// Applies `change` to the stored record through `update_actor`; returns the new record.
async fn modify(store: &dyn Store, id: &str, change: impl FnOnce(&mut ActorRecord)) -> ActorRecord {
    let mut a = must(store.get_actor(id).await, "get actor").expect("actor exists");
    let rev = a.revision;
    change(&mut a);
    must(store.update_actor(a, rev).await, "update actor");
    must(store.get_actor(id).await, "get actor").expect("actor exists")
}

/// Starts a new generation, as a reallocation does; returns it.
async fn bump_generation(store: &dyn Store, id: &str) -> u32 {
    modify(store, id, |a| a.generation += 1).await.generation
}

/// A 4 KiB page whose every 8-byte word is `txid` big-endian, so a page shows which commit
/// wrote it. Public so backend-specific crash tests can use the same pattern.
pub fn marker_page(txid: u64) -> Vec<u8> {
    txid.to_be_bytes().repeat(PAGE / 8)
}

/// Which commit wrote a page made by [`marker_page`], or `None` if it is not such a page.
pub fn page_marker(page: &[u8]) -> Option<u64> {
    let first: [u8; 8] = page.get(..8)?.try_into().ok()?;
    (page.len() == PAGE && page == first.repeat(PAGE / 8)).then(|| u64::from_be_bytes(first))
}

fn commit(
    actor_id: &str,
    generation: u32,
    expected_head: u64,
    pages: Vec<(u32, Vec<u8>)>,
    db_size_pages: u32,
) -> SqliteCommit {
    SqliteCommit {
        actor_id: actor_id.to_owned(),
        generation,
        expected_head,
        pages,
        db_size_pages,
        now_ms: 5_000,
    }
}

/// Pages `pgnos` all carrying the marker of `txid`.
fn marked(pgnos: impl IntoIterator<Item = u32>, txid: u64) -> Vec<(u32, Vec<u8>)> {
    pgnos.into_iter().map(|p| (p, marker_page(txid))).collect()
}

fn segment(
    actor_id: &str,
    generation: u32,
    txid: u64,
    first_pgno: u32,
    pages: Vec<(u32, Vec<u8>)>,
) -> SqliteSegment {
    SqliteSegment {
        actor_id: actor_id.to_owned(),
        generation,
        txid,
        first_pgno,
        pages,
    }
}

fn finalize(
    actor_id: &str,
    generation: u32,
    txid: u64,
    db_size_pages: u32,
    segments: &[u32],
) -> SqliteFinalize {
    SqliteFinalize {
        actor_id: actor_id.to_owned(),
        generation,
        txid,
        db_size_pages,
        now_ms: 5_000,
        segment_first_pgnos: segments.to_vec(),
    }
}

async fn read(
    store: &dyn Store,
    actor_id: &str,
    pgnos: impl IntoIterator<Item = u32>,
) -> SqliteRead {
    let pgnos: Vec<u32> = pgnos.into_iter().collect();
    let r = must(store.sqlite_get_pages(actor_id, &pgnos).await, "read pages");
    let got: Vec<u32> = r.pages.iter().map(|(p, _)| *p).collect();
    assert_eq!(got, pgnos, "pages come back in request order");
    r
}

/// The marker of each page read (`None` for a missing page).
fn markers(r: &SqliteRead) -> Vec<Option<u64>> {
    r.pages
        .iter()
        .map(|(pgno, bytes)| {
            bytes.as_ref().map(|b| {
                page_marker(b).unwrap_or_else(|| panic!("page {pgno} holds foreign bytes"))
            })
        })
        .collect()
}

fn keys(entries: &[KvEntry]) -> Vec<Vec<u8>> {
    entries.iter().map(|e| e.key.clone()).collect()
}

async fn kv_keys(
    store: &dyn Store,
    actor_id: &str,
    query: KvQuery,
    reverse: bool,
    limit: usize,
) -> Vec<Vec<u8>> {
    keys(&must(
        store.kv_list(actor_id, query, reverse, limit).await,
        "kv list",
    ))
}

/// Writes each key with its own bytes as the value.
async fn kv_fill(store: &dyn Store, actor_id: &str, generation: u32, ks: &[&[u8]]) {
    let entries = ks.iter().map(|k| (k.to_vec(), k.to_vec())).collect();
    must(
        store.kv_put(actor_id, generation, entries, 10).await,
        "kv put",
    );
}

fn bytes_list(ks: &[&[u8]]) -> Vec<Vec<u8>> {
    ks.iter().map(|k| k.to_vec()).collect()
}

// === namespaces, runner configs, actor names ===

/// Namespaces are unique by name and listed by name.
pub async fn namespace_create_get_list(store: Arc<dyn Store>) {
    let mk = |id: &str, name: &str| Namespace {
        namespace_id: id.to_owned(),
        name: name.to_owned(),
        display_name: format!("The {name}"),
        create_ts: 7,
    };
    must(
        store.create_namespace(mk("id-b", "beta")).await,
        "create beta",
    );
    must(
        store.create_namespace(mk("id-a", "alpha")).await,
        "create alpha",
    );
    let dup = must_fail(
        store.create_namespace(mk("id-x", "alpha")).await,
        "duplicate name",
    );
    assert!(matches!(dup, StoreError::AlreadyExists { .. }), "{dup:?}");

    let alpha = must(store.get_namespace("alpha").await, "get alpha");
    assert_eq!(
        alpha,
        Some(mk("id-a", "alpha")),
        "duplicate did not overwrite"
    );
    assert_eq!(must(store.get_namespace("gamma").await, "get gamma"), None);

    let list = must(store.list_namespaces().await, "list");
    let names: Vec<&str> = list.iter().map(|n| n.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "ordered by name");
    assert!(names.contains(&"alpha") && names.contains(&"beta"));
    assert_eq!(names.iter().filter(|n| **n == "alpha").count(), 1);
}

/// Runner configs are per namespace, replaced by put, listed by name, deletable once.
pub async fn runner_config_put_get_list_delete(store: Arc<dyn Store>) {
    let mk = |ns: &str, name: &str, v: i64| RunnerConfigRecord {
        namespace_id: ns.to_owned(),
        name: name.to_owned(),
        config: serde_json::json!({ "dc": { "serverless": { "url": "http://x", "v": v } } }),
        update_ts: v,
    };
    must(store.put_runner_config(mk(NS, "zeta", 1)).await, "put zeta");
    must(
        store.put_runner_config(mk(NS, "alpha", 1)).await,
        "put alpha",
    );
    must(
        store.put_runner_config(mk(NS2, "alpha", 9)).await,
        "put other ns",
    );
    must(
        store.put_runner_config(mk(NS, "alpha", 2)).await,
        "replace alpha",
    );

    let got = must(store.get_runner_config(NS, "alpha").await, "get");
    assert_eq!(got, Some(mk(NS, "alpha", 2)));
    let list = must(store.list_runner_configs(NS).await, "list");
    assert_eq!(list, vec![mk(NS, "alpha", 2), mk(NS, "zeta", 1)]);
    assert_eq!(
        must(store.list_runner_configs(NS2).await, "list other"),
        vec![mk(NS2, "alpha", 9)]
    );

    assert!(must(
        store.delete_runner_config(NS, "alpha").await,
        "delete"
    ));
    assert!(!must(
        store.delete_runner_config(NS, "alpha").await,
        "delete again"
    ));
    assert_eq!(
        must(store.get_runner_config(NS, "alpha").await, "get"),
        None
    );
    assert_eq!(
        must(
            store.get_runner_config(NS2, "alpha").await,
            "other ns untouched"
        ),
        Some(mk(NS2, "alpha", 9))
    );
}

/// Announced names are upserted per namespace and listed by name.
pub async fn actor_names_put_list(store: Arc<dyn Store>) {
    let pair = |n: &str, m: &str| (n.to_owned(), m.to_owned());
    must(
        store
            .put_actor_names(NS, vec![pair("counter", "{\"a\":1}"), pair("chat", "{}")])
            .await,
        "put",
    );
    must(
        store.put_actor_names(NS2, vec![pair("other", "{}")]).await,
        "put other ns",
    );
    must(
        store
            .put_actor_names(NS, vec![pair("counter", "{\"a\":2}")])
            .await,
        "re-announce",
    );
    assert_eq!(
        must(store.list_actor_names(NS).await, "list"),
        vec![pair("chat", "{}"), pair("counter", "{\"a\":2}")]
    );
    assert_eq!(
        must(store.list_actor_names(NS2).await, "list other"),
        vec![pair("other", "{}")]
    );
}

// === actors ===

/// A created actor reads back exactly.
pub async fn actor_create_get(store: Arc<dyn Store>) {
    let mut a = actor("a-1", "counter", Some("[\"k\"]"));
    a.error = Some(serde_json::json!({ "crashed": { "message": "x" } }));
    a.alarm_ts = Some(99);
    must(store.create_actor(a.clone()).await, "create");
    assert_eq!(must(store.get_actor("a-1").await, "get"), Some(a));
    assert_eq!(must(store.get_actor("a-2").await, "get missing"), None);
}

/// Ids are unique forever.
pub async fn actor_create_duplicate_id_rejected(store: Arc<dyn Store>) {
    let a = actor("a-1", "counter", None);
    must(store.create_actor(a.clone()).await, "create");
    let mut b = actor("a-1", "chat", Some("k"));
    b.generation = 7;
    let err = must_fail(store.create_actor(b).await, "duplicate id");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(must(store.get_actor("a-1").await, "get"), Some(a));
    assert_eq!(
        must(
            store.get_actor_by_key(NS, "chat", "k").await,
            "key not reserved"
        ),
        None
    );
}

/// Lookup by key finds the live holder, scoped by namespace and name.
pub async fn actor_get_by_key(store: Arc<dyn Store>) {
    let a = actor("a-1", "counter", Some("k1"));
    must(store.create_actor(a.clone()).await, "create");
    new_actor(&*store, "a-2").await;
    assert_eq!(
        must(store.get_actor_by_key(NS, "counter", "k1").await, "by key"),
        Some(a)
    );
    assert_eq!(
        must(
            store.get_actor_by_key(NS, "counter", "k2").await,
            "other key"
        ),
        None
    );
    assert_eq!(
        must(store.get_actor_by_key(NS, "chat", "k1").await, "other name"),
        None
    );
    assert_eq!(
        must(
            store.get_actor_by_key(NS2, "counter", "k1").await,
            "other ns"
        ),
        None
    );
}

/// Lists are ordered by create time then id, filtered by name and liveness, and limited.
pub async fn actor_list_order_and_filters(store: Arc<dyn Store>) {
    let mk = |id: &str, name: &str, ts: i64| {
        let mut a = actor(id, name, None);
        a.create_ts = ts;
        a
    };
    for a in [
        mk("c", "counter", 30),
        mk("z", "counter", 10),
        mk("b", "chat", 20),
        mk("a", "counter", 20),
        mk("d", "counter", 40),
    ] {
        must(store.create_actor(a).await, "create");
    }
    let mut elsewhere = mk("e", "counter", 5);
    elsewhere.namespace_id = NS2.to_owned();
    must(store.create_actor(elsewhere).await, "create other ns");
    modify(&*store, "d", |a| a.destroy_ts = Some(50)).await;

    let ids = |v: Vec<ActorRecord>| v.into_iter().map(|a| a.actor_id).collect::<Vec<_>>();
    assert_eq!(
        ids(must(store.list_actors(NS, None, false, 100).await, "live")),
        ["z", "a", "b", "c"]
    );
    assert_eq!(
        ids(must(store.list_actors(NS, None, true, 100).await, "all")),
        ["z", "a", "b", "c", "d"]
    );
    assert_eq!(
        ids(must(
            store.list_actors(NS, Some("counter"), false, 100).await,
            "by name"
        )),
        ["z", "a", "c"]
    );
    assert_eq!(
        ids(must(
            store.list_actors(NS, Some("counter"), true, 100).await,
            "by name, all"
        )),
        ["z", "a", "c", "d"]
    );
    assert_eq!(
        ids(must(store.list_actors(NS, None, false, 2).await, "limit")),
        ["z", "a"]
    );
    assert_eq!(
        ids(must(
            store.list_actors(NS2, None, true, 100).await,
            "other ns"
        )),
        ["e"]
    );
    assert!(must(
        store.list_actors(NS, Some("none"), true, 100).await,
        "no such name"
    )
    .is_empty());
}

/// `update_actor` is a compare-and-swap on `revision`, which it bumps.
pub async fn actor_update_checks_revision(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let mut v1 = must(store.get_actor("a-1").await, "get").expect("exists");
    assert_eq!(v1.revision, 0);
    v1.start_ts = Some(11);
    must(store.update_actor(v1.clone(), 0).await, "first update");
    let stored = must(store.get_actor("a-1").await, "get").expect("exists");
    assert_eq!(stored.revision, 1);
    assert_eq!(stored.start_ts, Some(11));

    // A writer that read revision 0 lost the race: its update must not land.
    let mut stale = v1.clone();
    stale.sleep_ts = Some(22);
    let err = must_fail(store.update_actor(stale, 0).await, "stale update");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        must(store.get_actor("a-1").await, "get"),
        Some(stored.clone())
    );

    let mut v2 = stored;
    v2.sleep_ts = Some(33);
    must(store.update_actor(v2, 1).await, "second update");
    let stored = must(store.get_actor("a-1").await, "get").expect("exists");
    assert_eq!((stored.revision, stored.sleep_ts), (2, Some(33)));
}

/// Updating an actor that was never created fails.
pub async fn actor_update_unknown_not_found(store: Arc<dyn Store>) {
    let err = must_fail(
        store
            .update_actor(actor("ghost", "counter", Some("k")), 0)
            .await,
        "update unknown",
    );
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(must(store.get_actor("ghost").await, "get"), None);
    assert_eq!(
        must(store.get_actor_by_key(NS, "counter", "k").await, "key"),
        None
    );
}

/// A live actor's key cannot be taken by a second actor.
pub async fn actor_key_taken(store: Arc<dyn Store>) {
    must(
        store.create_actor(actor("a-1", "counter", Some("k"))).await,
        "create",
    );
    let err = must_fail(
        store.create_actor(actor("a-2", "counter", Some("k"))).await,
        "same key",
    );
    match err {
        StoreError::KeyTaken { existing_actor_id } => assert_eq!(existing_actor_id, "a-1"),
        other => panic!("expected KeyTaken, got {other:?}"),
    }
    assert_eq!(
        must(store.get_actor("a-2").await, "loser not created"),
        None
    );

    // Nor by moving another actor onto it with an update.
    must(
        store
            .create_actor(actor("a-3", "counter", Some("other")))
            .await,
        "create a-3",
    );
    let mut moved = must(store.get_actor("a-3").await, "get").expect("exists");
    moved.key = Some("k".to_owned());
    let err = must_fail(store.update_actor(moved, 0).await, "move onto key");
    assert!(matches!(err, StoreError::KeyTaken { .. }), "{err:?}");
    assert_eq!(
        must(
            store.get_actor_by_key(NS, "counter", "other").await,
            "a-3 keeps its key"
        )
        .map(|a| a.actor_id),
        Some("a-3".to_owned())
    );
}

/// Destroying an actor frees its key; the destroyed record stays readable.
pub async fn actor_key_reusable_after_destroy(store: Arc<dyn Store>) {
    must(
        store.create_actor(actor("a-1", "counter", Some("k"))).await,
        "create",
    );
    modify(&*store, "a-1", |a| a.destroy_ts = Some(2_000)).await;
    assert_eq!(
        must(store.get_actor_by_key(NS, "counter", "k").await, "freed"),
        None
    );
    must(
        store.create_actor(actor("a-2", "counter", Some("k"))).await,
        "reuse key",
    );
    // Touching the destroyed record again must not take the key back.
    modify(&*store, "a-1", |a| {
        a.error = Some(serde_json::json!("late"))
    })
    .await;
    let holder = must(store.get_actor_by_key(NS, "counter", "k").await, "by key");
    assert_eq!(holder.map(|a| a.actor_id), Some("a-2".to_owned()));
    let old = must(store.get_actor("a-1").await, "old").expect("destroyed stays readable");
    assert!(old.is_destroyed());

    let err = must_fail(
        store.create_actor(actor("a-3", "counter", Some("k"))).await,
        "third holder",
    );
    match err {
        StoreError::KeyTaken { existing_actor_id } => assert_eq!(existing_actor_id, "a-2"),
        other => panic!("expected KeyTaken, got {other:?}"),
    }
}

/// 32 concurrent creates of one key: exactly one wins, the rest name the winner.
pub async fn actor_key_concurrent_creates_one_wins(store: Arc<dyn Store>) {
    const RACERS: usize = 32;
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::with_capacity(RACERS);
    for i in 0..RACERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("racer-{i:02}");
            barrier.wait().await;
            let r = store.create_actor(actor(&id, "counter", Some("hot"))).await;
            (id, r)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for t in tasks {
        let (id, r) = t.await.expect("racer task panicked");
        match r {
            Ok(()) => winners.push(id),
            Err(StoreError::KeyTaken { existing_actor_id }) => losers.push((id, existing_actor_id)),
            Err(other) => panic!("racer {id}: unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = &winners[0];
    for (id, holder) in &losers {
        assert_eq!(holder, winner, "loser {id} names the winner");
        assert_eq!(must(store.get_actor(id).await, "loser"), None);
    }
    let holder = must(store.get_actor_by_key(NS, "counter", "hot").await, "by key");
    assert_eq!(holder.map(|a| a.actor_id).as_ref(), Some(winner));
    let live = must(
        store.list_actors(NS, Some("counter"), true, 100).await,
        "list",
    );
    assert_eq!(live.len(), 1);
}

/// The same key is independent across names and namespaces; keyless actors never clash.
pub async fn actor_key_scoped_by_namespace_and_name(store: Arc<dyn Store>) {
    must(
        store.create_actor(actor("a-1", "counter", Some("k"))).await,
        "counter",
    );
    must(
        store.create_actor(actor("a-2", "chat", Some("k"))).await,
        "chat",
    );
    let mut other = actor("a-3", "counter", Some("k"));
    other.namespace_id = NS2.to_owned();
    must(store.create_actor(other).await, "other ns");
    must(
        store.create_actor(actor("a-4", "counter", None)).await,
        "keyless",
    );
    must(
        store.create_actor(actor("a-5", "counter", None)).await,
        "keyless again",
    );
    let holder = |ns: &'static str, name: &'static str| {
        let store = store.clone();
        async move { must(store.get_actor_by_key(ns, name, "k").await, "by key").map(|a| a.actor_id) }
    };
    assert_eq!(holder(NS, "counter").await.as_deref(), Some("a-1"));
    assert_eq!(holder(NS, "chat").await.as_deref(), Some("a-2"));
    assert_eq!(holder(NS2, "counter").await.as_deref(), Some("a-3"));
}

/// Due alarms come soonest first, only for live actors, and follow updates.
pub async fn alarms_due_soonest_first(store: Arc<dyn Store>) {
    for (id, alarm) in [
        ("a", Some(300)),
        ("b", Some(100)),
        ("c", Some(200)),
        ("d", None),
        ("e", Some(50)),
        ("f", Some(1_000)),
    ] {
        let mut rec = actor(id, "counter", None);
        rec.alarm_ts = alarm;
        must(store.create_actor(rec).await, "create");
    }
    modify(&*store, "e", |a| a.destroy_ts = Some(60)).await;
    let due = |now: i64, limit: usize| {
        let store = store.clone();
        async move {
            must(store.due_alarms(now, limit).await, "due")
                .into_iter()
                .map(|a| a.actor_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        due(300, 10).await,
        ["b", "c", "a"],
        "destroyed e never fires"
    );
    assert_eq!(due(300, 2).await, ["b", "c"]);
    assert!(due(99, 10).await.is_empty());
    assert_eq!(due(100, 10).await, ["b"], "due at exactly now");

    modify(&*store, "b", |a| a.alarm_ts = None).await;
    modify(&*store, "a", |a| a.alarm_ts = Some(10)).await;
    assert_eq!(due(300, 10).await, ["a", "c"]);
    modify(&*store, "c", |a| a.destroy_ts = Some(70)).await;
    assert_eq!(due(300, 10).await, ["a"]);
    assert_eq!(due(i64::MAX, 10).await, ["a", "f"]);
}

/// `clear_actor_data` empties one actor's KV and SQLite, and no other actor's.
pub async fn clear_actor_data_removes_kv_and_pages(store: Arc<dyn Store>) {
    for id in ["a-1", "a-2"] {
        new_actor(&*store, id).await;
        kv_fill(&*store, id, 1, &[b"x", b"y"]).await;
        must(
            store
                .sqlite_commit(commit(id, 1, 0, marked(1..=3, 1), 3))
                .await,
            "commit",
        );
        let txid = must(store.sqlite_stage_begin(id, 1, 1).await, "begin");
        must(
            store
                .sqlite_stage_segment(segment(id, 1, txid, 1, marked([1], txid)))
                .await,
            "segment",
        );
    }
    modify(&*store, "a-1", |a| a.destroy_ts = Some(9)).await;
    must(store.clear_actor_data("a-1").await, "clear");

    assert!(kv_keys(&*store, "a-1", KvQuery::All, false, 100)
        .await
        .is_empty());
    let r = read(&*store, "a-1", 1..=3).await;
    assert_eq!(markers(&r), [None, None, None]);
    // The abandoned stage went too: it can never publish.
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, 2, 3, &[1]))
            .await,
        "finalize cleared stage",
    );
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(
        markers(&read(&*store, "a-1", 1..=3).await),
        [None, None, None]
    );

    assert_eq!(
        kv_keys(&*store, "a-2", KvQuery::All, false, 100).await,
        bytes_list(&[b"x", b"y"])
    );
    let r = read(&*store, "a-2", 1..=3).await;
    assert_eq!((r.head_txid, markers(&r)), (1, vec![Some(1); 3]));
    must(
        store.clear_actor_data("never-existed").await,
        "clear unknown",
    );
}

// === KV ===

/// Put then get: values, versions (writing generation, big-endian) and times come back; missing
/// keys are left out; a put overwrites.
pub async fn kv_put_get(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let gen = bump_generation(&*store, "a-1").await;
    let entries = vec![
        (vec![1], b"one".to_vec()),
        (vec![0, 0xff, 0], vec![]),
        (vec![0xff; 3], vec![7; 128 * 1024]),
    ];
    must(
        store.kv_put("a-1", gen, entries.clone(), 1_234).await,
        "put",
    );
    let got = must(
        store
            .kv_get("a-1", &[vec![0xff; 3], vec![9], vec![1], vec![0, 0xff, 0]])
            .await,
        "get",
    );
    let expect = |k: &[u8], v: &[u8]| KvEntry {
        key: k.to_vec(),
        value: v.to_vec(),
        version: gen.to_be_bytes().to_vec(),
        update_ts: 1_234,
    };
    assert_eq!(
        got,
        vec![
            expect(&[0xff; 3], &[7; 128 * 1024]),
            expect(&[1], b"one"),
            expect(&[0, 0xff, 0], &[]),
        ]
    );

    must(
        store
            .kv_put("a-1", gen, vec![(vec![1], b"uno".to_vec())], 2_000)
            .await,
        "overwrite",
    );
    let got = must(store.kv_get("a-1", &[vec![1]]).await, "get");
    assert_eq!(
        got,
        vec![KvEntry {
            update_ts: 2_000,
            ..expect(&[1], b"uno")
        }]
    );
    assert!(must(store.kv_get("a-1", &[]).await, "get nothing").is_empty());
}

/// Listing everything returns all keys in byte order.
pub async fn kv_list_all_ordered(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    kv_fill(
        &*store,
        "a-1",
        1,
        &[b"b", b"\xff", b"a\x00", b"a", b"", b"\x00"],
    )
    .await;
    let all = must(store.kv_list("a-1", KvQuery::All, false, 100).await, "list");
    assert_eq!(
        keys(&all),
        bytes_list(&[b"", b"\x00", b"a", b"a\x00", b"b", b"\xff"])
    );
    for e in &all {
        assert_eq!(e.value, e.key, "values travel with their keys");
    }
}

/// Ranges: `[start, end)` when exclusive, `[start, end]` otherwise.
pub async fn kv_list_range(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    kv_fill(
        &*store,
        "a-1",
        1,
        &[b"\x01", b"\x02", b"\x02\x00", b"\x03", b"\x04"],
    )
    .await;
    let range = |s: &[u8], e: &[u8], exclusive: bool| KvQuery::Range {
        start: s.to_vec(),
        end: e.to_vec(),
        exclusive,
    };
    assert_eq!(
        kv_keys(&*store, "a-1", range(b"\x02", b"\x04", true), false, 100).await,
        bytes_list(&[b"\x02", b"\x02\x00", b"\x03"])
    );
    assert_eq!(
        kv_keys(&*store, "a-1", range(b"\x02", b"\x04", false), false, 100).await,
        bytes_list(&[b"\x02", b"\x02\x00", b"\x03", b"\x04"])
    );
    assert_eq!(
        kv_keys(
            &*store,
            "a-1",
            range(b"\x02\x00", b"\x03", false),
            true,
            100
        )
        .await,
        bytes_list(&[b"\x03", b"\x02\x00"])
    );
    assert_eq!(
        kv_keys(&*store, "a-1", range(b"\x03", b"\x03", false), false, 100).await,
        bytes_list(&[b"\x03"])
    );
    assert!(
        kv_keys(&*store, "a-1", range(b"\x03", b"\x03", true), false, 100)
            .await
            .is_empty()
    );
    assert!(
        kv_keys(&*store, "a-1", range(b"\x04", b"\x01", false), false, 100)
            .await
            .is_empty(),
        "an inverted range is empty"
    );
    assert_eq!(
        kv_keys(&*store, "a-1", range(b"", b"\x02", true), false, 100).await,
        bytes_list(&[b"\x01"])
    );
}

/// Prefix lists cover exactly the keys that start with the prefix, `0xff` edges included.
pub async fn kv_list_prefix(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    kv_fill(
        &*store,
        "a-1",
        1,
        &[
            b"\x01",
            b"\x01\x00",
            b"\x01\x01",
            b"\x01\xff",
            b"\x01\xff\xff",
            b"\x02",
            b"\x00\x01",
            b"\xff",
            b"\xff\xff",
        ],
    )
    .await;
    let prefix = |p: &[u8]| KvQuery::Prefix(p.to_vec());
    assert_eq!(
        kv_keys(&*store, "a-1", prefix(b"\x01"), false, 100).await,
        bytes_list(&[
            b"\x01",
            b"\x01\x00",
            b"\x01\x01",
            b"\x01\xff",
            b"\x01\xff\xff"
        ])
    );
    assert_eq!(
        kv_keys(&*store, "a-1", prefix(b"\x01\xff"), false, 100).await,
        bytes_list(&[b"\x01\xff", b"\x01\xff\xff"])
    );
    assert_eq!(
        kv_keys(&*store, "a-1", prefix(b"\xff"), false, 100).await,
        bytes_list(&[b"\xff", b"\xff\xff"])
    );
    assert!(kv_keys(&*store, "a-1", prefix(b"\x03"), false, 100)
        .await
        .is_empty());
    assert_eq!(
        kv_keys(&*store, "a-1", prefix(b""), false, 100).await.len(),
        9,
        "an empty prefix lists everything"
    );
    assert_eq!(
        kv_keys(&*store, "a-1", prefix(b"\x01"), true, 2).await,
        bytes_list(&[b"\x01\xff\xff", b"\x01\xff"])
    );
}

/// Reverse lists start from the end; the limit applies after ordering.
pub async fn kv_list_reverse_and_limit(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    kv_fill(&*store, "a-1", 1, &[b"c", b"a", b"e", b"b", b"d"]).await;
    assert_eq!(
        kv_keys(&*store, "a-1", KvQuery::All, true, 100).await,
        bytes_list(&[b"e", b"d", b"c", b"b", b"a"])
    );
    assert_eq!(
        kv_keys(&*store, "a-1", KvQuery::All, false, 2).await,
        bytes_list(&[b"a", b"b"])
    );
    assert_eq!(
        kv_keys(&*store, "a-1", KvQuery::All, true, 2).await,
        bytes_list(&[b"e", b"d"])
    );
    let range = KvQuery::Range {
        start: b"b".to_vec(),
        end: b"e".to_vec(),
        exclusive: true,
    };
    assert_eq!(
        kv_keys(&*store, "a-1", range, true, 2).await,
        bytes_list(&[b"d", b"c"])
    );
    assert!(kv_keys(&*store, "a-1", KvQuery::All, false, 0)
        .await
        .is_empty());
}

/// Deletes remove exactly the named keys; range deletes exactly `[start, end)`.
pub async fn kv_delete_and_delete_range(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    kv_fill(
        &*store,
        "a-1",
        1,
        &[b"a", b"b", b"b\x00", b"c", b"d", b"e", b"f"],
    )
    .await;
    must(
        store
            .kv_delete("a-1", 1, &[b"a".to_vec(), b"zz".to_vec()])
            .await,
        "delete",
    );
    must(
        store.kv_delete_range("a-1", 1, b"b", b"d").await,
        "delete range",
    );
    assert_eq!(
        kv_keys(&*store, "a-1", KvQuery::All, false, 100).await,
        bytes_list(&[b"d", b"e", b"f"])
    );
    must(
        store.kv_delete_range("a-1", 1, b"f", b"e").await,
        "inverted range",
    );
    must(
        store.kv_delete_range("a-1", 1, b"e", b"e").await,
        "empty range",
    );
    assert_eq!(
        kv_keys(&*store, "a-1", KvQuery::All, false, 100).await,
        bytes_list(&[b"d", b"e", b"f"])
    );
}

/// Drop removes every key of the actor.
pub async fn kv_drop(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    kv_fill(&*store, "a-1", 1, &[b"a", b"\xff\xff", b""]).await;
    must(store.kv_drop("a-1", 1).await, "drop");
    assert!(kv_keys(&*store, "a-1", KvQuery::All, false, 100)
        .await
        .is_empty());
    must(store.kv_drop("a-1", 1).await, "drop empty");
}

/// Every KV write from an older (or future) generation fails and changes nothing.
pub async fn kv_stale_generation_changes_nothing(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    kv_fill(&*store, "a-1", 1, &[b"a", b"b"]).await;
    let gen = bump_generation(&*store, "a-1").await;
    let before = must(
        store.kv_list("a-1", KvQuery::All, false, 100).await,
        "before",
    );

    let check = |r: StoreResult<()>, given: u32, step: &str| match must_fail(r, step) {
        StoreError::StaleGeneration { given: g, current } => {
            assert_eq!((g, current), (given, gen), "{step}");
        }
        other => panic!("{step}: expected StaleGeneration, got {other:?}"),
    };
    check(
        store
            .kv_put("a-1", 1, vec![(b"a".to_vec(), b"zombie".to_vec())], 9)
            .await,
        1,
        "put",
    );
    check(
        store
            .kv_put("a-1", gen + 1, vec![(b"c".to_vec(), b"x".to_vec())], 9)
            .await,
        gen + 1,
        "put from the future",
    );
    check(
        store.kv_delete("a-1", 1, &[b"a".to_vec()]).await,
        1,
        "delete",
    );
    check(
        store.kv_delete_range("a-1", 1, b"a", b"z").await,
        1,
        "delete range",
    );
    check(store.kv_drop("a-1", 1).await, 1, "drop");
    let after = must(
        store.kv_list("a-1", KvQuery::All, false, 100).await,
        "after",
    );
    assert_eq!(after, before);

    must(
        store
            .kv_put("a-1", gen, vec![(b"a".to_vec(), b"new".to_vec())], 9)
            .await,
        "current generation writes",
    );
}

/// KV writes for an actor that does not exist fail with `NotFound`.
pub async fn kv_unknown_actor_not_found(store: Arc<dyn Store>) {
    let r = store
        .kv_put("ghost", 1, vec![(b"a".to_vec(), b"x".to_vec())], 1)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    let r = store.kv_drop("ghost", 1).await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    assert!(kv_keys(&*store, "ghost", KvQuery::All, false, 10)
        .await
        .is_empty());
}

/// Actors whose ids share a prefix never see each other's keys.
pub async fn kv_actors_isolated(store: Arc<dyn Store>) {
    new_actor(&*store, "a").await;
    new_actor(&*store, "ab").await;
    kv_fill(&*store, "a", 1, &[b"bx", b"\x00"]).await;
    kv_fill(&*store, "ab", 1, &[b"x"]).await;
    assert_eq!(
        kv_keys(&*store, "a", KvQuery::All, false, 100).await,
        bytes_list(&[b"\x00", b"bx"])
    );
    assert_eq!(
        kv_keys(&*store, "a", KvQuery::Prefix(b"b".to_vec()), false, 100).await,
        bytes_list(&[b"bx"])
    );
    assert_eq!(
        kv_keys(&*store, "ab", KvQuery::All, true, 100).await,
        bytes_list(&[b"x"])
    );
    assert!(must(store.kv_get("a", &[b"x".to_vec()]).await, "get").is_empty());
    must(store.kv_drop("a", 1).await, "drop a");
    assert_eq!(
        kv_keys(&*store, "ab", KvQuery::All, false, 100).await,
        bytes_list(&[b"x"])
    );
}

// === SQLite ===

/// A fresh actor has head 0 and no pages.
pub async fn sqlite_fresh_actor_reads_none(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let r = read(&*store, "a-1", 1..=128).await;
    assert_eq!(r.head_txid, 0);
    assert!(r.pages.iter().all(|(_, b)| b.is_none()));
    assert!(read(&*store, "a-1", []).await.pages.is_empty());
}

/// A commit returns head + 1 and its pages read back.
pub async fn sqlite_commit_advances_head(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let head = must(
        store
            .sqlite_commit(commit("a-1", 1, 0, marked(1..=3, 1), 3))
            .await,
        "first commit",
    );
    assert_eq!(head, 1);
    let head = must(
        store
            .sqlite_commit(commit("a-1", 1, 1, marked([2], 2), 4))
            .await,
        "second commit",
    );
    assert_eq!(head, 2);
    let r = read(&*store, "a-1", [3, 1, 2, 4, 5]).await;
    assert_eq!(r.head_txid, 2);
    assert_eq!(markers(&r), [Some(1), Some(1), Some(2), None, None]);
}

/// A commit on a head the writer did not expect fails and changes nothing.
pub async fn sqlite_wrong_head_rejected(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    must(
        store
            .sqlite_commit(commit("a-1", 1, 0, marked(1..=2, 1), 2))
            .await,
        "commit",
    );
    for expected in [0, 2, u64::MAX] {
        let err = must_fail(
            store
                .sqlite_commit(commit("a-1", 1, expected, marked(1..=4, 9), 4))
                .await,
            "wrong head",
        );
        match err {
            StoreError::HeadMismatch {
                expected: e,
                current,
            } => {
                assert_eq!((e, current), (expected, 1));
            }
            other => panic!("expected HeadMismatch, got {other:?}"),
        }
        let err = must_fail(
            store.sqlite_stage_begin("a-1", 1, expected).await,
            "stage on wrong head",
        );
        assert!(matches!(err, StoreError::HeadMismatch { .. }), "{err:?}");
    }
    let r = read(&*store, "a-1", 1..=4).await;
    assert_eq!(
        (r.head_txid, markers(&r)),
        (1, vec![Some(1), Some(1), None, None])
    );
}

/// A commit from an older generation fails and changes nothing.
pub async fn sqlite_stale_generation_rejected(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    must(
        store
            .sqlite_commit(commit("a-1", 1, 0, marked(1..=2, 1), 2))
            .await,
        "commit",
    );
    let gen = bump_generation(&*store, "a-1").await;
    let err = must_fail(
        store
            .sqlite_commit(commit("a-1", 1, 1, marked(1..=3, 2), 3))
            .await,
        "zombie commit",
    );
    match err {
        StoreError::StaleGeneration { given, current } => assert_eq!((given, current), (1, gen)),
        other => panic!("expected StaleGeneration, got {other:?}"),
    }
    let r = read(&*store, "a-1", 1..=3).await;
    assert_eq!(
        (r.head_txid, markers(&r)),
        (1, vec![Some(1), Some(1), None])
    );
    let head = must(
        store
            .sqlite_commit(commit("a-1", gen, 1, marked(1..=3, 2), 3))
            .await,
        "new generation commits",
    );
    assert_eq!(head, 2);
}

/// SQLite writes for an actor that does not exist fail with `NotFound`.
pub async fn sqlite_unknown_actor_not_found(store: Arc<dyn Store>) {
    let r = store
        .sqlite_commit(commit("ghost", 1, 0, marked([1], 1), 1))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    let r = store.sqlite_stage_begin("ghost", 1, 0).await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    let r = store
        .sqlite_stage_segment(segment("ghost", 1, 1, 1, marked([1], 1)))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    let r = store
        .sqlite_stage_finalize(finalize("ghost", 1, 1, 1, &[1]))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    let r = read(&*store, "ghost", [1]).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None]));
}

/// Shrinking drops the pages past the new size; growing again does not bring them back.
pub async fn sqlite_shrink_drops_pages(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    must(
        store
            .sqlite_commit(commit("a-1", 1, 0, marked(1..=10, 1), 10))
            .await,
        "fill",
    );
    must(
        store
            .sqlite_commit(commit("a-1", 1, 1, Vec::new(), 5))
            .await,
        "shrink",
    );
    let r = read(&*store, "a-1", 1..=10).await;
    let mut expect = vec![Some(1); 5];
    expect.extend([None; 5]);
    assert_eq!((r.head_txid, markers(&r)), (2, expect));

    must(
        store
            .sqlite_commit(commit("a-1", 1, 2, marked([7], 3), 10))
            .await,
        "grow",
    );
    let r = read(&*store, "a-1", 1..=10).await;
    let mut expect = vec![Some(1); 5];
    expect.extend([None, Some(3), None, None, None]);
    assert_eq!(markers(&r), expect, "pages 6..=10 stay gone");

    // A dirty page past the size the same commit sets is truncated by that commit.
    must(
        store
            .sqlite_commit(commit("a-1", 1, 3, marked([2, 9], 4), 8))
            .await,
        "write past end",
    );
    let r = read(&*store, "a-1", [2, 9]).await;
    assert_eq!(markers(&r), [Some(4), None]);
    must(
        store
            .sqlite_commit(commit("a-1", 1, 4, Vec::new(), 0))
            .await,
        "truncate to nothing",
    );
    assert!(markers(&read(&*store, "a-1", 1..=10).await)
        .iter()
        .all(Option::is_none));
}

/// A commit of many pages (2 MiB) lands whole; a rejected one lands not at all.
pub async fn sqlite_many_pages_one_commit(store: Arc<dyn Store>) {
    const N: u32 = 512;
    new_actor(&*store, "a-1").await;
    must(
        store
            .sqlite_commit(commit("a-1", 1, 0, marked(1..=N, 1), N))
            .await,
        "big commit",
    );
    let r = read(&*store, "a-1", 1..=N).await;
    assert!(markers(&r).iter().all(|m| *m == Some(1)));
    let err = must_fail(
        store
            .sqlite_commit(commit("a-1", 1, 0, marked(1..=N, 2), N))
            .await,
        "big commit on a stale head",
    );
    assert!(matches!(err, StoreError::HeadMismatch { .. }), "{err:?}");
    let r = read(&*store, "a-1", 1..=N).await;
    assert_eq!(r.head_txid, 1);
    assert!(markers(&r).iter().all(|m| *m == Some(1)));
}

/// A read racing commits sees the pages of exactly one commit, and that commit's head.
pub async fn sqlite_reads_see_one_commit(store: Arc<dyn Store>) {
    const PAGES: u32 = 64;
    const COMMITS: u64 = 30;
    new_actor(&*store, "a-1").await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for txid in 1..=COMMITS {
                must(
                    store
                        .sqlite_commit(commit("a-1", 1, txid - 1, marked(1..=PAGES, txid), PAGES))
                        .await,
                    "writer commit",
                );
            }
        })
    };
    let mut last_head = 0;
    loop {
        let r = read(&*store, "a-1", 1..=PAGES).await;
        let want = (r.head_txid > 0).then_some(r.head_txid);
        assert!(
            markers(&r).iter().all(|m| *m == want),
            "read at head {} mixes commits: {:?}",
            r.head_txid,
            markers(&r)
        );
        assert!(r.head_txid >= last_head, "head went backwards");
        last_head = r.head_txid;
        if last_head == COMMITS {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer panicked");
}

/// Actors whose ids share a prefix have separate databases.
pub async fn sqlite_actors_isolated(store: Arc<dyn Store>) {
    new_actor(&*store, "a").await;
    new_actor(&*store, "a\u{0}").await;
    new_actor(&*store, "ab").await;
    must(
        store
            .sqlite_commit(commit("a", 1, 0, marked(1..=2, 1), 2))
            .await,
        "a",
    );
    must(
        store
            .sqlite_commit(commit("ab", 1, 0, marked(1..=4, 7), 4))
            .await,
        "ab",
    );
    must(
        store.sqlite_commit(commit("a", 1, 1, Vec::new(), 1)).await,
        "shrink a",
    );
    let r = read(&*store, "ab", 1..=4).await;
    assert_eq!((r.head_txid, markers(&r)), (1, vec![Some(7); 4]));
    let r = read(&*store, "a", 1..=2).await;
    assert_eq!((r.head_txid, markers(&r)), (2, vec![Some(1), None]));
    let r = read(&*store, "a\u{0}", 1..=2).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None, None]));
}

/// A staged commit is invisible until finalize, then visible whole at txid head + 1.
pub async fn sqlite_staged_invisible_until_finalize(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    must(
        store
            .sqlite_commit(commit("a-1", 1, 0, marked(1..=4, 1), 4))
            .await,
        "base",
    );
    let txid = must(store.sqlite_stage_begin("a-1", 1, 1).await, "begin");
    assert_eq!(txid, 2);
    let staged = must(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 1, marked(1..=2, txid)))
            .await,
        "segment 1",
    );
    assert_eq!(staged, 2 * PAGE as u64);
    let r = read(&*store, "a-1", 1..=5).await;
    assert_eq!(
        (r.head_txid, markers(&r)),
        (1, vec![Some(1), Some(1), Some(1), Some(1), None])
    );
    let staged = must(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 3, marked([5, 3, 4], txid)))
            .await,
        "segment 3",
    );
    assert_eq!(staged, 5 * PAGE as u64, "bytes staged so far");
    let r = read(&*store, "a-1", 1..=5).await;
    assert_eq!(
        (r.head_txid, markers(&r)),
        (1, vec![Some(1), Some(1), Some(1), Some(1), None])
    );

    let head = must(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, txid, 5, &[1, 3]))
            .await,
        "finalize",
    );
    assert_eq!(head, 2);
    let r = read(&*store, "a-1", 1..=6).await;
    let mut expect = vec![Some(2); 5];
    expect.push(None);
    assert_eq!((r.head_txid, markers(&r)), (2, expect));

    let again = store
        .sqlite_stage_finalize(finalize("a-1", 1, txid, 5, &[1, 3]))
        .await;
    assert!(again.is_err(), "a stage publishes once: {again:?}");
    let head = must(
        store
            .sqlite_commit(commit("a-1", 1, 2, marked([1], 3), 5))
            .await,
        "single-shot after staged",
    );
    assert_eq!(head, 3);
}

/// Finalize naming a segment that was never staged fails and publishes nothing.
pub async fn sqlite_finalize_missing_segment_rejected(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let txid = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin");
    assert_eq!(txid, 1);
    must(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 1, marked(1..=3, txid)))
            .await,
        "segment",
    );
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, txid, 20, &[1, 10]))
            .await,
        "finalize with a missing segment",
    );
    assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    let r = read(&*store, "a-1", 1..=3).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None, None, None]));
}

/// Finalize leaving out a staged segment fails and publishes nothing.
pub async fn sqlite_finalize_extra_segment_rejected(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let txid = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin");
    for first in [1, 10] {
        must(
            store
                .sqlite_stage_segment(segment("a-1", 1, txid, first, marked([first], txid)))
                .await,
            "segment",
        );
    }
    for listed in [&[1][..], &[10], &[], &[1, 10, 10]] {
        let err = must_fail(
            store
                .sqlite_stage_finalize(finalize("a-1", 1, txid, 20, listed))
                .await,
            "finalize with a wrong segment list",
        );
        assert!(
            matches!(err, StoreError::StageRejected(_)),
            "{listed:?}: {err:?}"
        );
    }
    let r = read(&*store, "a-1", [1, 10]).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None, None]));
}

/// Finalize with a txid other than the open stage's fails and publishes nothing.
pub async fn sqlite_finalize_wrong_txid_rejected(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let txid = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin");
    must(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 1, marked([1], txid)))
            .await,
        "segment",
    );
    for wrong in [0, txid + 1] {
        let err = must_fail(
            store
                .sqlite_stage_finalize(finalize("a-1", 1, wrong, 1, &[1]))
                .await,
            "finalize wrong txid",
        );
        assert!(
            matches!(
                err,
                StoreError::StageRejected(_) | StoreError::HeadMismatch { .. }
            ),
            "{err:?}"
        );
        let err = must_fail(
            store
                .sqlite_stage_segment(segment("a-1", 1, wrong, 2, marked([2], wrong)))
                .await,
            "segment wrong txid",
        );
        assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    }
    let r = read(&*store, "a-1", [1, 2]).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None, None]));
    let head = must(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, txid, 1, &[1]))
            .await,
        "right txid still finalizes",
    );
    assert_eq!(head, txid);
}

/// Segments must come in strictly ascending `first_pgno`.
pub async fn sqlite_segment_out_of_order_rejected(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let txid = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin");
    must(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 10, marked([10, 11], txid)))
            .await,
        "segment 10",
    );
    for first in [5, 10] {
        let err = must_fail(
            store
                .sqlite_stage_segment(segment("a-1", 1, txid, first, marked([first], txid)))
                .await,
            "out of order segment",
        );
        assert!(
            matches!(err, StoreError::StageRejected(_)),
            "{first}: {err:?}"
        );
    }
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, txid, 20, &[5, 10]))
            .await,
        "finalize with the rejected segment",
    );
    assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    let r = read(&*store, "a-1", [5, 10, 11]).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None, None, None]));
}

/// A page outside its segment's span (below its first pgno, or at or past the next segment's)
/// is rejected, at the segment or at finalize, and nothing is published.
pub async fn sqlite_segment_page_outside_bounds_rejected(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;

    // Below its own first pgno.
    let txid = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin");
    let below = store
        .sqlite_stage_segment(segment("a-1", 1, txid, 5, marked([4, 5], txid)))
        .await;
    if let Err(err) = &below {
        assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    }
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, txid, 20, &[5]))
            .await,
        "finalize with a page below its segment",
    );
    assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    assert_eq!(markers(&read(&*store, "a-1", [4, 5]).await), [None, None]);

    // Reaching into the next segment.
    let txid = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin again");
    must(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 1, marked([1, 2, 6], txid)))
            .await,
        "segment 1",
    );
    let overlap = store
        .sqlite_stage_segment(segment("a-1", 1, txid, 4, marked([4], txid)))
        .await;
    if let Err(err) = &overlap {
        assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    }
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, txid, 20, &[1, 4]))
            .await,
        "finalize with overlapping segments",
    );
    assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    let r = read(&*store, "a-1", [1, 2, 4, 6]).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None; 4]));
}

/// Segments and finalize without an open stage are rejected.
pub async fn sqlite_segment_without_stage_rejected(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let err = must_fail(
        store
            .sqlite_stage_segment(segment("a-1", 1, 1, 1, marked([1], 1)))
            .await,
        "segment without begin",
    );
    assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, 1, 1, &[]))
            .await,
        "finalize without begin",
    );
    assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    let r = read(&*store, "a-1", [1]).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None]));
}

/// A new begin discards the earlier stage: its segments never publish.
pub async fn sqlite_stage_abandoned_by_new_begin(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let first = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin");
    must(
        store
            .sqlite_stage_segment(segment("a-1", 1, first, 1, marked([1], 100)))
            .await,
        "abandoned segment",
    );
    let second = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin again");
    assert_eq!(second, 1);
    let staged = must(
        store
            .sqlite_stage_segment(segment("a-1", 1, second, 2, marked([2], second)))
            .await,
        "segment",
    );
    assert_eq!(staged, PAGE as u64, "the abandoned stage's bytes are gone");
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, second, 2, &[1, 2]))
            .await,
        "finalize naming the abandoned segment",
    );
    assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    let head = must(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, second, 2, &[2]))
            .await,
        "finalize",
    );
    assert_eq!(head, 1);
    let r = read(&*store, "a-1", [1, 2]).await;
    assert_eq!((r.head_txid, markers(&r)), (1, vec![None, Some(1)]));
}

/// A single-shot commit invalidates an open stage.
pub async fn sqlite_commit_invalidates_open_stage(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let txid = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin");
    must(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 1, marked(1..=2, 100)))
            .await,
        "segment",
    );
    must(
        store
            .sqlite_commit(commit("a-1", 1, 0, marked([2], 1), 2))
            .await,
        "single-shot",
    );
    let err = must_fail(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 3, marked([3], 100)))
            .await,
        "segment after commit",
    );
    assert!(!err.is_retryable(), "{err:?}");
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, txid, 3, &[1]))
            .await,
        "finalize after commit",
    );
    assert!(
        matches!(
            err,
            StoreError::StageRejected(_) | StoreError::HeadMismatch { .. }
        ),
        "{err:?}"
    );
    // Also once the head has moved to exactly the stage's txid + 1 it must stay dead.
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, 2, 3, &[1]))
            .await,
        "finalize as the next txid",
    );
    assert!(
        matches!(
            err,
            StoreError::StageRejected(_) | StoreError::HeadMismatch { .. }
        ),
        "{err:?}"
    );
    let r = read(&*store, "a-1", 1..=3).await;
    assert_eq!((r.head_txid, markers(&r)), (1, vec![None, Some(1), None]));
}

/// A stage begun by an older generation can neither grow nor publish after a generation bump,
/// not even through the new generation.
pub async fn sqlite_zombie_stage_cannot_finalize(store: Arc<dyn Store>) {
    new_actor(&*store, "a-1").await;
    let txid = must(store.sqlite_stage_begin("a-1", 1, 0).await, "begin");
    must(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 1, marked(1..=2, 66)))
            .await,
        "zombie segment",
    );
    let gen = bump_generation(&*store, "a-1").await;

    let stale = |r: StoreResult<u64>, step: &str| {
        let err = must_fail(r, step);
        assert!(
            matches!(err, StoreError::StaleGeneration { given: 1, current } if current == gen),
            "{step}: {err:?}"
        );
    };
    stale(
        store
            .sqlite_stage_segment(segment("a-1", 1, txid, 3, marked([3], 66)))
            .await,
        "zombie segment after bump",
    );
    stale(
        store
            .sqlite_stage_finalize(finalize("a-1", 1, txid, 3, &[1]))
            .await,
        "zombie finalize",
    );
    stale(store.sqlite_stage_begin("a-1", 1, 0).await, "zombie begin");
    let err = must_fail(
        store
            .sqlite_stage_finalize(finalize("a-1", gen, txid, 3, &[1]))
            .await,
        "new generation finalizing the zombie's stage",
    );
    assert!(matches!(err, StoreError::StageRejected(_)), "{err:?}");
    let r = read(&*store, "a-1", 1..=3).await;
    assert_eq!((r.head_txid, markers(&r)), (0, vec![None, None, None]));

    let txid = must(store.sqlite_stage_begin("a-1", gen, 0).await, "new begin");
    must(
        store
            .sqlite_stage_segment(segment("a-1", gen, txid, 2, marked([2], txid)))
            .await,
        "new segment",
    );
    let head = must(
        store
            .sqlite_stage_finalize(finalize("a-1", gen, txid, 2, &[2]))
            .await,
        "new finalize",
    );
    assert_eq!(head, 1);
    let r = read(&*store, "a-1", 1..=2).await;
    assert_eq!(markers(&r), [None, Some(1)]);
}

// === leases ===

fn acquired(claim: LeaseClaim, step: &str) -> Lease {
    match claim {
        LeaseClaim::Acquired(lease) => lease,
        LeaseClaim::HeldBy(other) => {
            panic!("{step}: expected to take the lease, held by {other:?}")
        }
    }
}

fn held_by(claim: LeaseClaim, step: &str) -> Lease {
    match claim {
        LeaseClaim::HeldBy(lease) => lease,
        LeaseClaim::Acquired(lease) => panic!("{step}: expected a refusal, got {lease:?}"),
    }
}

async fn node(s: &dyn Store, id: &str, now_ms: i64, ttl_ms: i64) -> NodeLease {
    must(
        s.register_node(id, &format!("http://{id}"), now_ms, ttl_ms)
            .await,
        "register node",
    )
}

/// Registration: incarnations grow, renewals extend only the current incarnation.
pub async fn node_register_renew_reregister(store: Arc<dyn Store>) {
    let s = store.as_ref();
    assert_eq!(must(s.get_node("n1").await, "get none"), None);
    let first = node(s, "n1", 1_000, 500).await;
    assert_eq!((first.incarnation, first.expires_ms), (1, 1_500));
    assert_eq!(first.node_url, "http://n1");
    let renewed = must(s.renew_node(&first, 1_400, 500).await, "renew").expect("held");
    assert_eq!((renewed.incarnation, renewed.expires_ms), (1, 1_900));
    assert_eq!(must(s.get_node("n1").await, "get"), Some(renewed.clone()));
    // A restarted process registers the same id: the old incarnation can no longer renew.
    let second = node(s, "n1", 1_500, 500).await;
    assert_eq!(second.incarnation, 2);
    assert_eq!(
        must(s.renew_node(&renewed, 1_600, 500).await, "old renew"),
        None
    );
    assert!(must(s.renew_node(&second, 1_600, 500).await, "new renew").is_some());
}

/// Take, refuse another node while the holder lives, release, then the other node takes it;
/// the old holder can no longer release it.
pub async fn lease_take_refuse_release(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let n1 = node(s, "n1", 1_000, 10_000).await;
    let n2 = node(s, "n2", 1_000, 10_000).await;
    assert_eq!(must(s.get_lease("a-lease").await, "get none"), None);
    let a = acquired(
        must(s.acquire_lease("a-lease", &n1, 1_000).await, "take"),
        "take",
    );
    assert_eq!(
        (a.node_id.as_str(), a.node_url.as_str()),
        ("n1", "http://n1")
    );
    assert_eq!((a.epoch, a.node_incarnation, a.expires_ms), (1, 1, 11_000));
    let refused = held_by(
        must(s.acquire_lease("a-lease", &n2, 1_200).await, "other"),
        "other",
    );
    assert_eq!(refused, a);
    // Renewing the node keeps its leases alive without touching them.
    let n1 = must(s.renew_node(&n1, 5_000, 10_000).await, "renew").expect("held");
    let seen = must(s.get_lease("a-lease").await, "get").expect("lease");
    assert_eq!(seen.expires_ms, 15_000);
    assert!(held_by(
        must(s.acquire_lease("a-lease", &n2, 12_000).await, "still held"),
        "still held"
    )
    .is_live(12_000));
    assert!(must(s.release_lease(&a).await, "release"));
    let released = must(s.get_lease("a-lease").await, "get").expect("lease");
    assert!(!released.is_live(12_000), "a released lease binds nobody");
    let b = acquired(
        must(s.acquire_lease("a-lease", &n2, 12_000).await, "take b"),
        "take b",
    );
    assert_eq!((b.node_id.as_str(), b.epoch), ("n2", 2));
    assert!(!must(s.release_lease(&a).await, "old release"));
    assert_eq!(must(s.get_lease("a-lease").await, "get b"), Some(b));
    let _ = n1;
}

/// A node that stops renewing binds nobody once its registration expires: its leases can be
/// taken over, and its release fails.
pub async fn lease_of_a_dead_node_can_be_taken(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let n1 = node(s, "n1", 10_000, 100).await;
    let n2 = node(s, "n2", 10_000, 100_000).await;
    let a = acquired(
        must(s.acquire_lease("a-exp", &n1, 10_000).await, "take"),
        "take",
    );
    held_by(
        must(s.acquire_lease("a-exp", &n2, 10_099).await, "too early"),
        "too early",
    );
    let b = acquired(
        must(s.acquire_lease("a-exp", &n2, 10_100).await, "after expiry"),
        "after expiry",
    );
    assert_eq!((b.node_id.as_str(), b.epoch), ("n2", a.epoch + 1));
    assert!(!must(s.release_lease(&a).await, "zombie release"));
    let still = must(s.get_lease("a-exp").await, "get").expect("lease");
    assert_eq!(still, b);
}

/// A node that restarts takes its own leases back at once, whatever its previous
/// incarnation held; leases of the previous incarnation bind nobody else either.
pub async fn lease_retaken_by_same_node_fences_old_holder(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let old = node(s, "n1", 1_000, 10_000).await;
    let old_lease = acquired(
        must(s.acquire_lease("a-same", &old, 1_000).await, "take"),
        "take",
    );
    let new = node(s, "n1", 2_000, 10_000).await;
    // Another node may take the old incarnation's other leases at once.
    let other = node(s, "n2", 2_000, 10_000).await;
    let old_other = acquired(
        must(s.acquire_lease("a-other", &old, 1_000).await, "take other"),
        "take other",
    );
    assert!(!must(s.get_lease("a-other").await, "get")
        .expect("l")
        .is_live(2_000));
    acquired(
        must(s.acquire_lease("a-other", &other, 2_000).await, "n2 takes"),
        "n2 takes",
    );
    let retaken = acquired(
        must(s.acquire_lease("a-same", &new, 2_000).await, "retake"),
        "retake",
    );
    assert_eq!(retaken.epoch, old_lease.epoch + 1);
    assert_eq!(retaken.node_incarnation, new.incarnation);
    assert!(!must(s.release_lease(&old_lease).await, "old release"));
    assert!(!must(
        s.release_lease(&old_other).await,
        "old other release"
    ));
}

/// Many nodes asking for one actor's lease at the same moment: exactly one gets it.
pub async fn lease_concurrent_takers_one_wins(store: Arc<dyn Store>) {
    let mut nodes = Vec::new();
    for i in 0..16 {
        nodes.push(node(store.as_ref(), &format!("n{i}"), 5_000, 10_000).await);
    }
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.acquire_lease("a-race", &n, 5_000).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match must(task.await.expect("task"), "race") {
            LeaseClaim::Acquired(lease) => winners.push(lease),
            LeaseClaim::HeldBy(_) => {}
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = must(store.get_lease("a-race").await, "get").expect("lease");
    assert_eq!(stored, winners[0]);
}
