//! KV and SQLite page requests from runners. Each actor gets a worker task with a bounded
//! queue, so one actor's requests apply strictly in order (as the runner expects) while
//! different actors proceed in parallel; a full queue is answered at once with an error.
//!
//! Fencing: KV requests carry no generation, so the worker uses the generation this runner
//! was given for the actor and refuses actors not started here. SQLite requests carry
//! `expectedGeneration`, which must be present. The store checks both against the actor
//! record in the same atomic step as the write.

use std::sync::Arc;

use rivulet_wire::envoy::{
    KvErrorResponse, KvGetResponse, KvListQuery, KvListResponse, KvMetadata, KvRequestData,
    KvResponseData, SqliteCommitFinalizeOk, SqliteCommitFinalizeResponse, SqliteCommitOk,
    SqliteCommitResponse, SqliteCommitStageBeginOk, SqliteCommitStageBeginResponse,
    SqliteCommitStageSegmentOk, SqliteCommitStageSegmentResponse, SqliteErrorResponse,
    SqliteExecResponse, SqliteExecuteBatchResponse, SqliteExecuteResponse, SqliteFetchedPage,
    SqliteGetPagesOk, SqliteGetPagesResponse, ToEnvoy, ToEnvoyKvResponse,
    ToEnvoySqliteCommitFinalizeResponse, ToEnvoySqliteCommitResponse,
    ToEnvoySqliteCommitStageBeginResponse, ToEnvoySqliteCommitStageSegmentResponse,
    ToEnvoySqliteExecResponse, ToEnvoySqliteExecuteBatchResponse, ToEnvoySqliteExecuteResponse,
    ToEnvoySqliteGetPagesResponse, ToRivetKvRequest, ToRivetSqliteCommitFinalizeRequest,
    ToRivetSqliteCommitRequest, ToRivetSqliteCommitStageBeginRequest,
    ToRivetSqliteCommitStageSegmentRequest, ToRivetSqliteGetPagesRequest,
};
use tokio::sync::mpsc;

use super::registry::EnvoyHandle;
use crate::state::Gateway;
use crate::store::{KvQuery, SqliteCommit, SqliteFinalize, SqliteSegment, StoreError};
use crate::util::now_ms;

/// Requests queued per actor before new ones are refused.
const WORKER_QUEUE: usize = 128;
/// How long a storage worker waits for its actor's next request before it ends.
const WORKER_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest key, in bytes.
pub const KV_MAX_KEY_BYTES: usize = 2048;
/// Largest value, in bytes.
pub const KV_MAX_VALUE_BYTES: usize = 128 * 1024;
/// Most keys in one get, put or delete.
pub const KV_MAX_KEYS: usize = 128;
/// Largest total of keys and values in one put, in bytes.
pub const KV_MAX_PUT_PAYLOAD_BYTES: usize = 976 * 1024;
/// List limit when the runner gives none.
pub const KV_DEFAULT_LIST_LIMIT: usize = 16_384;
/// Largest total of dirty page bytes in one single-shot commit; bigger ones must be staged.
pub const SQLITE_MAX_COMMIT_BYTES: usize = 1_310_720;

/// One request for an actor's storage.
pub enum StorageRequest {
    /// KV operation.
    Kv(ToRivetKvRequest),
    /// SQLite page read.
    GetPages(ToRivetSqliteGetPagesRequest),
    /// SQLite single-shot commit.
    Commit(ToRivetSqliteCommitRequest),
    /// SQLite staged commit: begin.
    StageBegin(ToRivetSqliteCommitStageBeginRequest),
    /// SQLite staged commit: one segment.
    StageSegment(ToRivetSqliteCommitStageSegmentRequest),
    /// SQLite staged commit: publish.
    Finalize(ToRivetSqliteCommitFinalizeRequest),
}

/// Starts the worker for one actor on one connection; it ends when the sender is dropped.
pub fn spawn_worker(
    gw: Gateway,
    envoy: Arc<EnvoyHandle>,
    actor_id: String,
) -> mpsc::Sender<StorageRequest> {
    let (tx, mut rx) = mpsc::channel(WORKER_QUEUE);
    let tasks = gw.tasks.clone();
    tasks.spawn(async move {
        // An idle worker ends, so a runner that served many actors does not keep a task per
        // actor it ever ran; the connection starts a new one on the actor's next request.
        while let Ok(Some(req)) = tokio::time::timeout(WORKER_IDLE, rx.recv()).await {
            let reply = handle(&gw, &envoy, &actor_id, req).await;
            envoy.send(reply);
        }
    });
    tx
}

