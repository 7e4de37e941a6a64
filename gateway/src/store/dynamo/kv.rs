//! Actor KV on DynamoDB: one item per key in the actor's partition (`kv#…`, see `keys`).
//!
//! A write that fits one transaction (at most 99 keys and 3.5 MB; every put the gateway
//! accepts of up to 99 keys) is that transaction plus a `ConditionCheck` on the actor's state
//! item: generation equal and no intent pending. Anything larger (a put or delete of up to 128
//! keys, a range delete or drop over many keys, `clear_actor_data`) becomes an *intent*: its
//! body is written to `kvi#<id>#…` chunk items, then one conditional update of the state item
//! (generation equal, no other intent) publishes it. From that moment the write counts as
//! done: the writer applies it in fenced transactions (`kvi == id`) and removes the mark,
//! and any reader or writer that finds the mark first applies it itself. The operations of
//! one intent touch disjoint keys (deduplicated puts or deletes, or a single range), so
//! several appliers racing converge to the same result. Readers check the mark in the same
//! round trip as their data and roll a pending intent forward before answering.

use std::collections::HashMap;
use std::ops::Bound;

use aws_sdk_dynamodb::types::ReturnValue;

use super::keys::*;
use super::table::{
    self, b, batch_get, batch_write, get_b, get_n, item, n, opt_s, s, sk_of, transact, tx_check,
    tx_delete, tx_put, BatchOp, Cond, Item, Query, Range, ITEM_MAX_VALUE_BYTES, TX_MAX_BYTES,
    TX_MAX_ITEMS,
};
use super::{DynamoStore, StoreError, StoreResult};
use crate::store::{KvEntry, KvQuery};

/// Attempts of a KV call that keeps finding intents or races.
const KV_ATTEMPTS: u32 = 8;
/// Bytes per intent body chunk item.
const INTENT_CHUNK_BYTES: usize = 300_000;
/// Header of an encoded intent body.
const INTENT_MAGIC: &[u8; 4] = b"RVK1";

/// One KV write as the trait asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KvWrite {
    /// Upserts; the last entry of a repeated key wins.
    Put {
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        now_ms: i64,
    },
    /// Deletes these keys.
    Delete(Vec<Vec<u8>>),
    /// Deletes `[start, end)`; `end: None` means to the last key.
    DeleteRange {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

/// An intent's body: the write plus the generation it was fenced with (the version puts
/// record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Intent {
    pub generation: u32,
    pub write: KvWrite,
}

/// Long keys sharing one sort-key group (its id and members with their full keys), held
/// until the group ends so they can be sorted by key.
type Group = (String, Vec<(Vec<u8>, Item)>);

/// Which keys a list or range operation covers.
#[derive(Debug, Clone)]
struct KvRange {
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    prefix: Option<Vec<u8>>,
}

