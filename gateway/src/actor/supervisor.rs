//! The task that owns one actor: it feeds runner events, requests and timers into the
//! lifecycle state machine and carries out the effects (store writes, commands to runners),
//! publishing the resulting status for waiting requests.
//!
//! Ordering rule: a new generation is persisted before the start command leaves, so the
//! store's fence already rejects the previous generation's writes when the new one runs.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rivulet_wire::envoy::{
    ActorCheckpoint, ActorConfig, ActorIntent, ActorState, Command, CommandStartActor,
    CommandStopActor, CommandWrapper, Event, EventWrapper, HibernatingRequest, StopActorReason,
    StopCode,
};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use super::lifecycle::{Effect, Input, Lifecycle, Phase, StopIntent};
use super::mailbox::{Batch, Mailbox};
use super::{ActorHandle, Status};
use crate::state::Gateway;
use crate::store::{ActorRecord, Lease, LeaseClaim};
use crate::util::{now_ms, sleep_until_opt};

/// How long a start may take before the actor counts as crashed.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Events of the next generation held until its start is sent (see `on_event`).
const MAX_EARLY_EVENTS: usize = 64;
/// How often placement is retried while no runner of the pool is connected.
const PLACE_RETRY: Duration = Duration::from_millis(500);

pub(super) fn spawn(gw: Gateway, record: ActorRecord) -> ActorHandle {
    let mailbox = std::sync::Arc::new(Mailbox::default());
    // A record that says it runs on a runner was written by an earlier gateway process: the
    // runner keeps its actors across our restart and reconnects, so adopt the running
    // generation instead of starting a second copy (which would fence the first one's
    // last writes away).
    let (phase, status) = match (&record.envoy_key, record.connectable_ts) {
        // Published as waking until the lease confirms this node may adopt it.
        (Some(envoy), Some(_)) => (
            Phase::Running {
                generation: record.generation,
                envoy: envoy.clone(),
            },
            Status::Waking,
        ),
        _ => (Phase::Sleeping, Status::Sleeping),
    };
    let adopting = matches!(phase, Phase::Running { .. });
    let (status_tx, status_rx) = watch::channel(status);
    let actor_id = record.actor_id.clone();
    let span = tracing::info_span!(
        "actor",
        actor_id = %record.actor_id,
        name = %record.name,
        key = record.key.as_deref().unwrap_or(""),
        generation = tracing::field::Empty,
    );
    let lifecycle = Lifecycle::new(phase, record.generation, record.crash_policy);
    let adopt_deadline = adopting.then(|| {
        let lost = u64::try_from(gw.config.envoy.lost_threshold_ms).unwrap_or(0);
        tokio::time::Instant::now() + Duration::from_millis(lost)
    });
    let sup = Supervisor {
        gw: gw.clone(),
        record,
        lifecycle,
        mailbox: mailbox.clone(),
        status: status_tx,
        // Commands of an adopted generation were numbered by the earlier process; continue
        // above anything it can have used so the runner does not drop ours as replays.
        next_command_index: if adopting { now_ms() } else { 0 },
        last_event_index: -1,
        adopt_deadline,
        hibernating: BTreeSet::new(),
        placing: false,
        starting_since: None,
        lease: None,
        refusals: 0,
        early_events: Vec::new(),
        fenced: false,
        unload_at: None,
        record_dirty: false,
    };
    gw.tasks.spawn(sup.run().instrument(span));
    ActorHandle {
        actor_id,
        mailbox,
        status: status_rx,
    }
}

