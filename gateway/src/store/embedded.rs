//! The embedded backend: one `redb` file on local disk, used by `rivulet dev` and most tests.
//!
//! Every trait method runs as one redb transaction on a blocking thread
//! (`tokio::task::spawn_blocking`): writes use `Durability::Immediate`, so once a method returns
//! `Ok` the change survives a crash, and a method that fails or is killed half way leaves
//! nothing behind because the transaction is never committed. Fences (generation, head txid,
//! revision, key ownership) are read in the same write transaction that applies the change,
//! and redb runs one write transaction at a time, so no check can go stale before its write.
//!
//! # Key encoding
//! Composite keys are tuples of components. A string component is its UTF-8 bytes with `0x00`
//! escaped as `0x00 0xFF`, followed by a `0x00` terminator: this keeps byte order equal to
//! string order and makes every encoded component prefix-free, so actor `a` never sees the KV
//! entries of actor `ab`. Integers are big-endian (timestamps with the sign bit flipped) so
//! that byte order is numeric order. The last component of a KV key is the raw user key.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    ActorRecord, KvEntry, KvQuery, Lease, LeaseClaim, Namespace, NodeLease, RunnerConfigRecord,
    SqliteCommit, SqliteFinalize, SqliteRead, SqliteSegment, Store, StoreError, StoreResult,
};

/// Keys and values of every table are raw bytes; records inside are JSON.
type Bytes = &'static [u8];
type Def = TableDefinition<'static, Bytes, Bytes>;

/// `tuple(name)` -> `Namespace` JSON.
const NAMESPACES: Def = TableDefinition::new("namespaces");
/// `tuple(ns, name)` -> `RunnerConfigRecord` JSON.
const RUNNER_CONFIGS: Def = TableDefinition::new("runner_configs");
/// `tuple(ns, name)` -> `ActorNameRow` JSON.
const ACTOR_NAMES: Def = TableDefinition::new("actor_names");
/// `tuple(actor_id)` -> `ActorRecord` JSON.
const ACTORS: Def = TableDefinition::new("actors");
/// `tuple(ns, name, key)` -> actor id, only while the actor is live.
const ACTOR_KEYS: Def = TableDefinition::new("actor_keys");
/// `tuple(ns) ++ ts(create_ts) ++ tuple(actor_id)` -> actor id, for `list_actors` by namespace.
const ACTORS_BY_NS: Def = TableDefinition::new("actors_by_ns");
/// `tuple(ns, name) ++ ts(create_ts) ++ tuple(actor_id)` -> actor id, for `list_actors` by name.
const ACTORS_BY_NAME: Def = TableDefinition::new("actors_by_name");
/// `ts(alarm_ts) ++ actor_id` -> empty, only for live actors with an alarm.
const ALARMS: Def = TableDefinition::new("alarms");
/// `tuple(actor_id) ++ key` -> `generation (4 B BE) ++ update_ts (8 B BE) ++ value`.
const KV: Def = TableDefinition::new("kv");
/// `tuple(actor_id) ++ pgno (4 B BE)` -> page bytes.
const PAGES: Def = TableDefinition::new("sqlite_pages");
/// `tuple(actor_id)` -> `SqliteMeta` JSON; absent means head 0 and an empty database.
const SQLITE_META: Def = TableDefinition::new("sqlite_meta");
/// `tuple(actor_id)` -> `StageMarker` JSON of the one open staged commit, if any.
const STAGES: Def = TableDefinition::new("sqlite_stages");
/// `tuple(actor_id) ++ txid (8 B BE) ++ first_pgno (4 B BE) ++ pgno (4 B BE)` -> page bytes.
const STAGED_PAGES: Def = TableDefinition::new("sqlite_staged_pages");

/// `actor_id` -> `StoredLease` JSON.
const LEASES: Def = TableDefinition::new("actor_leases");
/// `node_id` -> `NodeLease` JSON.
const NODES: Def = TableDefinition::new("nodes");

const ALL_TABLES: [Def; 15] = [
    NAMESPACES,
    RUNNER_CONFIGS,
    ACTOR_NAMES,
    ACTORS,
    ACTOR_KEYS,
    ACTORS_BY_NS,
    ACTORS_BY_NAME,
    ALARMS,
    KV,
    PAGES,
    SQLITE_META,
    STAGES,
    STAGED_PAGES,
    LEASES,
    NODES,
];

/// Bytes in front of every KV value: the writing generation and the write time.
const KV_HEADER_LEN: usize = 4 + 8;

/// The [`Store`] on a local `redb` file.
#[derive(Clone)]
pub struct EmbeddedStore {
    /// Shared with the blocking tasks that run the transactions.
    db: Arc<Database>,
    /// Transactions run, as `read` and `write`.
    requests: Arc<super::RequestCounts>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

/// An actor's SQLite head and size; what commits compare and swap.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct SqliteMeta {
    head_txid: u64,
    db_size_pages: u32,
}

/// The open staged commit of an actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StageMarker {
    /// The txid the stage publishes as (head + 1 when it was begun).
    txid: u64,
    /// Generation that began it; a later generation must begin its own.
    generation: u32,
    /// First pgnos of the accepted segments, strictly ascending.
    segments: Vec<u32>,
    /// Sum of the page bytes staged so far.
    staged_bytes: u64,
    /// Highest pgno staged so far; the next segment must start above it.
    max_pgno: Option<u32>,
}

/// An actor lease as stored; its liveness comes from the node it names (see `Lease`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredLease {
    node_id: String,
    node_url: String,
    epoch: u64,
    node_incarnation: u64,
    released: bool,
}

impl StoredLease {
    /// The lease as callers see it, with its expiry taken from the holder's registration.
    fn view(&self, actor_id: &str, holder: Option<&NodeLease>) -> Lease {
        let expires_ms = match holder {
            Some(n) if !self.released && n.incarnation == self.node_incarnation => n.expires_ms,
            Some(_) | None => 0,
        };
        Lease {
            actor_id: actor_id.to_owned(),
            node_id: self.node_id.clone(),
            node_url: self.node_url.clone(),
            epoch: self.epoch,
            node_incarnation: self.node_incarnation,
            expires_ms,
        }
    }
}

/// One announced actor name.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ActorNameRow {
    name: String,
    metadata: String,
}