impl KvRange {
    fn from_query(q: KvQuery) -> Self {
        match q {
            KvQuery::All => KvRange {
                start: Bound::Unbounded,
                end: Bound::Unbounded,
                prefix: None,
            },
            KvQuery::Prefix(p) => KvRange {
                start: Bound::Unbounded,
                end: Bound::Unbounded,
                prefix: Some(p),
            },
            KvQuery::Range {
                start,
                end,
                exclusive,
            } => KvRange {
                start: Bound::Included(start),
                end: if exclusive {
                    Bound::Excluded(end)
                } else {
                    Bound::Included(end)
                },
                prefix: None,
            },
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        let in_prefix = self.prefix.as_ref().is_none_or(|p| key.starts_with(p));
        after_start && before_end && in_prefix
    }

    /// The sort-key range that holds every matching key (readers filter the rest), or
    /// `None` when no key can match.
    fn sk_range(&self) -> Option<Range> {
        if let Some(p) = &self.prefix {
            return Some(Range::Prefix(kv_prefix(p)));
        }
        let lower = match &self.start {
            Bound::Included(s) | Bound::Excluded(s) => kv_lower(s),
            Bound::Unbounded => KV_PREFIX.to_owned(),
        };
        let upper = match &self.end {
            Bound::Included(e) | Bound::Excluded(e) => kv_upper(e),
            // Every KV sort key continues with a hex digit or `!` after the prefix.
            Bound::Unbounded => format!("{KV_PREFIX}~"),
        };
        (lower <= upper).then_some(Range::Between(lower, upper))
    }
}

fn entry_item(pk: &str, key: &[u8], value: &[u8], generation: u32, now_ms: i64) -> Item {
    item(
        pk,
        kv_sk(key),
        [
            ("k", b(key.to_vec())),
            ("v", b(value.to_vec())),
            ("g", n(generation)),
            ("t", n(now_ms)),
        ],
    )
}

fn decode_entry(it: &Item) -> StoreResult<KvEntry> {
    let generation: u32 = get_n(it, "g")?;
    Ok(KvEntry {
        key: get_b(it, "k")?.to_vec(),
        value: get_b(it, "v")?.to_vec(),
        version: generation.to_be_bytes().to_vec(),
        update_ts: get_n(it, "t")?,
    })
}

/// Puts deduplicated (last wins) and keys deduplicated, in first-seen order.
fn dedupe_puts(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut last: HashMap<&[u8], usize> = HashMap::new();
    for (i, (k, _)) in entries.iter().enumerate() {
        last.insert(k, i);
    }
    entries
        .iter()
        .enumerate()
        .filter(|(i, (k, _))| last.get(k.as_slice()) == Some(i))
        .map(|(_, e)| e.clone())
        .collect()
}

fn dedupe_keys(keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    keys.iter().filter(|k| seen.insert(*k)).cloned().collect()
}

/// A batch of point operations, as transaction actions.
enum PointOp {
    Put(Item),
    Delete(Item),
}

impl PointOp {
    fn bytes(&self) -> usize {
        let attr_len = |it: &Item| -> usize {
            it.values()
                .map(|v| match v {
                    aws_sdk_dynamodb::types::AttributeValue::B(b) => b.as_ref().len(),
                    aws_sdk_dynamodb::types::AttributeValue::S(s) => s.len(),
                    _ => 16,
                })
                .sum()
        };
        match self {
            PointOp::Put(it) | PointOp::Delete(it) => attr_len(it) + 64,
        }
    }
}

/// Splits point operations into transaction-sized groups, leaving one slot for the fence.
fn batches(ops: Vec<PointOp>) -> Vec<Vec<PointOp>> {
    let mut out: Vec<Vec<PointOp>> = Vec::new();
    let mut cur = Vec::new();
    let mut cur_bytes = 0;
    for op in ops {
        let size = op.bytes();
        if !cur.is_empty() && (cur.len() + 1 >= TX_MAX_ITEMS || cur_bytes + size > TX_MAX_BYTES) {
            out.push(std::mem::take(&mut cur));
            cur_bytes = 0;
        }
        cur_bytes += size;
        cur.push(op);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

// === intent encoding ===

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes an intent body: magic, generation, then a tagged write.
pub(super) fn encode_intent(intent: &Intent) -> Vec<u8> {
    let mut out = INTENT_MAGIC.to_vec();
    out.extend_from_slice(&intent.generation.to_be_bytes());
    match &intent.write {
        KvWrite::Put { entries, now_ms } => {
            out.push(1);
            out.extend_from_slice(&now_ms.to_be_bytes());
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for (k, v) in entries {
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
        }
        KvWrite::Delete(keys) => {
            out.push(2);
            out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
            for k in keys {
                put_bytes(&mut out, k);
            }
        }
        KvWrite::DeleteRange { start, end } => {
            out.push(3);
            put_bytes(&mut out, start);
            match end {
                Some(e) => {
                    out.push(1);
                    put_bytes(&mut out, e);
                }
                None => out.push(0),
            }
        }
    }
    out
}

/// Reads what `encode_intent` wrote; any inconsistency is `Corrupt`.
pub(super) fn decode_intent(bytes: &[u8]) -> StoreResult<Intent> {
    struct R<'a>(&'a [u8]);
    impl<'a> R<'a> {
        fn take(&mut self, n: usize) -> StoreResult<&'a [u8]> {
            if self.0.len() < n {
                return Err(StoreError::Corrupt(
                    "kv intent body is truncated".to_owned(),
                ));
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Ok(a)
        }
        fn u8(&mut self) -> StoreResult<u8> {
            Ok(self.take(1)?[0])
        }
        fn u32(&mut self) -> StoreResult<u32> {
            let mut buf = [0; 4];
            buf.copy_from_slice(self.take(4)?);
            Ok(u32::from_be_bytes(buf))
        }
        fn i64(&mut self) -> StoreResult<i64> {
            let mut buf = [0; 8];
            buf.copy_from_slice(self.take(8)?);
            Ok(i64::from_be_bytes(buf))
        }
        fn bytes(&mut self) -> StoreResult<Vec<u8>> {
            let n = self.u32()? as usize;
            Ok(self.take(n)?.to_vec())
        }
    }
    let mut r = R(bytes);
    if r.take(4)? != INTENT_MAGIC {
        return Err(StoreError::Corrupt(
            "kv intent body has a foreign header".to_owned(),
        ));
    }
    let generation = r.u32()?;
    let write = match r.u8()? {
        1 => {
            let now_ms = r.i64()?;
            let count = r.u32()? as usize;
            let mut entries = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                let k = r.bytes()?;
                let v = r.bytes()?;
                entries.push((k, v));
            }
            KvWrite::Put { entries, now_ms }
        }
        2 => {
            let count = r.u32()? as usize;
            let mut keys = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                keys.push(r.bytes()?);
            }
            KvWrite::Delete(keys)
        }
        3 => {
            let start = r.bytes()?;
            let end = match r.u8()? {
                0 => None,
                1 => Some(r.bytes()?),
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "kv intent range end marker {other}"
                    )))
                }
            };
            KvWrite::DeleteRange { start, end }
        }
        other => return Err(StoreError::Corrupt(format!("kv intent kind {other}"))),
    };
    if !r.0.is_empty() {
        return Err(StoreError::Corrupt(
            "kv intent body has trailing bytes".to_owned(),
        ));
    }
    Ok(Intent { generation, write })
}