async fn handle(gw: &Gateway, envoy: &EnvoyHandle, actor_id: &str, req: StorageRequest) -> ToEnvoy {
    match req {
        StorageRequest::Kv(req) => {
            let generation = match envoy.generation_of(actor_id) {
                Some(g) => Some(g),
                None => adopted_generation(gw, envoy, actor_id).await,
            };
            let data = match generation {
                Some(generation) => kv(gw, actor_id, generation, req.data)
                    .await
                    .unwrap_or_else(kv_error),
                None => kv_error(format!(
                    "actor {actor_id} is not running on this runner; its KV cannot be used here"
                )),
            };
            ToEnvoy::ToEnvoyKvResponse(ToEnvoyKvResponse {
                request_id: req.request_id,
                data,
            })
        }
        StorageRequest::GetPages(req) => {
            let data = get_pages(gw, envoy, actor_id, &req)
                .await
                .unwrap_or_else(SqliteGetPagesResponse::SqliteErrorResponse);
            ToEnvoy::ToEnvoySqliteGetPagesResponse(ToEnvoySqliteGetPagesResponse {
                request_id: req.request_id,
                data,
            })
        }
        StorageRequest::Commit(req) => {
            let d = &req.data;
            let result = async {
                let generation = fence(d.expected_generation)?;
                let size: usize = d.dirty_pages.iter().map(|p| p.bytes.len()).sum();
                if size > SQLITE_MAX_COMMIT_BYTES {
                    return Err(sqlite_err(
                        "commit_too_large",
                        format!("commit has {size} bytes of dirty pages, the limit is {SQLITE_MAX_COMMIT_BYTES}; use a staged commit"),
                    ));
                }
                let head = gw
                    .store
                    .sqlite_commit(SqliteCommit {
                        actor_id: actor_id.to_string(),
                        generation,
                        expected_head: d.expected_head_txid.unwrap_or(0),
                        pages: d
                            .dirty_pages
                            .iter()
                            .map(|p| (p.pgno, p.bytes.to_vec()))
                            .collect(),
                        db_size_pages: d.db_size_pages,
                        now_ms: d.now_ms,
                    })
                    .await
                    .map_err(store_err)?;
                Ok(head)
            }
            .await;
            let data = match result {
                Ok(head) => SqliteCommitResponse::SqliteCommitOk(SqliteCommitOk {
                    head_txid: Some(head),
                }),
                Err(e) => SqliteCommitResponse::SqliteErrorResponse(e),
            };
            ToEnvoy::ToEnvoySqliteCommitResponse(ToEnvoySqliteCommitResponse {
                request_id: req.request_id,
                data,
            })
        }
        StorageRequest::StageBegin(req) => {
            let d = &req.data;
            let result = async {
                let generation = fence(d.expected_generation)?;
                gw.store
                    .sqlite_stage_begin(actor_id, generation, d.expected_head_txid.unwrap_or(0))
                    .await
                    .map_err(store_err)
            }
            .await;
            let data = match result {
                Ok(txid) => SqliteCommitStageBeginResponse::SqliteCommitStageBeginOk(
                    SqliteCommitStageBeginOk { txid },
                ),
                Err(e) => SqliteCommitStageBeginResponse::SqliteErrorResponse(e),
            };
            ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(ToEnvoySqliteCommitStageBeginResponse {
                request_id: req.request_id,
                data,
            })
        }
        StorageRequest::StageSegment(req) => {
            let d = &req.data;
            let result = async {
                let generation = fence(d.expected_generation)?;
                gw.store
                    .sqlite_stage_segment(SqliteSegment {
                        actor_id: actor_id.to_string(),
                        generation,
                        txid: d.txid,
                        first_pgno: d.first_pgno,
                        pages: d
                            .dirty_pages
                            .iter()
                            .map(|p| (p.pgno, p.bytes.to_vec()))
                            .collect(),
                    })
                    .await
                    .map_err(store_err)
            }
            .await;
            let data = match result {
                Ok(staged_bytes) => SqliteCommitStageSegmentResponse::SqliteCommitStageSegmentOk(
                    SqliteCommitStageSegmentOk { staged_bytes },
                ),
                Err(e) => SqliteCommitStageSegmentResponse::SqliteErrorResponse(e),
            };
            ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(
                ToEnvoySqliteCommitStageSegmentResponse {
                    request_id: req.request_id,
                    data,
                },
            )
        }
        StorageRequest::Finalize(req) => {
            let d = &req.data;
            let result = async {
                let generation = fence(d.expected_generation)?;
                gw.store
                    .sqlite_stage_finalize(SqliteFinalize {
                        actor_id: actor_id.to_string(),
                        generation,
                        txid: d.txid,
                        db_size_pages: d.new_db_size_pages,
                        now_ms: d.now_ms,
                        segment_first_pgnos: d.segment_first_pgnos.clone(),
                    })
                    .await
                    .map_err(store_err)
            }
            .await;
            let data = match result {
                Ok(head) => {
                    SqliteCommitFinalizeResponse::SqliteCommitFinalizeOk(SqliteCommitFinalizeOk {
                        head_txid: Some(head),
                    })
                }
                Err(e) => SqliteCommitFinalizeResponse::SqliteErrorResponse(e),
            };
            ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(ToEnvoySqliteCommitFinalizeResponse {
                request_id: req.request_id,
                data,
            })
        }
    }
}

