//! The DynamoDB store against the conformance suite, on a local moto server, plus what only
//! DynamoDB shows: chunked inputs past the 400 KB item limit, key races between separate
//! clients, retried throttling, KV intents and SQLite commits that crash half way, long KV
//! keys and staged commits larger than one transaction.
//!
//! One moto process serves the whole test binary (`moto/mod.rs`); each test gets its own
//! table.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::Client;
use rivulet_gateway::store::conformance::page_marker;
use rivulet_gateway::store::dynamo::DynamoStore;
use rivulet_gateway::store::{KvQuery, SqliteFinalize, SqliteSegment, Store, StoreError};

mod moto;

fn moto() -> &'static str {
    moto::endpoint()
}

async fn client(endpoint: &str) -> Client {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(endpoint)
        .load()
        .await;
    DynamoStore::client_for(&conf)
}

/// A store on a fresh table.
async fn fresh_dynamo() -> DynamoStore {
    let endpoint = tokio::task::block_in_place(moto).to_owned();
    let table = format!("rivulet-test-{:016x}", rand::random::<u64>());
    let store = DynamoStore::from_client(client(&endpoint).await, &table);
    store.create_table_if_missing().await.unwrap();
    store
}

async fn fresh() -> Arc<dyn Store> {
    Arc::new(fresh_dynamo().await)
}

mod conformance {
    rivulet_gateway::store_conformance_tests!(super::fresh);
}

mod store_support;

// === helpers ===

use store_support::{actor, commit, marked};

async fn markers(
    store: &dyn Store,
    id: &str,
    pgnos: impl IntoIterator<Item = u32>,
) -> (u64, Vec<Option<u64>>) {
    let pgnos: Vec<u32> = pgnos.into_iter().collect();
    let r = store.sqlite_get_pages(id, &pgnos).await.unwrap();
    let m = r
        .pages
        .iter()
        .map(|(_, b)| b.as_ref().map(|b| page_marker(b).expect("a marker page")))
        .collect();
    (r.head_txid, m)
}

/// Bytes that differ at every position, so a misplaced chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

// === actor inputs past the item limit ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_input_round_trips_through_chunks() {
    let store = fresh_dynamo().await;
    let mut a = actor("big", Some("k"));
    a.input = Some(pattern(1024 * 1024, 1));
    store.create_actor(a.clone()).await.unwrap();
    assert_eq!(store.get_actor("big").await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.get_actor_by_key("ns", "counter", "k").await.unwrap(),
        Some(a.clone())
    );

    // An update that keeps the input keeps the blob; one that changes it replaces it.
    let mut b = a.clone();
    b.start_ts = Some(5);
    store.update_actor(b.clone(), 0).await.unwrap();
    b.revision = 1;
    assert_eq!(store.get_actor("big").await.unwrap(), Some(b.clone()));
    let mut c = b.clone();
    c.input = Some(pattern(4 * 1024 * 1024, 2));
    store.update_actor(c.clone(), 1).await.unwrap();
    c.revision = 2;
    assert_eq!(store.get_actor("big").await.unwrap(), Some(c.clone()));
    let listed = store.list_actors("ns", None, true, 10).await.unwrap();
    assert_eq!(listed, vec![c.clone()]);

    // Back to a small input, then none.
    let mut d = c.clone();
    d.input = Some(vec![1, 2, 3]);
    store.update_actor(d.clone(), 2).await.unwrap();
    d.revision = 3;
    assert_eq!(store.get_actor("big").await.unwrap(), Some(d.clone()));
    let mut e = d.clone();
    e.input = Some(Vec::new());
    store.update_actor(e.clone(), 3).await.unwrap();
    e.revision = 4;
    assert_eq!(store.get_actor("big").await.unwrap(), Some(e));
}

