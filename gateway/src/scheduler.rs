//! Durable alarms. An actor's alarm lives in its store record; a loaded supervisor keeps a
//! timer for it. Two things cover actors with no supervisor in memory:
//!
//! - **This node's wheel.** A supervisor that unloads with an alarm set leaves the alarm here,
//!   so it fires on time without asking the store (an in-memory ordered set, bounded by the
//!   actors this node unloaded with an alarm pending).
//! - **The store scan**, every `alarm_scan_interval_ms` (default 16 s): finds alarms no node
//!   has in memory (set on a node that died, or before this process started). DynamoDB keeps
//!   the alarm index in 8 shards, one query each, so the default costs half a request per
//!   second per node when nothing is due, however many actors there are. An alarm only the scan can see
//!   fires up to one interval late.
//!
//! With several nodes every node scans; the actor's lease decides which node's wake goes
//! through.

use std::collections::BTreeSet;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::actor::Msg;
use crate::state::Gateway;
use crate::util::{now_ms, sleep_until_opt};

/// Alarms taken per scan; the rest follow on the next one.
const SCAN_BATCH: usize = 256;

/// Alarms of unloaded actors, kept by this node until due.
#[derive(Default)]
pub struct Wheel {
    due: Mutex<BTreeSet<(i64, String)>>,
    changed: Notify,
}

impl Wheel {
    /// Keeps an alarm at `ts` (ms since the epoch) for `actor_id`.
    pub fn add(&self, ts: i64, actor_id: &str) {
        self.due.lock().insert((ts, actor_id.to_owned()));
        self.changed.notify_one();
    }

    /// Removes and returns the alarms due at `now`.
    fn take_due(&self, now: i64) -> Vec<String> {
        let mut due = self.due.lock();
        let later = due.split_off(&(now.saturating_add(1), String::new()));
        let ready = std::mem::replace(&mut *due, later);
        ready.into_iter().map(|(_, id)| id).collect()
    }

    /// When the earliest alarm is due.
    fn next(&self) -> Option<i64> {
        self.due.lock().first().map(|(ts, _)| *ts)
    }

    /// Alarms kept (for metrics and tests).
    pub fn len(&self) -> usize {
        self.due.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.due.lock().is_empty()
    }
}

/// Runs until shutdown.
pub async fn run(gw: Gateway) {
    let every = Duration::from_millis(gw.config.gateway.alarm_scan_interval_ms.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_local = gw.alarms.next().map(|ts| {
            let wait = u64::try_from(ts.saturating_sub(now_ms())).unwrap_or(0);
            tokio::time::Instant::now() + Duration::from_millis(wait)
        });
        tokio::select! {
            _ = gw.stopping.cancelled() => return,
            _ = tick.tick() => scan(&gw).await,
            _ = gw.alarms.changed.notified() => {}
            _ = sleep_until_opt(next_local), if next_local.is_some() => {
                for actor_id in gw.alarms.take_due(now_ms()) {
                    tracing::debug!(actor_id = %actor_id, "alarm due for an unloaded actor");
                    // Loading the supervisor is enough: its own timer fires the due alarm.
                    if let Err(err) = gw.actors.ensure(&gw, &actor_id).await {
                        tracing::warn!(actor_id = %actor_id, error = %err.message, "cannot load actor for its alarm; the store scan retries");
                    }
                }
            }
        }
    }
}

async fn scan(gw: &Gateway) {
    let due = match gw.store.due_alarms(now_ms(), SCAN_BATCH).await {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(error = %err, "alarm scan failed; retrying");
            return;
        }
    };
    for record in due {
        if record.is_destroyed() {
            continue;
        }
        match gw.actors.get(&record.actor_id) {
            None => {
                tracing::debug!(actor_id = %record.actor_id, "alarm due for an unloaded actor");
                gw.actors.spawn(gw, record);
            }
            // A supervisor loaded here may hold a record another node changed since (it
            // set this alarm, then died): have it look again. One that serves the actor
            // ignores this; its own timer already covers the alarm.
            Some(actor) => {
                let _ = actor.send(Msg::Refresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_hands_out_due_alarms_in_time_order_once() {
        let wheel = Wheel::default();
        wheel.add(30, "c");
        wheel.add(10, "a");
        wheel.add(20, "b");
        assert_eq!(wheel.next(), Some(10));
        assert_eq!(wheel.take_due(20), vec!["a".to_owned(), "b".to_owned()]);
        assert!(wheel.take_due(20).is_empty());
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.take_due(i64::MAX), vec!["c".to_owned()]);
        assert!(wheel.is_empty());
    }
}