/// The generation of an actor this runner runs without this gateway process having started
/// it there: one it kept running across a gateway restart (adopted once its supervisor,
/// loaded from the store, confirms it), or one a serverless runner started from its
/// invocation's start command just before this gateway's own start for it went out. Both
/// are decided within moments; a storage request arriving first waits for that (bounded)
/// instead of being refused.
async fn adopted_generation(gw: &Gateway, envoy: &EnvoyHandle, actor_id: &str) -> Option<u32> {
    let actor = gw.actors.ensure(gw, actor_id).await.ok()??;
    let mut status = actor.watch();
    let deadline = tokio::time::Instant::now() + ADOPTION_WAIT;
    loop {
        if let Some(generation) = envoy.assigned.lock().get(actor_id) {
            return Some(*generation);
        }
        let now = status.borrow_and_update().clone();
        match now {
            crate::actor::Status::Running {
                envoy_key,
                generation,
            } if envoy_key == envoy.key => {
                envoy
                    .assigned
                    .lock()
                    .insert(actor_id.to_string(), generation);
                return Some(generation);
            }
            crate::actor::Status::Waking => {}
            _ => return None,
        }
        // `assigned` changes without a notification; a short poll covers it.
        let wait = tokio::time::sleep(ADOPTION_POLL);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return None,
            changed = status.changed() => if changed.is_err() { return None },
            _ = wait => {}
        }
    }
}

/// How often a waiting storage request looks at the runner's assignments again.
const ADOPTION_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// How long a storage request of a runner waits for its actor's adoption to be decided.
const ADOPTION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

// === KV ===

async fn kv(
    gw: &Gateway,
    actor_id: &str,
    generation: u32,
    data: KvRequestData,
) -> Result<KvResponseData, String> {
    let store = &gw.store;
    match data {
        KvRequestData::KvGetRequest(req) => {
            let keys: Vec<Vec<u8>> = req.keys.iter().map(|k| k.to_vec()).collect();
            check_keys(&keys)?;
            let entries = store
                .kv_get(actor_id, &keys)
                .await
                .map_err(crate::error::kv_message)?;
            let (keys, values, metadata) = split_entries(entries);
            Ok(KvResponseData::KvGetResponse(KvGetResponse {
                keys,
                values,
                metadata,
            }))
        }
        KvRequestData::KvListRequest(req) => {
            let query = match req.query {
                KvListQuery::KvListAllQuery => KvQuery::All,
                KvListQuery::KvListRangeQuery(r) => KvQuery::Range {
                    start: r.start.to_vec(),
                    end: r.end.to_vec(),
                    exclusive: r.exclusive,
                },
                KvListQuery::KvListPrefixQuery(p) => KvQuery::Prefix(p.key.to_vec()),
            };
            let limit = req
                .limit
                .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
                .unwrap_or(KV_DEFAULT_LIST_LIMIT);
            let entries = store
                .kv_list(actor_id, query, req.reverse.unwrap_or(false), limit)
                .await
                .map_err(crate::error::kv_message)?;
            let (keys, values, metadata) = split_entries(entries);
            Ok(KvResponseData::KvListResponse(KvListResponse {
                keys,
                values,
                metadata,
            }))
        }
        KvRequestData::KvPutRequest(req) => {
            if req.keys.len() != req.values.len() {
                return Err(format!(
                    "put has {} keys but {} values",
                    req.keys.len(),
                    req.values.len()
                ));
            }
            let keys: Vec<Vec<u8>> = req.keys.iter().map(|k| k.to_vec()).collect();
            check_keys(&keys)?;
            let mut payload = 0;
            for value in &req.values {
                if value.len() > KV_MAX_VALUE_BYTES {
                    return Err(format!(
                        "value is {} bytes, the limit is {KV_MAX_VALUE_BYTES}",
                        value.len()
                    ));
                }
                payload += value.len();
            }
            payload += keys.iter().map(Vec::len).sum::<usize>();
            if payload > KV_MAX_PUT_PAYLOAD_BYTES {
                return Err(format!(
                    "put payload is {payload} bytes, the limit is {KV_MAX_PUT_PAYLOAD_BYTES}"
                ));
            }
            let entries = keys
                .into_iter()
                .zip(req.values.iter().map(|v| v.to_vec()))
                .collect();
            store
                .kv_put(actor_id, generation, entries, now_ms())
                .await
                .map_err(crate::error::kv_message)?;
            Ok(KvResponseData::KvPutResponse)
        }
        KvRequestData::KvDeleteRequest(req) => {
            let keys: Vec<Vec<u8>> = req.keys.iter().map(|k| k.to_vec()).collect();
            check_keys(&keys)?;
            store
                .kv_delete(actor_id, generation, &keys)
                .await
                .map_err(crate::error::kv_message)?;
            Ok(KvResponseData::KvDeleteResponse)
        }
        KvRequestData::KvDeleteRangeRequest(req) => {
            store
                .kv_delete_range(actor_id, generation, &req.start, &req.end)
                .await
                .map_err(crate::error::kv_message)?;
            Ok(KvResponseData::KvDeleteResponse)
        }
        KvRequestData::KvDropRequest => {
            store
                .kv_drop(actor_id, generation)
                .await
                .map_err(crate::error::kv_message)?;
            Ok(KvResponseData::KvDropResponse)
        }
    }
}

