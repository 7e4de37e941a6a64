//! The embedded store against the conformance suite, plus what only a file on disk can show:
//! data survives close and reopen, an interrupted staged commit stays invisible, and a writer
//! killed with SIGKILL in the middle of commits leaves exactly one whole commit visible.
//!
//! The crash test re-runs this test binary as a child, selecting the `crash_writer_child` test
//! through an environment variable; run alone (without the variable) that test does nothing.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rivulet_gateway::store::conformance::page_marker;
use rivulet_gateway::store::embedded::EmbeddedStore;
use rivulet_gateway::store::{
    KvQuery, Namespace, RunnerConfigRecord, SqliteFinalize, SqliteSegment, Store,
};

/// A fresh store whose directory is removed at once: the open file lives on until the store
/// is dropped (unix semantics), so no test leaves files behind, even when it panics.
async fn fresh() -> Arc<dyn Store> {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    drop(dir);
    Arc::new(store)
}

mod conformance {
    rivulet_gateway::store_conformance_tests!(super::fresh);
}

mod store_support;

// === helpers ===

use store_support::{actor, commit, marked};

fn segment(actor_id: &str, txid: u64, first: u32, pages: Vec<(u32, Vec<u8>)>) -> SqliteSegment {
    SqliteSegment {
        actor_id: actor_id.to_owned(),
        generation: 1,
        txid,
        first_pgno: first,
        pages,
    }
}

fn finalize(actor_id: &str, txid: u64, size: u32, segments: &[u32]) -> SqliteFinalize {
    SqliteFinalize {
        actor_id: actor_id.to_owned(),
        generation: 1,
        txid,
        db_size_pages: size,
        now_ms: 0,
        segment_first_pgnos: segments.to_vec(),
    }
}

/// (head, marker of each page) of an actor's database.
async fn snapshot(store: &dyn Store, actor_id: &str, pgnos: &[u32]) -> (u64, Vec<Option<u64>>) {
    let r = store.sqlite_get_pages(actor_id, pgnos).await.unwrap();
    let markers = r
        .pages
        .iter()
        .map(|(pgno, b)| {
            b.as_ref()
                .map(|b| page_marker(b).unwrap_or_else(|| panic!("page {pgno} is foreign")))
        })
        .collect();
    (r.head_txid, markers)
}

// === durability ===

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/store.redb");
    let ns = Namespace {
        namespace_id: "ns".to_owned(),
        name: "default".to_owned(),
        display_name: "Default".to_owned(),
        create_ts: 1,
    };
    let cfg = RunnerConfigRecord {
        namespace_id: "ns".to_owned(),
        name: "default".to_owned(),
        config: serde_json::json!({ "local": { "normal": {} } }),
        update_ts: 2,
    };
    let mut a = actor("a-1", Some("k"));
    a.alarm_ts = Some(500);
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.create_namespace(ns.clone()).await.unwrap();
        store.put_runner_config(cfg.clone()).await.unwrap();
        store
            .put_actor_names("ns", vec![("counter".to_owned(), "{}".to_owned())])
            .await
            .unwrap();
        store.create_actor(a.clone()).await.unwrap();
        store
            .kv_put("a-1", 1, vec![(b"k".to_vec(), b"v".to_vec())], 77)
            .await
            .unwrap();
        store
            .sqlite_commit(commit("a-1", 0, marked(1..=3, 1), 3))
            .await
            .unwrap();
        let txid = store.sqlite_stage_begin("a-1", 1, 1).await.unwrap();
        store
            .sqlite_stage_segment(segment("a-1", txid, 3, marked([3, 4], txid)))
            .await
            .unwrap();
        store
            .sqlite_stage_finalize(finalize("a-1", txid, 4, &[3]))
            .await
            .unwrap();
    }

    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.get_namespace("default").await.unwrap(), Some(ns));
    assert_eq!(
        store.get_runner_config("ns", "default").await.unwrap(),
        Some(cfg)
    );
    assert_eq!(
        store.list_actor_names("ns").await.unwrap(),
        vec![("counter".to_owned(), "{}".to_owned())]
    );
    assert_eq!(store.get_actor("a-1").await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.get_actor_by_key("ns", "counter", "k").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.due_alarms(500, 10).await.unwrap(), vec![a]);
    let kv = store.kv_list("a-1", KvQuery::All, false, 10).await.unwrap();
    assert_eq!(kv.len(), 1);
    assert_eq!((kv[0].value.as_slice(), kv[0].update_ts), (&b"v"[..], 77));
    assert_eq!(
        snapshot(&store, "a-1", &[1, 2, 3, 4, 5]).await,
        (2, vec![Some(1), Some(1), Some(2), Some(2), None])
    );
    // The reopened store keeps writing where it left off.
    assert_eq!(
        store
            .sqlite_commit(commit("a-1", 2, marked([5], 3), 5))
            .await
            .unwrap(),
        3
    );
}