struct Supervisor {
    gw: Gateway,
    record: ActorRecord,
    lifecycle: Lifecycle,
    mailbox: std::sync::Arc<Mailbox>,
    status: watch::Sender<Status>,
    /// Next command checkpoint index of the current generation.
    next_command_index: i64,
    /// Highest event index seen from the current generation.
    last_event_index: i64,
    /// Client sockets hibernating on the gateway, restored at the next start.
    hibernating: BTreeSet<([u8; 4], [u8; 4])>,
    /// Waiting for a runner of the pool.
    placing: bool,
    starting_since: Option<tokio::time::Instant>,
    /// Set while an adopted actor's runner has not reconnected; past it, the runner is lost.
    adopt_deadline: Option<tokio::time::Instant>,
    /// This node's lease on the actor; held exactly while it is not sleeping or destroyed. It
    /// stays valid while this node's registration keeps the incarnation it names.
    lease: Option<Lease>,
    /// Refusals and store failures published so far (see `Status::Elsewhere`).
    refusals: u64,
    /// Events a runner sent for the generation about to start, before its start was sent.
    early_events: Vec<EventWrapper>,
    /// A newer generation was found in the store: another node owns the actor now.
    fenced: bool,
    /// When this supervisor unloads if the actor stays idle (see `idle`).
    unload_at: Option<tokio::time::Instant>,
    /// The last write of the record failed: the store may hold an older one, so this
    /// supervisor must not unload (the next load would start from it).
    record_dirty: bool,
}

impl Supervisor {
    async fn run(mut self) {
        let mut envoys_changed = self.gw.envoys.subscribe();
        let mut node_changed = self.gw.node.watch();
        let shutdown = self.gw.stopping.clone();
        if matches!(self.lifecycle.phase, Phase::Running { .. }) {
            self.claim_adoption().await;
        }
        self.check_adopted();
        loop {
            let alarm = self.alarm_delay();
            let start_deadline = self.starting_since.map(|t| t + START_TIMEOUT);
            tokio::select! {
                // In-flight work is abandoned on shutdown: runners keep their actors and the
                // next gateway process resumes from the stored record.
                _ = shutdown.cancelled() => break,
                batch = self.mailbox.recv() => match batch {
                    Some(batch) => self.on_batch(batch).await,
                    None => break,
                },
                _ = envoys_changed.changed(), if self.placing || self.adopt_deadline.is_some() => {
                    self.check_adopted();
                    self.try_place().await;
                }
                _ = sleep_until_opt(self.adopt_deadline), if self.adopt_deadline.is_some() => {
                    self.adopt_deadline = None;
                    if let Phase::Running { envoy, .. } = &self.lifecycle.phase {
                        if self.gw.envoys.get(envoy).is_none() {
                            tracing::warn!("runner of adopted actor did not come back");
                            let envoy = envoy.clone();
                            self.apply(Input::RunnerLost { envoy }).await;
                        }
                    }
                }
                _ = tokio::time::sleep(PLACE_RETRY), if self.placing => self.try_place().await,
                _ = node_changed.changed(), if self.lease.is_some() => self.check_node().await,
                _ = sleep_until_opt(alarm), if alarm.is_some() => {
                    tracing::debug!("alarm due, waking");
                    self.record.alarm_ts = None;
                    self.apply(Input::Wake).await;
                }
                _ = sleep_until_opt(self.unload_at), if self.unload_at.is_some() => {
                    self.unload_at = None;
                    if self.idle() && self.gw.actors.unload(&self.record.actor_id, &self.mailbox) {
                        tracing::debug!("unloading the supervisor of a sleeping actor");
                        if let Some(ts) = self.record.alarm_ts {
                            self.gw.alarms.add(ts, &self.record.actor_id);
                        }
                        return;
                    }
                }
                _ = sleep_until_opt(start_deadline), if start_deadline.is_some() => {
                    if let Phase::Starting { envoy, .. } = &self.lifecycle.phase {
                        tracing::warn!("actor did not report running in time");
                        let envoy = envoy.clone();
                        self.apply(Input::RunnerLost { envoy }).await;
                    }
                    self.starting_since = None;
                }
            }
            self.replay_early_events().await;
            if self.fenced {
                self.lease_lost().await;
                self.fenced = false;
                // Start from what the new owner stored.
                self.reload().await;
            }
            if self.lifecycle.phase == Phase::Destroyed {
                break;
            }
            self.unload_at = match (self.idle(), self.unload_at) {
                (false, _) => None,
                (true, Some(at)) => Some(at),
                (true, None) => {
                    Some(tokio::time::Instant::now() + self.gw.config.gateway.actor_unload_after())
                }
            };
        }
        self.mailbox.close();
        self.gw.actors.remove(&self.record.actor_id, &self.mailbox);
    }