fn check_keys(keys: &[Vec<u8>]) -> Result<(), String> {
    if keys.len() > KV_MAX_KEYS {
        return Err(format!(
            "request has {} keys, the limit is {KV_MAX_KEYS}",
            keys.len()
        ));
    }
    if let Some(key) = keys.iter().find(|k| k.len() > KV_MAX_KEY_BYTES) {
        return Err(format!(
            "key is {} bytes, the limit is {KV_MAX_KEY_BYTES}",
            key.len()
        ));
    }
    Ok(())
}

type Split = (Vec<vbare::Bytes>, Vec<vbare::Bytes>, Vec<KvMetadata>);

fn split_entries(entries: Vec<crate::store::KvEntry>) -> Split {
    let mut keys = Vec::with_capacity(entries.len());
    let mut values = Vec::with_capacity(entries.len());
    let mut metadata = Vec::with_capacity(entries.len());
    for e in entries {
        keys.push(e.key.into());
        values.push(e.value.into());
        metadata.push(KvMetadata {
            version: e.version.into(),
            update_ts: e.update_ts,
        });
    }
    (keys, values, metadata)
}

fn kv_error(message: String) -> KvResponseData {
    KvResponseData::KvErrorResponse(KvErrorResponse {
        message: message.into(),
    })
}

// === SQLite ===

async fn get_pages(
    gw: &Gateway,
    envoy: &EnvoyHandle,
    actor_id: &str,
    req: &ToRivetSqliteGetPagesRequest,
) -> Result<SqliteGetPagesResponse, SqliteErrorResponse> {
    let d = &req.data;
    if let Some(expected) = d.expected_generation {
        let generation = fence(Some(expected))?;
        // The supervisor assigns a generation to this runner only after persisting it, so a
        // match needs no store read; anything else is checked against the record.
        if envoy.generation_of(actor_id) == Some(generation) {
            return read_pages(gw, actor_id, d).await;
        }
        let current = gw
            .store
            .get_actor(actor_id)
            .await
            .map_err(store_err)?
            .map(|a| a.generation);
        if current != Some(generation) {
            return Err(store_err(StoreError::StaleGeneration {
                given: generation,
                current: current.unwrap_or(0),
            }));
        }
    }
    read_pages(gw, actor_id, d).await
}