/// Memory redb may use to cache pages of the store file.
const EMBEDDED_CACHE_BYTES: usize = 32 * 1024 * 1024;

// === impl EmbeddedStore ===

impl EmbeddedStore {
    /// Creates or opens the database file at `path` (and its parent directory).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Backend(format!("create store directory {}: {e}", parent.display()))
                })?;
            }
        }
        // redb caches up to 1 GiB by default, which shows as gateway memory that grows with
        // every actor ever written; the working set of a gateway's store is far smaller.
        let db = Database::builder()
            .set_cache_size(EMBEDDED_CACHE_BYTES)
            .create(path)
            .map_err(backend("open store file"))?;
        // Creating every table up front lets read transactions open them unconditionally.
        let mut txn = db.begin_write().map_err(backend("open store"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend("open store"))?;
        for def in ALL_TABLES {
            txn.open_table(def).map_err(backend("create table"))?;
        }
        txn.commit().map_err(backend("open store"))?;
        Ok(Self {
            db: Arc::new(db),
            requests: Arc::default(),
        })
    }

    /// Runs `f` in one durable write transaction on a blocking thread; commits only if `f`
    /// returns `Ok`, so a rejected request changes nothing.
    async fn write<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.write_with(what, Durability::Immediate, f).await
    }

    /// [`Self::write`] with a chosen durability: leases use `None`, because one embedded
    /// store serves one process (redb locks the file) and a restarted node takes its own
    /// leases again, so a lost lease write costs nothing while an fsync per wake would.
    async fn write_with<T, F>(
        &self,
        what: &'static str,
        durability: Durability,
        f: F,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.requests.count("write");
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(backend(what))?;
            txn.set_durability(durability).map_err(backend(what))?;
            match f(&txn) {
                Ok(out) => {
                    txn.commit().map_err(backend(what))?;
                    Ok(out)
                }
                Err(err) => {
                    if let Err(abort) = txn.abort() {
                        // The request failed anyway; the abort error only explains the disk.
                        tracing::warn!(op = what, error = %abort, "store abort failed");
                    }
                    Err(err)
                }
            }
        })
        .await
        .map_err(|e| StoreError::Backend(format!("{what}: store task failed: {e}")))?
    }

    /// Runs `f` on a consistent snapshot on a blocking thread.
    async fn read<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.requests.count("read");
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(backend(what))?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("{what}: store task failed: {e}")))?
    }
}

// === errors and encoding ===

/// Maps any redb error to `Corrupt` (the file is damaged) or `Backend` (anything else), with
/// the operation as context.
fn backend<E: Into<redb::Error>>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| match e.into() {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(format!("{what}: {msg}")),
        other => StoreError::Backend(format!("{what}: {other}")),
    }
}

fn encode_json<T: Serialize>(what: &str, value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("encode {what}: {e}")))
}

fn decode_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("decode {what}: {e}")))
}

/// Appends one string component (see the module docs).
fn push_str(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        buf.push(b);
        if b == 0 {
            buf.push(0xff);
        }
    }
    buf.push(0);
}

/// Encodes string components as one key.
fn tuple(parts: &[&str]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        push_str(&mut buf, p);
    }
    buf
}

/// A timestamp as 8 bytes whose byte order is numeric order, negatives included.
fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// The first key after every key starting with `prefix`, or `None` if there is none.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Bounds covering exactly the keys that start with `prefix`.
fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = match prefix_end(prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    (Bound::Included(prefix.to_vec()), end)
}

/// Borrows owned bounds in the shape redb's `range` takes.
fn as_slices(bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Bound<&[u8]>, Bound<&[u8]>) {
    fn one(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(v) => Bound::Included(v.as_slice()),
            Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (one(&bounds.0), one(&bounds.1))
}

/// Whether the bounds select no key at all; redb must not be asked for an inverted range.
fn is_empty_range(bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> bool {
    match (&bounds.0, &bounds.1) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
    }
}

/// Deletes every key within `bounds`.
fn delete_range(
    table: &mut Table<'_, Bytes, Bytes>,
    bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
    what: &'static str,
) -> StoreResult<()> {
    if is_empty_range(bounds) {
        return Ok(());
    }
    table
        .retain_in::<&[u8], _>(as_slices(bounds), |_, _| false)
        .map_err(backend(what))
}

fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<Bytes, Bytes>,
    key: &[u8],
    what: &'static str,
) -> StoreResult<Option<T>> {
    match table.get(key).map_err(backend(what))? {
        Some(v) => decode_json(what, v.value()).map(Some),
        None => Ok(None),
    }
}

fn put_json<T: Serialize>(
    table: &mut Table<'_, Bytes, Bytes>,
    key: &[u8],
    value: &T,
    what: &'static str,
) -> StoreResult<()> {
    let bytes = encode_json(what, value)?;
    table.insert(key, bytes.as_slice()).map_err(backend(what))?;
    Ok(())
}

/// Every JSON value within `bounds`, in key order.
fn scan_json<T: DeserializeOwned>(
    table: &impl ReadableTable<Bytes, Bytes>,
    bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
    what: &'static str,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    for row in table
        .range::<&[u8]>(as_slices(bounds))
        .map_err(backend(what))?
    {
        let (_, v) = row.map_err(backend(what))?;
        out.push(decode_json(what, v.value())?);
    }
    Ok(out)
}

fn read_string(bytes: &[u8], what: &str) -> StoreResult<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|e| StoreError::Corrupt(format!("decode {what}: {e}")))
}

// === actor records and their indexes ===

fn actor_key(actor_id: &str) -> Vec<u8> {
    tuple(&[actor_id])
}

fn load_actor(
    actors: &impl ReadableTable<Bytes, Bytes>,
    actor_id: &str,
) -> StoreResult<Option<ActorRecord>> {
    get_json(actors, &actor_key(actor_id), "actor record")
}

/// The actor of an index entry; the index and the record are written together, so a dangling
/// entry means the file is damaged.
fn load_indexed_actor(
    actors: &impl ReadableTable<Bytes, Bytes>,
    id_bytes: &[u8],
) -> StoreResult<ActorRecord> {
    let id = read_string(id_bytes, "actor index entry")?;
    load_actor(actors, &id)?
        .ok_or_else(|| StoreError::Corrupt(format!("index refers to missing actor {id}")))
}

