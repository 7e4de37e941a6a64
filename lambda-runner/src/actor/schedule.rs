//! Scheduled actions: `ctx.schedule().after(..)` / `.at(..)` record an action to run later.
//!
//! Each pending action is one KV entry (`02 <id>` → CBOR `{at, action, args}`), written before
//! `after`/`at` returns, so it survives sleep, restarts and crashes. The earliest one is pushed
//! to the gateway as the actor's alarm, which wakes a sleeping actor; a running actor keeps its
//! own timer. A due action is claimed (its entry deleted) before it runs, so it runs at most
//! once, as in RivetKit; its errors are logged, since no client waits for it.

use std::collections::BTreeMap;

use ciborium::Value;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::error::{ActorError, StartError};
use super::host::Host;
use super::persist::SCHEDULE_TAG;

/// One pending scheduled action.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledEvent {
    /// Id returned by `after`/`at`, for `cancel`.
    pub id: String,
    /// When it is due, ms since the epoch.
    pub at_ms: i64,
    /// Action to call.
    pub action: String,
    /// Its arguments.
    pub args: Vec<Value>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    at: i64,
    action: String,
    args: Vec<Value>,
}

fn event_key(id: &str) -> Vec<u8> {
    let mut key = vec![SCHEDULE_TAG];
    key.extend_from_slice(id.as_bytes());
    key
}

/// The pending scheduled actions of one actor, in memory and in KV.
pub(crate) struct ScheduleStore {
    /// Keyed by (due time, id): the first entry is the next to run.
    events: Mutex<BTreeMap<(i64, String), ScheduledEvent>>,
    /// Last alarm pushed to the host, to skip redundant pushes.
    pushed: Mutex<Option<Option<i64>>>,
    /// Serializes writes so the in-memory map and KV change in the same order.
    write: tokio::sync::Mutex<()>,
}

impl ScheduleStore {
    /// Loads every pending action. An entry that does not decode is logged and dropped.
    pub(crate) async fn load(host: &dyn Host) -> Result<Self, StartError> {
        let mut events = BTreeMap::new();
        for (key, value) in host.kv_list_prefix(vec![SCHEDULE_TAG]).await? {
            let id = String::from_utf8_lossy(&key[1..]).into_owned();
            match ciborium::from_reader::<Record, _>(value.as_slice()) {
                Ok(record) => {
                    events.insert(
                        (record.at, id.clone()),
                        ScheduledEvent {
                            id,
                            at_ms: record.at,
                            action: record.action,
                            args: record.args,
                        },
                    );
                }
                Err(error) => {
                    tracing::warn!(schedule_id = %id, %error, "dropping undecodable scheduled action")
                }
            }
        }
        Ok(Self {
            events: Mutex::new(events),
            pushed: Mutex::new(None),
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// Records an action to run at `at_ms`; durable when this returns.
    pub(crate) async fn add(
        &self,
        host: &dyn Host,
        at_ms: i64,
        action: &str,
        args: Vec<Value>,
        max: usize,
    ) -> Result<String, ActorError> {
        let _write = self.write.lock().await;
        if self.events.lock().len() >= max {
            return Err(ActorError::public(
                "schedule",
                "max_schedules_exceeded",
                format!("Actor has reached its limit of {max} pending schedules."),
            ));
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let record = Record {
            at: at_ms,
            action: action.to_owned(),
            args,
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&record, &mut bytes).map_err(|error| {
            ActorError::internal(format!("encoding a scheduled action failed: {error}"))
        })?;
        host.kv_put(vec![(event_key(&id), bytes)]).await?;
        self.events.lock().insert(
            (at_ms, id.clone()),
            ScheduledEvent {
                id: id.clone(),
                at_ms,
                action: record.action,
                args: record.args,
            },
        );
        self.push_alarm(host, false);
        Ok(id)
    }

    /// Removes a pending action; `false` if there was none with this id.
    pub(crate) async fn cancel(&self, host: &dyn Host, id: &str) -> Result<bool, ActorError> {
        let _write = self.write.lock().await;
        let key = self
            .events
            .lock()
            .iter()
            .find(|(_, event)| event.id == id)
            .map(|(key, _)| key.clone());
        let Some(key) = key else {
            return Ok(false);
        };
        host.kv_delete(vec![event_key(id)]).await?;
        self.events.lock().remove(&key);
        self.push_alarm(host, false);
        Ok(true)
    }

    /// Takes the next action due at `now_ms`, deleting its entry first. If the delete fails the
    /// action still runs (and is logged): it may then run again after a restart.
    pub(crate) async fn claim_due(&self, host: &dyn Host, now_ms: i64) -> Option<ScheduledEvent> {
        let _write = self.write.lock().await;
        let event = {
            let mut events = self.events.lock();
            let key = events
                .keys()
                .next()
                .filter(|(at, _)| *at <= now_ms)
                .cloned()?;
            events.remove(&key)
        }?;
        if let Err(error) = host.kv_delete(vec![event_key(&event.id)]).await {
            tracing::warn!(schedule_id = %event.id, %error, "could not delete a due scheduled action; it may run again");
        }
        self.push_alarm(host, false);
        Some(event)
    }

    /// When the next action is due.
    pub(crate) fn next_at(&self) -> Option<i64> {
        self.events.lock().keys().next().map(|(at, _)| *at)
    }

    /// Every pending action, earliest first.
    pub(crate) fn list(&self) -> Vec<ScheduledEvent> {
        self.events.lock().values().cloned().collect()
    }

    /// Pushes the earliest due time to the host as the actor's alarm if it changed (or
    /// always, with `force`, as on every start).
    pub(crate) fn push_alarm(&self, host: &dyn Host, force: bool) {
        let next = self.next_at();
        let mut pushed = self.pushed.lock();
        if force || *pushed != Some(next) {
            *pushed = Some(next);
            host.set_alarm(next);
        }
    }
}
