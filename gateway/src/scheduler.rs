//! Durable alarms. An actor's alarm lives in its store record; a loaded supervisor keeps a
//! timer for it, and this task finds due alarms of actors with no supervisor in memory (after
//! a gateway restart, or once idle supervisors are unloaded) and starts one, which then wakes
//! the actor. With several nodes, every node scans; the actor's lease decides which node's
//! wake goes through.

use std::time::Duration;

use crate::actor::Msg;
use crate::state::Gateway;
use crate::util::now_ms;

/// How often the store is scanned for due alarms.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Alarms taken per scan; the rest follow on the next one.
const SCAN_BATCH: usize = 256;

/// Runs until shutdown.
pub async fn run(gw: Gateway) {
    let mut tick = tokio::time::interval(SCAN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = gw.stopping.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = match gw.store.due_alarms(now_ms(), SCAN_BATCH).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "alarm scan failed; retrying");
                continue;
            }
        };
        for record in due {
            if record.is_destroyed() {
                continue;
            }
            match gw.actors.get(&record.actor_id) {
                None => {
                    tracing::debug!(actor_id = %record.actor_id, "alarm due for an unloaded actor");
                    gw.actors.spawn(&gw, record);
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
}
