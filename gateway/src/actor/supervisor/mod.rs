//! The task that owns one actor. It only receives (mailbox batches, timers, the runner set
//! and this node's registration changing), feeds each as an input to the `lifecycle`
//! machine, carries out the effects it returns (`effects`, `claim`), and publishes the
//! resulting status for waiting requests. Everything it talks to is behind `ports`.
//!
//! Ordering rule: a new generation is persisted before the start command leaves, so the
//! store's fence already rejects the previous generation's writes when the new one runs.
//!
//! # Layout
//! - `effects`: carrying out effects (store writes, commands to runners).
//! - `claim`: taking, adopting and giving back the actor's lease; re-reading the record.
//! - `events`: runner events as inputs, and events that arrive ahead of their start.
//! - `timers`: the machine's timers, fired from the supervisor's own loop.

mod claim;
mod effects;
mod events;
mod timers;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rivulet_wire::envoy::EventWrapper;
use tokio::sync::watch;
use tracing::Instrument;

use super::lifecycle::{Claim, Input, Lifecycle, Phase};
use super::mailbox::{Batch, Mailbox};
use super::ports::Ports;
use super::{ActorHandle, Status};
use crate::store::{ActorRecord, Lease};
use crate::util::{now_ms, sleep_until_opt};
use timers::Timers;

/// Starts the supervisor of `record` on `tasks`.
pub(super) fn spawn(
    ports: Ports,
    record: ActorRecord,
    tasks: &tokio_util::task::TaskTracker,
) -> ActorHandle {
    let (handle, sup) = build(ports, record);
    let span = sup.span();
    tasks.spawn(sup.run().instrument(span));
    handle
}

fn build(ports: Ports, record: ActorRecord) -> (ActorHandle, Supervisor) {
    let mailbox = Arc::new(Mailbox::default());
    // A record that says it runs on a runner was written by an earlier gateway process: the
    // runner keeps its actors across our restart and reconnects, so the supervisor adopts
    // the running generation instead of starting a second copy (which would fence the first
    // one's last writes away). Published as waking until the adoption is settled.
    let adopting = record.envoy_key.is_some() && record.connectable_ts.is_some();
    let status = if adopting {
        Status::Waking
    } else {
        Status::Sleeping
    };
    let mut phase_count = crate::metrics::PhaseCount::new(ports.metrics.actors.clone());
    phase_count.set(phase_label(&status));
    let (status_tx, status_rx) = watch::channel(status);
    let handle = ActorHandle {
        actor_id: record.actor_id.clone(),
        mailbox: mailbox.clone(),
        status: status_rx,
    };
    let sup = Supervisor {
        phase_count,
        wake_started: None,
        move_started: None,
        lifecycle: Lifecycle::new(Phase::Sleeping, record.generation, record.crash_policy),
        ports,
        record,
        mailbox,
        status: status_tx,
        adopting,
        // Commands of an adopted generation were numbered by the earlier process; continue
        // above anything it can have used so the runner does not drop ours as replays.
        next_command_index: if adopting { now_ms() } else { 0 },
        last_event_index: -1,
        hibernating: BTreeSet::new(),
        lease: None,
        refusal: None,
        early_events: Vec::new(),
        fenced: false,
        timers: Timers::default(),
        unload_at: None,
        record_dirty: false,
        slot: None,
        queued: None,
        invocation: None,
        standby: None,
        failure: None,
        failures: 0,
    };
    (handle, sup)
}

