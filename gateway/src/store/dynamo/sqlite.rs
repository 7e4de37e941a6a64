//! The SQLite page store on DynamoDB, as multi-version items published by one conditional
//! write (the design and its proofs are in docs/DYNAMODB.md, "SQLite pages").
//!
//! Every write *attempt* (a single-shot commit, each segment of a staged commit, the
//! tombstones of a finalize) gets a fresh version number `vid` from the counter `nv` on the
//! actor's state item, and writes its pages as items `pg#<pgno>#<vid>` together with a page
//! list `pl#<vid>#<n>` in transactions whose `ConditionCheck` requires that the attempt is
//! still the pending one (`p_id`) of the current generation. Nothing is visible until one
//! conditional update of the state item moves the head: it requires the generation, the
//! expected head and the pending id, and sets `hv` (the newest visible version) and the size.
//! A reader takes, per page, the newest version with `fl <= vid <= hv`; pages past the size
//! read as missing, and a shrink writes tombstones for the visible pages it cuts off so they
//! stay missing when the database grows again.
//!
//! Before publishing, the publisher deletes every page of attempts between the old `hv` and
//! its own versions that it is not publishing (crashed commits, abandoned stages, rejected
//! segments), using their page lists; a later claim of the pending slot fences those attempts
//! out first, so none can add a page afterwards. After publishing, superseded versions are
//! deleted in the background, keeping one older version per page, which lets a reader that
//! saw the previous head still finish; a reader re-reads the state item after its query and
//! starts over if the head moved by more than one commit.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use futures_util::future::join_all;

use super::keys::*;
use super::kv::{pending_intent, Intent, KvWrite};
use super::sqlite_fast::Fast;
use super::table::{
    self, b, batch_write, get_b, get_n, item, n, opt_b, opt_bool, opt_n, opt_s, s, sk_of, transact,
    tx_check, tx_put, BatchOp, Cond, Item, Query, Range, ITEM_MAX_VALUE_BYTES, TX_MAX_BYTES,
    TX_MAX_ITEMS,
};
use super::{DynamoStore, StoreError, StoreResult};
use crate::store::{SqliteCommit, SqliteFinalize, SqliteRead, SqliteSegment};

/// Requested pages closer than this share one range query.
const RUN_GAP: u32 = 16;
/// Attempts of a page read that keeps racing commits.
const READ_ATTEMPTS: u32 = 32;
/// Attempts of `clear_actor_data` that keep finding KV intents.
const CLEAR_ATTEMPTS: u32 = 8;
/// Pending-attempt attributes on the state item.
const PENDING_ATTRS: &str =
    "#p_id, #p_kind, #p_tx, #p_gen, #p_segs, #p_bytes, #p_max, #p_seal, #p_fin";

/// The SQLite part of an actor's state item.
#[derive(Debug, Clone)]
pub(super) struct SqState {
    /// Mirror of the actor's generation.
    pub gen: u32,
    /// Newest visible version.
    pub hv: u64,
    /// Oldest visible version (raised by `clear_actor_data`).
    pub fl: u64,
    /// Head txid as the protocol counts it.
    pub head: u64,
    /// Database size in pages.
    pub size: u32,
    /// The next version number.
    pub nv: u64,
    /// The attempt currently allowed to write, if any.
    pub pend: Option<Pending>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PendKind {
    Commit,
    Stage,
}

/// The pending write attempt.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// Its id (a version number; a commit writes its pages under it).
    pub id: u64,
    pub kind: PendKind,
    /// The txid it publishes as.
    pub tx: u64,
    /// Generation that began it.
    pub gen: u32,
    /// Accepted segments of a stage: (first pgno, version of its pages), ascending.
    pub segs: Vec<(u32, u64)>,
    /// Highest pgno of the accepted segments.
    pub max: Option<u32>,
    /// Set by finalize: no segment may be added any more.
    pub sealed: bool,
    /// Version of the finalize's own writes (tombstones).
    pub fin: Option<u64>,
}

impl SqState {
    fn read(it: &Item) -> StoreResult<Self> {
        let pend = match opt_n::<u64>(it, "p_id")? {
            None => None,
            Some(id) => {
                let kind = match opt_s(it, "p_kind")? {
                    Some("c") => PendKind::Commit,
                    Some("s") => PendKind::Stage,
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "pending sqlite attempt of kind {other:?}"
                        )))
                    }
                };
                let mut segs = Vec::new();
                if let Some(v) = it.get("p_segs") {
                    let AttributeValue::L(list) = v else {
                        return Err(StoreError::Corrupt("p_segs is not a list".to_owned()));
                    };
                    for entry in list {
                        let AttributeValue::M(m) = entry else {
                            return Err(StoreError::Corrupt(
                                "p_segs entry is not a map".to_owned(),
                            ));
                        };
                        segs.push((get_n(m, "f")?, get_n(m, "v")?));
                    }
                }
                Some(Pending {
                    id,
                    kind,
                    tx: get_n(it, "p_tx")?,
                    gen: get_n(it, "p_gen")?,
                    segs,
                    max: opt_n(it, "p_max")?,
                    sealed: opt_bool(it, "p_seal")?.unwrap_or(false),
                    fin: opt_n(it, "p_fin")?,
                })
            }
        };
        Ok(Self {
            gen: get_n(it, "gen")?,
            hv: get_n(it, "hv")?,
            fl: get_n(it, "fl")?,
            head: get_n(it, "head")?,
            size: get_n(it, "size")?,
            nv: get_n(it, "nv")?,
            pend,
        })
    }

    fn visible(&self, vid: u64) -> bool {
        self.fl <= vid && vid <= self.hv
    }
}