// === key races between separate clients ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_race_for_one_key() {
    let first = fresh_dynamo().await;
    let endpoint = moto().to_owned();
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for i in 0..32 {
        // Each racer has its own client and connections, as separate gateway nodes would.
        let store = DynamoStore::from_client(client(&endpoint).await, first.table());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("racer-{i:02}");
            barrier.wait().await;
            (
                id.clone(),
                store.create_actor(actor(&id, Some("hot"))).await,
            )
        }));
    }
    let mut winners = Vec::new();
    let mut holders = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (id, Ok(())) => winners.push(id),
            (_, Err(StoreError::KeyTaken { existing_actor_id })) => holders.push(existing_actor_id),
            (id, Err(other)) => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert!(holders.iter().all(|h| *h == winners[0]));
    let holder = first
        .get_actor_by_key("ns", "counter", "hot")
        .await
        .unwrap();
    assert_eq!(holder.map(|a| a.actor_id), Some(winners[0].clone()));
    assert_eq!(
        first
            .list_actors("ns", None, true, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

// === throttling ===

/// A proxy in front of moto that answers the first `fail` requests with a throttling or
/// server error, the way DynamoDB does, and forwards the rest.
struct FlakyProxy {
    endpoint: String,
    fail: Arc<AtomicUsize>,
    seen: Arc<AtomicUsize>,
}

async fn flaky_proxy(upstream: String) -> FlakyProxy {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;

    let fail = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let (f, s) = (fail.clone(), seen.clone());
    let app = axum::Router::new().fallback(move |req: Request| {
        let (f, s, http, upstream) = (f.clone(), s.clone(), http.clone(), upstream.clone());
        async move {
            let n = s.fetch_add(1, Ordering::SeqCst);
            let failing = f
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
            if failing {
                let (status, kind) = match n % 3 {
                    0 => (400, "ThrottlingException"),
                    1 => (400, "ProvisionedThroughputExceededException"),
                    _ => (500, "InternalServerError"),
                };
                let body = format!(
                    r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected"}}"#
                );
                return Response::builder()
                    .status(status)
                    .header("content-type", "application/x-amz-json-1.0")
                    .body(Body::from(body))
                    .unwrap();
            }
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut fwd = http.post(format!("{upstream}{}", parts.uri.path()));
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    fwd = fwd.header(name.as_str(), value.as_bytes());
                }
            }
            let res = fwd.body(bytes).send().await.unwrap();
            let mut out = Response::builder().status(res.status().as_u16());
            for (name, value) in res.headers() {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    out = out.header(name.as_str(), value.as_bytes());
                }
            }
            out.body(Body::from(res.bytes().await.unwrap())).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    FlakyProxy {
        endpoint,
        fail,
        seen,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_reported_unavailable() {
    let direct = fresh_dynamo().await;
    let proxy = flaky_proxy(moto().to_owned()).await;
    let store = DynamoStore::from_client(client(&proxy.endpoint).await, direct.table());

    // Throttled twice and a 500 once: the SDK retries with backoff and the write lands once.
    proxy.fail.store(3, Ordering::SeqCst);
    store.create_actor(actor("a-1", Some("k"))).await.unwrap();
    assert_eq!(proxy.fail.load(Ordering::SeqCst), 0);
    assert!(proxy.seen.load(Ordering::SeqCst) >= 4);
    assert!(direct.get_actor("a-1").await.unwrap().is_some());

    // A commit whose page transaction is throttled still publishes whole.
    proxy.fail.store(2, Ordering::SeqCst);
    let head = store
        .sqlite_commit(commit("a-1", 0, marked(1..=3, 1), 3))
        .await
        .unwrap();
    assert_eq!(head, 1);
    assert_eq!(markers(&direct, "a-1", 1..=3).await, (1, vec![Some(1); 3]));

    // Throttled past the retry budget: a retryable `Unavailable`.
    proxy.fail.store(1_000, Ordering::SeqCst);
    let err = store.get_actor("a-1").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    proxy.fail.store(0, Ordering::SeqCst);
    assert!(store.get_actor("a-1").await.unwrap().is_some());
}

// === crashes half way ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_crashed_before_publish_stays_invisible_and_is_cleaned() {
    let store = fresh_dynamo().await;
    store.create_actor(actor("a-1", None)).await.unwrap();
    store
        .sqlite_commit(commit("a-1", 0, marked(1..=4, 1), 4))
        .await
        .unwrap();

    // Writes pages 1..=6 under its version, then "crashes" before moving the head.
    let vid = store
        .crash_commit_before_publish(commit("a-1", 1, marked(1..=6, 2), 6))
        .await
        .unwrap();
    let leftover = |keys: &[String]| {
        let tag = format!("{vid:016x}");
        keys.iter().filter(|k| k.contains(&tag)).count()
    };
    assert!(leftover(&store.page_item_keys("a-1").await.unwrap()) >= 6);
    assert_eq!(
        markers(&store, "a-1", 1..=6).await,
        (1, vec![Some(1), Some(1), Some(1), Some(1), None, None])
    );

    // The next commit of the same txid writes only page 2 and grows to 6 pages: none of the
    // crashed attempt's pages may show, and its items are gone.
    let head = store
        .sqlite_commit(commit("a-1", 1, marked([2], 3), 6))
        .await
        .unwrap();
    assert_eq!(head, 2);
    assert_eq!(
        markers(&store, "a-1", 1..=6).await,
        (2, vec![Some(1), Some(3), Some(1), Some(1), None, None])
    );
    assert_eq!(leftover(&store.page_item_keys("a-1").await.unwrap()), 0);

    // A zombie of the crashed attempt can no longer publish or write.
    let err = store
        .sqlite_commit(commit("a-1", 1, marked([1], 9), 6))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::HeadMismatch { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_intent_crashed_before_apply_is_rolled_forward_by_a_reader() {
    let store = fresh_dynamo().await;
    store.create_actor(actor("a-1", None)).await.unwrap();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..128u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 100]))
        .collect();
    store
        .crash_kv_put_before_apply("a-1", 1, entries.clone(), 7)
        .await
        .unwrap();
    // Published, so it counts: a reader finds the mark and applies the whole put first.
    let got = store
        .kv_list("a-1", KvQuery::All, false, 1000)
        .await
        .unwrap();
    assert_eq!(got.len(), 128);
    for (e, (k, v)) in got.iter().zip(&entries) {
        assert_eq!((&e.key, &e.value, e.update_ts), (k, v, 7));
    }
    // And a writer of a stale generation is still fenced.
    let err = store.kv_drop("a-1", 2).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleGeneration { .. }), "{err:?}");
}