struct Supervisor {
    /// Counts this actor under the phase it shows, for `/metrics`.
    phase_count: crate::metrics::PhaseCount,
    /// When the wake under way began (its claim), to time it.
    wake_started: Option<tokio::time::Instant>,
    /// When the move under way stopped the old instance, to time the pause.
    move_started: Option<tokio::time::Instant>,
    ports: Ports,
    record: ActorRecord,
    lifecycle: Lifecycle,
    mailbox: Arc<Mailbox>,
    status: watch::Sender<Status>,
    /// Loaded from a record that says the actor runs: adopt it first.
    adopting: bool,
    /// Next command checkpoint index of the current generation.
    next_command_index: i64,
    /// Highest event index seen from the current generation.
    last_event_index: i64,
    /// Client sockets hibernating on the gateway, restored at the next start.
    hibernating: BTreeSet<([u8; 4], [u8; 4])>,
    /// This node's lease on the actor, held exactly while `lifecycle.holds_lease()`. It stays
    /// valid while this node's registration keeps the incarnation it names.
    lease: Option<Lease>,
    /// Why the last claim was refused, published while the actor sleeps (another node
    /// serves it, or the store failed) so waiting requests learn it.
    refusal: Option<Status>,
    /// Events a runner sent for the generation about to start, before its start was sent.
    early_events: Vec<EventWrapper>,
    /// A write found a newer generation in the store; fed to the machine as `Fenced`.
    fenced: bool,
    /// The machine's timers.
    timers: Timers,
    /// When this supervisor unloads if the actor stays idle (see `idle`).
    unload_at: Option<tokio::time::Instant>,
    /// The last write of the record failed: the store may hold an older one, so this
    /// supervisor must not unload (the next load would start from it).
    record_dirty: bool,
    /// A slot of the actor's invoked pool, taken by placement for the request about to start.
    slot: Option<(
        Arc<crate::pool::runtime::InvokedPool>,
        tokio::sync::OwnedSemaphorePermit,
    )>,
    /// Its place in the pool's queue while it waits for a slot.
    queued: Option<crate::pool::runtime::QueueSpot>,
    /// The serverless request serving (or starting) the current generation.
    invocation: Option<effects::LiveInvocation>,
    /// A standby request started ahead of the next move (see `Effect::Standby`).
    standby: Option<effects::LiveStandby>,
    /// Why the actor's pool could not run it lately (`serverless.{code}`, message),
    /// published to waiting requests so they fail at once with the named error.
    failure: Option<(String, String)>,
    /// Failures published so far, so each is a visible status change.
    failures: u64,
}

/// What the supervisor does after one input.
enum Step {
    Continue,
    /// Destroyed, shut down, or its mailbox closed.
    End,
    /// Unloaded while asleep; the directory already forgot it.
    Unloaded,
}