/// The key-index entry an actor holds, if it is live and has a key.
fn live_key(actor: &ActorRecord) -> Option<Vec<u8>> {
    match (&actor.key, actor.is_destroyed()) {
        (Some(key), false) => Some(tuple(&[&actor.namespace_id, &actor.name, key])),
        (Some(_), true) | (None, _) => None,
    }
}

/// The alarm-index entry an actor holds: destroyed actors are never woken.
fn alarm_entry(actor: &ActorRecord) -> Option<Vec<u8>> {
    match (actor.alarm_ts, actor.is_destroyed()) {
        (Some(ts), false) => {
            let mut k = ts_bytes(ts).to_vec();
            k.extend_from_slice(actor.actor_id.as_bytes());
            Some(k)
        }
        (Some(_), true) | (None, _) => None,
    }
}

fn by_ns_entry(actor: &ActorRecord) -> Vec<u8> {
    let mut k = tuple(&[&actor.namespace_id]);
    k.extend_from_slice(&ts_bytes(actor.create_ts));
    push_str(&mut k, &actor.actor_id);
    k
}

fn by_name_entry(actor: &ActorRecord) -> Vec<u8> {
    let mut k = tuple(&[&actor.namespace_id, &actor.name]);
    k.extend_from_slice(&ts_bytes(actor.create_ts));
    push_str(&mut k, &actor.actor_id);
    k
}

/// Writes `new` and moves every index entry from `old` (if any) to `new`, failing with
/// `KeyTaken` if `new` is live and its key is held by another actor.
fn write_actor(
    txn: &WriteTransaction,
    old: Option<&ActorRecord>,
    new: &ActorRecord,
) -> StoreResult<()> {
    const WHAT: &str = "write actor";
    let mut keys = txn.open_table(ACTOR_KEYS).map_err(backend(WHAT))?;
    let old_key = old.and_then(live_key);
    let new_key = live_key(new);
    if old_key != new_key {
        if let Some(k) = &old_key {
            // Only release the entry if it is ours; never free a key another actor holds.
            let ours = match keys.get(k.as_slice()).map_err(backend(WHAT))? {
                Some(v) => v.value() == new.actor_id.as_bytes(),
                None => false,
            };
            if ours {
                keys.remove(k.as_slice()).map_err(backend(WHAT))?;
            }
        }
        if let Some(k) = &new_key {
            if let Some(v) = keys.get(k.as_slice()).map_err(backend(WHAT))? {
                let holder = read_string(v.value(), "actor key entry")?;
                if holder != new.actor_id {
                    return Err(StoreError::KeyTaken {
                        existing_actor_id: holder,
                    });
                }
            }
            keys.insert(k.as_slice(), new.actor_id.as_bytes())
                .map_err(backend(WHAT))?;
        }
    }

    let mut alarms = txn.open_table(ALARMS).map_err(backend(WHAT))?;
    if let Some(k) = old.and_then(alarm_entry) {
        alarms.remove(k.as_slice()).map_err(backend(WHAT))?;
    }
    if let Some(k) = alarm_entry(new) {
        alarms
            .insert(k.as_slice(), &[][..])
            .map_err(backend(WHAT))?;
    }

    let mut by_ns = txn.open_table(ACTORS_BY_NS).map_err(backend(WHAT))?;
    let mut by_name = txn.open_table(ACTORS_BY_NAME).map_err(backend(WHAT))?;
    if let Some(old) = old {
        by_ns
            .remove(by_ns_entry(old).as_slice())
            .map_err(backend(WHAT))?;
        by_name
            .remove(by_name_entry(old).as_slice())
            .map_err(backend(WHAT))?;
    }
    by_ns
        .insert(by_ns_entry(new).as_slice(), new.actor_id.as_bytes())
        .map_err(backend(WHAT))?;
    by_name
        .insert(by_name_entry(new).as_slice(), new.actor_id.as_bytes())
        .map_err(backend(WHAT))?;

    let mut actors = txn.open_table(ACTORS).map_err(backend(WHAT))?;
    put_json(&mut actors, &actor_key(&new.actor_id), new, "actor record")
}

/// Loads the actor a runner writes for and checks its generation: the fence against zombies.
fn fence(txn: &WriteTransaction, actor_id: &str, generation: u32) -> StoreResult<ActorRecord> {
    let actors = txn.open_table(ACTORS).map_err(backend("fence"))?;
    let actor = load_actor(&actors, actor_id)?.ok_or_else(|| StoreError::NotFound {
        what: format!("actor {actor_id}"),
    })?;
    if actor.generation != generation {
        return Err(StoreError::StaleGeneration {
            given: generation,
            current: actor.generation,
        });
    }
    Ok(actor)
}

// === KV ===

fn kv_key(actor_id: &str, key: &[u8]) -> Vec<u8> {
    let mut k = actor_key(actor_id);
    k.extend_from_slice(key);
    k
}