#[tokio::test]
async fn staged_commit_interrupted_by_restart_stays_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.create_actor(actor("a-1", None)).await.unwrap();
        store
            .sqlite_commit(commit("a-1", 0, marked(1..=4, 1), 4))
            .await
            .unwrap();
        let txid = store.sqlite_stage_begin("a-1", 1, 1).await.unwrap();
        assert_eq!(txid, 2);
        store
            .sqlite_stage_segment(segment("a-1", txid, 1, marked(1..=2, 99)))
            .await
            .unwrap();
        store
            .sqlite_stage_segment(segment("a-1", txid, 5, marked([5, 6], 99)))
            .await
            .unwrap();
        // The gateway goes away here, before finalize.
    }

    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(
        snapshot(&store, "a-1", &[1, 2, 3, 4, 5, 6]).await,
        (1, vec![Some(1), Some(1), Some(1), Some(1), None, None])
    );
    let txid = store.sqlite_stage_begin("a-1", 1, 1).await.unwrap();
    assert_eq!(txid, 2);
    let staged = store
        .sqlite_stage_segment(segment("a-1", txid, 2, marked([2, 3], txid)))
        .await
        .unwrap();
    assert_eq!(
        staged,
        2 * 4096,
        "nothing of the interrupted stage is counted"
    );
    assert_eq!(
        store
            .sqlite_stage_finalize(finalize("a-1", txid, 6, &[2]))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        snapshot(&store, "a-1", &[1, 2, 3, 4, 5, 6]).await,
        (2, vec![Some(1), Some(2), Some(2), Some(1), None, None])
    );
}

// === crash in the middle of commits ===

/// Set (to the database path) only in the child process the crash test starts.
const CRASH_DB_ENV: &str = "RIVULET_STORE_CRASH_DB";
const CRASH_ACTOR: &str = "crash-actor";
/// Precedes each txid the child reports durable on its stdout.
const COMMITTED_TOKEN: &str = "crash-writer-committed=";
const CRASH_PAGES: u32 = 64;
/// Every fifth commit shrinks the database to this many pages.
const CRASH_SHRUNK_PAGES: u32 = 48;
/// How many times the writer is killed and the file checked.
const CRASH_ROUNDS: usize = 8;

/// The database size commit `txid` of the crash writer sets.
fn size_at(txid: u64) -> u32 {
    match txid % 5 {
        0 => CRASH_SHRUNK_PAGES,
        _ => CRASH_PAGES,
    }
}

/// Whether the crash writer publishes commit `txid` as a staged commit.
fn staged_at(txid: u64) -> bool {
    matches!(txid % 3, 0)
}

/// What every page of the database must hold when commit `txid` is the head.
fn expected_after(txid: u64) -> Vec<Option<u64>> {
    let size = size_at(txid);
    (1..=CRASH_PAGES)
        .map(|p| (txid > 0 && p <= size).then_some(txid))
        .collect()
}

