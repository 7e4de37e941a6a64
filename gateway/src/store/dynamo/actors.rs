//! Namespaces, runner configs, actor names, actor records and their indexes.
//!
//! An actor is its record item (`a#<id>`, `rec`) plus a small state item (`st`) that mirrors
//! the generation for the write fences. Creating an actor writes the record, the state, the
//! key reservation (`attribute_not_exists`, so concurrent creates of one key let exactly one
//! through) and the list and alarm index entries in one transaction; `update_actor` is a
//! transaction conditioned on the stored revision that also moves every index entry and,
//! when the generation changes, the state item's mirror of it. Inputs larger than a few KiB
//! live in immutable chunk items (an actor input can be 4 MiB; an item at most 400 KB), written
//! before the record that points to them, so a record never points to a missing blob.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::join_all;

use super::keys::*;
use super::table::{
    self, b, batch_get, batch_write, get_b, get_s, item, n, opt_b, opt_bool, opt_n, opt_s, s,
    sk_of, transact, tx_delete, tx_delete_if, tx_put, tx_put_if, tx_update, BatchOp, Cond, Item,
    Query, Range,
};
use super::views::Bounded;
use super::{DynamoStore, StoreError, StoreResult};
use crate::store::{ActorRecord, Namespace, RunnerConfigRecord};

/// Inputs up to this size stay in the record item.
const INLINE_INPUT_BYTES: usize = 8 * 1024;
/// Bytes per input chunk item.
const BLOB_CHUNK_BYTES: usize = 300_000;
/// Attempts of a read or write that raced a concurrent change and can simply run again.
const RACE_ATTEMPTS: u32 = 8;

/// Records this process last wrote or read, each with where its input lives, so updating a
/// record it just wrote (the supervisor's writes at every start and sleep) needs no read
/// first. One is used only when its revision is the one the caller expects; the update's
/// condition on that revision turns anything else into the same conflict a read would have
/// found. Bounded like the other per-actor hints (`views`); dropped when the actor unloads.
#[derive(Debug, Default)]
pub(super) struct RecordViews(Bounded<Option<(ActorRecord, InputRef)>>);

impl RecordViews {
    fn get(&self, actor_id: &str, revision: u64) -> Option<(ActorRecord, InputRef)> {
        self.0
            .get(actor_id)
            .flatten()
            .filter(|(r, _)| r.revision == revision)
    }

    fn put(&self, record: &ActorRecord, input: &InputRef) {
        self.0.update(&record.actor_id, |known| {
            *known = Some((record.clone(), input.clone()));
        });
    }

    pub(super) fn forget(&self, actor_id: &str) {
        self.0.remove(actor_id);
    }
}

/// Where an actor's input lives, as recorded on its record item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InputRef {
    None,
    Inline(Vec<u8>),
    Blob {
        id: String,
        chunks: usize,
        len: usize,
        hash: String,
    },
}

impl InputRef {
    fn attrs(&self) -> Vec<(&'static str, AttributeValue)> {
        match self {
            InputRef::None => Vec::new(),
            InputRef::Inline(bytes) => vec![("in", b(bytes.clone()))],
            InputRef::Blob {
                id,
                chunks,
                len,
                hash,
            } => vec![
                ("inb", s(id.clone())),
                ("inn", n(chunks)),
                ("inl", n(len)),
                ("inh", s(hash.clone())),
            ],
        }
    }

    fn read(it: &Item) -> StoreResult<Self> {
        if let Some(bytes) = opt_b(it, "in")? {
            return Ok(InputRef::Inline(bytes.to_vec()));
        }
        match opt_s(it, "inb")? {
            None => Ok(InputRef::None),
            Some(id) => Ok(InputRef::Blob {
                id: id.to_owned(),
                chunks: table::get_n(it, "inn")?,
                len: table::get_n(it, "inl")?,
                hash: get_s(it, "inh")?.to_owned(),
            }),
        }
    }
}