fn encode_kv_value(generation: u32, now_ms: i64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(KV_HEADER_LEN + value.len());
    v.extend_from_slice(&generation.to_be_bytes());
    v.extend_from_slice(&now_ms.to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn decode_kv_entry(key: Vec<u8>, stored: &[u8]) -> StoreResult<KvEntry> {
    if stored.len() < KV_HEADER_LEN {
        return Err(StoreError::Corrupt(format!(
            "kv value of {} bytes is shorter than its header",
            stored.len()
        )));
    }
    let (version, rest) = stored.split_at(4);
    let (ts, value) = rest.split_at(8);
    let mut ts_buf = [0u8; 8];
    ts_buf.copy_from_slice(ts);
    Ok(KvEntry {
        key,
        value: value.to_vec(),
        version: version.to_vec(),
        update_ts: i64::from_be_bytes(ts_buf),
    })
}

/// The stored-key bounds of a KV query over one actor.
fn kv_bounds(actor_id: &str, query: &KvQuery) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    match query {
        KvQuery::All => prefix_bounds(&actor_key(actor_id)),
        KvQuery::Prefix(p) => prefix_bounds(&kv_key(actor_id, p)),
        KvQuery::Range {
            start,
            end,
            exclusive,
        } => {
            let start = Bound::Included(kv_key(actor_id, start));
            let end = kv_key(actor_id, end);
            if *exclusive {
                (start, Bound::Excluded(end))
            } else {
                (start, Bound::Included(end))
            }
        }
    }
}

// === SQLite ===

fn page_key(actor_id: &str, pgno: u32) -> Vec<u8> {
    let mut k = actor_key(actor_id);
    k.extend_from_slice(&pgno.to_be_bytes());
    k
}

fn staged_key(actor_id: &str, txid: u64, first_pgno: u32, pgno: u32) -> Vec<u8> {
    let mut k = actor_key(actor_id);
    k.extend_from_slice(&txid.to_be_bytes());
    k.extend_from_slice(&first_pgno.to_be_bytes());
    k.extend_from_slice(&pgno.to_be_bytes());
    k
}

/// Reads the (first_pgno, pgno) suffix of a staged-page key.
fn parse_staged_suffix(key: &[u8], prefix_len: usize) -> StoreResult<(u32, u32)> {
    let suffix = key.get(prefix_len..).unwrap_or_default();
    if suffix.len() != 8 {
        return Err(StoreError::Corrupt(format!(
            "staged page key has a {}-byte suffix, expected 8",
            suffix.len()
        )));
    }
    let mut first = [0u8; 4];
    let mut pgno = [0u8; 4];
    first.copy_from_slice(&suffix[..4]);
    pgno.copy_from_slice(&suffix[4..]);
    Ok((u32::from_be_bytes(first), u32::from_be_bytes(pgno)))
}

fn load_meta(
    txn_meta: &impl ReadableTable<Bytes, Bytes>,
    actor_id: &str,
) -> StoreResult<SqliteMeta> {
    Ok(get_json(txn_meta, &actor_key(actor_id), "sqlite meta")?.unwrap_or_default())
}

fn check_head(meta: &SqliteMeta, expected: u64) -> StoreResult<()> {
    if meta.head_txid != expected {
        return Err(StoreError::HeadMismatch {
            expected,
            current: meta.head_txid,
        });
    }
    Ok(())
}

/// Drops the open stage of an actor, if any, with its staged pages.
fn discard_stage(txn: &WriteTransaction, actor_id: &str) -> StoreResult<()> {
    const WHAT: &str = "discard sqlite stage";
    let mut stages = txn.open_table(STAGES).map_err(backend(WHAT))?;
    stages
        .remove(actor_key(actor_id).as_slice())
        .map_err(backend(WHAT))?;
    let mut staged = txn.open_table(STAGED_PAGES).map_err(backend(WHAT))?;
    delete_range(&mut staged, &prefix_bounds(&actor_key(actor_id)), WHAT)
}

/// Sets the new size (dropping pages past it) and head: the last step of both commit paths.
fn publish(
    txn: &WriteTransaction,
    pages: &mut Table<'_, Bytes, Bytes>,
    actor_id: &str,
    head_txid: u64,
    db_size_pages: u32,
) -> StoreResult<()> {
    const WHAT: &str = "publish sqlite commit";
    // Pages are 1-based: a database of N pages holds pgnos 1..=N.
    let past = match db_size_pages.checked_add(1) {
        Some(first_past) => (
            Bound::Included(page_key(actor_id, first_past)),
            prefix_bounds(&actor_key(actor_id)).1,
        ),
        None => (Bound::Excluded(Vec::new()), Bound::Excluded(Vec::new())),
    };
    delete_range(pages, &past, WHAT)?;
    let mut meta = txn.open_table(SQLITE_META).map_err(backend(WHAT))?;
    put_json(
        &mut meta,
        &actor_key(actor_id),
        &SqliteMeta {
            head_txid,
            db_size_pages,
        },
        "sqlite meta",
    )
}

/// Loads the open stage and checks it is the one this request belongs to.
fn open_stage(
    txn: &WriteTransaction,
    actor_id: &str,
    generation: u32,
    txid: u64,
) -> StoreResult<StageMarker> {
    let stages = txn
        .open_table(STAGES)
        .map_err(backend("load sqlite stage"))?;
    let marker: StageMarker =
        get_json(&stages, &actor_key(actor_id), "sqlite stage")?.ok_or_else(|| {
            StoreError::StageRejected(format!("no staged commit is open (txid {txid})"))
        })?;
    if marker.txid != txid {
        return Err(StoreError::StageRejected(format!(
            "txid {txid} is not the open stage (txid {})",
            marker.txid
        )));
    }
    if marker.generation != generation {
        return Err(StoreError::StageRejected(format!(
            "the open stage was begun by generation {}, not {generation}",
            marker.generation
        )));
    }
    Ok(marker)
}

// === impl Store ===

#[async_trait]
impl Store for EmbeddedStore {
    fn request_counts(&self) -> Arc<super::RequestCounts> {
        self.requests.clone()
    }
    fn forget_actor(&self, _actor_id: &str) {
        // It keeps nothing per actor besides redb's own bounded cache.
    }
    async fn create_namespace(&self, ns: Namespace) -> StoreResult<()> {
        self.write("create namespace", move |txn| {
            let mut t = txn
                .open_table(NAMESPACES)
                .map_err(backend("create namespace"))?;
            let key = tuple(&[&ns.name]);
            if t.get(key.as_slice())
                .map_err(backend("create namespace"))?
                .is_some()
            {
                return Err(StoreError::AlreadyExists {
                    what: format!("namespace {}", ns.name),
                });
            }
            put_json(&mut t, &key, &ns, "namespace")
        })
        .await
    }

    async fn get_namespace(&self, name: &str) -> StoreResult<Option<Namespace>> {
        let key = tuple(&[name]);
        self.read("get namespace", move |txn| {
            let t = txn
                .open_table(NAMESPACES)
                .map_err(backend("get namespace"))?;
            get_json(&t, &key, "namespace")
        })
        .await
    }

    async fn list_namespaces(&self) -> StoreResult<Vec<Namespace>> {
        self.read("list namespaces", move |txn| {
            let t = txn
                .open_table(NAMESPACES)
                .map_err(backend("list namespaces"))?;
            scan_json(&t, &(Bound::Unbounded, Bound::Unbounded), "namespace")
        })
        .await
    }

    async fn put_runner_config(&self, cfg: RunnerConfigRecord) -> StoreResult<()> {
        self.write("put runner config", move |txn| {
            let mut t = txn
                .open_table(RUNNER_CONFIGS)
                .map_err(backend("put runner config"))?;
            let key = tuple(&[&cfg.namespace_id, &cfg.name]);
            put_json(&mut t, &key, &cfg, "runner config")
        })
        .await
    }

    async fn get_runner_config(
        &self,
        namespace_id: &str,
        name: &str,
    ) -> StoreResult<Option<RunnerConfigRecord>> {
        let key = tuple(&[namespace_id, name]);
        self.read("get runner config", move |txn| {
            let t = txn
                .open_table(RUNNER_CONFIGS)
                .map_err(backend("get runner config"))?;
            get_json(&t, &key, "runner config")
        })
        .await
    }

    async fn list_runner_configs(
        &self,
        namespace_id: &str,
    ) -> StoreResult<Vec<RunnerConfigRecord>> {
        let bounds = prefix_bounds(&tuple(&[namespace_id]));
        self.read("list runner configs", move |txn| {
            let t = txn
                .open_table(RUNNER_CONFIGS)
                .map_err(backend("list runner configs"))?;
            scan_json(&t, &bounds, "runner config")
        })
        .await
    }

    async fn delete_runner_config(&self, namespace_id: &str, name: &str) -> StoreResult<bool> {
        let key = tuple(&[namespace_id, name]);
        self.write("delete runner config", move |txn| {
            let mut t = txn
                .open_table(RUNNER_CONFIGS)
                .map_err(backend("delete runner config"))?;
            let existed = t
                .remove(key.as_slice())
                .map_err(backend("delete runner config"))?
                .is_some();
            Ok(existed)
        })
        .await
    }

    async fn put_actor_names(
        &self,
        namespace_id: &str,
        names: Vec<(String, String)>,
    ) -> StoreResult<()> {
        let namespace_id = namespace_id.to_owned();
        self.write("put actor names", move |txn| {
            let mut t = txn
                .open_table(ACTOR_NAMES)
                .map_err(backend("put actor names"))?;
            for (name, metadata) in names {
                let key = tuple(&[&namespace_id, &name]);
                put_json(&mut t, &key, &ActorNameRow { name, metadata }, "actor name")?;
            }
            Ok(())
        })
        .await
    }

    async fn list_actor_names(&self, namespace_id: &str) -> StoreResult<Vec<(String, String)>> {
        let bounds = prefix_bounds(&tuple(&[namespace_id]));
        self.read("list actor names", move |txn| {
            let t = txn
                .open_table(ACTOR_NAMES)
                .map_err(backend("list actor names"))?;
            let rows: Vec<ActorNameRow> = scan_json(&t, &bounds, "actor name")?;
            Ok(rows.into_iter().map(|r| (r.name, r.metadata)).collect())
        })
        .await
    }

    async fn create_actor(&self, actor: ActorRecord) -> StoreResult<()> {
        self.write("create actor", move |txn| {
            {
                let actors = txn.open_table(ACTORS).map_err(backend("create actor"))?;
                if load_actor(&actors, &actor.actor_id)?.is_some() {
                    return Err(StoreError::AlreadyExists {
                        what: format!("actor {}", actor.actor_id),
                    });
                }
            }
            write_actor(txn, None, &actor)
        })
        .await
    }

    async fn get_actor(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>> {
        let actor_id = actor_id.to_owned();
        self.read("get actor", move |txn| {
            let actors = txn.open_table(ACTORS).map_err(backend("get actor"))?;
            load_actor(&actors, &actor_id)
        })
        .await
    }

    async fn get_actor_by_key(
        &self,
        namespace_id: &str,
        name: &str,
        key: &str,
    ) -> StoreResult<Option<ActorRecord>> {
        let index_key = tuple(&[namespace_id, name, key]);
        self.read("get actor by key", move |txn| {
            let keys = txn
                .open_table(ACTOR_KEYS)
                .map_err(backend("get actor by key"))?;
            let actors = txn
                .open_table(ACTORS)
                .map_err(backend("get actor by key"))?;
            match keys
                .get(index_key.as_slice())
                .map_err(backend("get actor by key"))?
            {
                Some(id) => load_indexed_actor(&actors, id.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_actors(
        &self,
        namespace_id: &str,
        name: Option<&str>,
        include_destroyed: bool,
        limit: usize,
    ) -> StoreResult<Vec<ActorRecord>> {
        let (def, prefix) = match name {
            Some(name) => (ACTORS_BY_NAME, tuple(&[namespace_id, name])),
            None => (ACTORS_BY_NS, tuple(&[namespace_id])),
        };
        let bounds = prefix_bounds(&prefix);
        self.read("list actors", move |txn| {
            let index = txn.open_table(def).map_err(backend("list actors"))?;
            let actors = txn.open_table(ACTORS).map_err(backend("list actors"))?;
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            for row in index
                .range::<&[u8]>(as_slices(&bounds))
                .map_err(backend("list actors"))?
            {
                let (_, id) = row.map_err(backend("list actors"))?;
                let actor = load_indexed_actor(&actors, id.value())?;
                if include_destroyed || !actor.is_destroyed() {
                    out.push(actor);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn update_actor(&self, actor: ActorRecord, expected_revision: u64) -> StoreResult<()> {
        self.write("update actor", move |txn| {
            let old = {
                let actors = txn.open_table(ACTORS).map_err(backend("update actor"))?;
                load_actor(&actors, &actor.actor_id)?.ok_or_else(|| StoreError::NotFound {
                    what: format!("actor {}", actor.actor_id),
                })?
            };
            if old.revision != expected_revision {
                return Err(StoreError::Conflict {
                    what: format!(
                        "actor {} (revision {}, expected {expected_revision})",
                        actor.actor_id, old.revision
                    ),
                });
            }
            let new = ActorRecord {
                revision: expected_revision + 1,
                ..actor
            };
            write_actor(txn, Some(&old), &new)
        })
        .await
    }

    async fn due_alarms(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ActorRecord>> {
        self.read("due alarms", move |txn| {
            let alarms = txn.open_table(ALARMS).map_err(backend("due alarms"))?;
            let actors = txn.open_table(ACTORS).map_err(backend("due alarms"))?;
            let end = match now_ms.checked_add(1) {
                Some(after) => Bound::Excluded(ts_bytes(after).to_vec()),
                None => Bound::Unbounded,
            };
            let bounds = (Bound::Unbounded, end);
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            for row in alarms
                .range::<&[u8]>(as_slices(&bounds))
                .map_err(backend("due alarms"))?
            {
                let (k, _) = row.map_err(backend("due alarms"))?;
                let id_bytes = k.value().get(8..).unwrap_or_default();
                out.push(load_indexed_actor(&actors, id_bytes)?);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn clear_actor_data(&self, actor_id: &str) -> StoreResult<()> {
        let actor_id = actor_id.to_owned();
        self.write("clear actor data", move |txn| {
            const WHAT: &str = "clear actor data";
            let prefix = prefix_bounds(&actor_key(&actor_id));
            let mut kv = txn.open_table(KV).map_err(backend(WHAT))?;
            delete_range(&mut kv, &prefix, WHAT)?;
            let mut pages = txn.open_table(PAGES).map_err(backend(WHAT))?;
            delete_range(&mut pages, &prefix, WHAT)?;
            let mut meta = txn.open_table(SQLITE_META).map_err(backend(WHAT))?;
            meta.remove(actor_key(&actor_id).as_slice())
                .map_err(backend(WHAT))?;
            discard_stage(txn, &actor_id)
        })
        .await
    }

    async fn kv_get(&self, actor_id: &str, keys: &[Vec<u8>]) -> StoreResult<Vec<KvEntry>> {
        let actor_id = actor_id.to_owned();
        let keys = keys.to_vec();
        self.read("kv get", move |txn| {
            let kv = txn.open_table(KV).map_err(backend("kv get"))?;
            let mut out = Vec::new();
            for key in keys {
                if let Some(v) = kv
                    .get(kv_key(&actor_id, &key).as_slice())
                    .map_err(backend("kv get"))?
                {
                    out.push(decode_kv_entry(key, v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn kv_list(
        &self,
        actor_id: &str,
        query: KvQuery,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Vec<KvEntry>> {
        let bounds = kv_bounds(actor_id, &query);
        let prefix_len = actor_key(actor_id).len();
        self.read("kv list", move |txn| {
            let mut out = Vec::new();
            if limit == 0 || is_empty_range(&bounds) {
                return Ok(out);
            }
            let kv = txn.open_table(KV).map_err(backend("kv list"))?;
            let range = kv
                .range::<&[u8]>(as_slices(&bounds))
                .map_err(backend("kv list"))?;
            let rows: Box<dyn Iterator<Item = _>> = if reverse {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            for row in rows {
                let (k, v) = row.map_err(backend("kv list"))?;
                let user_key = k.value().get(prefix_len..).unwrap_or_default().to_vec();
                out.push(decode_kv_entry(user_key, v.value())?);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn kv_put(
        &self,
        actor_id: &str,
        generation: u32,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let actor_id = actor_id.to_owned();
        self.write("kv put", move |txn| {
            fence(txn, &actor_id, generation)?;
            let mut kv = txn.open_table(KV).map_err(backend("kv put"))?;
            for (key, value) in entries {
                let stored = encode_kv_value(generation, now_ms, &value);
                kv.insert(kv_key(&actor_id, &key).as_slice(), stored.as_slice())
                    .map_err(backend("kv put"))?;
            }
            Ok(())
        })
        .await
    }

    async fn kv_delete(
        &self,
        actor_id: &str,
        generation: u32,
        keys: &[Vec<u8>],
    ) -> StoreResult<()> {
        let actor_id = actor_id.to_owned();
        let keys = keys.to_vec();
        self.write("kv delete", move |txn| {
            fence(txn, &actor_id, generation)?;
            let mut kv = txn.open_table(KV).map_err(backend("kv delete"))?;
            for key in keys {
                kv.remove(kv_key(&actor_id, &key).as_slice())
                    .map_err(backend("kv delete"))?;
            }
            Ok(())
        })
        .await
    }

    async fn kv_delete_range(
        &self,
        actor_id: &str,
        generation: u32,
        start: &[u8],
        end: &[u8],
    ) -> StoreResult<()> {
        let actor_id = actor_id.to_owned();
        let bounds = (
            Bound::Included(kv_key(&actor_id, start)),
            Bound::Excluded(kv_key(&actor_id, end)),
        );
        self.write("kv delete range", move |txn| {
            fence(txn, &actor_id, generation)?;
            let mut kv = txn.open_table(KV).map_err(backend("kv delete range"))?;
            delete_range(&mut kv, &bounds, "kv delete range")
        })
        .await
    }

    async fn kv_drop(&self, actor_id: &str, generation: u32) -> StoreResult<()> {
        let actor_id = actor_id.to_owned();
        self.write("kv drop", move |txn| {
            fence(txn, &actor_id, generation)?;
            let mut kv = txn.open_table(KV).map_err(backend("kv drop"))?;
            delete_range(&mut kv, &prefix_bounds(&actor_key(&actor_id)), "kv drop")
        })
        .await
    }

    async fn sqlite_get_pages(&self, actor_id: &str, pgnos: &[u32]) -> StoreResult<SqliteRead> {
        let actor_id = actor_id.to_owned();
        let pgnos = pgnos.to_vec();
        self.read("sqlite get pages", move |txn| {
            let meta_t = txn
                .open_table(SQLITE_META)
                .map_err(backend("sqlite get pages"))?;
            let meta = load_meta(&meta_t, &actor_id)?;
            let pages_t = txn.open_table(PAGES).map_err(backend("sqlite get pages"))?;
            let mut pages = Vec::with_capacity(pgnos.len());
            for pgno in pgnos {
                // Commits delete pages past the size; checking here as well keeps a read
                // right even if one ever lingered.
                let bytes = if pgno > meta.db_size_pages {
                    None
                } else {
                    pages_t
                        .get(page_key(&actor_id, pgno).as_slice())
                        .map_err(backend("sqlite get pages"))?
                        .map(|v| v.value().to_vec())
                };
                pages.push((pgno, bytes));
            }
            Ok(SqliteRead {
                pages,
                head_txid: meta.head_txid,
            })
        })
        .await
    }

    async fn sqlite_commit(&self, commit: SqliteCommit) -> StoreResult<u64> {
        self.write("sqlite commit", move |txn| {
            const WHAT: &str = "sqlite commit";
            let SqliteCommit {
                actor_id,
                generation,
                expected_head,
                pages,
                db_size_pages,
                now_ms: _,
            } = commit;
            fence(txn, &actor_id, generation)?;
            let meta = {
                let t = txn.open_table(SQLITE_META).map_err(backend(WHAT))?;
                load_meta(&t, &actor_id)?
            };
            check_head(&meta, expected_head)?;
            let head = expected_head + 1;
            let mut pages_t = txn.open_table(PAGES).map_err(backend(WHAT))?;
            for (pgno, bytes) in pages {
                // A dirty page past the new end is truncated by this very commit.
                if pgno <= db_size_pages {
                    pages_t
                        .insert(page_key(&actor_id, pgno).as_slice(), bytes.as_slice())
                        .map_err(backend(WHAT))?;
                }
            }
            publish(txn, &mut pages_t, &actor_id, head, db_size_pages)?;
            // The open stage was built on the old head; it can never finalize now.
            discard_stage(txn, &actor_id)?;
            Ok(head)
        })
        .await
    }

    async fn sqlite_stage_begin(
        &self,
        actor_id: &str,
        generation: u32,
        expected_head: u64,
    ) -> StoreResult<u64> {
        let actor_id = actor_id.to_owned();
        self.write("sqlite stage begin", move |txn| {
            const WHAT: &str = "sqlite stage begin";
            fence(txn, &actor_id, generation)?;
            let meta = {
                let t = txn.open_table(SQLITE_META).map_err(backend(WHAT))?;
                load_meta(&t, &actor_id)?
            };
            check_head(&meta, expected_head)?;
            discard_stage(txn, &actor_id)?;
            let txid = expected_head + 1;
            let mut stages = txn.open_table(STAGES).map_err(backend(WHAT))?;
            put_json(
                &mut stages,
                &actor_key(&actor_id),
                &StageMarker {
                    txid,
                    generation,
                    segments: Vec::new(),
                    staged_bytes: 0,
                    max_pgno: None,
                },
                "sqlite stage",
            )?;
            Ok(txid)
        })
        .await
    }

    async fn sqlite_stage_segment(&self, segment: SqliteSegment) -> StoreResult<u64> {
        self.write("sqlite stage segment", move |txn| {
            const WHAT: &str = "sqlite stage segment";
            let SqliteSegment {
                actor_id,
                generation,
                txid,
                first_pgno,
                pages,
            } = segment;
            fence(txn, &actor_id, generation)?;
            let mut marker = open_stage(txn, &actor_id, generation, txid)?;
            // Both checks keep segments disjoint and ordered: everything staged so far lies
            // below this segment, and this segment lies at or above its first page.
            if let Some(&last) = marker.segments.last() {
                if first_pgno <= last {
                    return Err(StoreError::StageRejected(format!(
                        "segment {first_pgno} does not come after segment {last}"
                    )));
                }
            }
            if let Some(max) = marker.max_pgno {
                if first_pgno <= max {
                    return Err(StoreError::StageRejected(format!(
                        "segment {first_pgno} overlaps page {max} of an earlier segment"
                    )));
                }
            }
            if let Some((pgno, _)) = pages.iter().find(|(pgno, _)| *pgno < first_pgno) {
                return Err(StoreError::StageRejected(format!(
                    "page {pgno} lies below its segment {first_pgno}"
                )));
            }
            let mut staged = txn.open_table(STAGED_PAGES).map_err(backend(WHAT))?;
            for (pgno, bytes) in &pages {
                staged
                    .insert(
                        staged_key(&actor_id, txid, first_pgno, *pgno).as_slice(),
                        bytes.as_slice(),
                    )
                    .map_err(backend(WHAT))?;
                marker.staged_bytes += bytes.len() as u64;
                marker.max_pgno = Some(marker.max_pgno.map_or(*pgno, |m| m.max(*pgno)));
            }
            marker.segments.push(first_pgno);
            let mut stages = txn.open_table(STAGES).map_err(backend(WHAT))?;
            put_json(&mut stages, &actor_key(&actor_id), &marker, "sqlite stage")?;
            Ok(marker.staged_bytes)
        })
        .await
    }

    async fn sqlite_stage_finalize(&self, finalize: SqliteFinalize) -> StoreResult<u64> {
        self.write("sqlite stage finalize", move |txn| {
            const WHAT: &str = "sqlite stage finalize";
            let SqliteFinalize {
                actor_id,
                generation,
                txid,
                db_size_pages,
                now_ms: _,
                segment_first_pgnos,
            } = finalize;
            fence(txn, &actor_id, generation)?;
            let marker = open_stage(txn, &actor_id, generation, txid)?;
            let meta = {
                let t = txn.open_table(SQLITE_META).map_err(backend(WHAT))?;
                load_meta(&t, &actor_id)?
            };
            if txid != meta.head_txid + 1 {
                return Err(StoreError::HeadMismatch {
                    expected: txid.saturating_sub(1),
                    current: meta.head_txid,
                });
            }

            let listed: BTreeSet<u32> = segment_first_pgnos.iter().copied().collect();
            if listed.len() != segment_first_pgnos.len() {
                return Err(StoreError::StageRejected(
                    "a segment is listed twice".to_owned(),
                ));
            }
            let staged_set: BTreeSet<u32> = marker.segments.iter().copied().collect();
            let missing: Vec<u32> = listed.difference(&staged_set).copied().collect();
            let unlisted: Vec<u32> = staged_set.difference(&listed).copied().collect();
            if !missing.is_empty() || !unlisted.is_empty() {
                return Err(StoreError::StageRejected(format!(
                    "listed segments not staged: {missing:?}; staged segments not listed: {unlisted:?}"
                )));
            }

            let staged = txn.open_table(STAGED_PAGES).map_err(backend(WHAT))?;
            let mut pages_t = txn.open_table(PAGES).map_err(backend(WHAT))?;
            let mut stage_prefix = actor_key(&actor_id);
            stage_prefix.extend_from_slice(&txid.to_be_bytes());
            let prefix_len = stage_prefix.len();
            let bounds = prefix_bounds(&stage_prefix);
            for row in staged
                .range::<&[u8]>(as_slices(&bounds))
                .map_err(backend(WHAT))?
            {
                let (k, v) = row.map_err(backend(WHAT))?;
                let (first, pgno) = parse_staged_suffix(k.value(), prefix_len)?;
                // Re-checked here so that finalize alone guarantees the published pages obey
                // the segment layout, whatever an earlier version of this code accepted.
                let idx = marker.segments.binary_search(&first).map_err(|_| {
                    StoreError::Corrupt(format!("staged page {pgno} of unknown segment {first}"))
                })?;
                let next = marker.segments.get(idx + 1).copied();
                if pgno < first || next.is_some_and(|n| pgno >= n) {
                    return Err(StoreError::StageRejected(format!(
                        "page {pgno} lies outside its segment {first}"
                    )));
                }
                if pgno <= db_size_pages {
                    pages_t
                        .insert(page_key(&actor_id, pgno).as_slice(), v.value())
                        .map_err(backend(WHAT))?;
                }
            }
            drop(staged);
            publish(txn, &mut pages_t, &actor_id, txid, db_size_pages)?;
            discard_stage(txn, &actor_id)?;
            Ok(txid)
        })
        .await
    }

    async fn register_node(
        &self,
        node_id: &str,
        node_url: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<NodeLease> {
        const WHAT: &str = "register node";
        let node_id = node_id.to_owned();
        let node_url = node_url.to_owned();
        self.write_with(WHAT, Durability::Immediate, move |txn| {
            let mut t = txn.open_table(NODES).map_err(backend(WHAT))?;
            let last: Option<NodeLease> = get_json(&t, node_id.as_bytes(), WHAT)?;
            let node = NodeLease {
                incarnation: last.map_or(1, |n| n.incarnation + 1),
                node_id,
                node_url,
                expires_ms: now_ms.saturating_add(ttl_ms),
            };
            put_json(&mut t, node.node_id.as_bytes(), &node, WHAT)?;
            Ok(node)
        })
        .await
    }

    async fn renew_node(
        &self,
        node: &NodeLease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<Option<NodeLease>> {
        const WHAT: &str = "renew node";
        let node = node.clone();
        self.write_with(WHAT, Durability::None, move |txn| {
            let mut t = txn.open_table(NODES).map_err(backend(WHAT))?;
            let held: Option<NodeLease> = get_json(&t, node.node_id.as_bytes(), WHAT)?;
            match held {
                Some(held) if held.incarnation == node.incarnation => {
                    let renewed = NodeLease {
                        expires_ms: now_ms.saturating_add(ttl_ms),
                        ..held
                    };
                    put_json(&mut t, renewed.node_id.as_bytes(), &renewed, WHAT)?;
                    Ok(Some(renewed))
                }
                Some(_) | None => Ok(None),
            }
        })
        .await
    }

    async fn get_node(&self, node_id: &str) -> StoreResult<Option<NodeLease>> {
        const WHAT: &str = "get node";
        let node_id = node_id.to_owned();
        self.read(WHAT, move |txn| {
            let t = txn.open_table(NODES).map_err(backend(WHAT))?;
            get_json(&t, node_id.as_bytes(), WHAT)
        })
        .await
    }

    async fn acquire_lease(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim> {
        const WHAT: &str = "acquire lease";
        let actor_id = actor_id.to_owned();
        let node = node.clone();
        self.write_with(WHAT, Durability::None, move |txn| {
            let mut t = txn.open_table(LEASES).map_err(backend(WHAT))?;
            let nodes = txn.open_table(NODES).map_err(backend(WHAT))?;
            let held: Option<StoredLease> = get_json(&t, actor_id.as_bytes(), WHAT)?;
            if let Some(held) = &held {
                let holder: Option<NodeLease> = get_json(&nodes, held.node_id.as_bytes(), WHAT)?;
                let view = held.view(&actor_id, holder.as_ref());
                if view.expires_ms > now_ms && held.node_id != node.node_id {
                    return Ok(LeaseClaim::HeldBy(view));
                }
            }
            let lease = StoredLease {
                epoch: held.map_or(1, |h| h.epoch + 1),
                node_id: node.node_id.clone(),
                node_url: node.node_url.clone(),
                node_incarnation: node.incarnation,
                released: false,
            };
            put_json(&mut t, actor_id.as_bytes(), &lease, WHAT)?;
            Ok(LeaseClaim::Acquired(lease.view(&actor_id, Some(&node))))
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<bool> {
        const WHAT: &str = "release lease";
        let lease = lease.clone();
        self.write_with(WHAT, Durability::None, move |txn| {
            let mut t = txn.open_table(LEASES).map_err(backend(WHAT))?;
            let held: Option<StoredLease> = get_json(&t, lease.actor_id.as_bytes(), WHAT)?;
            match held {
                Some(held) if held.node_id == lease.node_id && held.epoch == lease.epoch => {
                    let released = StoredLease {
                        released: true,
                        ..held
                    };
                    put_json(&mut t, lease.actor_id.as_bytes(), &released, WHAT)?;
                    Ok(true)
                }
                Some(_) | None => Ok(false),
            }
        })
        .await
    }

    async fn get_lease(&self, actor_id: &str) -> StoreResult<Option<Lease>> {
        const WHAT: &str = "get lease";
        let actor_id = actor_id.to_owned();
        self.read(WHAT, move |txn| {
            let t = txn.open_table(LEASES).map_err(backend(WHAT))?;
            let nodes = txn.open_table(NODES).map_err(backend(WHAT))?;
            let held: Option<StoredLease> = get_json(&t, actor_id.as_bytes(), WHAT)?;
            match held {
                Some(held) => {
                    let holder: Option<NodeLease> =
                        get_json(&nodes, held.node_id.as_bytes(), WHAT)?;
                    Ok(Some(held.view(&actor_id, holder.as_ref())))
                }
                None => Ok(None),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_components_are_prefix_free_and_ordered() {
        assert!(!tuple(&["ab"]).starts_with(&tuple(&["a"])));
        assert!(tuple(&["a"]) < tuple(&["a\0"]));
        assert!(tuple(&["a\0"]) < tuple(&["a\u{1}"]));
        assert!(tuple(&["a", "z"]) < tuple(&["ab", "a"]));
        assert_ne!(tuple(&["a\0", "b"]), tuple(&["a", "\0b"]));
    }

    #[test]
    fn timestamps_sort_numerically() {
        let ts = [i64::MIN, -5, -1, 0, 1, 5, i64::MAX];
        for w in ts.windows(2) {
            assert!(ts_bytes(w[0]) < ts_bytes(w[1]));
        }
    }

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }
}
