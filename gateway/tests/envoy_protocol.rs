//! The envoy endpoint (`/envoys/connect`, protocol v8) over real sockets, with a fake runner in
//! the place of RivetKit: the handshake and its refusals, malformed frames, command replay
//! after a reconnect, and the KV and SQLite page storage a runner reaches through its
//! connection. Each test starts its own gateway on `127.0.0.1:0` with a temporary store.
//!
//! Waits are bounded and end on real events (a frame, a close, an API state); where the
//! order of two frames on one connection is what makes a check meaningful, the test says so.
#![allow(clippy::unwrap_used)]

mod common;

use common::{reply, run_actor, Incoming, TestGateway};
use rivulet_wire::codec::encode_to_rivet;
use rivulet_wire::envoy::{
    Command, KvDeleteRangeRequest, KvDeleteRequest, KvGetRequest, KvListPrefixQuery, KvListQuery,
    KvListRangeQuery, KvListRequest, KvPutRequest, KvRequestData, KvResponseData,
    SqliteCommitFinalizeRequest, SqliteCommitFinalizeResponse, SqliteCommitRequest,
    SqliteCommitResponse, SqliteCommitStageBeginRequest, SqliteCommitStageBeginResponse,
    SqliteCommitStageSegmentRequest, SqliteCommitStageSegmentResponse, SqliteDirtyPage,
    SqliteErrorResponse, SqliteGetPagesResponse, ToEnvoy, ToRivet, ToRivetPong,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

// === handshake ===

#[tokio::test]
async fn handshake_sends_init_then_pings_and_a_new_connection_evicts_the_old() {
    let gw = TestGateway::builder()
        .ping_interval_ms(50)
        .ping_timeout_ms(10_000)
        .lost_threshold_ms(12_345)
        .configure(|c| {
            c.envoy.actor_stop_threshold_ms = 54_321;
            c.envoy.max_response_payload_bytes = 7_654_321;
        })
        .start()
        .await;
    // The test answers pings itself, so it controls what the pong says.
    let mut first = gw
        .runner()
        .envoy_key("envoy-handshake")
        .answer_pings(false)
        .connect()
        .await;

    // `connect` already checked that the first frame is the init.
    let init = first.init.clone().unwrap();
    assert_eq!(init.metadata.envoy_lost_threshold, 12_345);
    assert_eq!(init.metadata.actor_stop_threshold, 54_321);
    assert_eq!(init.metadata.max_response_payload_size, 7_654_321);
    let ping = match first.next().await {
        Incoming::Frame(ToEnvoy::ToEnvoyPing(ping)) => ping,
        other => panic!("expected a ping after init, got {other:?}"),
    };
    let now = rivulet_gateway::util::now_ms();
    assert!(
        (now - ping.ts).abs() < 60_000,
        "ping ts {} is not a ms timestamp",
        ping.ts
    );

    // A pong echoing a ts five seconds older makes the measured round trip unmistakable.
    first.send(ToRivet::ToRivetPong(ToRivetPong {
        ts: ping.ts - 5_000,
    }));
    first.barrier().await;
    let envoys = gw.envoys().await;
    assert_eq!(envoys.len(), 1, "{envoys:?}");
    let envoy = &envoys[0];
    assert_eq!(envoy["envoy_key"], "envoy-handshake");
    assert_eq!(envoy["pool_name"], "default");
    assert_eq!(envoy["version"], 1);
    let rtt = envoy["last_rtt"].as_i64().unwrap();
    assert!(
        (5_000..60_000).contains(&rtt),
        "last_rtt {rtt} must reflect the pong"
    );
    assert_eq!(
        envoy["metadata"],
        serde_json::json!({"rivetkit": {"version": "2.3.19"}})
    );
    let (status, names) = gw.api_get("/actors/names?namespace=default").await;
    assert_eq!(status, 200);
    assert!(names["names"]["counter"].is_object(), "{names}");

    // Same key again: the newer connection wins and the older one is told why.
    let mut second = gw.runner().envoy_key("envoy-handshake").connect().await;
    let (code, reason) = first.expect_close().await;
    assert_eq!(code, 1000, "{reason}");
    assert!(reason.starts_with("ws.eviction"), "{reason}");
    second.barrier().await;
    let envoys = gw.envoys().await;
    assert_eq!(envoys.len(), 1, "{envoys:?}");
    assert_eq!(envoys[0]["envoy_key"], "envoy-handshake");
}

#[tokio::test]
async fn unsupported_or_missing_protocol_version_is_refused_with_a_close_frame() {
    let gw = TestGateway::start().await;
    for (version, named) in [
        (Some("7"), "version 7"),
        (Some("9"), "version 9"),
        (None, "protocol_version"),
    ] {
        let mut runner = gw
            .runner()
            .protocol_version(version)
            .without_metadata()
            .connect_raw()
            .await;
        let (code, reason) = runner.expect_close().await;
        assert_eq!(code, 1011, "{reason}");
        assert!(reason.starts_with("ws.invalid_request"), "{reason}");
        assert!(reason.contains(named), "{reason} should name {named}");
    }
    assert!(gw.envoys().await.is_empty());
}

#[tokio::test]
async fn unknown_namespace_is_refused() {
    let gw = TestGateway::start().await;
    let mut runner = gw
        .runner()
        .namespace("no-such-namespace")
        .without_metadata()
        .connect_raw()
        .await;
    let (code, reason) = runner.expect_close().await;
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.starts_with("namespace.not_found"), "{reason}");
    assert!(gw.envoys().await.is_empty());
}