impl Supervisor {
    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "actor",
            actor_id = %self.record.actor_id,
            actor_name = %self.record.name,
            key = self.record.key.as_deref().unwrap_or(""),
        )
    }

    async fn run(mut self) {
        let mut runners_changed = self.ports.runners.subscribe();
        let mut node_changed = self.ports.node.watch();
        if std::mem::take(&mut self.adopting) {
            self.apply(Input::Adopt).await;
        }
        loop {
            // The generation is a span of its own under the actor's span: recording it on the
            // actor's span would append a field per wake to every log line.
            let span = tracing::info_span!("gen", generation = self.lifecycle.generation);
            match self
                .step(&mut runners_changed, &mut node_changed)
                .instrument(span)
                .await
            {
                Step::Continue => {}
                Step::End => break,
                Step::Unloaded => return,
            }
        }
        self.mailbox.close();
        self.ports.home.remove(&self.record.actor_id, &self.mailbox);
    }

    /// Waits for the next input and handles it.
    async fn step(
        &mut self,
        runners_changed: &mut tokio::sync::watch::Receiver<u64>,
        node_changed: &mut tokio::sync::watch::Receiver<crate::cluster::Registration>,
    ) -> Step {
        let cancel = self.ports.cancel.clone();
        let alarm = self.alarm_at();
        let waits_for_runner = matches!(
            self.lifecycle.phase,
            Phase::Pending { .. } | Phase::Adopting { .. }
        );
        tokio::select! {
            // In-flight work is abandoned on shutdown: runners keep their actors and the
            // next gateway process resumes from the stored record.
            _ = cancel.cancelled() => return Step::End,
            batch = self.mailbox.recv() => match batch {
                Some(batch) => self.on_batch(batch).await,
                None => return Step::End,
            },
            _ = runners_changed.changed(), if waits_for_runner => {
                self.apply(Input::RunnersChanged).await;
            }
            _ = node_changed.changed(), if self.lease.is_some() => {
                if !self.lease_still_binds() {
                    self.apply(Input::OwnershipLost).await;
                }
            }
            _ = sleep_until_opt(self.timers.next()), if self.timers.next().is_some() => {
                for timer in self.timers.take_due(tokio::time::Instant::now()) {
                    self.apply(Input::Timeout(timer)).await;
                }
            }
            _ = sleep_until_opt(alarm), if alarm.is_some() => {
                tracing::debug!("alarm due, waking");
                self.record.alarm_ts = None;
                self.apply(Input::Wake).await;
            }
            _ = sleep_until_opt(self.unload_at), if self.unload_at.is_some() => {
                self.unload_at = None;
                if self.idle() && self.ports.home.unload(&self.record.actor_id, &self.mailbox) {
                    tracing::debug!("unloading the supervisor of a sleeping actor");
                    if let Some(ts) = self.record.alarm_ts {
                        self.ports.home.park_alarm(ts, &self.record.actor_id);
                    }
                    self.ports.home.forget_unloaded(&self.record);
                    return Step::Unloaded;
                }
            }
        }
        self.replay_early_events().await;
        if self.lifecycle.phase == Phase::Destroyed {
            return Step::End;
        }
        self.unload_at = match (self.idle(), self.unload_at) {
            (false, _) => None,
            (true, Some(at)) => Some(at),
            (true, None) => Some(tokio::time::Instant::now() + self.ports.timing.unload_after),
        };
        Step::Continue
    }

    /// Whether nothing but the stored record describes this actor: asleep, no socket held
    /// for it, no lease, and the record in the store is the one in memory. Such a
    /// supervisor can unload and be loaded again from the store.
    fn idle(&self) -> bool {
        self.lifecycle.phase == Phase::Sleeping
            && self.hibernating.is_empty()
            && self.lease.is_none()
            && self.early_events.is_empty()
            && !self.record_dirty
    }

    fn alarm_at(&self) -> Option<tokio::time::Instant> {
        if self.lifecycle.phase != Phase::Sleeping {
            return None;
        }
        let ts = self.record.alarm_ts?;
        let wait = u64::try_from(ts.saturating_sub(now_ms())).unwrap_or(0);
        Some(tokio::time::Instant::now() + Duration::from_millis(wait))
    }

    /// Applies everything the mailbox held, in its fixed order (see `mailbox`).
    async fn on_batch(&mut self, batch: Batch) {
        for (socket, hibernating) in batch.sockets {
            if hibernating {
                self.hibernating.insert(socket);
            } else {
                self.hibernating.remove(&socket);
            }
        }
        if let Some((generation, envoy)) = batch.claim {
            self.apply(Input::Claimed { generation, envoy }).await;
        }
        if let Some(envoy) = batch.standby_ready {
            // Only the standby this supervisor started now: a late one was given up.
            if self.standby.as_ref().is_some_and(|s| s.key == envoy) {
                self.apply(Input::StandbyReady { envoy }).await;
            }
        }
        for event in batch.events {
            self.on_event(event).await;
        }
        if let Some((generation, end)) = batch.invocation_end {
            self.on_invocation_end(generation, end).await;
        }
        for envoy in batch.runners_lost {
            self.apply(Input::RunnerLost { envoy }).await;
        }
        for envoy in batch.runners_stopping {
            self.apply(Input::RunnerStopping { envoy }).await;
        }
        if batch.destroy {
            self.apply(Input::DestroyRequested).await;
        }
        if batch.sleep {
            self.apply(Input::SleepRequested).await;
        }
        if batch.wake {
            self.apply(Input::Wake).await;
        }
        if batch.refresh {
            self.apply(Input::Refresh).await;
        }
    }

    /// Feeds one input and carries out its effects, feeding back what they report, until
    /// nothing is left; then publishes the status.
    async fn apply(&mut self, input: Input) {
        let mut queue: VecDeque<_> = self.lifecycle.handle(input).into();
        self.close_gate_if_left();
        loop {
            while let Some(effect) = queue.pop_front() {
                if let Some(next) = self.carry_out(effect).await {
                    queue.extend(self.lifecycle.handle(next));
                    self.close_gate_if_left();
                }
            }
            if !std::mem::take(&mut self.fenced) {
                break;
            }
            queue.extend(self.lifecycle.handle(Input::Fenced));
        }
        // Only an actor waiting to be placed holds a place in its pool's queue.
        if !matches!(self.lifecycle.phase, Phase::Pending { .. }) {
            self.queued = None;
        }
        self.drop_unwanted_standby();
        debug_assert_eq!(
            self.lease.is_some(),
            self.lifecycle.holds_lease(),
            "lease held outside the phases that hold it: {:?}",
            self.lifecycle.phase
        );
        self.publish();
    }

    /// Closes the delivery gate as soon as the machine leaves the instance it published as
    /// running (lost, stopping, handed over): no request may reach it while the effects
    /// (store writes) are still carried out. Every other status is published once the
    /// effects are done, so nobody sees a sleep, a destroy or a start before it is stored.
    fn close_gate_if_left(&mut self) {
        let left = match (&*self.status.borrow(), &self.lifecycle.phase) {
            (
                Status::Running {
                    envoy_key,
                    generation,
                },
                Phase::Running {
                    envoy,
                    generation: g,
                },
            ) => envoy_key != envoy || generation != g,
            (Status::Running { .. }, _) => true,
            _ => false,
        };
        if left {
            self.status.send_replace(Status::Stopping);
            self.phase_count.set(phase_label(&Status::Stopping));
        } else if matches!(
            self.lifecycle.phase,
            Phase::Claiming {
                then: Claim::Wake | Claim::Adopt
            }
        ) {
            // A wake is shown before its lease write, which can take a while on a busy
            // store: a runner that asks for the actor's storage meanwhile (a serverless start
            // racing the gateway's own) then waits for the placement instead of a refusal.
            let woke = self.status.send_if_modified(|cur| {
                let sleeping = *cur == Status::Sleeping;
                if sleeping {
                    *cur = Status::Waking;
                }
                sleeping
            });
            if woke {
                self.phase_count.set(phase_label(&Status::Waking));
                self.wake_started = Some(tokio::time::Instant::now());
            }
        }
    }

    fn failed_status(&self) -> Status {
        let (code, message) = self.failure.clone().unwrap_or_default();
        Status::Failed {
            code,
            message,
            attempt: self.failures,
        }
    }

    fn publish(&mut self) {
        let status = match &self.lifecycle.phase {
            Phase::Sleeping if self.failure.is_some() => self.failed_status(),
            Phase::Sleeping => self.refusal.clone().unwrap_or(Status::Sleeping),
            Phase::Pending { .. } if self.failure.is_some() => self.failed_status(),
            Phase::Claiming { .. }
            | Phase::Adopting { .. }
            | Phase::Pending { .. }
            | Phase::Invoking { .. }
            | Phase::Starting { .. }
            | Phase::HandingOver { .. } => Status::Waking,
            Phase::Running { generation, envoy } => Status::Running {
                envoy_key: envoy.clone(),
                generation: *generation,
            },
            Phase::Stopping { .. } => Status::Stopping,
            Phase::Destroyed => Status::Destroyed,
        };
        self.phase_count.set(phase_label(&status));
        if !matches!(
            status,
            Status::Waking | Status::Running { .. } | Status::Stopping
        ) {
            // What was under way ended without a start: nothing to time.
            self.wake_started = None;
            self.move_started = None;
        }
        self.status.send_if_modified(|cur| {
            if *cur == status {
                false
            } else {
                *cur = status;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests;

/// The `phase` label an actor is counted under in `rivulet_actors`.
fn phase_label(status: &Status) -> &'static str {
    match status {
        Status::Sleeping => "sleeping",
        Status::Waking => "waking",
        Status::Running { .. } => "running",
        Status::Stopping => "stopping",
        Status::Destroyed => "destroyed",
        Status::Elsewhere { .. } => "elsewhere",
        Status::Unavailable { .. } => "unavailable",
        Status::Failed { .. } => "failed",
    }
}