/// One stored version of a page: its bytes, or `None` for a tombstone.
struct Version {
    pgno: u32,
    vid: u64,
    bytes: Option<Vec<u8>>,
}

/// Sorted, deduplicated page numbers grouped into ranges worth one query each.
fn runs(pgnos: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &p in pgnos {
        match out.last_mut() {
            Some((_, last)) if p.saturating_sub(*last) <= RUN_GAP => *last = p,
            Some(_) | None => out.push((p, p)),
        }
    }
    out
}

fn pack_pgnos(pgnos: &[u32]) -> Vec<u8> {
    pgnos.iter().flat_map(|p| p.to_be_bytes()).collect()
}

fn unpack_pgnos(bytes: &[u8]) -> StoreResult<Vec<u32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(StoreError::Corrupt(format!(
            "page list of {} bytes is not a list of u32",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn not_found(actor_id: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("actor {actor_id}"),
    }
}

fn rejected(msg: impl Into<String>) -> StoreError {
    StoreError::StageRejected(msg.into())
}

/// Why a claim (commit or stage begin) was refused.
fn claim_failure(actor_id: &str, gen: u32, expected: u64, seen: Option<&Item>) -> StoreError {
    let Some(seen) = seen else {
        return not_found(actor_id);
    };
    match SqState::read(seen) {
        Err(err) => err,
        Ok(st) if st.gen != gen => StoreError::StaleGeneration {
            given: gen,
            current: st.gen,
        },
        Ok(st) if st.head != expected => StoreError::HeadMismatch {
            expected,
            current: st.head,
        },
        Ok(_) => StoreError::Conflict {
            what: format!("sqlite head of actor {actor_id}"),
        },
    }
}

/// Why a write of an open stage was refused.
fn stage_failure(actor_id: &str, gen: u32, sid: u64, seen: Option<&Item>) -> StoreError {
    let Some(seen) = seen else {
        return not_found(actor_id);
    };
    let st = match SqState::read(seen) {
        Ok(st) => st,
        Err(err) => return err,
    };
    if st.gen != gen {
        return StoreError::StaleGeneration {
            given: gen,
            current: st.gen,
        };
    }
    match st.pend {
        Some(p) if p.id == sid && p.sealed => rejected("the staged commit is being finalized"),
        Some(p) if p.id == sid => rejected("the staged commit changed concurrently"),
        Some(_) | None => rejected("the staged commit was discarded"),
    }
}

/// The open stage a segment or finalize names, checked as the embedded store does.
fn open_stage(st: &SqState, txid: u64, gen: u32, allow_sealed: bool) -> StoreResult<&Pending> {
    let p = match &st.pend {
        Some(p) if p.kind == PendKind::Stage => p,
        Some(_) | None => return Err(rejected(format!("no staged commit is open (txid {txid})"))),
    };
    if p.tx != txid {
        return Err(rejected(format!(
            "txid {txid} is not the open stage (txid {})",
            p.tx
        )));
    }
    if p.gen != gen {
        return Err(rejected(format!(
            "the open stage was begun by generation {}, not {gen}",
            p.gen
        )));
    }
    if p.sealed && !allow_sealed {
        return Err(rejected("the staged commit is being finalized"));
    }
    Ok(p)
}

fn check_page_sizes(pages: &[(u32, Vec<u8>)]) -> StoreResult<()> {
    match pages.iter().find(|(_, b)| b.len() > ITEM_MAX_VALUE_BYTES) {
        Some((pgno, b)) => Err(StoreError::Backend(format!(
            "page {pgno} of {} bytes exceeds the {ITEM_MAX_VALUE_BYTES}-byte item limit of the DynamoDB store",
            b.len()
        ))),
        None => Ok(()),
    }
}

// === impl DynamoStore ===

impl DynamoStore {
    /// The actor's state item, decoded (consistent read).
    async fn sq_state(&self, pk: &str) -> StoreResult<Option<SqState>> {
        match self.get(pk, STATE_SK).await? {
            Some(it) => SqState::read(&it).map(Some),
            None => Ok(None),
        }
    }

    /// Every version of the pages within `runs` (restricted to `only` when given).
    async fn scan_versions(
        &self,
        pk: &str,
        runs: &[(u32, u32)],
        only: Option<&HashSet<u32>>,
        with_bytes: bool,
        consistent: bool,
    ) -> StoreResult<Vec<Version>> {
        let queries = runs.iter().map(|&(a, z)| {
            let q = Query {
                consistent,
                projection: (!with_bytes).then_some("#pk, #sk, #x"),
                ..Query::new(pk, Range::Between(page_lower(a), page_upper(z)))
            };
            async move { table::query_all(&self.client, &self.table, &q).await }
        });
        let mut out = Vec::new();
        for items in join_all(queries).await {
            for it in items? {
                let sk = sk_of(&it)?;
                let (pgno, vid) = parse_page_sk(sk)
                    .ok_or_else(|| StoreError::Corrupt(format!("page item with key {sk}")))?;
                if only.is_some_and(|set| !set.contains(&pgno)) {
                    continue;
                }
                let bytes = if opt_bool(&it, "x")?.unwrap_or(false) {
                    None
                } else if with_bytes {
                    Some(get_b(&it, "b")?.to_vec())
                } else {
                    // Keys-only scans only need to tell data from tombstones.
                    Some(opt_b(&it, "b")?.map(<[u8]>::to_vec).unwrap_or_default())
                };
                out.push(Version { pgno, vid, bytes });
            }
        }
        Ok(out)
    }

    pub(super) async fn sqlite_get_pages_impl(
        &self,
        actor_id: &str,
        pgnos: &[u32],
    ) -> StoreResult<SqliteRead> {
        if self
            .sq_views
            .get(actor_id)
            .is_some_and(|v| v.head == 0 && v.size == 0)
        {
            // A database this store knows is empty (it created the actor, nothing committed).
            return Ok(SqliteRead {
                pages: pgnos.iter().map(|p| (*p, None)).collect(),
                head_txid: 0,
            });
        }
        let pk = actor_pk(actor_id);
        for _ in 0..READ_ATTEMPTS {
            let Some(st) = self.sq_state(&pk).await? else {
                return Ok(SqliteRead {
                    pages: pgnos.iter().map(|p| (*p, None)).collect(),
                    head_txid: 0,
                });
            };
            self.remember(actor_id, &st);
            let mut wanted: Vec<u32> = pgnos.iter().copied().filter(|p| *p <= st.size).collect();
            wanted.sort_unstable();
            wanted.dedup();
            let mut newest: HashMap<u32, Option<Vec<u8>>> = HashMap::new();
            if !wanted.is_empty() {
                let set: HashSet<u32> = wanted.iter().copied().collect();
                let versions = self
                    .scan_versions(&pk, &runs(&wanted), Some(&set), true, true)
                    .await?;
                // Versions come oldest first per page, so the last visible one wins.
                for v in versions {
                    if st.visible(v.vid) {
                        newest.insert(v.pgno, v.bytes);
                    }
                }
                // Garbage collection after a commit keeps the previous version of each page,
                // so this read is whole unless the head moved twice (or the data was cleared).
                let again = self.sq_state(&pk).await?;
                let whole =
                    again.is_some_and(|a| a.fl == st.fl && a.head <= st.head.saturating_add(1));
                if !whole {
                    continue;
                }
            }
            let pages = pgnos
                .iter()
                .map(|p| (*p, newest.get(p).cloned().flatten()))
                .collect();
            return Ok(SqliteRead {
                pages,
                head_txid: st.head,
            });
        }
        Err(StoreError::Unavailable(format!(
            "sqlite reads of actor {actor_id} kept racing commits"
        )))
    }

    /// Takes the pending slot for a new attempt at `expected + 1`; the previous attempt, if
    /// any, can write nothing from now on.
    async fn claim(
        &self,
        actor_id: &str,
        gen: u32,
        expected: u64,
        kind: PendKind,
    ) -> StoreResult<SqState> {
        // The head moves by this attempt, not by a one-request commit; what this store saw
        // is refreshed when it publishes (a commit) or dropped (a stage).
        self.drop_sq_view(actor_id);
        let pk = actor_pk(actor_id);
        let tx = expected.saturating_add(1);
        let (update, mut vals) = match kind {
            PendKind::Commit => (
                "SET #p_id = #nv, #nv = #nv + :one, #p_kind = :k, #p_tx = :tx, #p_gen = :g \
                 REMOVE #p_segs, #p_bytes, #p_max, #p_seal, #p_fin",
                vec![(":k", s("c"))],
            ),
            PendKind::Stage => (
                "SET #p_id = #nv, #nv = #nv + :one, #p_kind = :k, #p_tx = :tx, #p_gen = :g, \
                 #p_segs = :empty, #p_bytes = :zero REMOVE #p_max, #p_seal, #p_fin",
                vec![
                    (":k", s("s")),
                    (":empty", AttributeValue::L(Vec::new())),
                    (":zero", n(0)),
                ],
            ),
        };
        vals.extend([
            (":one", n(1)),
            (":tx", n(tx)),
            (":g", n(gen)),
            (":h", n(expected)),
        ]);
        match self
            .update_if(
                &pk,
                STATE_SK,
                update,
                "#gen = :g AND #head = :h",
                vals,
                ReturnValue::AllNew,
            )
            .await?
        {
            Cond::Applied(it) => SqState::read(&it),
            Cond::Failed(seen) => Err(claim_failure(actor_id, gen, expected, seen.as_ref())),
        }
    }

    /// Writes pages (or tombstones, `None`) as version `vid`, with their page lists, in
    /// transactions that each check `fence` on the state item. `Err(seen)`: the fence failed.
    async fn write_version(
        &self,
        pk: &str,
        vid: u64,
        fence: &str,
        fence_vals: &[(&str, AttributeValue)],
        entries: Vec<(u32, Option<Vec<u8>>)>,
    ) -> StoreResult<Result<(), Option<Item>>> {
        // Two slots go to the fence and the page list.
        let mut groups: Vec<Vec<(u32, Option<Vec<u8>>)>> = Vec::new();
        let mut cur = Vec::new();
        let mut cur_bytes = 0;
        for e in entries {
            let size = e.1.as_ref().map_or(0, Vec::len) + 128;
            if !cur.is_empty() && (cur.len() + 2 >= TX_MAX_ITEMS || cur_bytes + size > TX_MAX_BYTES)
            {
                groups.push(std::mem::take(&mut cur));
                cur_bytes = 0;
            }
            cur_bytes += size;
            cur.push(e);
        }
        if !cur.is_empty() {
            groups.push(cur);
        }
        for (i, group) in groups.into_iter().enumerate() {
            let pgnos: Vec<u32> = group.iter().map(|(p, _)| *p).collect();
            let mut actions = vec![
                tx_check(
                    &self.table,
                    table::key(pk, STATE_SK),
                    fence,
                    fence_vals.to_vec(),
                )?,
                tx_put(
                    &self.table,
                    item(
                        pk,
                        page_list_sk(vid, i as u32),
                        [("p", b(pack_pgnos(&pgnos)))],
                    ),
                )?,
            ];
            for (pgno, bytes) in group {
                let it = match bytes {
                    Some(bytes) => item(pk, page_sk(pgno, vid), [("b", b(bytes))]),
                    None => item(pk, page_sk(pgno, vid), [("x", AttributeValue::Bool(true))]),
                };
                actions.push(tx_put(&self.table, it)?);
            }
            match transact(&self.client, "sqlite write pages", actions).await? {
                Ok(()) => {}
                Err(c) => match c.failed(0) {
                    Some(seen) => {
                        let seen = match seen {
                            Some(it) => Some(it.clone()),
                            None => self.get(pk, STATE_SK).await?,
                        };
                        return Ok(Err(seen));
                    }
                    None => {
                        return Err(StoreError::Backend(format!(
                            "sqlite write pages: unexpected cancellation {:?}",
                            c.reasons
                        )))
                    }
                },
            }
        }
        Ok(Ok(()))
    }

    /// Pages in `(new_size, st.size]` whose newest visible version holds data: a shrink to
    /// `new_size` must tombstone them.
    async fn cut_off_pages(&self, pk: &str, st: &SqState, new_size: u32) -> StoreResult<Vec<u32>> {
        if new_size >= st.size {
            return Ok(Vec::new());
        }
        let versions = self
            .scan_versions(pk, &[(new_size + 1, st.size)], None, false, true)
            .await?;
        let mut newest: BTreeMap<u32, bool> = BTreeMap::new();
        for v in versions {
            if st.visible(v.vid) {
                newest.insert(v.pgno, v.bytes.is_some());
            }
        }
        Ok(newest
            .into_iter()
            .filter_map(|(pgno, data)| data.then_some(pgno))
            .collect())
    }

    /// Deletes what attempts below version `below` left that will not be published: every
    /// page of a version in `(hv, below)` outside `keep`, and pages past `size_cut` of the
    /// versions in `keep`. Page lists of versions `<= hv` (already published) are dropped as
    /// well. Returns the pages of `keep` that stay.
    async fn clean_attempts(
        &self,
        pk: &str,
        hv: u64,
        below: u64,
        keep: &HashSet<u64>,
        size_cut: Option<u32>,
    ) -> StoreResult<Vec<u32>> {
        let q = Query::new(
            pk,
            Range::Between(PAGE_LIST_PREFIX.to_owned(), page_list_lower(below)),
        );
        let lists = table::query_all(&self.client, &self.table, &q).await?;
        let mut ops = Vec::new();
        let mut kept = Vec::new();
        for list in &lists {
            let sk = sk_of(list)?;
            let vid = parse_page_list_sk(sk)
                .ok_or_else(|| StoreError::Corrupt(format!("page list with key {sk}")))?;
            if vid >= below {
                continue;
            }
            let pgnos = unpack_pgnos(get_b(list, "p")?)?;
            let drop_list = || BatchOp::Delete(table::key(pk, sk));
            if vid <= hv {
                ops.push(drop_list());
            } else if keep.contains(&vid) {
                for pgno in pgnos {
                    if size_cut.is_some_and(|cut| pgno > cut) {
                        ops.push(BatchOp::Delete(table::key(pk, page_sk(pgno, vid))));
                    } else {
                        kept.push(pgno);
                    }
                }
            } else {
                for pgno in pgnos {
                    ops.push(BatchOp::Delete(table::key(pk, page_sk(pgno, vid))));
                }
                ops.push(drop_list());
            }
        }
        batch_write(&self.client, &self.table, ops).await?;
        Ok(kept)
    }

    /// Moves the head: the single step that makes an attempt visible.
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        actor_id: &str,
        gen: u32,
        pend_id: u64,
        expected: u64,
        new_hv: u64,
        size: u32,
        sealed: bool,
    ) -> StoreResult<()> {
        let pk = actor_pk(actor_id);
        let tx = expected.saturating_add(1);
        let cond = if sealed {
            "#p_id = :pid AND #gen = :g AND #head = :h AND #p_seal = :t"
        } else {
            "#p_id = :pid AND #gen = :g AND #head = :h"
        };
        let mut vals = vec![
            (":pid", n(pend_id)),
            (":g", n(gen)),
            (":h", n(expected)),
            (":tx", n(tx)),
            (":hv", n(new_hv)),
            (":size", n(size)),
        ];
        if sealed {
            vals.push((":t", AttributeValue::Bool(true)));
        }
        let update = format!("SET #head = :tx, #hv = :hv, #size = :size REMOVE {PENDING_ATTRS}");
        match self
            .update_if(&pk, STATE_SK, &update, cond, vals, ReturnValue::None)
            .await?
        {
            Cond::Applied(_) => Ok(()),
            Cond::Failed(seen) => {
                if let Some(st) = seen.as_ref().map(SqState::read).transpose()? {
                    // An SDK retry of our own publish that had already landed.
                    if st.head == tx && st.hv == new_hv && st.gen == gen {
                        return Ok(());
                    }
                }
                Err(if sealed {
                    match seen.as_ref().map(SqState::read).transpose()? {
                        Some(st) if st.gen == gen && st.head != expected => {
                            StoreError::HeadMismatch {
                                expected,
                                current: st.head,
                            }
                        }
                        Some(_) | None => stage_failure(actor_id, gen, pend_id, seen.as_ref()),
                    }
                } else {
                    claim_failure(actor_id, gen, expected, seen.as_ref())
                })
            }
        }
    }

    /// Starts the background deletion of versions that `new_hv` superseded.
    pub(super) fn spawn_gc(&self, pk: String, pgnos: Vec<u32>, fl: u64, new_hv: u64) {
        if pgnos.is_empty() {
            return;
        }
        let Ok(permit) = self.gc.clone().try_acquire_owned() else {
            // Busy: the next commit of these pages collects what is left.
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(err) = this.collect_versions(&pk, pgnos, fl, new_hv).await {
                tracing::debug!(error = %err, "sqlite page garbage collection failed");
            }
        });
    }

    /// For each page, deletes versions older than the one before its newest visible version
    /// (that one stays for readers of the previous head), and everything below `fl`.
    pub(super) async fn collect_versions(
        &self,
        pk: &str,
        mut pgnos: Vec<u32>,
        fl: u64,
        new_hv: u64,
    ) -> StoreResult<()> {
        pgnos.sort_unstable();
        pgnos.dedup();
        let set: HashSet<u32> = pgnos.iter().copied().collect();
        let versions = self
            .scan_versions(pk, &runs(&pgnos), Some(&set), false, false)
            .await?;
        let mut by_page: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for v in versions {
            by_page.entry(v.pgno).or_default().push(v.vid);
        }
        let mut ops = Vec::new();
        for (pgno, mut vids) in by_page {
            vids.sort_unstable();
            let live: Vec<u64> = vids
                .iter()
                .copied()
                .filter(|v| *v >= fl && *v <= new_hv)
                .collect();
            let keep_from = match live.len() {
                0 | 1 => live.first().copied(),
                len => live.get(len - 2).copied(),
            };
            for vid in vids {
                let old = vid < fl || keep_from.is_some_and(|k| vid >= fl && vid < k);
                if old {
                    ops.push(BatchOp::Delete(table::key(pk, page_sk(pgno, vid))));
                }
            }
        }
        batch_write(&self.client, &self.table, ops).await
    }

    /// Keeps what a read saw for the one-request commit (`sqlite_fast`).
    fn remember(&self, actor_id: &str, st: &SqState) {
        if st.pend.is_some() {
            self.drop_sq_view(actor_id);
        } else {
            self.sq_views
                .saw(actor_id, st.gen, st.head, st.nv, st.size, st.fl);
        }
    }

    pub(super) async fn sqlite_commit_impl(&self, c: SqliteCommit) -> StoreResult<u64> {
        check_page_sizes(&c.pages)?;
        if let Fast::Done(head) = self.sqlite_commit_fast(&c).await? {
            return Ok(head);
        }
        let pk = actor_pk(&c.actor_id);
        let st = self
            .claim(&c.actor_id, c.generation, c.expected_head, PendKind::Commit)
            .await?;
        let vid = match &st.pend {
            Some(p) => p.id,
            None => {
                return Err(StoreError::Corrupt(
                    "claim left no pending attempt".to_owned(),
                ))
            }
        };
        // The last write of a page wins; pages past the new end are cut off by this commit.
        let mut pages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for (pgno, bytes) in c.pages {
            if pgno <= c.db_size_pages {
                pages.insert(pgno, bytes);
            }
        }
        let tombs = self.cut_off_pages(&pk, &st, c.db_size_pages).await?;
        let touched: Vec<u32> = pages.keys().copied().chain(tombs.iter().copied()).collect();
        let entries = pages
            .into_iter()
            .map(|(p, b)| (p, Some(b)))
            .chain(tombs.into_iter().map(|p| (p, None)))
            .collect();
        let fence_vals = [(":pid", n(vid)), (":g", n(c.generation))];
        if let Err(seen) = self
            .write_version(&pk, vid, "#p_id = :pid AND #gen = :g", &fence_vals, entries)
            .await?
        {
            return Err(claim_failure(
                &c.actor_id,
                c.generation,
                c.expected_head,
                seen.as_ref(),
            ));
        }
        self.clean_attempts(&pk, st.hv, vid, &HashSet::new(), None)
            .await?;
        self.publish(
            &c.actor_id,
            c.generation,
            vid,
            c.expected_head,
            vid,
            c.db_size_pages,
            false,
        )
        .await?;
        self.spawn_gc(pk, touched, st.fl, vid);
        let head = c.expected_head.saturating_add(1);
        self.sq_views.saw(
            &c.actor_id,
            c.generation,
            head,
            st.nv,
            c.db_size_pages,
            st.fl,
        );
        Ok(head)
    }

    pub(super) async fn sqlite_stage_begin_impl(
        &self,
        actor_id: &str,
        generation: u32,
        expected_head: u64,
    ) -> StoreResult<u64> {
        self.claim(actor_id, generation, expected_head, PendKind::Stage)
            .await?;
        Ok(expected_head.saturating_add(1))
    }

    pub(super) async fn sqlite_stage_segment_impl(&self, seg: SqliteSegment) -> StoreResult<u64> {
        check_page_sizes(&seg.pages)?;
        let pk = actor_pk(&seg.actor_id);
        let st = self
            .sq_state(&pk)
            .await?
            .ok_or_else(|| not_found(&seg.actor_id))?;
        if st.gen != seg.generation {
            return Err(StoreError::StaleGeneration {
                given: seg.generation,
                current: st.gen,
            });
        }
        let p = open_stage(&st, seg.txid, seg.generation, false)?;
        let first = seg.first_pgno;
        // Both checks keep segments disjoint and ordered, as in the embedded store.
        if let Some(&(last, _)) = p.segs.last() {
            if first <= last {
                return Err(rejected(format!(
                    "segment {first} does not come after segment {last}"
                )));
            }
        }
        if let Some(max) = p.max {
            if first <= max {
                return Err(rejected(format!(
                    "segment {first} overlaps page {max} of an earlier segment"
                )));
            }
        }
        if let Some((pgno, _)) = seg.pages.iter().find(|(pgno, _)| *pgno < first) {
            return Err(rejected(format!(
                "page {pgno} lies below its segment {first}"
            )));
        }
        let sid = p.id;
        let nsegs = p.segs.len();
        let seg_bytes: u64 = seg.pages.iter().map(|(_, b)| b.len() as u64).sum();
        let new_max = seg.pages.iter().map(|(p, _)| *p).max().max(p.max);

        let open = "#p_id = :sid AND #gen = :g AND attribute_not_exists(#p_seal)";
        let open_vals = [(":sid", n(sid)), (":g", n(seg.generation))];
        let vid = match self
            .update_if(
                &pk,
                STATE_SK,
                "SET #nv = #nv + :one",
                open,
                [open_vals.to_vec(), vec![(":one", n(1))]].concat(),
                ReturnValue::UpdatedOld,
            )
            .await?
        {
            Cond::Applied(old) => get_n::<u64>(&old, "nv")?,
            Cond::Failed(seen) => {
                return Err(stage_failure(
                    &seg.actor_id,
                    seg.generation,
                    sid,
                    seen.as_ref(),
                ))
            }
        };
        let mut pages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for (pgno, bytes) in seg.pages {
            pages.insert(pgno, bytes);
        }
        let entries = pages.into_iter().map(|(p, b)| (p, Some(b))).collect();
        if let Err(seen) = self
            .write_version(&pk, vid, open, &open_vals, entries)
            .await?
        {
            return Err(stage_failure(
                &seg.actor_id,
                seg.generation,
                sid,
                seen.as_ref(),
            ));
        }
        let entry = AttributeValue::L(vec![AttributeValue::M(HashMap::from([
            ("f".to_owned(), n(first)),
            ("v".to_owned(), n(vid)),
        ]))]);
        let mut vals = open_vals.to_vec();
        vals.extend([(":seg", entry), (":b", n(seg_bytes)), (":n", n(nsegs))]);
        let update = match new_max {
            Some(max) => {
                vals.push((":max", n(max)));
                "SET #p_segs = list_append(#p_segs, :seg), #p_bytes = #p_bytes + :b, #p_max = :max"
            }
            None => "SET #p_segs = list_append(#p_segs, :seg), #p_bytes = #p_bytes + :b",
        };
        let cond = format!("{open} AND size(#p_segs) = :n");
        match self
            .update_if(&pk, STATE_SK, update, &cond, vals, ReturnValue::AllNew)
            .await?
        {
            Cond::Applied(it) => get_n(&it, "p_bytes"),
            Cond::Failed(seen) => Err(stage_failure(
                &seg.actor_id,
                seg.generation,
                sid,
                seen.as_ref(),
            )),
        }
    }

    pub(super) async fn sqlite_stage_finalize_impl(&self, f: SqliteFinalize) -> StoreResult<u64> {
        let pk = actor_pk(&f.actor_id);
        let st = self
            .sq_state(&pk)
            .await?
            .ok_or_else(|| not_found(&f.actor_id))?;
        if st.gen != f.generation {
            return Err(StoreError::StaleGeneration {
                given: f.generation,
                current: st.gen,
            });
        }
        let p = open_stage(&st, f.txid, f.generation, true)?;
        if f.txid != st.head.saturating_add(1) {
            return Err(StoreError::HeadMismatch {
                expected: f.txid.saturating_sub(1),
                current: st.head,
            });
        }
        let listed: HashSet<u32> = f.segment_first_pgnos.iter().copied().collect();
        if listed.len() != f.segment_first_pgnos.len() {
            return Err(rejected("a segment is listed twice"));
        }
        let staged: HashSet<u32> = p.segs.iter().map(|(first, _)| *first).collect();
        let mut missing: Vec<u32> = listed.difference(&staged).copied().collect();
        let mut unlisted: Vec<u32> = staged.difference(&listed).copied().collect();
        if !missing.is_empty() || !unlisted.is_empty() {
            missing.sort_unstable();
            unlisted.sort_unstable();
            return Err(rejected(format!(
                "listed segments not staged: {missing:?}; staged segments not listed: {unlisted:?}"
            )));
        }
        let sid = p.id;
        let keep: HashSet<u64> = p.segs.iter().map(|(_, v)| *v).collect();
        let expected = st.head;

        // Seal: no segment can join from here on, and the finalize gets its own version.
        let sealed = match self
            .update_if(
                &pk,
                STATE_SK,
                "SET #p_seal = :t, #p_fin = if_not_exists(#p_fin, #nv), #nv = #nv + :one",
                "#p_id = :sid AND #gen = :g AND #head = :h AND size(#p_segs) = :n",
                vec![
                    (":t", AttributeValue::Bool(true)),
                    (":one", n(1)),
                    (":sid", n(sid)),
                    (":g", n(f.generation)),
                    (":h", n(expected)),
                    (":n", n(p.segs.len())),
                ],
                ReturnValue::AllNew,
            )
            .await?
        {
            Cond::Applied(it) => SqState::read(&it)?,
            Cond::Failed(seen) => {
                return Err(stage_failure(&f.actor_id, f.generation, sid, seen.as_ref()))
            }
        };
        let fin = match sealed.pend.as_ref().and_then(|p| p.fin) {
            Some(fin) => fin,
            None => {
                return Err(StoreError::Corrupt(
                    "sealed stage has no version".to_owned(),
                ))
            }
        };
        let kept = self
            .clean_attempts(&pk, st.hv, fin, &keep, Some(f.db_size_pages))
            .await?;
        let tombs = self.cut_off_pages(&pk, &st, f.db_size_pages).await?;
        let touched: Vec<u32> = kept.iter().copied().chain(tombs.iter().copied()).collect();
        let fence = "#p_id = :sid AND #gen = :g AND #p_seal = :t";
        let fence_vals = [
            (":sid", n(sid)),
            (":g", n(f.generation)),
            (":t", AttributeValue::Bool(true)),
        ];
        let entries = tombs.into_iter().map(|p| (p, None)).collect();
        if let Err(seen) = self
            .write_version(&pk, fin, fence, &fence_vals, entries)
            .await?
        {
            return Err(stage_failure(&f.actor_id, f.generation, sid, seen.as_ref()));
        }
        self.publish(
            &f.actor_id,
            f.generation,
            sid,
            expected,
            fin,
            f.db_size_pages,
            true,
        )
        .await?;
        self.spawn_gc(pk, touched, st.fl, fin);
        Ok(f.txid)
    }

    pub(super) async fn clear_actor_data_impl(&self, actor_id: &str) -> StoreResult<()> {
        self.kv_clean.unmark(actor_id);
        // Everything goes below `fl` and is deleted by the clear itself.
        let _ = self.sq_views.forget(actor_id);
        let pk = actor_pk(actor_id);
        let drop_all = Intent {
            generation: 0,
            write: KvWrite::DeleteRange {
                start: Vec::new(),
                end: None,
            },
        };
        for _ in 0..CLEAR_ATTEMPTS {
            let id = self.write_intent_body(actor_id, &drop_all).await?;
            // One step hides every page (the floor rises past every version), discards the
            // pending attempt and publishes the KV drop.
            let update = format!(
                "SET #fl = #nv, #head = :zero, #size = :zero, #kvi = :id REMOVE {PENDING_ATTRS}"
            );
            let res = self
                .update_if(
                    &pk,
                    STATE_SK,
                    &update,
                    "attribute_exists(#pk) AND attribute_not_exists(#kvi)",
                    vec![(":zero", n(0)), (":id", s(id.clone()))],
                    ReturnValue::AllNew,
                )
                .await?;
            match res {
                Cond::Applied(it) => {
                    let st = SqState::read(&it)?;
                    self.roll_forward(actor_id, &id).await?;
                    return self.purge_versions_below(&pk, st.fl).await;
                }
                Cond::Failed(None) => {
                    // No such actor: nothing of it is visible.
                    self.drop_intent_body(actor_id, &id).await;
                    return Ok(());
                }
                Cond::Failed(Some(seen)) => {
                    self.drop_intent_body(actor_id, &id).await;
                    if let Some(other) = pending_intent(Some(&seen))? {
                        self.roll_forward(actor_id, &other).await?;
                    }
                }
            }
        }
        Err(StoreError::Conflict {
            what: format!("data of actor {actor_id}"),
        })
    }

    /// Deletes page versions and page lists below `fl` (invisible since the floor rose).
    async fn purge_versions_below(&self, pk: &str, fl: u64) -> StoreResult<()> {
        let mut ops = Vec::new();
        for (prefix, is_list) in [(PAGE_PREFIX, false), (PAGE_LIST_PREFIX, true)] {
            let q = Query {
                projection: Some("#pk, #sk"),
                ..Query::new(pk, Range::Prefix(prefix.to_owned()))
            };
            for it in table::query_all(&self.client, &self.table, &q).await? {
                let sk = sk_of(&it)?;
                let vid = if is_list {
                    parse_page_list_sk(sk)
                } else {
                    parse_page_sk(sk).map(|(_, v)| v)
                };
                if vid.is_some_and(|v| v < fl) {
                    ops.push(BatchOp::Delete(table::key(pk, sk)));
                }
            }
        }
        batch_write(&self.client, &self.table, ops).await
    }
}