#[tokio::test]
async fn wrong_or_missing_token_is_refused_when_auth_is_on() {
    let gw = TestGateway::builder().auth_token("s3cret").start().await;
    for runner in [gw.runner().token("wrong"), gw.runner().without_token()] {
        let mut runner = runner.without_metadata().connect_raw().await;
        let (code, reason) = runner.expect_close().await;
        assert_eq!(code, 1011, "{reason}");
        assert!(reason.starts_with("ws.unauthorized"), "{reason}");
    }
    assert!(gw.envoys().await.is_empty());

    let runner = gw.runner().connect().await;
    assert!(runner.init.is_some());
}

/// Actor traffic is public as on the Rivet engine, but a token a client presents must be the
/// gateway's: a wrong `@token` is refused before anything is looked up.
#[tokio::test]
async fn a_wrong_token_on_actor_traffic_is_refused() {
    let gw = TestGateway::builder().auth_token("s3cret").start().await;
    let wrong = reply(gw.request("GET", "/gateway/nosuchactor@wrong/x", b"")).await;
    assert_eq!(wrong.status, 403);
    assert_eq!(wrong.json()["code"], "forbidden");
    let wrong_query = reply(gw.request(
        "GET",
        "/gateway/counter/x?rvt-namespace=default&rvt-method=get&rvt-key=k&rvt-token=nope",
        b"",
    ))
    .await;
    assert_eq!(wrong_query.status, 403, "{:?}", wrong_query.json());
    for path in ["/gateway/nosuchactor@s3cret/x", "/gateway/nosuchactor/x"] {
        let found = reply(gw.request("GET", path, b"")).await;
        assert_eq!(found.status, 404, "{path}: {:?}", found.json());
    }
}

// === malformed frames ===

#[tokio::test]
async fn malformed_frames_close_the_connection_and_the_gateway_keeps_serving() {
    let gw = TestGateway::start().await;
    let pong = encode_to_rivet(&ToRivet::ToRivetPong(ToRivetPong { ts: 1 }));
    let cases: Vec<(&str, Message)> = vec![
        (
            "truncated frame",
            Message::Binary(pong[..pong.len() - 1].to_vec().into()),
        ),
        (
            "unknown union tag",
            Message::Binary(vec![0x7f, 0, 0].into()),
        ),
        (
            "trailing bytes",
            Message::Binary([pong.clone(), vec![0]].concat().into()),
        ),
        ("text frame", Message::Text("{\"hello\":1}".into())),
    ];
    for (what, frame) in cases {
        let mut runner = gw.runner().connect().await;
        runner.send_raw(frame);
        let (code, reason) = runner.expect_close().await;
        assert_eq!(code, 1011, "{what}: {reason}");
        assert!(reason.starts_with("ws.invalid_packet"), "{what}: {reason}");
    }

    // A well-behaved runner still connects and runs an actor end to end.
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "after-garbage").await;
    let req = gw.request(
        "POST",
        &format!("/gateway/{}/action/ping", started.actor_id),
        b"",
    );
    let (id, _) = runner.expect_http().await;
    runner.respond(&id, 200, b"pong");
    let reply = common::reply(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"pong");
}

// === command replay ===