    /// Whether nothing but the stored record describes this actor: asleep, no socket held
    /// for it, no lease, no placement or adoption under way, and the record in the store is
    /// the one in memory. Such a supervisor can unload and be loaded again from the store.
    fn idle(&self) -> bool {
        self.lifecycle.phase == Phase::Sleeping
            && self.hibernating.is_empty()
            && self.lease.is_none()
            && !self.placing
            && self.adopt_deadline.is_none()
            && self.early_events.is_empty()
            && !self.record_dirty
            && !self.fenced
    }

    /// Applies held events once their generation's start has been sent; drops those that
    /// can no longer apply.
    async fn replay_early_events(&mut self) {
        if self.early_events.is_empty() {
            return;
        }
        let generation = self.lifecycle.generation;
        let waiting = matches!(self.lifecycle.phase, Phase::Pending | Phase::Sleeping);
        let held = std::mem::take(&mut self.early_events);
        let (ready, later): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|e| e.checkpoint.generation == generation);
        if waiting {
            self.early_events = later
                .into_iter()
                .filter(|e| e.checkpoint.generation == generation.wrapping_add(1))
                .collect();
        }
        for event in ready {
            self.on_event(event).await;
        }
    }

    /// Registers an adopted actor with its runner once the runner is connected.
    fn check_adopted(&mut self) {
        if self.adopt_deadline.is_none() {
            return;
        }
        if let Phase::Running { envoy, generation } = &self.lifecycle.phase {
            if let Some(handle) = self.gw.envoys.get(envoy) {
                handle
                    .assigned
                    .lock()
                    .insert(self.record.actor_id.clone(), *generation);
                tracing::info!(envoy_key = %envoy, "adopted running actor after gateway restart");
                self.adopt_deadline = None;
            }
        } else {
            self.adopt_deadline = None;
        }
    }

    fn alarm_delay(&self) -> Option<tokio::time::Instant> {
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
        for event in batch.events {
            self.on_event(event).await;
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
        if batch.refresh && self.lease.is_none() && self.lifecycle.phase == Phase::Sleeping {
            self.reload().await;
        }
    }

    async fn on_event(&mut self, event: EventWrapper) {
        let cp = &event.checkpoint;
        if cp.generation != self.lifecycle.generation {
            // A serverless runner starts the generation it was invoked with as soon as it
            // connects, and may report it before this supervisor has sent its own start
            // (which the runner then recognises as the same command). Hold such events
            // until that start is out.
            let next = self.lifecycle.generation.wrapping_add(1);
            if cp.generation == next
                && matches!(self.lifecycle.phase, Phase::Pending | Phase::Sleeping)
                && self.early_events.len() < MAX_EARLY_EVENTS
            {
                tracing::debug!(
                    event_generation = cp.generation,
                    "holding an event of the generation about to start"
                );
                self.early_events.push(event);
                return;
            }
            tracing::debug!(
                event_generation = cp.generation,
                "ignoring event of another generation"
            );
            return;
        }
        if cp.index <= self.last_event_index {
            return; // replayed after a reconnect; already applied
        }
        self.last_event_index = cp.index;
        let generation = cp.generation;
        let input = match event.inner {
            Event::EventActorIntent(intent) => Input::Intent {
                generation,
                sleep: matches!(intent.intent, ActorIntent::ActorIntentSleep),
            },
            Event::EventActorStateUpdate(update) => match update.state {
                ActorState::ActorStateRunning => Input::Running { generation },
                ActorState::ActorStateStopped(stopped) => Input::Stopped {
                    generation,
                    error: match stopped.code {
                        StopCode::Ok => None,
                        StopCode::Error => Some(
                            stopped
                                .message
                                .map(|m| m.to_string())
                                .unwrap_or_else(|| "actor stopped with an error".into()),
                        ),
                    },
                },
            },
            Event::EventActorSetAlarm(alarm) => {
                if self.record.alarm_ts != alarm.alarm_ts {
                    self.record.alarm_ts = alarm.alarm_ts;
                    self.persist().await;
                }
                return;
            }
        };
        self.apply(input).await;
    }

    async fn apply(&mut self, input: Input) {
        // Waking or destroying changes the actor: only the node holding its lease may.
        if matches!(input, Input::Wake | Input::DestroyRequested)
            && self.lease.is_none()
            && !self.take_lease().await
        {
            return;
        }
        let mut queue: VecDeque<Effect> = self.lifecycle.handle(input).into();
        while let Some(effect) = queue.pop_front() {
            if let Some(next) = self.carry_out(effect).await {
                queue.extend(self.lifecycle.handle(next));
            }
        }
        self.publish();
    }

    /// Carries out one effect; may produce a follow-up input.
    async fn carry_out(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            Effect::Place => {
                self.placing = true;
                self.pick()
            }
            Effect::PlaceOrSleep => Some(self.pick().unwrap_or(Input::NoRunner)),
            Effect::Start { envoy, generation } => self.start(envoy, generation).await,
            Effect::Stop {
                envoy,
                generation,
                intent,
            } => {
                let reason = match intent {
                    StopIntent::Sleep => StopActorReason::SleepIntent,
                    StopIntent::Stop => StopActorReason::StopIntent,
                    StopIntent::Destroy => StopActorReason::Destroy,
                    StopIntent::GoingAway => StopActorReason::GoingAway,
                };
                let cmd = self.command(
                    generation,
                    Command::CommandStopActor(CommandStopActor { reason }),
                );
                if self.gw.envoys.send_command(&envoy, cmd) {
                    None
                } else {
                    Some(Input::RunnerLost { envoy })
                }
            }
            Effect::MarkRunning => {
                let now = now_ms();
                self.starting_since = None;
                // The API reports the first start, as the engine does.
                self.record.start_ts.get_or_insert(now);
                self.record.connectable_ts = Some(now);
                self.record.pending_allocation_ts = None;
                self.record.sleep_ts = None;
                self.record.reschedule_ts = None;
                self.persist().await;
                tracing::info!("actor running");
                None
            }
            Effect::MarkPending => {
                self.record.pending_allocation_ts = Some(now_ms());
                self.record.sleep_ts = None;
                self.record.connectable_ts = None;
                None
            }
            Effect::MarkSleeping => {
                self.starting_since = None;
                self.placing = false;
                self.release_runner();
                self.record.envoy_key = None;
                self.record.sleep_ts = Some(now_ms());
                self.record.connectable_ts = None;
                self.record.pending_allocation_ts = None;
                self.persist().await;
                self.release_lease().await;
                tracing::info!("actor sleeping");
                None
            }
            Effect::MarkDestroyed => {
                self.starting_since = None;
                self.placing = false;
                self.release_runner();
                self.record.envoy_key = None;
                self.record.destroy_ts = Some(now_ms());
                self.record.connectable_ts = None;
                self.record.alarm_ts = None;
                self.persist().await;
                if let Some(key) = &self.record.key {
                    self.gw
                        .names
                        .forget_key(&self.record.namespace_id, &self.record.name, key);
                }
                if let Err(err) = self.gw.store.clear_actor_data(&self.record.actor_id).await {
                    tracing::error!(error = %err, "failed to clear destroyed actor's data");
                }
                self.release_lease().await;
                tracing::info!("actor destroyed");
                None
            }
            Effect::RecordError(message) => {
                tracing::warn!(%message, "actor failed");
                self.record.error = Some(json!({"crashed": {"message": message}}));
                None
            }
            Effect::RecordErrorCode(code) => {
                tracing::warn!(code, "actor stopped by its runner's state");
                self.record.error = Some(json!(code));
                None
            }
        }
    }

    fn pick(&mut self) -> Option<Input> {
        let envoy = self
            .gw
            .envoys
            .pick(&self.record.namespace_id, &self.record.runner_name_selector)?;
        self.placing = false;
        Some(Input::RunnerPicked {
            envoy: envoy.key.clone(),
        })
    }

    async fn try_place(&mut self) {
        if !self.placing {
            return;
        }
        if let Some(input) = self.pick() {
            self.apply(input).await;
        }
    }

    async fn start(&mut self, envoy_key: String, generation: u32) -> Option<Input> {
        tracing::Span::current().record("generation", generation);
        self.record.generation = generation;
        self.record.envoy_key = Some(envoy_key.clone());
        if !self.persist().await {
            // Without the new generation on disk the fence would not protect it.
            return Some(Input::RunnerLost { envoy: envoy_key });
        }
        let Some(envoy) = self.gw.envoys.get(&envoy_key) else {
            return Some(Input::RunnerLost { envoy: envoy_key });
        };
        envoy
            .assigned
            .lock()
            .insert(self.record.actor_id.clone(), generation);
        // The engine numbers each generation's commands from 1; runners see the same here.
        self.next_command_index = 1;
        self.last_event_index = -1;
        self.starting_since = Some(tokio::time::Instant::now());
        let start = CommandStartActor {
            config: ActorConfig {
                name: self.record.name.clone().into(),
                key: self.record.key.clone().map(Into::into),
                // The engine sends the allocation time of this generation here.
                create_ts: now_ms(),
                input: self.record.input.clone().map(Into::into),
            },
            hibernating_requests: self
                .hibernating
                .iter()
                .map(|(gateway_id, request_id)| HibernatingRequest {
                    gateway_id: *gateway_id,
                    request_id: *request_id,
                })
                .collect(),
            preloaded_kv: None,
        };
        // Commands of earlier generations must never be replayed to anyone.
        self.gw.envoys.forget_actor(&self.record.actor_id);
        let cmd = self.command(generation, Command::CommandStartActor(start));
        tracing::info!(envoy_key = %envoy_key, "starting actor");
        if self.gw.envoys.send_command(&envoy_key, cmd) {
            None
        } else {
            Some(Input::RunnerLost { envoy: envoy_key })
        }
    }

    fn command(&mut self, generation: u32, inner: Command) -> CommandWrapper {
        let index = self.next_command_index;
        self.next_command_index += 1;
        CommandWrapper {
            checkpoint: ActorCheckpoint {
                actor_id: self.record.actor_id.clone().into(),
                generation,
                index,
            },
            inner,
        }
    }

    /// Detaches the actor from the runner it ran on, and drops its unacknowledged commands.
    fn release_runner(&mut self) {
        self.gw.envoys.forget_actor(&self.record.actor_id);
        for envoy in self.gw.envoys.list() {
            let mut assigned = envoy.assigned.lock();
            if assigned.get(&self.record.actor_id) == Some(&self.lifecycle.generation) {
                assigned.remove(&self.record.actor_id);
            }
        }
    }

    /// Writes the record; returns whether it stuck.
    async fn persist(&mut self) -> bool {
        if self.fenced {
            return false;
        }
        match self
            .gw
            .store
            .update_actor(self.record.clone(), self.record.revision)
            .await
        {
            Ok(()) => {
                self.record.revision += 1;
                self.record_dirty = false;
                true
            }
            Err(err) => {
                self.record_dirty = true;
                tracing::error!(error = %err, "failed to persist actor record");
                // Re-read so the next write starts from what is stored. A newer generation
                // there means another node took the actor over: this node must not write
                // again (that would roll the fence back) and stops its instance.
                if let Ok(Some(stored)) = self.gw.store.get_actor(&self.record.actor_id).await {
                    if stored.generation > self.record.generation {
                        tracing::warn!(
                            stored_generation = stored.generation,
                            "a newer generation was written elsewhere"
                        );
                        self.fenced = true;
                    } else {
                        self.record.revision = stored.revision;
                    }
                }
                false
            }
        }
    }

    // === lease ===

    /// Takes the actor's lease for this node. On success the record is re-read, since
    /// another node may have run the actor since this supervisor last looked; on refusal the
    /// status names the holder, so waiting requests are forwarded there.
    async fn take_lease(&mut self) -> bool {
        let Some(node) = self.gw.node.current() else {
            // Not registered (yet, or any more): the heartbeat is registering again.
            tracing::warn!("this node holds no registration; cannot take the actor's lease");
            self.refusals += 1;
            self.status.send_replace(Status::Unavailable {
                attempt: self.refusals,
            });
            return false;
        };
        let claim = self
            .gw
            .store
            .acquire_lease(&self.record.actor_id, &node, now_ms())
            .await;
        match claim {
            Ok(LeaseClaim::Acquired(lease)) => {
                tracing::debug!(epoch = lease.epoch, "took the actor's lease");
                // The first lease ever taken on this actor: no node ran it before, so the
                // record this supervisor loaded is the stored one.
                let first = lease.epoch == 1;
                self.lease = Some(lease);
                if first {
                    return true;
                }
                if !self.reload().await {
                    self.release_lease().await;
                    return false;
                }
                true
            }
            Ok(LeaseClaim::HeldBy(lease)) => {
                tracing::debug!(owner = %lease.node_id, "another node serves the actor");
                self.refusals += 1;
                self.status.send_replace(Status::Elsewhere {
                    lease,
                    attempt: self.refusals,
                });
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not take the actor's lease");
                self.refusals += 1;
                self.status.send_replace(Status::Unavailable {
                    attempt: self.refusals,
                });
                false
            }
        }
    }

    /// Re-reads the record of a sleeping actor; `false` if it is gone or unreadable.
    async fn reload(&mut self) -> bool {
        match self.gw.store.get_actor(&self.record.actor_id).await {
            Ok(Some(record)) => {
                if record.is_destroyed() {
                    self.lifecycle =
                        Lifecycle::new(Phase::Destroyed, record.generation, record.crash_policy);
                    self.record = record;
                    self.publish();
                    return false;
                }
                if self.lifecycle.phase == Phase::Sleeping {
                    // A record left "running" by a node that died is not ours to adopt: the
                    // next start (a new generation) fences that instance off.
                    self.lifecycle =
                        Lifecycle::new(Phase::Sleeping, record.generation, record.crash_policy);
                }
                self.record = record;
                true
            }
            Ok(None) => {
                self.lifecycle = Lifecycle::new(
                    Phase::Destroyed,
                    self.record.generation,
                    self.record.crash_policy,
                );
                self.publish();
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not re-read the actor record");
                self.refusals += 1;
                self.status.send_replace(Status::Unavailable {
                    attempt: self.refusals,
                });
                false
            }
        }
    }

    /// An actor found running after a gateway restart is adopted only if no other node
    /// took it over meanwhile (its lease was ours, or nobody's).
    async fn claim_adoption(&mut self) {
        let previous = self.gw.store.get_lease(&self.record.actor_id).await;
        let runner_here = self
            .record
            .envoy_key
            .as_deref()
            .is_some_and(|key| self.gw.envoys.get(key).is_some());
        // Adopt only what this node ran: its own lease; no lease at all (the embedded store
        // keeps none across restarts); or an expired one whose runner is connected here.
        // A record left "running" by another node that died is not ours: its runner is
        // connected there, and the next start (a new generation) fences it off.
        let ours = match &previous {
            Ok(Some(lease)) => {
                lease.node_id == self.gw.node.id || (runner_here && !lease.is_live(now_ms()))
            }
            Ok(None) => true,
            Err(_) => false,
        };
        if ours {
            if !self.take_lease().await {
                // `take_lease` published why (another node, the store, or gone).
                self.adopt_deadline = None;
                if self.lifecycle.phase != Phase::Destroyed {
                    self.lifecycle = Lifecycle::new(
                        Phase::Sleeping,
                        self.record.generation,
                        self.record.crash_policy,
                    );
                }
                return;
            }
            // `take_lease` re-read the record; adopt only what it still says.
            let still_running =
                self.record.envoy_key.is_some() && self.record.connectable_ts.is_some();
            if still_running {
                self.publish();
                return;
            }
            self.release_lease().await;
        }
        self.adopt_deadline = None;
        let generation = self.record.generation;
        self.lifecycle = Lifecycle::new(Phase::Sleeping, generation, self.record.crash_policy);
        if let Ok(Some(lease)) = previous {
            if lease.node_id != self.gw.node.id && lease.is_live(now_ms()) {
                tracing::debug!(owner = %lease.node_id, "not adopting: another node serves the actor");
                self.refusals += 1;
                self.status.send_replace(Status::Elsewhere {
                    lease,
                    attempt: self.refusals,
                });
                return;
            }
        }
        tracing::info!("not adopting: the actor stopped or moved while this node was away");
        self.status.send_replace(Status::Sleeping);
    }

    /// The node's registration changed: a lease taken under another incarnation (or with
    /// none held now) no longer binds anyone, so another node may already run a newer
    /// instance; this one stops.
    async fn check_node(&mut self) {
        let Some(lease) = &self.lease else {
            return;
        };
        let held = self
            .gw
            .node
            .current()
            .is_some_and(|n| n.incarnation == lease.node_incarnation);
        if !held {
            self.lease_lost().await;
        }
    }

    async fn lease_lost(&mut self) {
        tracing::warn!("lost the actor's lease; another node serves it now");
        let running = match &self.lifecycle.phase {
            Phase::Starting { envoy, generation }
            | Phase::Running { envoy, generation }
            | Phase::Stopping {
                envoy, generation, ..
            } => Some((envoy.clone(), *generation)),
            Phase::Sleeping | Phase::Pending | Phase::Destroyed => None,
        };
        if let Some((envoy, generation)) = running {
            let cmd = self.command(
                generation,
                Command::CommandStopActor(CommandStopActor {
                    reason: StopActorReason::GoingAway,
                }),
            );
            self.gw.envoys.send_command(&envoy, cmd);
        }
        self.release_runner();
        self.lease = None;
        self.placing = false;
        self.starting_since = None;
        self.adopt_deadline = None;
        self.lifecycle = Lifecycle::new(
            Phase::Sleeping,
            self.record.generation,
            self.record.crash_policy,
        );
        self.status.send_replace(Status::Sleeping);
    }

    async fn release_lease(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Err(err) = self.gw.store.release_lease(&lease).await {
                // It expires on its own; until then other nodes forward here and find the
                // actor asleep, which wakes it here again.
                tracing::warn!(error = %err, "could not release the actor's lease");
            }
        }
    }

    fn publish(&self) {
        let status = match &self.lifecycle.phase {
            // A refusal stays visible until something else happens.
            Phase::Sleeping
                if matches!(
                    *self.status.borrow(),
                    Status::Elsewhere { .. } | Status::Unavailable { .. }
                ) =>
            {
                return
            }
            Phase::Sleeping => Status::Sleeping,
            Phase::Pending | Phase::Starting { .. } => Status::Waking,
            Phase::Running { generation, envoy } => Status::Running {
                envoy_key: envoy.clone(),
                generation: *generation,
            },
            Phase::Stopping { .. } => Status::Stopping,
            Phase::Destroyed => Status::Destroyed,
        };
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