// === KV beyond one transaction ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_writes_larger_than_a_transaction_apply_whole() {
    let store = fresh_dynamo().await;
    store.create_actor(actor("a-1", None)).await.unwrap();
    let key = |i: u32| i.to_be_bytes().to_vec();
    // 128 keys of 7 KiB: more items than one transaction takes.
    let entries: Vec<_> = (0..128)
        .map(|i| (key(i), vec![i as u8; 7 * 1024]))
        .collect();
    store.kv_put("a-1", 1, entries, 1).await.unwrap();
    let all = store
        .kv_list("a-1", KvQuery::All, false, 1000)
        .await
        .unwrap();
    assert_eq!(all.len(), 128);
    assert_eq!(all[127].value, vec![127u8; 7 * 1024]);

    let doomed: Vec<_> = (0..110).map(key).collect();
    store.kv_delete("a-1", 1, &doomed).await.unwrap();
    let left = store
        .kv_list("a-1", KvQuery::All, false, 1000)
        .await
        .unwrap();
    assert_eq!(left.len(), 18);

    let more: Vec<_> = (200..400).map(|i| (key(i), vec![1])).collect();
    store
        .kv_put("a-1", 1, more[..100].to_vec(), 2)
        .await
        .unwrap();
    store
        .kv_put("a-1", 1, more[100..].to_vec(), 2)
        .await
        .unwrap();
    store
        .kv_delete_range("a-1", 1, &key(210), &key(390))
        .await
        .unwrap();
    let left = store
        .kv_list("a-1", KvQuery::All, false, 1000)
        .await
        .unwrap();
    assert_eq!(left.len(), 18 + 10 + 10);
    store.kv_drop("a-1", 1).await.unwrap();
    assert!(store
        .kv_list("a-1", KvQuery::All, false, 1000)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_kv_keys_list_in_key_order() {
    let store = fresh_dynamo().await;
    store.create_actor(actor("a-1", None)).await.unwrap();
    let long = |fill: u8, tail: &[u8]| {
        let mut k = vec![fill; 600];
        k.extend_from_slice(tail);
        k
    };
    let mut keys = vec![
        long(5, &[9]),
        long(5, &[1]),
        long(5, &[5, 5]),
        vec![5; 600],
        long(6, &[]),
        vec![5],
        long(5, &[0xff; 1400]),
        vec![7],
    ];
    let entries = keys
        .iter()
        .map(|k| (k.clone(), k[k.len() - 1..].to_vec()))
        .collect();
    store.kv_put("a-1", 1, entries, 1).await.unwrap();
    keys.sort();
    let listed: Vec<_> = store
        .kv_list("a-1", KvQuery::All, false, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(listed, keys);
    let reversed: Vec<_> = store
        .kv_list("a-1", KvQuery::All, true, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let mut expect: Vec<_> = keys.iter().rev().take(3).cloned().collect();
    assert_eq!(reversed, expect);
    let prefixed: Vec<_> = store
        .kv_list("a-1", KvQuery::Prefix(long(5, &[5])), false, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(prefixed, vec![long(5, &[5, 5])]);
    let range = KvQuery::Range {
        start: long(5, &[1]),
        end: long(5, &[9]),
        exclusive: true,
    };
    let ranged: Vec<_> = store
        .kv_list("a-1", range, false, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    expect = vec![long(5, &[1]), long(5, &[5, 5])];
    assert_eq!(ranged, expect);
    let got = store
        .kv_get("a-1", &[long(5, &[0xff; 1400])])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, vec![0xff]);
}

// === staged commits beyond one transaction ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_commit_of_large_segments_with_shrink() {
    let store = fresh_dynamo().await;
    store.create_actor(actor("a-1", None)).await.unwrap();
    store
        .sqlite_commit(commit("a-1", 0, marked(1..=600, 1), 600))
        .await
        .unwrap();
    let txid = store.sqlite_stage_begin("a-1", 1, 1).await.unwrap();
    let seg = |first: u32, pages| SqliteSegment {
        actor_id: "a-1".to_owned(),
        generation: 1,
        txid,
        first_pgno: first,
        pages,
    };
    store
        .sqlite_stage_segment(seg(1, marked(1..=250, txid)))
        .await
        .unwrap();
    store
        .sqlite_stage_segment(seg(300, marked(300..=450, txid)))
        .await
        .unwrap();
    assert_eq!(
        markers(&store, "a-1", [1, 300, 600]).await,
        (1, vec![Some(1); 3])
    );
    let head = store
        .sqlite_stage_finalize(SqliteFinalize {
            actor_id: "a-1".to_owned(),
            generation: 1,
            txid,
            db_size_pages: 400,
            now_ms: 0,
            segment_first_pgnos: vec![1, 300],
        })
        .await
        .unwrap();
    assert_eq!(head, 2);
    let (h, m) = markers(&store, "a-1", 1..=600).await;
    assert_eq!(h, 2);
    for (i, got) in m.iter().enumerate() {
        let pgno = i as u32 + 1;
        let want = match pgno {
            1..=250 | 300..=400 => Some(2),
            251..=299 => Some(1),
            _ => None,
        };
        assert_eq!(*got, want, "page {pgno}");
    }
    // Growing again does not bring back the pages the shrink cut off.
    store
        .sqlite_commit(commit("a-1", 2, marked([500], 3), 600))
        .await
        .unwrap();
    let (_, m) = markers(&store, "a-1", [420, 450, 500, 600]).await;
    assert_eq!(m, vec![None, None, Some(3), None]);
}

// === the one-request commit ===

/// Requests the store has sent so far, by kind.
fn counts(store: &DynamoStore) -> std::collections::BTreeMap<&'static str, u64> {
    store.request_counts().snapshot().into_iter().collect()
}

fn since(
    before: &std::collections::BTreeMap<&'static str, u64>,
    store: &DynamoStore,
) -> Vec<(&'static str, u64)> {
    counts(store)
        .into_iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then_some((k, d))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_a_read_is_one_transaction() {
    let store = fresh_dynamo().await;
    store.create_actor(actor("a-1", None)).await.unwrap();
    // The runner reads first (at start), as RivetKit does.
    store.sqlite_get_pages("a-1", &[1, 2]).await.unwrap();
    for head in 0..5u64 {
        let before = counts(&store);
        let pages = marked(1..=3 + head as u32, head + 1);
        let got = store
            .sqlite_commit(commit("a-1", head, pages, 3 + head as u32))
            .await
            .unwrap();
        assert_eq!(got, head + 1);
        assert_eq!(since(&before, &store), vec![("TransactWriteItems", 1)]);
    }
    assert_eq!(
        markers(&store, "a-1", 1..=8).await,
        (
            5,
            vec![
                Some(5),
                Some(5),
                Some(5),
                Some(5),
                Some(5),
                Some(5),
                Some(5),
                None
            ]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_view_falls_back_and_keeps_the_rules() {
    // Two stores (two gateway processes) on one table: each one's view goes stale when the
    // other commits, and a commit from a stale view must neither apply twice nor hide a head
    // mismatch.
    let a = fresh_dynamo().await;
    let b = DynamoStore::from_client(client(moto()).await, a.table());
    a.create_actor(actor("a-1", None)).await.unwrap();
    a.sqlite_get_pages("a-1", &[1]).await.unwrap();
    b.sqlite_get_pages("a-1", &[1]).await.unwrap();
    assert_eq!(
        a.sqlite_commit(commit("a-1", 0, marked([1, 2], 1), 2))
            .await
            .unwrap(),
        1
    );
    // b still believes the head is 0.
    let err = b
        .sqlite_commit(commit("a-1", 0, marked([1], 9), 2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::HeadMismatch { .. }), "{err:?}");
    // With the right head, b's commit goes through (the multi-step path refreshes its view).
    assert_eq!(
        b.sqlite_commit(commit("a-1", 1, marked([2], 2), 2))
            .await
            .unwrap(),
        2
    );
    // And a's view is stale now: its next commit still lands once, on the right head.
    assert_eq!(
        a.sqlite_commit(commit("a-1", 2, marked([1], 3), 2))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        markers(&a, "a-1", 1..=3).await,
        (3, vec![Some(3), Some(2), None])
    );
    // A stale generation is refused, not applied.
    let mut stale = commit("a-1", 3, marked([1], 4), 2);
    stale.generation = 0;
    let err = a.sqlite_commit(stale).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleGeneration { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_versions_are_collected_in_batches() {
    let store = fresh_dynamo().await;
    store.create_actor(actor("a-1", None)).await.unwrap();
    store.sqlite_get_pages("a-1", &[1]).await.unwrap();
    for head in 0..40u64 {
        store
            .sqlite_commit(commit("a-1", head, marked([1], head + 1), 1))
            .await
            .unwrap();
    }
    // Collection runs in the background after every 16th commit.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let versions = store.page_item_keys("a-1").await.unwrap().len();
        // 40 commits: collected after the 32nd down to two versions, plus 8 since.
        if versions <= 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{versions} versions of page 1 left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(markers(&store, "a-1", [1]).await, (40, vec![Some(40)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_reads_skip_the_state_item_until_the_generation_changes() {
    let a = fresh_dynamo().await;
    let b = DynamoStore::from_client(client(moto()).await, a.table());
    a.create_actor(actor("a-1", None)).await.unwrap();
    a.kv_put("a-1", 1, vec![(b"k".to_vec(), b"1".to_vec())], 1)
        .await
        .unwrap();
    // This store wrote last: its reads need only the data.
    let before = counts(&a);
    assert_eq!(a.kv_get("a-1", &[b"k".to_vec()]).await.unwrap().len(), 1);
    assert_eq!(since(&before, &a), vec![("BatchGetItem", 1)]);
    let before = counts(&a);
    a.kv_list("a-1", KvQuery::All, false, 10).await.unwrap();
    assert_eq!(since(&before, &a), vec![("Query", 1)]);

    // Another node runs generation 2 and crashes half way through a large put (its intent
    // is published, so the put counts).
    let mut rec = b.get_actor("a-1").await.unwrap().unwrap();
    rec.generation = 2;
    b.update_actor(rec.clone(), rec.revision).await.unwrap();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..128u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 100]))
        .collect();
    b.crash_kv_put_before_apply("a-1", 2, entries, 7)
        .await
        .unwrap();

    // The first node runs the actor again (generation 3): its first read must look for the
    // intent and apply it, not trust what it knew.
    let mut rec = a.get_actor("a-1").await.unwrap().unwrap();
    rec.generation = 3;
    a.update_actor(rec.clone(), rec.revision).await.unwrap();
    let got = a.kv_list("a-1", KvQuery::All, false, 1000).await.unwrap();
    assert_eq!(got.len(), 129);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_actors_first_start_reads_nothing_it_knows_is_empty() {
    let store = fresh_dynamo().await;
    let mut rec = actor("a-1", None);
    rec.generation = 0;
    store.create_actor(rec.clone()).await.unwrap();
    rec.generation = 1;
    store.update_actor(rec.clone(), rec.revision).await.unwrap();

    let before = counts(&store);
    assert!(store
        .kv_list("a-1", KvQuery::All, false, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .kv_get("a-1", &[b"k".to_vec()])
        .await
        .unwrap()
        .is_empty());
    let read = store.sqlite_get_pages("a-1", &[1, 2]).await.unwrap();
    assert_eq!(read.head_txid, 0);
    assert_eq!(since(&before, &store), vec![]);
    // Its first commit is one transaction, and what it wrote reads back.
    let before = counts(&store);
    store
        .sqlite_commit(commit("a-1", 0, marked([1, 2], 1), 2))
        .await
        .unwrap();
    assert_eq!(since(&before, &store), vec![("TransactWriteItems", 1)]);
    assert_eq!(
        markers(&store, "a-1", [1, 2]).await,
        (1, vec![Some(1), Some(1)])
    );
    store
        .kv_put("a-1", 1, vec![(b"k".to_vec(), b"v".to_vec())], 1)
        .await
        .unwrap();
    assert_eq!(
        store.kv_get("a-1", &[b"k".to_vec()]).await.unwrap().len(),
        1
    );

    // Another store (node) knows none of this and reads it all from the table.
    let other = DynamoStore::from_client(client(moto()).await, store.table());
    assert_eq!(
        other.kv_get("a-1", &[b"k".to_vec()]).await.unwrap().len(),
        1
    );
    assert_eq!(
        markers(&other, "a-1", [1, 2]).await,
        (1, vec![Some(1), Some(1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_left_uncollected_are_collected_when_the_actor_is_forgotten() {
    // An actor that commits a few times per wake and then unloads never reaches a batch of
    // 16 commits: forgetting it must still collect what its commits superseded.
    let store = fresh_dynamo().await;
    store.create_actor(actor("a-1", None)).await.unwrap();
    store.sqlite_get_pages("a-1", &[1]).await.unwrap();
    for wake in 0..3u64 {
        for i in 0..5u64 {
            let head = wake * 5 + i;
            store
                .sqlite_commit(commit("a-1", head, marked([1], head + 1), 1))
                .await
                .unwrap();
        }
        store.forget_actor("a-1");
        store.sqlite_get_pages("a-1", &[1]).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let versions = store.page_item_keys("a-1").await.unwrap().len();
        if versions <= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{versions} versions of page 1 left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(markers(&store, "a-1", [1]).await, (15, vec![Some(15)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_a_record_this_store_wrote_needs_no_read_and_keeps_the_revision_rule() {
    let a = fresh_dynamo().await;
    let b = DynamoStore::from_client(client(moto()).await, a.table());
    let mut rec = actor("a-1", Some("k"));
    a.create_actor(rec.clone()).await.unwrap();
    for _ in 0..3 {
        let before = counts(&a);
        rec.generation += 1;
        a.update_actor(rec.clone(), rec.revision).await.unwrap();
        rec.revision += 1;
        assert_eq!(since(&before, &a), vec![("TransactWriteItems", 1)]);
    }
    // Another process writes the record: the first one's expectation is stale, and its update
    // is refused exactly as a read would have refused it.
    let mut theirs = b.get_actor("a-1").await.unwrap().unwrap();
    assert_eq!(theirs, rec);
    theirs.alarm_ts = Some(5);
    b.update_actor(theirs.clone(), theirs.revision)
        .await
        .unwrap();
    rec.generation += 1;
    let err = a.update_actor(rec.clone(), rec.revision).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    // From the stored revision it goes through, and the key and alarm index stay right.
    let mut fresh = a.get_actor("a-1").await.unwrap().unwrap();
    assert_eq!(fresh.alarm_ts, Some(5));
    fresh.alarm_ts = None;
    a.update_actor(fresh.clone(), fresh.revision).await.unwrap();
    let by_key = b
        .get_actor_by_key("ns", "counter", "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_key.revision, fresh.revision + 1);
    assert!(b.due_alarms(i64::MAX, 10).await.unwrap().is_empty());
}