#[tokio::test]
async fn unacknowledged_commands_are_replayed_right_after_init_on_reconnect() {
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().envoy_key("envoy-replay").connect().await;
    let actor_id = gw.create_actor("counter", "replay").await;
    let req = gw.request("POST", &format!("/gateway/{actor_id}/action/x"), b"hi");
    let first = runner.expect_start().await;
    assert_eq!(first.actor_id, actor_id);
    // The runner dies before acknowledging the start.
    runner.disconnect().await;

    let mut runner = gw.runner().envoy_key("envoy-replay").connect().await;
    // Strictly the second frame: the gateway writes replayed commands before any ping.
    let replayed = match runner.next().await {
        Incoming::Frame(ToEnvoy::ToEnvoyCommands(cmds)) => cmds,
        other => panic!("expected the replayed start right after init, got {other:?}"),
    };
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0].checkpoint, first.checkpoint);
    match &replayed[0].inner {
        Command::CommandStartActor(start) => assert_eq!(start.config, first.start.config),
        other @ Command::CommandStopActor(_) => panic!("expected the start again, got {other:?}"),
    }

    // The in-flight request follows the runner to its new connection.
    runner.ack(&first.checkpoint);
    runner.running(&actor_id, first.generation);
    let (id, start) = runner.expect_http().await;
    assert_eq!(start.actor_generation, Some(first.generation));
    runner.respond(&id, 200, b"after replay");
    let reply = common::reply(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"after replay");

    // Acknowledged now: another reconnect replays nothing. The barrier's answer comes after
    // anything replayed, because replay is written right after init.
    runner.disconnect().await;
    let mut runner = gw.runner().envoy_key("envoy-replay").connect().await;
    let before = runner.frames_until_barrier().await;
    assert!(
        !before
            .iter()
            .any(|m| matches!(m, ToEnvoy::ToEnvoyCommands(_))),
        "acknowledged commands were replayed: {before:?}"
    );
}

#[tokio::test]
async fn commands_of_an_actor_lost_before_its_ack_are_not_replayed_after_it_moved() {
    let gw = TestGateway::builder().lost_threshold_ms(300).start().await;
    let mut stale = gw.runner().envoy_key("envoy-zombie").connect().await;
    let actor_id = gw.create_actor("counter", "zombie").await;
    gw.wake(&actor_id).await;
    let first = stale.expect_start().await; // never acknowledged
    stale.disconnect().await;
    let actor = gw
        .wait_actor(&actor_id, "asleep after its runner was lost", |a| {
            !a["sleep_ts"].is_null()
        })
        .await;
    assert!(actor.get("error").is_some(), "{actor}");

    // The actor moves on: generation 2 runs on another runner.
    let mut other = gw.runner().connect().await;
    gw.wake(&actor_id).await;
    let moved = other.accept_start().await;
    assert_eq!(moved.generation, first.generation + 1);

    // The lost runner process comes back with its old key. Replaying its unacknowledged
    // generation-1 start now would run a second copy of an actor that lives elsewhere.
    let mut back = gw.runner().envoy_key("envoy-zombie").connect().await;
    let replayed = back.frames_until_barrier().await;
    let stale_commands: Vec<_> = replayed
        .iter()
        .filter(|m| matches!(m, ToEnvoy::ToEnvoyCommands(_)))
        .collect();
    assert!(
        stale_commands.is_empty(),
        "a runner that was lost got the stale commands of an actor now running elsewhere \
         replayed: {stale_commands:?}"
    );
}

// === KV ===

fn k(bytes: &[u8]) -> vbare::Bytes {
    bytes.to_vec().into()
}

fn put(keys: &[&[u8]], values: &[&[u8]]) -> KvRequestData {
    KvRequestData::KvPutRequest(KvPutRequest {
        keys: keys.iter().map(|b| k(b)).collect(),
        values: values.iter().map(|b| k(b)).collect(),
    })
}

fn get(keys: &[&[u8]]) -> KvRequestData {
    KvRequestData::KvGetRequest(KvGetRequest {
        keys: keys.iter().map(|b| k(b)).collect(),
    })
}

fn list(query: KvListQuery, reverse: Option<bool>, limit: Option<u64>) -> KvRequestData {
    KvRequestData::KvListRequest(KvListRequest {
        query,
        reverse,
        limit,
    })
}

fn range(start: &[u8], end: &[u8], exclusive: bool) -> KvListQuery {
    KvListQuery::KvListRangeQuery(KvListRangeQuery {
        start: k(start),
        end: k(end),
        exclusive,
    })
}

fn prefix(p: &[u8]) -> KvListQuery {
    KvListQuery::KvListPrefixQuery(KvListPrefixQuery { key: k(p) })
}

/// The (key, value) pairs of a get or list response; fails on anything else.
fn entries(resp: KvResponseData) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (keys, values, metadata) = match resp {
        KvResponseData::KvGetResponse(r) => (r.keys, r.values, r.metadata),
        KvResponseData::KvListResponse(r) => (r.keys, r.values, r.metadata),
        other => panic!("expected entries, got {other:?}"),
    };
    assert_eq!(keys.len(), values.len());
    assert_eq!(keys.len(), metadata.len());
    keys.into_iter()
        .zip(values)
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn keys_of(resp: KvResponseData) -> Vec<Vec<u8>> {
    entries(resp).into_iter().map(|(k, _)| k).collect()
}