fn input_hash(bytes: &[u8]) -> String {
    format!("{:032x}", fnv128(&[bytes]))
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn to_json<T: serde::Serialize>(what: &str, v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encode {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, it: &Item) -> StoreResult<T> {
    serde_json::from_str(get_s(it, "j")?)
        .map_err(|e| StoreError::Corrupt(format!("decode {what}: {e}")))
}

/// The state item of a new actor: generation mirror, empty SQLite database, no intent.
pub(super) fn new_state_item(actor_id: &str, generation: u32) -> Item {
    item(
        actor_pk(actor_id),
        STATE_SK,
        [
            ("gen", n(generation)),
            ("nv", n(1)),
            ("hv", n(0)),
            ("fl", n(0)),
            ("head", n(0)),
            ("size", n(0)),
        ],
    )
}

/// The key reservation an actor holds, if it is live and has a key.
fn live_key(a: &ActorRecord) -> Option<String> {
    match (&a.key, a.is_destroyed()) {
        (Some(key), false) => Some(actor_key_pk(&a.namespace_id, &a.name, key)),
        (Some(_), true) | (None, _) => None,
    }
}

/// The alarm entry an actor holds: destroyed actors are never woken.
fn alarm_entry(a: &ActorRecord) -> Option<(String, String)> {
    match (a.alarm_ts, a.is_destroyed()) {
        (Some(ts), false) => Some((alarm_pk(&a.actor_id), time_id_sk(ts, &a.actor_id))),
        (Some(_), true) | (None, _) => None,
    }
}

/// Keys of the two list-index entries of an actor.
fn index_keys(a: &ActorRecord) -> [(String, String); 2] {
    let sk = time_id_sk(a.create_ts, &a.actor_id);
    [
        (by_namespace_pk(&a.namespace_id), sk.clone()),
        (by_name_pk(&a.namespace_id, &a.name), sk),
    ]
}

fn index_item(pk: String, sk: String, a: &ActorRecord) -> Item {
    item(
        pk,
        sk,
        [
            ("id", s(a.actor_id.clone())),
            ("d", AttributeValue::Bool(a.is_destroyed())),
        ],
    )
}

/// The record item: the record as JSON without its input, the revision for conditions, and
/// where the input is.
fn record_item(a: &ActorRecord, input: &InputRef) -> StoreResult<Item> {
    let mut bare = a.clone();
    bare.input = None;
    let mut it = item(
        actor_pk(&a.actor_id),
        REC_SK,
        [
            ("j", s(to_json("actor record", &bare)?)),
            ("rev", n(a.revision)),
        ],
    );
    it.extend(input.attrs().into_iter().map(|(k, v)| (k.to_owned(), v)));
    Ok(it)
}

fn decode_record(it: &Item) -> StoreResult<(ActorRecord, InputRef)> {
    let rec: ActorRecord = from_json("actor record", it)?;
    let input = InputRef::read(it)?;
    Ok((rec, input))
}

// === impl DynamoStore ===

impl DynamoStore {
    // === namespaces ===

    pub(super) async fn create_namespace_impl(&self, ns: Namespace) -> StoreResult<()> {
        let it = item(
            NAMESPACES_PK,
            namespace_sk(&ns.name),
            [("j", s(to_json("namespace", &ns)?))],
        );
        match self.put_if(it, "attribute_not_exists(#pk)", vec![]).await? {
            Cond::Applied(()) => Ok(()),
            Cond::Failed(_) => Err(StoreError::AlreadyExists {
                what: format!("namespace {}", ns.name),
            }),
        }
    }

    pub(super) async fn get_namespace_impl(&self, name: &str) -> StoreResult<Option<Namespace>> {
        match self.get(NAMESPACES_PK, &namespace_sk(name)).await? {
            Some(it) => from_json("namespace", &it).map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn list_namespaces_impl(&self) -> StoreResult<Vec<Namespace>> {
        let q = Query::new(NAMESPACES_PK, Range::Prefix("n#".to_owned()));
        let items = table::query_all(&self.client, &self.table, &q).await?;
        items.iter().map(|it| from_json("namespace", it)).collect()
    }

    // === runner configs ===

    pub(super) async fn put_runner_config_impl(&self, cfg: RunnerConfigRecord) -> StoreResult<()> {
        let it = item(
            namespace_data_pk(&cfg.namespace_id),
            format!("{RUNNER_CONFIG_PREFIX}{}", cfg.name),
            [("j", s(to_json("runner config", &cfg)?))],
        );
        match self.put_if(it, "", vec![]).await? {
            Cond::Applied(()) | Cond::Failed(_) => Ok(()),
        }
    }

    pub(super) async fn get_runner_config_impl(
        &self,
        namespace_id: &str,
        name: &str,
    ) -> StoreResult<Option<RunnerConfigRecord>> {
        let pk = namespace_data_pk(namespace_id);
        match self
            .get(&pk, &format!("{RUNNER_CONFIG_PREFIX}{name}"))
            .await?
        {
            Some(it) => from_json("runner config", &it).map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn list_runner_configs_impl(
        &self,
        namespace_id: &str,
    ) -> StoreResult<Vec<RunnerConfigRecord>> {
        let q = Query::new(
            namespace_data_pk(namespace_id),
            Range::Prefix(RUNNER_CONFIG_PREFIX.to_owned()),
        );
        let items = table::query_all(&self.client, &self.table, &q).await?;
        items
            .iter()
            .map(|it| from_json("runner config", it))
            .collect()
    }

    pub(super) async fn delete_runner_config_impl(
        &self,
        namespace_id: &str,
        name: &str,
    ) -> StoreResult<bool> {
        self.delete(
            &namespace_data_pk(namespace_id),
            &format!("{RUNNER_CONFIG_PREFIX}{name}"),
        )
        .await
    }

    // === actor names ===

    pub(super) async fn put_actor_names_impl(
        &self,
        namespace_id: &str,
        names: Vec<(String, String)>,
    ) -> StoreResult<()> {
        // One action per item in a transaction: the last announcement of a name wins.
        let mut latest: HashMap<String, String> = HashMap::new();
        for (name, metadata) in names {
            latest.insert(name, metadata);
        }
        let pk = namespace_data_pk(namespace_id);
        let mut actions = Vec::with_capacity(latest.len());
        for (name, metadata) in latest {
            let it = item(
                pk.clone(),
                format!("{ACTOR_NAME_PREFIX}{name}"),
                [("name", s(name)), ("meta", s(metadata))],
            );
            actions.push(tx_put(&self.table, it)?);
        }
        for chunk in actions.chunks(table::TX_MAX_ITEMS) {
            match transact(&self.client, "put actor names", chunk.to_vec()).await? {
                Ok(()) => {}
                Err(c) => {
                    return Err(StoreError::Backend(format!(
                        "put actor names: unexpected condition failure {:?}",
                        c.reasons
                    )))
                }
            }
        }
        Ok(())
    }

    pub(super) async fn list_actor_names_impl(
        &self,
        namespace_id: &str,
    ) -> StoreResult<Vec<(String, String)>> {
        let q = Query::new(
            namespace_data_pk(namespace_id),
            Range::Prefix(ACTOR_NAME_PREFIX.to_owned()),
        );
        let items = table::query_all(&self.client, &self.table, &q).await?;
        items
            .iter()
            .map(|it| Ok((get_s(it, "name")?.to_owned(), get_s(it, "meta")?.to_owned())))
            .collect()
    }

    // === actor inputs ===

    /// Decides where an input goes; a large one is written as new chunk items first (they
    /// are invisible until a record points at them). `reuse` is the stored reference, kept
    /// when the input did not change.
    async fn place_input(
        &self,
        actor_id: &str,
        input: Option<&[u8]>,
        reuse: Option<&InputRef>,
    ) -> StoreResult<(InputRef, Option<String>)> {
        let bytes = match input {
            None => return Ok((InputRef::None, None)),
            Some(bytes) if bytes.len() <= INLINE_INPUT_BYTES => {
                return Ok((InputRef::Inline(bytes.to_vec()), None))
            }
            Some(bytes) => bytes,
        };
        let hash = input_hash(bytes);
        if let Some(InputRef::Blob { len, hash: old, .. }) = reuse {
            if *len == bytes.len() && *old == hash {
                if let Some(r) = reuse {
                    return Ok((r.clone(), None));
                }
            }
        }
        let id = new_id();
        let pk = actor_pk(actor_id);
        let chunks: Vec<&[u8]> = bytes.chunks(BLOB_CHUNK_BYTES).collect();
        let ops = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| BatchOp::Put(item(pk.clone(), blob_sk(&id, i), [("b", b(c.to_vec()))])))
            .collect();
        batch_write(&self.client, &self.table, ops).await?;
        Ok((
            InputRef::Blob {
                id: id.clone(),
                chunks: chunks.len(),
                len: bytes.len(),
                hash,
            },
            Some(id),
        ))
    }

    /// Deletes the chunks of a blob no record points at (best effort: leftovers are only
    /// wasted space).
    async fn drop_blob(&self, actor_id: &str, blob: &str) {
        let q = Query {
            projection: Some("#pk, #sk"),
            ..Query::new(actor_pk(actor_id), Range::Prefix(blob_prefix(blob)))
        };
        let res = async {
            let items = table::query_all(&self.client, &self.table, &q).await?;
            let ops = items
                .into_iter()
                .map(|it| Ok(BatchOp::Delete(table::key(actor_pk(actor_id), sk_of(&it)?))))
                .collect::<StoreResult<Vec<_>>>()?;
            batch_write(&self.client, &self.table, ops).await
        }
        .await;
        if let Err(err) = res {
            tracing::warn!(error = %err, "dropping an unused actor input blob failed");
        }
    }

    /// Reads a blob; `None` if a chunk is gone (the record moved on to another blob).
    async fn read_blob(
        &self,
        actor_id: &str,
        id: &str,
        chunks: usize,
        len: usize,
    ) -> StoreResult<Option<Vec<u8>>> {
        let q = Query::new(actor_pk(actor_id), Range::Prefix(blob_prefix(id)));
        let items = table::query_all(&self.client, &self.table, &q).await?;
        if items.len() != chunks {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(len);
        for it in &items {
            out.extend_from_slice(get_b(it, "b")?);
        }
        if out.len() != len {
            return Err(StoreError::Corrupt(format!(
                "actor input blob {id} has {} bytes, its record says {len}",
                out.len()
            )));
        }
        Ok(Some(out))
    }

    /// Turns a record item into the full record, fetching a chunked input.
    async fn load_record(&self, it: &Item) -> StoreResult<Option<ActorRecord>> {
        let (mut rec, input) = decode_record(it)?;
        rec.input = match input {
            InputRef::None => None,
            InputRef::Inline(bytes) => Some(bytes),
            InputRef::Blob {
                id, chunks, len, ..
            } => match self.read_blob(&rec.actor_id, &id, chunks, len).await? {
                Some(bytes) => Some(bytes),
                None => return Ok(None),
            },
        };
        Ok(Some(rec))
    }

    // === actors ===

    pub(super) async fn create_actor_impl(&self, actor: ActorRecord) -> StoreResult<()> {
        let (input, blob) = self
            .place_input(&actor.actor_id, actor.input.as_deref(), None)
            .await?;
        let res = self.create_actor_tx(&actor, &input).await;
        if res.is_ok() {
            self.records.put(&actor, &input);
            // Nothing has run it: its KV and SQLite database are empty.
            self.kv_clean.mark_empty(&actor.actor_id);
            self.sq_views.created(&actor.actor_id, actor.generation);
        }
        if res.is_err() {
            if let Some(blob) = blob {
                self.drop_blob(&actor.actor_id, &blob).await;
            }
        }
        res
    }

    async fn create_actor_tx(&self, actor: &ActorRecord, input: &InputRef) -> StoreResult<()> {
        let t = &*self.table;
        let mut actions = vec![
            tx_put_if(
                t,
                record_item(actor, input)?,
                "attribute_not_exists(#pk)",
                vec![],
            )?,
            tx_put_if(
                t,
                new_state_item(&actor.actor_id, actor.generation),
                "attribute_not_exists(#pk)",
                vec![],
            )?,
        ];
        let key_at = live_key(actor).map(|pk| (actions.len(), pk));
        if let Some((_, pk)) = &key_at {
            actions.push(tx_put_if(
                t,
                key_item(pk, actor),
                "attribute_not_exists(#pk)",
                vec![],
            )?);
        }
        for (pk, sk) in index_keys(actor) {
            actions.push(tx_put(t, index_item(pk, sk, actor))?);
        }
        if let Some((pk, sk)) = alarm_entry(actor) {
            actions.push(tx_put(t, alarm_item(pk, sk, actor))?);
        }
        for attempt in 0..RACE_ATTEMPTS {
            let cancelled = match transact(&self.client, "create actor", actions.clone()).await? {
                Ok(()) => return Ok(()),
                Err(c) => c,
            };
            if cancelled.failed(0).is_some() || cancelled.failed(1).is_some() {
                return Err(StoreError::AlreadyExists {
                    what: format!("actor {}", actor.actor_id),
                });
            }
            if let Some((at, pk)) = &key_at {
                if let Some(seen) = cancelled.failed(*at) {
                    match self.key_holder(pk, seen).await? {
                        Some(holder) => {
                            return Err(StoreError::KeyTaken {
                                existing_actor_id: holder,
                            })
                        }
                        // Released in the meantime: try again.
                        None => {
                            table::backoff(attempt).await;
                            continue;
                        }
                    }
                }
            }
            return Err(StoreError::Backend(format!(
                "create actor: unexpected cancellation {:?}",
                cancelled.reasons
            )));
        }
        Err(StoreError::Conflict {
            what: format!("key of actor {}", actor.actor_id),
        })
    }

    /// The actor holding a key reservation: from the item a failed condition returned, or
    /// read again when the service did not return it.
    async fn key_holder(&self, pk: &str, seen: Option<&Item>) -> StoreResult<Option<String>> {
        let it = match seen {
            Some(it) => Some(it.clone()),
            None => self.get(pk, KEY_SK).await?,
        };
        match it {
            Some(it) => Ok(Some(get_s(&it, "id")?.to_owned())),
            None => Ok(None),
        }
    }

    pub(super) async fn get_actor_impl(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>> {
        let pk = actor_pk(actor_id);
        for _ in 0..RACE_ATTEMPTS {
            let Some(it) = self.get(&pk, REC_SK).await? else {
                return Ok(None);
            };
            // `None`: an update replaced the input between our two reads; read again.
            if let Some(rec) = self.load_record(&it).await? {
                self.records.put(&rec, &InputRef::read(&it)?);
                return Ok(Some(rec));
            }
        }
        Err(StoreError::Unavailable(format!(
            "actor {actor_id} kept changing while being read"
        )))
    }

    pub(super) async fn get_actor_by_key_impl(
        &self,
        namespace_id: &str,
        name: &str,
        key: &str,
    ) -> StoreResult<Option<ActorRecord>> {
        let pk = actor_key_pk(namespace_id, name, key);
        let Some(it) = self.get(&pk, KEY_SK).await? else {
            return Ok(None);
        };
        let id = get_s(&it, "id")?;
        // The reservation and the record change together; checking the record as well keeps
        // a hashed reservation key honest.
        Ok(self.get_actor_impl(id).await?.filter(|a| {
            !a.is_destroyed()
                && a.namespace_id == namespace_id
                && a.name == name
                && a.key.as_deref() == Some(key)
        }))
    }

    /// Records by id, in the order given; every id must exist (they come from indexes that
    /// are written with the records).
    async fn load_records(&self, ids: Vec<String>) -> StoreResult<Vec<ActorRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ids
            .iter()
            .map(|id| table::key(actor_pk(id), REC_SK))
            .collect();
        let items = batch_get(&self.client, &self.table, keys).await?;
        let mut by_pk: HashMap<String, Item> = HashMap::new();
        for it in items {
            by_pk.insert(get_s(&it, "pk")?.to_owned(), it);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = match by_pk.get(&actor_pk(&id)) {
                Some(it) => match self.load_record(it).await? {
                    Some(rec) => rec,
                    None => self.get_actor_impl(&id).await?.ok_or_else(|| {
                        StoreError::Corrupt(format!("index refers to missing actor {id}"))
                    })?,
                },
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "index refers to missing actor {id}"
                    )))
                }
            };
            out.push(rec);
        }
        Ok(out)
    }

    pub(super) async fn list_actors_impl(
        &self,
        namespace_id: &str,
        name: Option<&str>,
        include_destroyed: bool,
        limit: usize,
    ) -> StoreResult<Vec<ActorRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pk = match name {
            Some(name) => by_name_pk(namespace_id, name),
            None => by_namespace_pk(namespace_id),
        };
        let q = Query::new(pk, Range::All);
        let mut ids = Vec::new();
        let mut start = None;
        'pages: loop {
            let (items, next) = table::query_page(&self.client, &self.table, &q, start).await?;
            for it in &items {
                if include_destroyed || !opt_bool(it, "d")?.unwrap_or(false) {
                    ids.push(get_s(it, "id")?.to_owned());
                    if ids.len() >= limit {
                        break 'pages;
                    }
                }
            }
            match next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        self.load_records(ids).await
    }

    pub(super) async fn update_actor_impl(
        &self,
        actor: ActorRecord,
        expected_revision: u64,
    ) -> StoreResult<()> {
        let pk = actor_pk(&actor.actor_id);
        for attempt in 0..RACE_ATTEMPTS {
            let known = if attempt == 0 {
                self.records.get(&actor.actor_id, expected_revision)
            } else {
                None
            };
            let (old, old_input) = match known {
                Some(known) => known,
                None => {
                    let Some(old_item) = self.get(&pk, REC_SK).await? else {
                        return Err(StoreError::NotFound {
                            what: format!("actor {}", actor.actor_id),
                        });
                    };
                    decode_record(&old_item)?
                }
            };
            if old.revision != expected_revision {
                return Err(conflict(&actor.actor_id, old.revision, expected_revision));
            }
            // A generation moving from 0 is the actor's first start: nothing can have run it
            // or written its data. Any later change may follow another node running it, so
            // what this store remembers of its KV and SQLite state no longer holds.
            let first_start = old.generation == 0 && actor.generation != 0;
            if old.generation != actor.generation && !first_start {
                self.kv_clean.unmark(&actor.actor_id);
                self.drop_sq_view(&actor.actor_id);
            }
            let new = ActorRecord {
                revision: expected_revision + 1,
                ..actor.clone()
            };
            let (input, blob) = self
                .place_input(&new.actor_id, new.input.as_deref(), Some(&old_input))
                .await?;
            match self
                .update_actor_tx(&old, &new, &input, expected_revision)
                .await
            {
                Ok(true) => {
                    if first_start {
                        self.sq_views.set_gen(&new.actor_id, new.generation);
                    }
                    self.records.put(&new, &input);
                    // The old blob is unreachable unless the record still points at it.
                    if let InputRef::Blob { id: old_id, .. } = &old_input {
                        let kept = matches!(&input, InputRef::Blob { id, .. } if id == old_id);
                        if !kept {
                            self.drop_blob(&new.actor_id, old_id).await;
                        }
                    }
                    return Ok(());
                }
                Ok(false) => {
                    // A key we must take was released meanwhile; read and try again.
                    if let Some(blob) = blob {
                        self.drop_blob(&new.actor_id, &blob).await;
                    }
                    table::backoff(attempt).await;
                }
                Err(err) => {
                    self.records.forget(&new.actor_id);
                    if let Some(blob) = blob {
                        self.drop_blob(&new.actor_id, &blob).await;
                    }
                    return Err(err);
                }
            }
        }
        Err(StoreError::Conflict {
            what: format!("key of actor {}", actor.actor_id),
        })
    }

    /// The update transaction; `Ok(false)` when it should be retried from a fresh read.
    async fn update_actor_tx(
        &self,
        old: &ActorRecord,
        new: &ActorRecord,
        input: &InputRef,
        expected_revision: u64,
    ) -> StoreResult<bool> {
        let t = &*self.table;
        let mut actions = vec![tx_put_if(
            t,
            record_item(new, input)?,
            "#rev = :rev",
            vec![(":rev", n(expected_revision))],
        )?];
        let me = || vec![(":me", s(new.actor_id.clone()))];
        let (old_key, new_key) = (live_key(old), live_key(new));
        let mut release_at = None;
        let mut take_at = None;
        if old_key != new_key {
            if let Some(pk) = &old_key {
                release_at = Some(actions.len());
                actions.push(tx_delete_if(t, table::key(pk, KEY_SK), "#id = :me", me())?);
            }
            if let Some(pk) = &new_key {
                take_at = Some((actions.len(), pk.clone()));
                actions.push(tx_put_if(
                    t,
                    key_item(pk, new),
                    "attribute_not_exists(#pk) OR #id = :me",
                    me(),
                )?);
            }
        }
        let (old_alarm, new_alarm) = (alarm_entry(old), alarm_entry(new));
        if old_alarm != new_alarm {
            if let Some((pk, sk)) = old_alarm {
                actions.push(tx_delete(t, table::key(pk, sk))?);
            }
            if let Some((pk, sk)) = new_alarm {
                actions.push(tx_put(t, alarm_item(pk, sk, new))?);
            }
        }
        let (old_idx, new_idx) = (index_keys(old), index_keys(new));
        if old_idx != new_idx || old.is_destroyed() != new.is_destroyed() {
            for (o, (pk, sk)) in old_idx.iter().zip(new_idx) {
                if *o != (pk.clone(), sk.clone()) {
                    actions.push(tx_delete(t, table::key(o.0.clone(), o.1.clone()))?);
                }
                actions.push(tx_put(t, index_item(pk, sk, new))?);
            }
        }
        let state_at = (old.generation != new.generation).then_some(actions.len());
        if state_at.is_some() {
            actions.push(tx_update(
                t,
                table::key(actor_pk(&new.actor_id), STATE_SK),
                "SET #gen = :g",
                "attribute_exists(#pk)",
                vec![(":g", n(new.generation))],
            )?);
        }
        let cancelled = match transact(&self.client, "update actor", actions).await? {
            Ok(()) => return Ok(true),
            Err(c) => c,
        };
        if let Some(seen) = cancelled.failed(0) {
            let current = match seen {
                Some(it) => opt_n(it, "rev")?.unwrap_or(0),
                None => 0,
            };
            return Err(conflict(&new.actor_id, current, expected_revision));
        }
        if let Some((at, pk)) = take_at {
            if let Some(seen) = cancelled.failed(at) {
                return match self.key_holder(&pk, seen).await? {
                    Some(holder) => Err(StoreError::KeyTaken {
                        existing_actor_id: holder,
                    }),
                    None => Ok(false),
                };
            }
        }
        if release_at.is_some_and(|at| cancelled.failed(at).is_some()) {
            return Err(StoreError::Corrupt(format!(
                "actor {} had a key reservation held by another actor",
                new.actor_id
            )));
        }
        if state_at.is_some_and(|at| cancelled.failed(at).is_some()) {
            return Err(StoreError::Corrupt(format!(
                "actor {} has no state item",
                new.actor_id
            )));
        }
        Err(StoreError::Backend(format!(
            "update actor: unexpected cancellation {:?}",
            cancelled.reasons
        )))
    }

    pub(super) async fn due_alarms_impl(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<ActorRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let page = i32::try_from(limit).unwrap_or(i32::MAX);
        let shards = (0..ALARM_SHARDS).map(|shard| {
            let q = Query {
                page_size: Some(page),
                ..Query::new(alarm_shard_pk(shard), Range::Below(alarm_due_below(now_ms)))
            };
            async move {
                let mut out = Vec::new();
                let mut start = None;
                loop {
                    let (items, next) =
                        table::query_page(&self.client, &self.table, &q, start).await?;
                    for it in &items {
                        out.push((sk_of(it)?.to_owned(), get_s(it, "id")?.to_owned()));
                    }
                    match next {
                        Some(n) if out.len() < limit => start = Some(n),
                        Some(_) | None => return Ok::<_, StoreError>(out),
                    }
                }
            }
        });
        let mut due = Vec::new();
        for shard in join_all(shards).await {
            due.extend(shard?);
        }
        due.sort();
        due.truncate(limit);
        let ids = due.into_iter().map(|(_, id)| id).collect();
        let recs = self.load_records(ids).await?;
        // The index and the records change together; checking the records too keeps a
        // concurrent update from waking an actor whose alarm just moved.
        Ok(recs
            .into_iter()
            .filter(|a| !a.is_destroyed() && a.alarm_ts.is_some_and(|t| t <= now_ms))
            .collect())
    }
}

fn conflict(actor_id: &str, current: u64, expected: u64) -> StoreError {
    StoreError::Conflict {
        what: format!("actor {actor_id} (revision {current}, expected {expected})"),
    }
}

fn key_item(pk: &str, a: &ActorRecord) -> Item {
    item(
        pk,
        KEY_SK,
        [
            ("id", s(a.actor_id.clone())),
            ("ns", s(a.namespace_id.clone())),
            ("name", s(a.name.clone())),
        ],
    )
}

fn alarm_item(pk: String, sk: String, a: &ActorRecord) -> Item {
    item(pk, sk, [("id", s(a.actor_id.clone()))])
}
