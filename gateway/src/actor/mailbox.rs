//! The way into a supervisor: a mailbox that never refuses a lifecycle input.
//!
//! A bounded queue that drops what does not fit loses exactly the messages that must not be
//! lost (a `RunnerLost` left an actor "running" for good; a lost `Hibernating` dropped the
//! socket from the next start). So inputs are coalesced instead of queued: wake, sleep,
//! destroy and refresh are flags; runner loss and shutdown are sets of runner keys; a client
//! socket's hibernation is one entry per socket holding its latest state. Each of these is
//! bounded by what it describes (one flag, the runners, the actor's sockets), not by how often
//! it is sent. Runner events keep their order in a queue whose only growth is bounded by the
//! protocol (a generation reports running and stopped once, and intents a few times); alarm
//! updates replace the one queued for the same generation, which is the only event a runner
//! may send at will. A runner that still overflows [`MAX_EVENTS`] is misbehaving: the event is
//! refused, logged, and the runner's connection is the one that pays (see `envoy::conn`).
//!
//! The supervisor takes everything pending at once ([`Mailbox::take`]) and applies it in a
//! fixed order: sockets, a claim, a standby runner ready, events, the end of a serverless
//! request, runner loss, runner
//! shutdown, destroy, sleep, wake, refresh.
//! Sockets come first so a start built after a wake restores every hibernating socket.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use parking_lot::Mutex;
use rivulet_wire::envoy::{Event, EventWrapper};
use tokio::sync::Notify;

use super::{InvocationEnd, Msg};

/// Runner events held for one actor before the mailbox refuses more.
pub const MAX_EVENTS: usize = 1024;

/// Why a message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The supervisor has exited (destroyed, unloaded or shut down).
    Closed,
    /// The runner sent more events than the protocol allows without them being applied.
    TooManyEvents,
}

/// A client socket of this actor: (gateway id, request id).
pub type SocketId = ([u8; 4], [u8; 4]);

/// Everything pending, in the order the supervisor applies it.
#[derive(Debug, Default)]
pub struct Batch {
    /// Sockets that hibernate (`true`) or closed (`false`), latest state each.
    pub sockets: BTreeMap<SocketId, bool>,
    /// A runner claimed this generation (the newest claim), applied before events.
    pub claim: Option<(u32, String)>,
    /// A standby request's runner connected (the newest), applied after the claim.
    pub standby_ready: Option<String>,
    /// Runner events, in arrival order.
    pub events: VecDeque<EventWrapper>,
    /// How the newest generation's serverless request ended, applied after events.
    pub invocation_end: Option<(u32, InvocationEnd)>,
    /// Runners whose connection is gone for good.
    pub runners_lost: BTreeSet<String>,
    /// Runners that announced their shutdown.
    pub runners_stopping: BTreeSet<String>,
    /// Destroy requested.
    pub destroy: bool,
    /// Sleep requested.
    pub sleep: bool,
    /// Wake requested.
    pub wake: bool,
    /// Re-read the stored record.
    pub refresh: bool,
}

impl Batch {
    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
            && self.claim.is_none()
            && self.standby_ready.is_none()
            && self.events.is_empty()
            && self.invocation_end.is_none()
            && self.runners_lost.is_empty()
            && self.runners_stopping.is_empty()
            && !self.destroy
            && !self.sleep
            && !self.wake
            && !self.refresh
    }

    /// Adds one message, coalescing it with what is pending.
    fn put(&mut self, msg: Msg) -> Result<(), Refused> {
        match msg {
            Msg::Wake => self.wake = true,
            Msg::Sleep => self.sleep = true,
            Msg::Destroy => self.destroy = true,
            Msg::RunnerLost(envoy) => {
                self.runners_lost.insert(envoy);
            }
            Msg::RunnerStopping(envoy) => {
                self.runners_stopping.insert(envoy);
            }
            Msg::Event(event) => return self.put_event(event),
            Msg::Hibernating(gw, req) => {
                self.sockets.insert((gw, req), true);
            }
            Msg::HibernatingClosed(gw, req) => {
                self.sockets.insert((gw, req), false);
            }
            Msg::Refresh => self.refresh = true,
            // Only the newest generation's news matters; older ones are stale anyway.
            Msg::Claimed { envoy, generation } => {
                if self.claim.as_ref().is_none_or(|(g, _)| generation >= *g) {
                    self.claim = Some((generation, envoy));
                }
            }
            Msg::StandbyReady { envoy } => self.standby_ready = Some(envoy),
            Msg::InvocationEnded { generation, end } => {
                if self
                    .invocation_end
                    .as_ref()
                    .is_none_or(|(g, _)| generation >= *g)
                {
                    self.invocation_end = Some((generation, end));
                }
            }
        }
        Ok(())
    }

    fn put_event(&mut self, event: EventWrapper) -> Result<(), Refused> {
        if let Event::EventActorSetAlarm(_) = &event.inner {
            // Only the latest alarm of a generation matters; it replaces the queued one in
            // place, keeping its position relative to other events.
            let generation = event.checkpoint.generation;
            if let Some(queued) = self.events.iter_mut().find(|e| {
                e.checkpoint.generation == generation
                    && matches!(e.inner, Event::EventActorSetAlarm(_))
            }) {
                if event.checkpoint.index > queued.checkpoint.index {
                    *queued = event;
                }
                return Ok(());
            }
        }
        if self.events.len() >= MAX_EVENTS {
            return Err(Refused::TooManyEvents);
        }
        self.events.push_back(event);
        Ok(())
    }
}

/// The shared half: callers put, the supervisor takes.
#[derive(Debug, Default)]
pub struct Mailbox {
    pending: Mutex<Pending>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    batch: Batch,
    closed: bool,
}

impl Mailbox {
    /// Hands a message to the supervisor; never waits.
    pub fn put(&self, msg: Msg) -> Result<(), Refused> {
        {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(Refused::Closed);
            }
            pending.batch.put(msg)?;
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Everything pending, once there is something; `None` once closed and drained.
    pub async fn recv(&self) -> Option<Batch> {
        loop {
            // Registered before looking, so a put between the look and the wait still wakes.
            let notified = self.notify.notified();
            {
                let mut pending = self.pending.lock();
                if !pending.batch.is_empty() {
                    return Some(std::mem::take(&mut pending.batch));
                }
                if pending.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Closes the mailbox if nothing is pending; returns whether it closed. A supervisor that
    /// unloads calls this under the directory's lock, so no caller can find it afterwards and
    /// no message put before is lost.
    pub fn close_if_empty(&self) -> bool {
        let mut pending = self.pending.lock();
        if pending.batch.is_empty() {
            pending.closed = true;
            true
        } else {
            false
        }
    }

    /// Closes the mailbox, dropping whatever is pending (the actor is gone for good).
    pub fn close(&self) {
        let mut pending = self.pending.lock();
        pending.closed = true;
        pending.batch = Batch::default();
    }

    /// Whether the supervisor behind it has exited.
    pub fn is_closed(&self) -> bool {
        self.pending.lock().closed
    }
}

#[cfg(test)]
mod tests;