/// The writer half of the crash test: commits forever (single-shot, and staged every third
/// txid), printing each txid once it is durable, until it is killed. Does nothing unless
/// started by `crash_mid_commit_never_mixes_commits`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_writer_child() {
    let Some(path) = std::env::var_os(CRASH_DB_ENV) else {
        return;
    };
    let store = EmbeddedStore::open(Path::new(&path)).unwrap();
    let mut head = store
        .sqlite_get_pages(CRASH_ACTOR, &[])
        .await
        .unwrap()
        .head_txid;
    // A safety net if the parent dies without killing us; it kills us long before this.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let txid = head + 1;
        let size = size_at(txid);
        let new_head = if staged_at(txid) {
            let staged = store
                .sqlite_stage_begin(CRASH_ACTOR, 1, head)
                .await
                .unwrap();
            assert_eq!(staged, txid);
            let firsts = [1, 17, 33, 49];
            for first in firsts {
                store
                    .sqlite_stage_segment(segment(
                        CRASH_ACTOR,
                        txid,
                        first,
                        marked(first..first + 16, txid),
                    ))
                    .await
                    .unwrap();
            }
            store
                .sqlite_stage_finalize(finalize(CRASH_ACTOR, txid, size, &firsts))
                .await
                .unwrap()
        } else {
            store
                .sqlite_commit(commit(
                    CRASH_ACTOR,
                    head,
                    marked(1..=CRASH_PAGES, txid),
                    size,
                ))
                .await
                .unwrap()
        };
        assert_eq!(new_head, txid);
        head = new_head;
        // Printed only after the commit returned, so the parent may count on it being durable.
        println!("{COMMITTED_TOKEN}{txid}");
    }
}

/// Kills the child if the test panics before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn crash_mid_commit_never_mixes_commits() {
    if std::env::var_os(CRASH_DB_ENV).is_some() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    rt.block_on(async {
        let store = EmbeddedStore::open(&path).unwrap();
        store.create_actor(actor(CRASH_ACTOR, None)).await.unwrap();
    });

    let all_pages: Vec<u32> = (1..=CRASH_PAGES).collect();
    let mut last_head = 0;
    for round in 0..CRASH_ROUNDS {
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "crash_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_DB_ENV, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        // Drains the child's output so it never blocks on a full pipe, and reports the last
        // txid the child called durable once the pipe closes.
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print its own "test ... " prefix on the same line.
                if let Some((_, n)) = line.split_once(COMMITTED_TOKEN) {
                    let n: u64 = n.trim().parse().unwrap();
                    if last.is_none() {
                        let _ = first_tx.send(n);
                    }
                    last = Some(n);
                }
            }
            last
        });
        let first = first_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the writer committed nothing");
        assert_eq!(first, last_head + 1, "round {round} resumes at the head");
        // A random moment lands the kill in a different phase of a commit each round.
        let pause = rand::thread_rng().gen_range(0..250);
        std::thread::sleep(Duration::from_millis(pause));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let reported = reader
            .join()
            .unwrap()
            .expect("at least one commit was reported");

        // redb repairs on open if it must; the file must then pass its own integrity check.
        let mut raw = redb::Database::open(&path).unwrap();
        assert!(raw.check_integrity().unwrap(), "round {round}: integrity");
        drop(raw);

        let (head, markers) = rt.block_on(async {
            let store = EmbeddedStore::open(&path).unwrap();
            snapshot(&store, CRASH_ACTOR, &all_pages).await
        });
        assert!(
            head == reported || head == reported + 1,
            "round {round}: head {head}, but the writer reported {reported} durable"
        );
        assert_eq!(
            markers,
            expected_after(head),
            "round {round}: pages mix commits at head {head}"
        );
        eprintln!("round {round}: killed after {pause} ms at head {head}");
        last_head = head;
    }
}