fn assert_kv_error(resp: KvResponseData, what: &str) {
    match resp {
        KvResponseData::KvErrorResponse(e) => assert!(!e.message.is_empty(), "{what}"),
        other => panic!("{what}: expected KvErrorResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn kv_round_trips_through_the_runner_connection() {
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let a = run_actor(&gw, &mut runner, "kv").await.actor_id;
    let (ka, kb, kc, kq): (&[u8], &[u8], &[u8], &[u8]) =
        (&[4, b'a'], &[4, b'b'], &[4, b'c'], &[5, 1]);

    let resp = runner
        .kv(&a, put(&[ka, kb, kc, kq], &[b"va", b"vb", b"vc", b"vq"]))
        .await;
    assert!(matches!(resp, KvResponseData::KvPutResponse), "{resp:?}");

    // Get returns only the keys that exist, with metadata.
    let got = entries(runner.kv(&a, get(&[ka, &[4, b'z'], kq])).await);
    assert_eq!(
        got,
        vec![(ka.to_vec(), b"va".to_vec()), (kq.to_vec(), b"vq".to_vec())]
    );

    let prefixed = keys_of(runner.kv(&a, list(prefix(&[4]), None, None)).await);
    assert_eq!(prefixed, vec![ka.to_vec(), kb.to_vec(), kc.to_vec()]);
    let exclusive = keys_of(runner.kv(&a, list(range(ka, kc, true), None, None)).await);
    assert_eq!(exclusive, vec![ka.to_vec(), kb.to_vec()]);
    let inclusive = keys_of(runner.kv(&a, list(range(ka, kc, false), None, None)).await);
    assert_eq!(inclusive, vec![ka.to_vec(), kb.to_vec(), kc.to_vec()]);
    let reversed = keys_of(
        runner
            .kv(&a, list(KvListQuery::KvListAllQuery, Some(true), None))
            .await,
    );
    assert_eq!(
        reversed,
        vec![kq.to_vec(), kc.to_vec(), kb.to_vec(), ka.to_vec()]
    );
    let limited = keys_of(
        runner
            .kv(&a, list(KvListQuery::KvListAllQuery, None, Some(2)))
            .await,
    );
    assert_eq!(limited, vec![ka.to_vec(), kb.to_vec()]);
    let last_two = keys_of(runner.kv(&a, list(prefix(&[4]), Some(true), Some(2))).await);
    assert_eq!(last_two, vec![kc.to_vec(), kb.to_vec()]);

    let resp = runner
        .kv(
            &a,
            KvRequestData::KvDeleteRequest(KvDeleteRequest { keys: vec![k(kb)] }),
        )
        .await;
    assert!(matches!(resp, KvResponseData::KvDeleteResponse), "{resp:?}");
    assert!(entries(runner.kv(&a, get(&[kb])).await).is_empty());

    // Delete range is end-exclusive: [4,'a'] goes, [4,'c'] stays.
    let resp = runner
        .kv(
            &a,
            KvRequestData::KvDeleteRangeRequest(KvDeleteRangeRequest {
                start: k(ka),
                end: k(kc),
            }),
        )
        .await;
    assert!(matches!(resp, KvResponseData::KvDeleteResponse), "{resp:?}");
    let left = keys_of(
        runner
            .kv(&a, list(KvListQuery::KvListAllQuery, None, None))
            .await,
    );
    assert_eq!(left, vec![kc.to_vec(), kq.to_vec()]);

    let resp = runner.kv(&a, KvRequestData::KvDropRequest).await;
    assert!(matches!(resp, KvResponseData::KvDropResponse), "{resp:?}");
    let left = runner
        .kv(&a, list(KvListQuery::KvListAllQuery, None, None))
        .await;
    assert!(entries(left).is_empty());
}

#[tokio::test]
async fn kv_limits_are_enforced_and_refused_requests_change_nothing() {
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let a = run_actor(&gw, &mut runner, "kv-limits").await.actor_id;
    let sentinel: &[u8] = &[1, 1];
    let resp = runner.kv(&a, put(&[sentinel], &[b"before"])).await;
    assert!(matches!(resp, KvResponseData::KvPutResponse), "{resp:?}");

    // At the value limit is fine; one byte more is not.
    let at_limit = vec![7u8; 128 * 1024];
    let resp = runner.kv(&a, put(&[&[2, 1]], &[&at_limit])).await;
    assert!(matches!(resp, KvResponseData::KvPutResponse), "{resp:?}");
    let too_big = vec![8u8; 128 * 1024 + 1];
    let resp = runner
        .kv(&a, put(&[sentinel, &[2, 2]], &[b"after", &too_big]))
        .await;
    assert_kv_error(resp, "value over 128 KiB");

    let long_key = vec![3u8; 2049];
    let resp = runner
        .kv(&a, put(&[sentinel, &long_key], &[b"after", b"x"]))
        .await;
    assert_kv_error(resp, "key over 2048 bytes");

    let many: Vec<Vec<u8>> = (0..129u8).map(|i| vec![6, i]).collect();
    let many_keys: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
    let many_values: Vec<&[u8]> = many.iter().map(|_| b"v".as_slice()).collect();
    let resp = runner.kv(&a, put(&many_keys, &many_values)).await;
    assert_kv_error(resp, "129 keys");

    // Eight values at the per-value limit: 1 MiB in all, over the 976 KiB payload limit.
    let big: Vec<Vec<u8>> = (0..8u8).map(|i| vec![9, i]).collect();
    let big_keys: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
    let big_values: Vec<&[u8]> = big.iter().map(|_| at_limit.as_slice()).collect();
    let resp = runner.kv(&a, put(&big_keys, &big_values)).await;
    assert_kv_error(resp, "put payload over 976 KiB");

    // Nothing of the refused puts landed, and the sentinel kept its value.
    let got = entries(runner.kv(&a, get(&[sentinel])).await);
    assert_eq!(got, vec![(sentinel.to_vec(), b"before".to_vec())]);
    let all = keys_of(
        runner
            .kv(&a, list(KvListQuery::KvListAllQuery, None, None))
            .await,
    );
    assert_eq!(all, vec![sentinel.to_vec(), vec![2, 1]]);
}

#[tokio::test]
async fn kv_for_an_actor_not_running_on_this_runner_is_refused() {
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let running = run_actor(&gw, &mut runner, "kv-mine").await;
    let resp = runner.kv(&running.actor_id, put(&[&[1]], &[b"mine"])).await;
    assert!(matches!(resp, KvResponseData::KvPutResponse), "{resp:?}");

    // An actor that exists but sleeps, and an id that does not exist.
    let asleep = gw.create_actor("counter", "kv-asleep").await;
    assert_kv_error(runner.kv(&asleep, get(&[&[1]])).await, "sleeping actor");
    assert_kv_error(
        runner.kv(&asleep, put(&[&[1]], &[b"theirs"])).await,
        "put to a sleeping actor",
    );
    assert_kv_error(
        runner.kv("no-such-actor", get(&[&[1]])).await,
        "unknown actor",
    );

    // Once the runner's actor went to sleep, its KV is out of reach from here too.
    runner
        .sleep_actor(&running.actor_id, running.generation)
        .await;
    gw.wait_actor(&running.actor_id, "asleep", |a| !a["sleep_ts"].is_null())
        .await;
    assert_kv_error(
        runner.kv(&running.actor_id, put(&[&[1]], &[b"late"])).await,
        "put after the actor stopped",
    );

    // The other actor's KV stayed untouched; read it as its next generation would.
    gw.wake(&running.actor_id).await;
    let again = runner.accept_start().await;
    assert_eq!(again.generation, running.generation + 1);
    let got = entries(runner.kv(&running.actor_id, get(&[&[1]])).await);
    assert_eq!(got, vec![(vec![1], b"mine".to_vec())]);
}

// === SQLite pages ===

const PAGE: usize = 4096;

fn page(fill: u8) -> Vec<u8> {
    vec![fill; PAGE]
}

fn dirty(pgno: u32, fill: u8) -> SqliteDirtyPage {
    SqliteDirtyPage {
        pgno,
        bytes: page(fill).into(),
    }
}

fn commit_req(
    actor_id: &str,
    pages: Vec<SqliteDirtyPage>,
    db_size_pages: u32,
    generation: Option<u64>,
    head: Option<u64>,
) -> SqliteCommitRequest {
    SqliteCommitRequest {
        actor_id: actor_id.to_string().into(),
        dirty_pages: pages,
        db_size_pages,
        now_ms: rivulet_gateway::util::now_ms(),
        expected_generation: generation,
        expected_head_txid: head,
    }
}

/// Pages read back: each page's fill byte (`None` when absent) and the head.
fn read(resp: SqliteGetPagesResponse) -> (Vec<Option<u8>>, Option<u64>) {
    match resp {
        SqliteGetPagesResponse::SqliteGetPagesOk(ok) => (
            ok.pages
                .iter()
                .map(|p| {
                    p.bytes.as_ref().map(|b| {
                        assert_eq!(b.len(), PAGE);
                        assert!(b.iter().all(|x| *x == b[0]), "page {} is torn", p.pgno);
                        b[0]
                    })
                })
                .collect(),
            ok.head_txid,
        ),
        SqliteGetPagesResponse::SqliteErrorResponse(e) => panic!("get pages failed: {e:?}"),
    }
}

fn committed(resp: SqliteCommitResponse) -> Option<u64> {
    match resp {
        SqliteCommitResponse::SqliteCommitOk(ok) => ok.head_txid,
        SqliteCommitResponse::SqliteErrorResponse(e) => panic!("commit failed: {e:?}"),
    }
}

fn commit_error(resp: SqliteCommitResponse, what: &str) -> SqliteErrorResponse {
    match resp {
        SqliteCommitResponse::SqliteErrorResponse(e) => e,
        SqliteCommitResponse::SqliteCommitOk(ok) => {
            panic!("{what}: expected an error, the commit went through: {ok:?}")
        }
    }
}

fn stage_txid(resp: SqliteCommitStageBeginResponse) -> u64 {
    match resp {
        SqliteCommitStageBeginResponse::SqliteCommitStageBeginOk(ok) => ok.txid,
        SqliteCommitStageBeginResponse::SqliteErrorResponse(e) => panic!("stage begin: {e:?}"),
    }
}

fn segment(
    actor_id: &str,
    generation: u64,
    txid: u64,
    first_pgno: u32,
    pages: Vec<SqliteDirtyPage>,
) -> SqliteCommitStageSegmentRequest {
    SqliteCommitStageSegmentRequest {
        actor_id: actor_id.to_string().into(),
        expected_generation: Some(generation),
        txid,
        first_pgno,
        dirty_pages: pages,
    }
}

fn staged_bytes(resp: SqliteCommitStageSegmentResponse) -> u64 {
    match resp {
        SqliteCommitStageSegmentResponse::SqliteCommitStageSegmentOk(ok) => ok.staged_bytes,
        SqliteCommitStageSegmentResponse::SqliteErrorResponse(e) => panic!("stage segment: {e:?}"),
    }
}

fn finalize_req(
    actor_id: &str,
    generation: u64,
    txid: u64,
    db_size_pages: u32,
    segments: Vec<u32>,
) -> SqliteCommitFinalizeRequest {
    SqliteCommitFinalizeRequest {
        actor_id: actor_id.to_string().into(),
        expected_generation: Some(generation),
        txid,
        new_db_size_pages: db_size_pages,
        now_ms: rivulet_gateway::util::now_ms(),
        segment_first_pgnos: segments,
    }
}

#[tokio::test]
async fn sqlite_pages_commit_fence_and_stage_through_the_runner_connection() {
    let gw = TestGateway::start().await;
    let mut runner = gw.runner().connect().await;
    let started = run_actor(&gw, &mut runner, "sqlite").await;
    let a = started.actor_id.as_str();
    let g = u64::from(started.generation);

    // A fresh actor has no database yet; the engine says so with an error RivetKit expects
    // (docs/observed-envoy.md §12), and the first commit then starts from head 0.
    match runner.get_pages(a, &[1, 2, 3], Some(g)).await {
        SqliteGetPagesResponse::SqliteErrorResponse(e) => {
            assert_eq!(
                (e.group.as_str(), e.code.as_str()),
                ("depot", "database_not_found")
            );
        }
        ok @ SqliteGetPagesResponse::SqliteGetPagesOk(_) => {
            panic!("a fresh actor has no database, got {ok:?}")
        }
    }

    let head = committed(
        runner
            .commit(commit_req(
                a,
                vec![dirty(1, 0x11), dirty(2, 0x22)],
                2,
                Some(g),
                Some(0),
            ))
            .await,
    );
    assert_eq!(head, Some(1));
    let expect_v1 = (vec![Some(0x11), Some(0x22), None], Some(1));
    assert_eq!(
        read(runner.get_pages(a, &[1, 2, 3], Some(g)).await),
        expect_v1
    );

    // A head that is not the current one is refused and changes nothing.
    let e = commit_error(
        runner
            .commit(commit_req(a, vec![dirty(1, 0x99)], 2, Some(g), Some(0)))
            .await,
        "stale head",
    );
    assert_eq!(e.code.as_str(), "head_txid_mismatch", "{e:?}");
    assert_eq!(
        read(runner.get_pages(a, &[1, 2, 3], Some(g)).await),
        expect_v1
    );

    // Without expectedGeneration nothing can be fenced, so nothing is written.
    commit_error(
        runner
            .commit(commit_req(a, vec![dirty(1, 0x98)], 2, None, Some(1)))
            .await,
        "missing expectedGeneration",
    );
    assert_eq!(
        read(runner.get_pages(a, &[1, 2, 3], Some(g)).await),
        expect_v1
    );

    // One page over the single-shot cap (320 pages of 4 KiB) must be staged instead.
    let too_many: Vec<SqliteDirtyPage> = (1..=321).map(|pgno| dirty(pgno, 0x55)).collect();
    let e = commit_error(
        runner
            .commit(commit_req(a, too_many, 321, Some(g), Some(1)))
            .await,
        "commit over 1,310,720 bytes",
    );
    assert_eq!(
        (e.group.as_str(), e.code.as_str()),
        ("depot", "commit_too_large")
    );
    assert_eq!(
        read(runner.get_pages(a, &[1, 2, 3], Some(g)).await),
        expect_v1
    );

    // Staged commit: invisible until finalize, then published at once.
    let txid = stage_txid(
        runner
            .stage_begin(SqliteCommitStageBeginRequest {
                actor_id: a.to_string().into(),
                expected_generation: Some(g),
                expected_head_txid: Some(1),
            })
            .await,
    );
    assert_eq!(txid, 2);
    let bytes = staged_bytes(
        runner
            .stage_segment(segment(a, g, txid, 1, vec![dirty(1, 0x31), dirty(2, 0x32)]))
            .await,
    );
    assert_eq!(bytes, 2 * PAGE as u64);
    let bytes = staged_bytes(
        runner
            .stage_segment(segment(a, g, txid, 3, vec![dirty(3, 0x33)]))
            .await,
    );
    assert_eq!(bytes, 3 * PAGE as u64);
    assert_eq!(
        read(runner.get_pages(a, &[1, 2, 3], Some(g)).await),
        expect_v1
    );
    match runner
        .finalize(finalize_req(a, g, txid, 3, vec![1, 3]))
        .await
    {
        SqliteCommitFinalizeResponse::SqliteCommitFinalizeOk(ok) => {
            assert_eq!(ok.head_txid, Some(2));
        }
        SqliteCommitFinalizeResponse::SqliteErrorResponse(e) => panic!("finalize: {e:?}"),
    }
    let expect_v2 = (vec![Some(0x31), Some(0x32), Some(0x33)], Some(2));
    assert_eq!(
        read(runner.get_pages(a, &[1, 2, 3], Some(g)).await),
        expect_v2
    );

    // Restart the actor at the next generation; the old generation is fenced out.
    runner.sleep_actor(a, started.generation).await;
    gw.wait_actor(a, "asleep", |v| !v["sleep_ts"].is_null())
        .await;
    gw.wake(a).await;
    let again = runner.accept_start().await;
    let g2 = u64::from(again.generation);
    assert_eq!(g2, g + 1);
    let e = commit_error(
        runner
            .commit(commit_req(a, vec![dirty(1, 0x77)], 3, Some(g), Some(2)))
            .await,
        "stale generation",
    );
    assert_eq!(e.code.as_str(), "generation_mismatch", "{e:?}");
    match runner.get_pages(a, &[1], Some(g)).await {
        SqliteGetPagesResponse::SqliteErrorResponse(e) => {
            assert_eq!(e.code.as_str(), "generation_mismatch", "{e:?}");
        }
        ok @ SqliteGetPagesResponse::SqliteGetPagesOk(_) => {
            panic!("a read fenced with the old generation must fail, got {ok:?}")
        }
    }
    assert_eq!(
        read(runner.get_pages(a, &[1, 2, 3], Some(g2)).await),
        expect_v2
    );
}

#[tokio::test]
async fn sqlite_stage_interrupted_by_a_lost_runner_leaves_no_trace() {
    let gw = TestGateway::builder().lost_threshold_ms(300).start().await;
    let mut first = gw.runner().connect().await;
    let started = run_actor(&gw, &mut first, "sqlite-crash").await;
    let a = started.actor_id.clone();
    let g = u64::from(started.generation);
    let head = committed(
        first
            .commit(commit_req(&a, vec![dirty(1, 0x11)], 1, Some(g), Some(0)))
            .await,
    );
    assert_eq!(head, Some(1));
    let txid = stage_txid(
        first
            .stage_begin(SqliteCommitStageBeginRequest {
                actor_id: a.clone().into(),
                expected_generation: Some(g),
                expected_head_txid: Some(1),
            })
            .await,
    );
    staged_bytes(
        first
            .stage_segment(segment(
                &a,
                g,
                txid,
                1,
                vec![dirty(1, 0xee), dirty(2, 0xee)],
            ))
            .await,
    );
    // The runner process dies mid-transaction and never comes back.
    first.disconnect().await;
    let actor = gw
        .wait_actor(&a, "asleep after its runner was lost", |v| {
            !v["sleep_ts"].is_null()
        })
        .await;
    assert!(actor.get("error").is_some(), "{actor}");

    let mut second = gw.runner().connect().await;
    gw.wake(&a).await;
    let again = second.accept_start().await;
    let g2 = u64::from(again.generation);
    assert_eq!(g2, g + 1);
    assert_eq!(
        read(second.get_pages(&a, &[1, 2], Some(g2)).await),
        (vec![Some(0x11), None], Some(1))
    );
    // The abandoned stage cannot be published by the new generation either.
    match second
        .finalize(finalize_req(&a, g2, txid, 2, vec![1]))
        .await
    {
        SqliteCommitFinalizeResponse::SqliteErrorResponse(_) => {}
        ok @ SqliteCommitFinalizeResponse::SqliteCommitFinalizeOk(_) => {
            panic!("finalizing another generation's stage must fail, got {ok:?}")
        }
    }
    assert_eq!(
        read(second.get_pages(&a, &[1, 2], Some(g2)).await),
        (vec![Some(0x11), None], Some(1))
    );
    let head = committed(
        second
            .commit(commit_req(&a, vec![dirty(2, 0x22)], 2, Some(g2), Some(1)))
            .await,
    );
    assert_eq!(head, Some(2));
    assert_eq!(
        read(second.get_pages(&a, &[1, 2], Some(g2)).await),
        (vec![Some(0x11), Some(0x22)], Some(2))
    );
}

/// Connections that send no request head in time are closed (slowloris), while a runner's
/// upgraded WebSocket that stays quiet longer than that is not.
#[tokio::test]
async fn connections_that_send_no_request_head_in_time_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::builder()
        .configure(|c| c.gateway.request_head_timeout_ms = 300)
        .start()
        .await;
    let runner = gw.runner().connect().await;
    let addr = gw
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut idle = Vec::new();
    for i in 0..50 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            // A trickle: part of a head, never finished.
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    for mut s in idle {
        let mut buf = [0u8; 512];
        // Closed by the gateway: end of stream (possibly after a 408), well before 10 s.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "an idle connection was left open");
    }
    // A kept-alive connection that finished a request and then says nothing is closed too.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match kept.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle kept-alive connection was left open"
    );
    // The runner's socket sat quiet through all of that and is still served.
    assert_eq!(gw.envoys().await.len(), 1);
    drop(runner);
}