/// Internal steps of a single-shot commit, for crash tests: each is what `sqlite_commit`
/// does between its network calls, so a test can stop after any of them.
#[doc(hidden)]
pub mod crash {
    use super::*;

    impl DynamoStore {
        /// Claims and writes the pages of `c` but stops before cleaning up and publishing, as
        /// a writer that crashes at that point would; returns the version it wrote under.
        pub async fn crash_commit_before_publish(&self, c: SqliteCommit) -> StoreResult<u64> {
            let pk = actor_pk(&c.actor_id);
            let st = self
                .claim(&c.actor_id, c.generation, c.expected_head, PendKind::Commit)
                .await?;
            let vid =
                st.pend.as_ref().map(|p| p.id).ok_or_else(|| {
                    StoreError::Corrupt("claim left no pending attempt".to_owned())
                })?;
            let entries = c
                .pages
                .into_iter()
                .filter(|(p, _)| *p <= c.db_size_pages)
                .map(|(p, b)| (p, Some(b)))
                .collect();
            let fence_vals = [(":pid", n(vid)), (":g", n(c.generation))];
            match self
                .write_version(&pk, vid, "#p_id = :pid AND #gen = :g", &fence_vals, entries)
                .await?
            {
                Ok(()) => Ok(vid),
                Err(seen) => Err(claim_failure(
                    &c.actor_id,
                    c.generation,
                    c.expected_head,
                    seen.as_ref(),
                )),
            }
        }