async fn read_pages(
    gw: &Gateway,
    actor_id: &str,
    d: &rivulet_wire::envoy::SqliteGetPagesRequest,
) -> Result<SqliteGetPagesResponse, SqliteErrorResponse> {
    let read = gw
        .store
        .sqlite_get_pages(actor_id, &d.pgnos)
        .await
        .map_err(store_err)?;
    if read.head_txid == 0 {
        // What the engine answers before the first commit; RivetKit then starts an empty
        // database and commits with expectedHeadTxid 0.
        return Err(sqlite_err(
            "database_not_found",
            "transaction failed: sqlite database was not found in this bucket branch".to_string(),
        ));
    }
    Ok(SqliteGetPagesResponse::SqliteGetPagesOk(SqliteGetPagesOk {
        pages: read
            .pages
            .into_iter()
            .map(|(pgno, bytes)| SqliteFetchedPage {
                pgno,
                bytes: bytes.map(Into::into),
            })
            .collect(),
        head_txid: Some(read.head_txid),
    }))
}

fn fence(expected: Option<u64>) -> Result<u32, SqliteErrorResponse> {
    let expected = expected.ok_or_else(|| {
        sqlite_err(
            "missing_generation",
            "sqlite request is missing expectedGeneration".to_string(),
        )
    })?;
    u32::try_from(expected).map_err(|_| {
        sqlite_err(
            "generation_mismatch",
            format!("generation {expected} does not exist"),
        )
    })
}

fn sqlite_err(code: &str, message: String) -> SqliteErrorResponse {
    SqliteErrorResponse {
        group: "depot".into(),
        code: code.to_string().into(),
        message: message.into(),
    }
}

fn store_err(err: StoreError) -> SqliteErrorResponse {
    let (code, message) = crate::error::to_depot(&err);
    sqlite_err(code, message)
}

/// The answer to remote SQL execution, which this gateway does not run: RivetKit's native
/// runtime keeps SQLite in the runner and only stores pages here.
pub fn exec_unsupported(request_id: u32, which: u8) -> ToEnvoy {
    let e = sqlite_err(
        "remote_execution_unsupported",
        "this gateway stores SQLite pages; run SQLite in the runner (RivetKit's native runtime)"
            .to_string(),
    );
    match which {
        0 => ToEnvoy::ToEnvoySqliteExecResponse(ToEnvoySqliteExecResponse {
            request_id,
            data: SqliteExecResponse::SqliteErrorResponse(e),
        }),
        1 => ToEnvoy::ToEnvoySqliteExecuteResponse(ToEnvoySqliteExecuteResponse {
            request_id,
            data: SqliteExecuteResponse::SqliteErrorResponse(e),
        }),
        _ => ToEnvoy::ToEnvoySqliteExecuteBatchResponse(ToEnvoySqliteExecuteBatchResponse {
            request_id,
            data: SqliteExecuteBatchResponse::SqliteErrorResponse(e),
        }),
    }
}

/// The immediate answer to a request whose actor queue is full.
pub fn overloaded(req: StorageRequest) -> ToEnvoy {
    let message = "too many storage requests queued for this actor; retry".to_string();
    match req {
        StorageRequest::Kv(r) => ToEnvoy::ToEnvoyKvResponse(ToEnvoyKvResponse {
            request_id: r.request_id,
            data: kv_error(message),
        }),
        StorageRequest::GetPages(r) => {
            ToEnvoy::ToEnvoySqliteGetPagesResponse(ToEnvoySqliteGetPagesResponse {
                request_id: r.request_id,
                data: SqliteGetPagesResponse::SqliteErrorResponse(sqlite_err(
                    "overloaded",
                    message,
                )),
            })
        }
        StorageRequest::Commit(r) => {
            ToEnvoy::ToEnvoySqliteCommitResponse(ToEnvoySqliteCommitResponse {
                request_id: r.request_id,
                data: SqliteCommitResponse::SqliteErrorResponse(sqlite_err("overloaded", message)),
            })
        }
        StorageRequest::StageBegin(r) => {
            ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(ToEnvoySqliteCommitStageBeginResponse {
                request_id: r.request_id,
                data: SqliteCommitStageBeginResponse::SqliteErrorResponse(sqlite_err(
                    "overloaded",
                    message,
                )),
            })
        }
        StorageRequest::StageSegment(r) => ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(
            ToEnvoySqliteCommitStageSegmentResponse {
                request_id: r.request_id,
                data: SqliteCommitStageSegmentResponse::SqliteErrorResponse(sqlite_err(
                    "overloaded",
                    message,
                )),
            },
        ),
        StorageRequest::Finalize(r) => {
            ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(ToEnvoySqliteCommitFinalizeResponse {
                request_id: r.request_id,
                data: SqliteCommitFinalizeResponse::SqliteErrorResponse(sqlite_err(
                    "overloaded",
                    message,
                )),
            })
        }
    }
}