/// A malformed chunked body is a client error that says so, not a size complaint.
#[tokio::test]
async fn a_malformed_chunked_body_is_a_bad_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start().await;
    let addr = gw
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /gateway/abc/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_end(&mut reply),
    )
    .await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("\"code\":\"bad_request\""), "{reply}");
    assert!(!reply.contains("larger than"), "{reply}");
}

/// A name no runner registered is refused at once with a named error on every way of creating
/// an actor, and nothing is created or started; a namespace with no registered names yet
/// still accepts any name (its runner may not have connected).
#[tokio::test]
async fn an_unregistered_actor_name_is_refused_and_creates_nothing() {
    let gw = TestGateway::start().await;
    // No runner has registered anything yet: the actor is created and waits for one.
    let early = gw.create_actor("chat", "early").await;
    let mut runner = gw.runner().connect().await; // registers `counter` only
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, names) = gw.api_get("/actors/names?namespace=default").await;
        if names["names"].get("counter").is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "names never stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let spec = json!({"name": "countr", "key": "k", "runner_name_selector": "default"});
    let (status, body) = gw.api_post("/actors?namespace=default", spec.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["group"], "actor");
    assert_eq!(body["code"], "name_not_registered");
    assert_eq!(body["metadata"]["registered"], json!(["counter"]));
    assert!(
        body["message"].as_str().unwrap().contains("countr"),
        "{body}"
    );

    let resp = reqwest::Client::new()
        .put(gw.url("/actors?namespace=default"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "name_not_registered");

    let resp = reqwest::Client::new()
        .post(gw.url(
            "/gateway/countr/action/increment?rvt-namespace=default&rvt-method=getOrCreate&rvt-runner=default&rvt-key=k",
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "name_not_registered", "{body}");

    // Nothing was created, and the runner was asked to start nothing for it.
    let (_, listed) = gw.api_get("/actors?namespace=default&name=countr").await;
    assert_eq!(listed["actors"], json!([]), "{listed}");
    let (_, listed) = gw.api_get("/actors?namespace=default&name=chat").await;
    assert_eq!(listed["actors"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["actors"][0]["actor_id"], early.as_str());

    // A registered name is created as before and started on the runner.
    let id = gw.create_actor("counter", "k").await;
    gw.wake(&id).await;
    let started = runner.expect_start().await;
    assert_eq!(started.actor_id, id);
}
