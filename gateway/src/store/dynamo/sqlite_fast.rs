//! The one-request SQLite commit. A commit whose pages fit one transaction, of a database
//! that does not shrink, is written and published by a single `TransactWriteItems`: an update
//! of the actor's state item that moves the head (and takes the next version number), and the
//! page items of that version. DynamoDB applies all or nothing, so no attempt is ever left
//! half-written and no pending slot, page list or clean-up is needed.
//!
//! The update also stores a random token, so a retried transaction that finds the head moved
//! can tell whether it moved it itself (the SDK retried after the first attempt landed) or
//! another writer with the same view did.
//!
//! The version number comes from what this store last saw of the state item (`SqSeen`, kept
//! per actor after reads and commits); the update's condition requires exactly that state —
//! generation, head, version counter, and no pending attempt of the multi-step protocol — so
//! a stale view only costs a refused transaction, after which the commit takes the
//! multi-step path in `sqlite` (which also gives the precise error). With no pending attempt,
//! every unpublished attempt has been cleaned up by the publish that ended it, so no page
//! item exists above the head and the new version cannot mix with leftovers.
//!
//! Superseded versions of the pages these commits touch are collected every
//! `GC_EVERY_COMMITS` commits rather than after each (collecting costs a query and a batch
//! write). Readers take the newest visible version and tolerate extra old ones; if the view
//! is dropped (evicted, process restart) the versions it had not collected yet stay until a
//! later commit touches those pages and collects them.

use super::keys::{actor_pk, page_sk, STATE_SK};
use super::table::{self, b, item, n, transact, tx_put, tx_update, TX_MAX_BYTES, TX_MAX_ITEMS};
use super::{DynamoStore, StoreResult};
use crate::store::SqliteCommit;

/// Commits between two collections of superseded page versions, per actor.
const GC_EVERY_COMMITS: u32 = 16;
/// Pages touched since the last collection past which it runs early.
const GC_MAX_TOUCHED: usize = 512;

/// Outcome of a one-request attempt.
pub(super) enum Fast {
    /// Committed: the new head.
    Done(u64),
    /// Not applicable or refused: take the multi-step path.
    Fallback,
}

impl DynamoStore {
    pub(super) async fn sqlite_commit_fast(&self, c: &SqliteCommit) -> StoreResult<Fast> {
        let Some(seen) = self.sq_views.get(&c.actor_id) else {
            return Ok(Fast::Fallback);
        };
        if seen.gen != c.generation || seen.head != c.expected_head {
            return Ok(Fast::Fallback);
        }
        // A shrink must tombstone the pages it cuts off, which needs a query first.
        if c.db_size_pages < seen.size {
            return Ok(Fast::Fallback);
        }
        let mut pages: Vec<(u32, &Vec<u8>)> = Vec::new();
        for (pgno, bytes) in &c.pages {
            if *pgno <= c.db_size_pages {
                // The last write of a page wins.
                pages.retain(|(p, _)| p != pgno);
                pages.push((*pgno, bytes));
            }
        }
        let bytes: usize = pages.iter().map(|(_, b)| b.len() + 128).sum();
        if pages.len() + 1 > TX_MAX_ITEMS || bytes > TX_MAX_BYTES {
            return Ok(Fast::Fallback);
        }
        let pk = actor_pk(&c.actor_id);
        let vid = seen.nv;
        let head = c.expected_head.saturating_add(1);
        // Tells this attempt's own result from another writer's with the same view.
        let token: u64 = rand::random();
        let mut actions = vec![tx_update(
            &self.table,
            table::key(&pk, STATE_SK),
            "SET #nv = :next, #head = :tx, #hv = :vid, #size = :size, #ft = :token",
            "#gen = :g AND #head = :h AND #nv = :vid AND attribute_not_exists(#p_id)",
            vec![
                (":token", n(token)),
                (":next", n(vid + 1)),
                (":tx", n(head)),
                (":vid", n(vid)),
                (":size", n(c.db_size_pages)),
                (":g", n(c.generation)),
                (":h", n(c.expected_head)),
            ],
        )?];
        for (pgno, bytes) in &pages {
            actions.push(tx_put(
                &self.table,
                item(&pk, page_sk(*pgno, vid), [("b", b((*bytes).clone()))]),
            )?);
        }
        match transact(&self.client, "sqlite commit", actions).await? {
            Ok(()) => {}
            Err(cancelled) => {
                // An SDK retry of this very transaction after it had landed sees its own
                // result; anything else means the view was stale.
                if let Some(Some(it)) = cancelled.failed(0) {
                    let landed = table::get_n::<u64>(it, "ft").ok() == Some(token)
                        && table::get_n::<u64>(it, "head").ok() == Some(head);
                    if landed {
                        self.after_fast_commit(
                            &c.actor_id,
                            &pk,
                            head,
                            vid,
                            c.db_size_pages,
                            &pages,
                        );
                        return Ok(Fast::Done(head));
                    }
                }
                self.drop_sq_view(&c.actor_id);
                return Ok(Fast::Fallback);
            }
        }
        self.after_fast_commit(&c.actor_id, &pk, head, vid, c.db_size_pages, &pages);
        Ok(Fast::Done(head))
    }

    /// Drops what this store saw of an actor's SQLite state, first collecting the versions
    /// its one-request commits superseded (else a page written a few times per wake would
    /// keep every version).
    pub(super) fn drop_sq_view(&self, actor_id: &str) {
        if let Some(view) = self.sq_views.forget(actor_id) {
            if !view.touched.is_empty() {
                let hv = view.nv.saturating_sub(1);
                self.spawn_gc(actor_pk(actor_id), view.touched, view.fl, hv);
            }
        }
    }

    fn after_fast_commit(
        &self,
        actor_id: &str,
        pk: &str,
        head: u64,
        vid: u64,
        size: u32,
        pages: &[(u32, &Vec<u8>)],
    ) {
        let collect = {
            let mut views = self.sq_views.lock();
            let Some(view) = views.get_mut(actor_id) else {
                return;
            };
            view.head = head;
            view.nv = vid + 1;
            view.size = size;
            view.touched.extend(pages.iter().map(|(p, _)| *p));
            view.commits += 1;
            if view.commits >= GC_EVERY_COMMITS || view.touched.len() >= GC_MAX_TOUCHED {
                view.commits = 0;
                Some((std::mem::take(&mut view.touched), view.fl))
            } else {
                None
            }
        };
        if let Some((touched, fl)) = collect {
            self.spawn_gc(pk.to_owned(), touched, fl, vid);
        }
    }
}