/// What a failed fence saw on the state item.
enum FenceSeen {
    /// An intent is pending: roll it forward, then try again.
    Intent(String),
    /// Nothing that explains the failure any more (raced): try again.
    Retry,
}

/// Classifies a failed `gen == g AND no intent` condition.
fn fence_failure(
    actor_id: &str,
    given: Option<u32>,
    seen: Option<&Item>,
) -> StoreResult<FenceSeen> {
    let Some(st) = seen else {
        return Err(StoreError::NotFound {
            what: format!("actor {actor_id}"),
        });
    };
    let current: u32 = get_n(st, "gen")?;
    if let Some(given) = given {
        if given != current {
            return Err(StoreError::StaleGeneration { given, current });
        }
    }
    match opt_s(st, "kvi")? {
        Some(id) => Ok(FenceSeen::Intent(id.to_owned())),
        None => Ok(FenceSeen::Retry),
    }
}

// === impl DynamoStore ===

impl DynamoStore {
    pub(super) async fn kv_get_impl(
        &self,
        actor_id: &str,
        keys: &[Vec<u8>],
    ) -> StoreResult<Vec<KvEntry>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.kv_clean.is_empty(actor_id) {
            return Ok(Vec::new());
        }
        let pk = actor_pk(actor_id);
        let uniq = dedupe_keys(keys);
        for _ in 0..KV_ATTEMPTS {
            let reads = uniq
                .iter()
                .map(|k| table::key(pk.clone(), kv_sk(k)))
                .collect();
            let read = batch_get(&self.client, &self.table, reads);
            let Some(items) = self.read_checked(actor_id, &pk, read).await? else {
                continue;
            };
            let mut by_sk: HashMap<String, Item> = HashMap::new();
            for it in items {
                by_sk.insert(sk_of(&it)?.to_owned(), it);
            }
            let mut out = Vec::new();
            for k in keys {
                if let Some(it) = by_sk.get(&kv_sk(k)) {
                    // A long key shares its sort key with no other key unless the hash collides;
                    // comparing the stored key keeps a collision from returning a foreign value.
                    if get_b(it, "k")? == k.as_slice() {
                        out.push(decode_entry(it)?);
                    }
                }
            }
            return Ok(out);
        }
        Err(StoreError::Unavailable(format!(
            "kv of actor {actor_id} kept changing while being read"
        )))
    }

    pub(super) async fn kv_list_impl(
        &self,
        actor_id: &str,
        query: KvQuery,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Vec<KvEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        if self.kv_clean.is_empty(actor_id) {
            return Ok(Vec::new());
        }
        let range = KvRange::from_query(query);
        let pk = actor_pk(actor_id);
        for _ in 0..KV_ATTEMPTS {
            let read = self.list_range(&pk, &range, reverse, limit, false);
            let Some(items) = self.read_checked(actor_id, &pk, read).await? else {
                continue;
            };
            return items.iter().map(decode_entry).collect();
        }
        Err(StoreError::Unavailable(format!(
            "kv of actor {actor_id} kept changing while being read"
        )))
    }

    /// Runs `read` together with the intent check on the state item, unless this store knows
    /// no intent is pending (`views::KvKnown`). `None`: an intent was found and rolled
    /// forward, so read again.
    async fn read_checked<T>(
        &self,
        actor_id: &str,
        pk: &str,
        read: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<Option<T>> {
        if self.kv_clean.is_clean(actor_id) {
            return read.await.map(Some);
        }
        let (st, out) = tokio::try_join!(self.get(pk, STATE_SK), read)?;
        if let Some(id) = pending_intent(st.as_ref())? {
            self.roll_forward(actor_id, &id).await?;
            return Ok(None);
        }
        if st.is_some() {
            self.kv_clean.mark(actor_id);
        }
        Ok(Some(out))
    }

    /// The items of the keys in `range`, in key order (or reverse), at most `limit`. Long keys
    /// sharing a sort-key group come back in hash order and are sorted here.
    async fn list_range(
        &self,
        pk: &str,
        range: &KvRange,
        reverse: bool,
        limit: usize,
        keys_only: bool,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let Some(sk_range) = range.sk_range() else {
            return Ok(out);
        };
        let q = Query {
            forward: !reverse,
            projection: keys_only.then_some("#pk, #sk, #k"),
            ..Query::new(pk, sk_range)
        };
        let mut group: Option<Group> = None;
        let flush = |group: &mut Option<Group>, out: &mut Vec<Item>| {
            if let Some((_, mut members)) = group.take() {
                members.sort_by(|a, b| a.0.cmp(&b.0));
                if reverse {
                    members.reverse();
                }
                for (key, it) in members {
                    if out.len() < limit && range.contains(&key) {
                        out.push(it);
                    }
                }
            }
        };
        let mut start = None;
        loop {
            let (items, next) = table::query_page(&self.client, &self.table, &q, start).await?;
            for it in items {
                let key = get_b(&it, "k")?.to_vec();
                let sk = sk_of(&it)?.to_owned();
                match kv_group(&sk) {
                    Some(g) => {
                        let same = group.as_ref().is_some_and(|(cur, _)| cur == g);
                        if !same {
                            flush(&mut group, &mut out);
                            if out.len() >= limit {
                                return Ok(out);
                            }
                            group = Some((g.to_owned(), Vec::new()));
                        }
                        if let Some((_, members)) = group.as_mut() {
                            members.push((key, it));
                        }
                    }
                    None => {
                        flush(&mut group, &mut out);
                        if out.len() >= limit {
                            return Ok(out);
                        }
                        if range.contains(&key) {
                            out.push(it);
                            if out.len() >= limit {
                                return Ok(out);
                            }
                        }
                    }
                }
            }
            match next {
                Some(n) => start = Some(n),
                None => {
                    flush(&mut group, &mut out);
                    return Ok(out);
                }
            }
        }
    }

    /// Applies one KV write, fenced by `generation`. Once it returns `Ok`, no intent of it
    /// is left on the state item (see `KvClean`).
    pub(super) async fn kv_write(
        &self,
        actor_id: &str,
        write: KvWrite,
        generation: Option<u32>,
    ) -> StoreResult<()> {
        self.kv_clean.unmark(actor_id);
        self.kv_write_fenced(actor_id, write, generation).await?;
        self.kv_clean.mark(actor_id);
        Ok(())
    }

    async fn kv_write_fenced(
        &self,
        actor_id: &str,
        write: KvWrite,
        generation: Option<u32>,
    ) -> StoreResult<()> {
        let pk = actor_pk(actor_id);
        if let KvWrite::Put { entries, .. } = &write {
            if let Some((k, v)) = entries
                .iter()
                .find(|(k, v)| k.len() + v.len() > ITEM_MAX_VALUE_BYTES)
            {
                return Err(StoreError::Backend(format!(
                    "kv entry of {} bytes exceeds the {ITEM_MAX_VALUE_BYTES}-byte item limit of the DynamoDB store",
                    k.len() + v.len()
                )));
            }
        }
        for attempt in 0..KV_ATTEMPTS {
            let direct = self.direct_ops(&pk, &write, generation).await?;
            let seen = match direct {
                Some(ops) if ops.is_empty() => {
                    // Nothing to write; the fence still decides the answer.
                    let st = self.get(&pk, STATE_SK).await?;
                    match fence_failure(actor_id, generation, st.as_ref())? {
                        FenceSeen::Intent(id) => Some(id),
                        FenceSeen::Retry => return Ok(()),
                    }
                }
                Some(ops) => {
                    let mut actions = vec![self.fence(&pk, generation)?];
                    for op in ops {
                        actions.push(match op {
                            PointOp::Put(it) => tx_put(&self.table, it)?,
                            PointOp::Delete(k) => tx_delete(&self.table, k)?,
                        });
                    }
                    match transact(&self.client, "kv write", actions).await? {
                        Ok(()) => return Ok(()),
                        Err(c) => match c.failed(0) {
                            Some(seen) => {
                                let seen = match seen {
                                    Some(it) => Some(it.clone()),
                                    None => self.get(&pk, STATE_SK).await?,
                                };
                                match fence_failure(actor_id, generation, seen.as_ref())? {
                                    FenceSeen::Intent(id) => Some(id),
                                    FenceSeen::Retry => None,
                                }
                            }
                            None => {
                                return Err(StoreError::Backend(format!(
                                    "kv write: unexpected cancellation {:?}",
                                    c.reasons
                                )))
                            }
                        },
                    }
                }
                None => {
                    let intent = Intent {
                        generation: generation.unwrap_or(0),
                        write: write.clone(),
                    };
                    match self.publish_intent(actor_id, &intent, generation).await? {
                        Ok(id) => return self.roll_forward(actor_id, &id).await,
                        Err(seen) => match fence_failure(actor_id, generation, seen.as_ref())? {
                            FenceSeen::Intent(id) => Some(id),
                            FenceSeen::Retry => None,
                        },
                    }
                }
            };
            match seen {
                Some(id) => self.roll_forward(actor_id, &id).await?,
                None => table::backoff(attempt).await,
            }
        }
        Err(StoreError::Conflict {
            what: format!("kv of actor {actor_id}"),
        })
    }

    /// The fence every direct KV write carries: generation equal (when given), no intent.
    fn fence(
        &self,
        pk: &str,
        generation: Option<u32>,
    ) -> StoreResult<aws_sdk_dynamodb::types::TransactWriteItem> {
        let k = table::key(pk, STATE_SK);
        match generation {
            Some(g) => tx_check(
                &self.table,
                k,
                "#gen = :g AND attribute_not_exists(#kvi)",
                vec![(":g", n(g))],
            ),
            None => tx_check(
                &self.table,
                k,
                "attribute_exists(#pk) AND attribute_not_exists(#kvi)",
                vec![],
            ),
        }
    }

    /// The point operations of a write when they fit one transaction, else `None`.
    async fn direct_ops(
        &self,
        pk: &str,
        write: &KvWrite,
        generation: Option<u32>,
    ) -> StoreResult<Option<Vec<PointOp>>> {
        let ops: Vec<PointOp> = match write {
            KvWrite::Put { entries, now_ms } => dedupe_puts(entries)
                .into_iter()
                .map(|(k, v)| {
                    PointOp::Put(entry_item(pk, &k, &v, generation.unwrap_or(0), *now_ms))
                })
                .collect(),
            KvWrite::Delete(keys) => dedupe_keys(keys)
                .into_iter()
                .map(|k| PointOp::Delete(table::key(pk, kv_sk(&k))))
                .collect(),
            KvWrite::DeleteRange { start, end } => {
                let range = delete_range(start, end.as_deref());
                let items = self
                    .list_range(pk, &range, false, TX_MAX_ITEMS, true)
                    .await?;
                items
                    .iter()
                    .map(|it| Ok(PointOp::Delete(table::key(pk, sk_of(it)?))))
                    .collect::<StoreResult<_>>()?
            }
        };
        let mut groups = batches(ops);
        match groups.len() {
            0 => Ok(Some(Vec::new())),
            1 => Ok(groups.pop()),
            _ => Ok(None),
        }
    }

    /// Writes an intent's body and publishes it on the state item. `Err(seen)`: the fence
    /// failed (the body was removed again); `seen` is the state item as it was.
    pub(super) async fn publish_intent(
        &self,
        actor_id: &str,
        intent: &Intent,
        generation: Option<u32>,
    ) -> StoreResult<Result<String, Option<Item>>> {
        let id = self.write_intent_body(actor_id, intent).await?;
        let (cond, vals) = match generation {
            Some(g) => (
                "#gen = :g AND attribute_not_exists(#kvi)",
                vec![(":g", n(g)), (":id", s(id.clone()))],
            ),
            None => (
                "attribute_exists(#pk) AND attribute_not_exists(#kvi)",
                vec![(":id", s(id.clone()))],
            ),
        };
        let res = self
            .update_if(
                &actor_pk(actor_id),
                STATE_SK,
                "SET #kvi = :id",
                cond,
                vals,
                ReturnValue::None,
            )
            .await;
        match res {
            Ok(Cond::Applied(_)) => Ok(Ok(id)),
            Ok(Cond::Failed(seen)) => {
                self.drop_intent_body(actor_id, &id).await;
                Ok(Err(seen))
            }
            Err(err) => {
                // The outcome is unknown: the body must stay in case the mark landed.
                Err(err)
            }
        }
    }

    /// Writes an intent body to fresh chunk items; returns the intent id.
    pub(super) async fn write_intent_body(
        &self,
        actor_id: &str,
        intent: &Intent,
    ) -> StoreResult<String> {
        let id = format!("{:032x}", rand::random::<u128>());
        let pk = actor_pk(actor_id);
        let body = encode_intent(intent);
        let ops = body
            .chunks(INTENT_CHUNK_BYTES)
            .enumerate()
            .map(|(i, c)| BatchOp::Put(item(pk.clone(), intent_sk(&id, i), [("b", b(c.to_vec()))])))
            .collect();
        batch_write(&self.client, &self.table, ops).await?;
        Ok(id)
    }

    /// Removes an intent's body (best effort: a leftover is only wasted space).
    pub(super) async fn drop_intent_body(&self, actor_id: &str, id: &str) {
        let pk = actor_pk(actor_id);
        let res = async {
            let q = Query {
                projection: Some("#pk, #sk"),
                ..Query::new(pk.clone(), Range::Prefix(intent_prefix(id)))
            };
            let items = table::query_all(&self.client, &self.table, &q).await?;
            let ops = items
                .iter()
                .map(|it| Ok(BatchOp::Delete(table::key(pk.clone(), sk_of(it)?))))
                .collect::<StoreResult<Vec<_>>>()?;
            batch_write(&self.client, &self.table, ops).await
        }
        .await;
        if let Err(err) = res {
            tracing::warn!(error = %err, "removing a kv intent body failed");
        }
    }

    /// Applies point operations in transactions fenced by the intent mark; `false` when the
    /// mark is gone (another applier finished the intent).
    async fn apply_fenced(&self, pk: &str, id: &str, ops: Vec<PointOp>) -> StoreResult<bool> {
        for group in batches(ops) {
            let mut actions = vec![tx_check(
                &self.table,
                table::key(pk, STATE_SK),
                "#kvi = :id",
                vec![(":id", s(id))],
            )?];
            for op in group {
                actions.push(match op {
                    PointOp::Put(it) => tx_put(&self.table, it)?,
                    PointOp::Delete(k) => tx_delete(&self.table, k)?,
                });
            }
            if transact(&self.client, "kv intent apply", actions)
                .await?
                .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Applies a published intent and clears its mark. Safe to run by several callers at
    /// once and again after a crash: every step is idempotent and fenced by the mark.
    pub(super) async fn roll_forward(&self, actor_id: &str, id: &str) -> StoreResult<()> {
        let pk = actor_pk(actor_id);
        let q = Query::new(pk.clone(), Range::Prefix(intent_prefix(id)));
        let chunks = table::query_all(&self.client, &self.table, &q).await?;
        if chunks.is_empty() {
            // Finished by someone else (the mark goes before the body), or lost.
            let st = self.get(&pk, STATE_SK).await?;
            if pending_intent(st.as_ref())?.as_deref() == Some(id) {
                return Err(StoreError::Corrupt(format!(
                    "kv intent {id} of actor {actor_id} has no body"
                )));
            }
            return Ok(());
        }
        let mut body = Vec::new();
        for c in &chunks {
            body.extend_from_slice(get_b(c, "b")?);
        }
        let intent = decode_intent(&body)?;
        let finished_here = match &intent.write {
            KvWrite::Put { entries, now_ms } => {
                let ops = dedupe_puts(entries)
                    .into_iter()
                    .map(|(k, v)| PointOp::Put(entry_item(&pk, &k, &v, intent.generation, *now_ms)))
                    .collect();
                self.apply_fenced(&pk, id, ops).await?
            }
            KvWrite::Delete(keys) => {
                let ops = dedupe_keys(keys)
                    .into_iter()
                    .map(|k| PointOp::Delete(table::key(pk.clone(), kv_sk(&k))))
                    .collect();
                self.apply_fenced(&pk, id, ops).await?
            }
            KvWrite::DeleteRange { start, end } => {
                let range = delete_range(start, end.as_deref());
                loop {
                    let items = self
                        .list_range(&pk, &range, false, TX_MAX_ITEMS - 1, true)
                        .await?;
                    if items.is_empty() {
                        break true;
                    }
                    let ops = items
                        .iter()
                        .map(|it| Ok(PointOp::Delete(table::key(pk.clone(), sk_of(it)?))))
                        .collect::<StoreResult<Vec<_>>>()?;
                    if !self.apply_fenced(&pk, id, ops).await? {
                        break false;
                    }
                }
            }
        };
        if finished_here {
            self.update_if(
                &pk,
                STATE_SK,
                "REMOVE #kvi",
                "#kvi = :id",
                vec![(":id", s(id))],
                ReturnValue::None,
            )
            .await?;
        }
        self.drop_intent_body(actor_id, id).await;
        Ok(())
    }
}

/// The range `[start, end)` (to the last key when `end` is `None`).
fn delete_range(start: &[u8], end: Option<&[u8]>) -> KvRange {
    KvRange {
        start: Bound::Included(start.to_vec()),
        end: match end {
            Some(e) => Bound::Excluded(e.to_vec()),
            None => Bound::Unbounded,
        },
        prefix: None,
    }
}

/// The intent id marked on a state item, if any.
pub(super) fn pending_intent(st: Option<&Item>) -> StoreResult<Option<String>> {
    match st {
        Some(st) => Ok(opt_s(st, "kvi")?.map(str::to_owned)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_bodies_round_trip() {
        let cases = [
            KvWrite::Put {
                entries: vec![(vec![], vec![1; 10]), (vec![0, 255], vec![])],
                now_ms: -7,
            },
            KvWrite::Delete(vec![vec![1], vec![]]),
            KvWrite::DeleteRange {
                start: vec![],
                end: None,
            },
            KvWrite::DeleteRange {
                start: vec![1],
                end: Some(vec![2, 3]),
            },
        ];
        for write in cases {
            let intent = Intent {
                generation: 9,
                write,
            };
            let bytes = encode_intent(&intent);
            assert_eq!(decode_intent(&bytes).expect("decodes"), intent);
            for cut in [0, 3, bytes.len() - 1] {
                assert!(matches!(
                    decode_intent(&bytes[..cut]),
                    Err(StoreError::Corrupt(_))
                ));
            }
        }
    }

    #[test]
    fn puts_dedupe_to_the_last_value() {
        let got = dedupe_puts(&[(vec![1], vec![1]), (vec![2], vec![2]), (vec![1], vec![3])]);
        assert_eq!(got, vec![(vec![2], vec![2]), (vec![1], vec![3])]);
    }

    #[test]
    fn ranges_filter_exactly() {
        let r = KvRange::from_query(KvQuery::Range {
            start: vec![2],
            end: vec![4],
            exclusive: true,
        });
        assert!(r.contains(&[2]) && r.contains(&[3, 9]) && !r.contains(&[4]) && !r.contains(&[1]));
        let inverted = KvRange::from_query(KvQuery::Range {
            start: vec![5],
            end: vec![1],
            exclusive: false,
        });
        assert!(inverted.sk_range().is_none());
    }
}