        /// Publishes a KV put as an intent and stops before applying it, as a writer that
        /// crashes right after publishing would.
        pub async fn crash_kv_put_before_apply(
            &self,
            actor_id: &str,
            generation: u32,
            entries: Vec<(Vec<u8>, Vec<u8>)>,
            now_ms: i64,
        ) -> StoreResult<()> {
            // As `kv_write` does when it starts.
            self.kv_clean.unmark(actor_id);
            let intent = Intent {
                generation,
                write: KvWrite::Put { entries, now_ms },
            };
            match self
                .publish_intent(actor_id, &intent, Some(generation))
                .await?
            {
                Ok(_) => Ok(()),
                Err(_) => Err(StoreError::Conflict {
                    what: format!("kv of actor {actor_id}"),
                }),
            }
        }

        /// Sort keys of every page version and page list an actor has, for tests that check
        /// what a crash left behind.
        pub async fn page_item_keys(&self, actor_id: &str) -> StoreResult<Vec<String>> {
            let pk = actor_pk(actor_id);
            let mut out = Vec::new();
            for prefix in [PAGE_PREFIX, PAGE_LIST_PREFIX] {
                let q = Query {
                    projection: Some("#pk, #sk"),
                    ..Query::new(pk.clone(), Range::Prefix(prefix.to_owned()))
                };
                for it in table::query_all(&self.client, &self.table, &q).await? {
                    out.push(sk_of(&it)?.to_owned());
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_close_pages() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[1, 2, 3, 19, 40]), vec![(1, 19), (40, 40)]);
        assert_eq!(runs(&[5]), vec![(5, 5)]);
    }

    #[test]
    fn page_lists_round_trip() {
        let p = vec![1, 7, u32::MAX];
        assert_eq!(unpack_pgnos(&pack_pgnos(&p)).expect("decodes"), p);
        assert!(unpack_pgnos(&[1, 2, 3]).is_err());
    }
}
