//! Carrying out the machine's effects: record writes, commands to runners, timers. An
//! effect may report back an input (a failed send is a lost runner; a placement is a picked
//! runner or none), which the supervisor feeds to the machine next.

use rivulet_adapters::{InvocationEvent, InvokeRequest};
use rivulet_wire::envoy::{
    ActorCheckpoint, ActorConfig, Command, CommandStartActor, CommandStopActor, CommandWrapper,
    HibernatingRequest, StopActorReason, ToEnvoy,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Supervisor;
use crate::actor::lifecycle::{Effect, Input, Phase, StopIntent, Timer};
use crate::actor::{InvocationEnd, Msg};
use crate::pool::runtime::Busy;
use crate::util::now_ms;

/// The serverless request of one generation, as the supervisor tracks it.
pub(super) struct LiveInvocation {
    /// Generation it carries.
    pub generation: u32,
    /// Ends it.
    pub cancel: CancellationToken,
    /// When the actor must start moving to a fresh request (lifespan minus drain grace
    /// after it was started).
    pub move_at: tokio::time::Instant,
    /// When the next request is started as a standby (or the endpoint warmed), a little
    /// before `move_at`.
    pub warm_at: tokio::time::Instant,
}

/// A standby request: started shortly before a move with no actor, its runner connected
/// (or connecting) under `key` and waiting for the start of `generation`.
pub(super) struct LiveStandby {
    /// The envoy key its runner connects under.
    pub key: String,
    /// The generation it is to run (the one after the instance it takes over).
    pub generation: u32,
    /// Ends it.
    pub cancel: CancellationToken,
    /// As [`LiveInvocation::move_at`], counted from its own start.
    pub move_at: tokio::time::Instant,
    /// As [`LiveInvocation::warm_at`].
    pub warm_at: tokio::time::Instant,
}

impl Supervisor {
    /// Carries out one effect; may produce a follow-up input.
    pub(super) async fn carry_out(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            Effect::ClaimLease => Some(self.claim_lease().await),
            Effect::ClaimAdoption => Some(self.claim_adoption().await),
            Effect::ReleaseLease => {
                self.release_lease().await;
                None
            }
            Effect::Reload => self.reload().await,
            Effect::Abandon { instance } => {
                self.abandon(instance);
                None
            }
            Effect::Place => Some(self.place().await),
            Effect::Invoke { generation } => self.invoke(generation).await,
            Effect::Attach { envoy } => {
                self.record.envoy_instance = self.ports.runners.instance_of(&envoy);
                self.record.envoy_key = Some(envoy);
                None
            }
            Effect::CancelInvocation => {
                self.cancel_invocation();
                None
            }
            Effect::Standby { generation } => {
                self.start_standby(generation).await;
                None
            }
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
                if intent == StopIntent::GoingAway {
                    // With "actor running" after it, this brackets the pause clients see.
                    tracing::info!(envoy_key = %envoy, generation, "moving the actor: stopping it where it runs");
                    self.move_started = Some(tokio::time::Instant::now());
                }
                let cmd = self.command(
                    generation,
                    Command::CommandStopActor(CommandStopActor { reason }),
                );
                if self.ports.runners.send_command(&envoy, cmd) {
                    None
                } else {
                    Some(Input::RunnerLost { envoy })
                }
            }
            Effect::Assign { envoy, generation } => {
                if self
                    .ports
                    .runners
                    .assign(&envoy, &self.record.actor_id, generation)
                {
                    tracing::info!(envoy_key = %envoy, "adopted running actor after gateway restart");
                    None
                } else {
                    Some(Input::RunnerLost { envoy })
                }
            }
            Effect::CheckRunner { envoy } => {
                if !self.ports.runners.is_connected(&envoy) {
                    return None;
                }
                let now = self.ports.runners.instance_of(&envoy);
                if self.record.envoy_instance.is_some() && now != self.record.envoy_instance {
                    // Another process under the same key: it does not run this actor.
                    tracing::warn!(envoy_key = %envoy, "the runner's process changed; the actor it ran is lost");
                    return Some(Input::RunnerLost { envoy });
                }
                Some(Input::RunnerConnected { envoy })
            }
            Effect::Arm(timer) => {
                let timing = &self.ports.timing;
                let at = match timer {
                    Timer::Start { .. } => tokio::time::Instant::now() + timing.start_timeout,
                    Timer::Adopt { .. } => tokio::time::Instant::now() + timing.adopt_wait,
                    Timer::Place => tokio::time::Instant::now() + timing.place_retry,
                    Timer::Deadline { generation } => match &self.invocation {
                        Some(live) if live.generation == generation => live.move_at,
                        _ => return None,
                    },
                    Timer::Warm { generation } => match &self.invocation {
                        Some(live) if live.generation == generation => live.warm_at,
                        _ => return None,
                    },
                };
                self.timers.arm(timer, at);
                None
            }
            Effect::MarkRunning => {
                self.failure = None;
                let now = now_ms();
                // The API reports the first start, as the engine does.
                self.record.start_ts.get_or_insert(now);
                self.record.connectable_ts = Some(now);
                self.record.pending_allocation_ts = None;
                self.record.sleep_ts = None;
                self.record.reschedule_ts = None;
                // Traffic flows before the record is written: the instance already runs
                // and its generation is stored (fenced), so the write only tells other nodes
                // and a restarted gateway that it is connectable, and a client should not
                // wait out a store commit at every wake and move.
                self.count_start();
                self.publish();
                tracing::info!("actor running");
                self.persist().await;
                None
            }
            Effect::MarkPending => {
                self.record.pending_allocation_ts = Some(now_ms());
                self.record.sleep_ts = None;
                self.record.connectable_ts = None;
                None
            }
            Effect::MarkSleeping => {
                self.release_runner();
                self.record.envoy_key = None;
                self.record.envoy_instance = None;
                self.record.sleep_ts = Some(now_ms());
                self.record.connectable_ts = None;
                self.record.pending_allocation_ts = None;
                self.persist().await;
                self.release_lease().await;
                tracing::info!("actor sleeping");
                None
            }
            Effect::MarkDestroyed => {
                self.release_runner();
                self.record.envoy_key = None;
                self.record.envoy_instance = None;
                self.record.destroy_ts = Some(now_ms());
                self.record.connectable_ts = None;
                self.record.alarm_ts = None;
                self.persist().await;
                if let Some(key) = &self.record.key {
                    self.ports
                        .home
                        .forget_key(&self.record.namespace_id, &self.record.name, key);
                }
                if let Err(err) = self
                    .ports
                    .store
                    .clear_actor_data(&self.record.actor_id)
                    .await
                {
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

    async fn place(&mut self) -> Input {
        let (ns, pool) = (&self.record.namespace_id, &self.record.runner_name_selector);
        match self.ports.invokers.pool(ns, pool).await {
            Ok(Some(pool)) => match pool.try_acquire(&self.record.actor_id) {
                Ok(permit) => {
                    self.queued = None;
                    self.slot = Some((pool, permit));
                    Input::Invoke
                }
                // Waits in the pool's queue: placement is retried until a slot frees.
                Err(Busy::Full(spot)) => {
                    tracing::debug!(pool = %pool.name, "pool full; the actor waits for a slot");
                    self.queued = Some(spot);
                    Input::NoRunner
                }
                Err(Busy::QueueFull { max_actors }) => {
                    self.set_failure(
                        "serverless.pool_full".into(),
                        format!(
                            "Pool `{}` runs {max_actors} actors at once and as many wait already; try again later or raise max_concurrent_actors.",
                            pool.name
                        ),
                    );
                    Input::NoRunner
                }
                Err(Busy::BackingOff { code, message }) => {
                    self.set_failure(format!("serverless.{code}"), message);
                    Input::NoRunner
                }
            },
            Ok(None) => match self.ports.runners.pick(ns, pool) {
                Some(envoy) => Input::RunnerPicked { envoy },
                None => Input::NoRunner,
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the actor's runner pool; retrying");
                Input::NoRunner
            }
        }
    }

    /// Records why the pool could not run the actor, for waiting requests.
    pub(super) fn set_failure(&mut self, code: String, message: String) {
        if self.failure.as_ref() != Some(&(code.clone(), message.clone())) {
            tracing::warn!(%code, %message, "the actor's serverless pool could not run it");
        }
        self.failures += 1;
        self.failure = Some((code, message));
    }

    /// Starts a serverless request carrying the start of `generation` (the slot was taken by
    /// placement), after persisting the generation so the fence protects it.
    async fn invoke(&mut self, generation: u32) -> Option<Input> {
        let failed = |message: &str| Input::Stopped {
            generation,
            error: Some(message.to_owned()),
        };
        let Some((pool, permit)) = self.slot.take() else {
            return Some(failed("no slot of the pool was held for the start"));
        };
        self.record.generation = generation;
        self.record.envoy_key = None;
        self.record.envoy_instance = None;
        if !self.persist().await {
            return Some(failed("the new generation could not be stored"));
        }
        self.ports.runners.forget_commands(&self.record.actor_id);
        self.next_command_index = 1;
        self.last_event_index = -1;
        let start = self.start_command();
        let cmd = self.command(generation, Command::CommandStartActor(start));
        let payload =
            rivulet_wire::codec::encode_to_envoy_versioned(&ToEnvoy::ToEnvoyCommands(vec![cmd]));
        self.ports.invokers.await_claim(
            &self.record.actor_id,
            generation,
            &self.record.namespace_id,
            &self.record.runner_name_selector,
        );
        let (endpoint, token) = self.ports.invokers.endpoint();
        let cancel = self.ports.cancel.child_token();
        let (move_at, warm_at) = move_times(&pool.config);
        let req = InvokeRequest {
            payload,
            standby: None,
            endpoint,
            namespace: pool.namespace.clone(),
            pool: pool.name.clone(),
            token,
            actor_id: self.record.actor_id.clone(),
            generation,
            lifespan: pool.config.lifespan,
        };
        pool.count_invocation();
        tracing::info!(pool = %pool.name, platform = pool.platform.name(), generation, "invoking a serverless request");
        let invocation = pool.platform.invoke(req, cancel.clone());
        // The previous generation's request is not cancelled: its actor has stopped, and its
        // runner ends the request itself (or its lifespan does).
        if let Some(old) = self.invocation.take() {
            self.ports
                .invokers
                .cancel_claim(&self.record.actor_id, old.generation);
        }
        self.invocation = Some(LiveInvocation {
            generation,
            cancel,
            move_at,
            warm_at,
        });
        watch_invocation(pool, permit, invocation, self.mailbox.clone(), generation);
        None
    }

    /// Starts a standby request for the generation after `generation`, if the pool's
    /// platform takes them and a slot is free without waiting; otherwise warms the
    /// endpoint (or does nothing). The move at the deadline uses the standby only if its
    /// runner is connected by then.
    async fn start_standby(&mut self, generation: u32) {
        if self.standby.is_some() {
            return;
        }
        let (ns, pool) = (&self.record.namespace_id, &self.record.runner_name_selector);
        let Ok(Some(pool)) = self.ports.invokers.pool(ns, pool).await else {
            return;
        };
        if !pool.platform.standby() {
            pool.platform.warm();
            return;
        }
        let Some(permit) = pool.try_acquire_spare() else {
            tracing::debug!(pool = %pool.name, "no spare slot for a standby; the move will wait for a fresh request");
            return;
        };
        let next = generation + 1;
        let key = format!(
            "{}{}-{next}-{:x}",
            rivulet_wire::STANDBY_KEY_PREFIX,
            self.record.actor_id,
            rand::random::<u32>()
        );
        self.ports
            .invokers
            .expect_standby(&key, &self.record.actor_id);
        let (endpoint, token) = self.ports.invokers.endpoint();
        let cancel = self.ports.cancel.child_token();
        let (move_at, warm_at) = move_times(&pool.config);
        let req = InvokeRequest {
            payload: Vec::new(),
            standby: Some(key.clone()),
            endpoint,
            namespace: pool.namespace.clone(),
            pool: pool.name.clone(),
            token,
            actor_id: self.record.actor_id.clone(),
            generation: next,
            lifespan: pool.config.lifespan,
        };
        pool.count_invocation();
        tracing::info!(pool = %pool.name, platform = pool.platform.name(), generation = next, envoy_key = %key, "starting a standby request");
        let invocation = pool.platform.invoke(req, cancel.clone());
        self.standby = Some(LiveStandby {
            key,
            generation: next,
            cancel,
            move_at,
            warm_at,
        });
        watch_invocation(pool, permit, invocation, self.mailbox.clone(), next);
    }

    /// Ends the standby request unless the machine still counts on it: while the instance
    /// it is to take over runs, or the hand-over onto it is under way.
    pub(super) fn drop_unwanted_standby(&mut self) {
        let Some(standby) = &self.standby else {
            return;
        };
        let wanted = match &self.lifecycle.phase {
            Phase::Running { generation, .. } | Phase::Starting { generation, .. } => {
                generation + 1 == standby.generation
            }
            Phase::HandingOver {
                generation,
                to: Some(to),
                ..
            } => *to == standby.key && generation + 1 == standby.generation,
            _ => false,
        };
        if !wanted {
            if let Some(standby) = self.standby.take() {
                tracing::debug!(envoy_key = %standby.key, "standby request not needed; ending it");
                standby.cancel.cancel();
                self.ports.invokers.dismiss_standby(&standby.key);
            }
        }
    }

    /// The start of `generation` goes to the standby's runner: the standby becomes the
    /// request serving the actor.
    fn promote_standby(&mut self, envoy: &str, generation: u32) {
        if self
            .standby
            .as_ref()
            .is_none_or(|s| s.key != envoy || s.generation != generation)
        {
            return;
        }
        let Some(standby) = self.standby.take() else {
            return;
        };
        self.ports.invokers.forget_standby(&standby.key);
        if let Some(old) = self.invocation.take() {
            self.ports
                .invokers
                .cancel_claim(&self.record.actor_id, old.generation);
        }
        self.invocation = Some(LiveInvocation {
            generation,
            cancel: standby.cancel,
            move_at: standby.move_at,
            warm_at: standby.warm_at,
        });
    }

    /// Ends the current serverless request and withdraws its claim, if any.
    pub(super) fn cancel_invocation(&mut self) {
        if let Some(live) = self.invocation.take() {
            live.cancel.cancel();
            self.ports
                .invokers
                .cancel_claim(&self.record.actor_id, live.generation);
        }
    }

    /// How a serverless request ended, as an input: an early end or a failure is the
    /// instance crashing (its crash policy applies); a clean end changes nothing, the runner
    /// has already reported the actor stopped.
    pub(super) async fn on_invocation_end(&mut self, generation: u32, end: InvocationEnd) {
        if self
            .standby
            .as_ref()
            .is_some_and(|s| s.generation == generation)
        {
            // A standby that ended before it was used ran nothing: the move will start a
            // fresh request instead.
            if let Some(standby) = self.standby.take() {
                self.ports.invokers.forget_standby(&standby.key);
                match &end {
                    InvocationEnd::Finished => {
                        tracing::debug!(envoy_key = %standby.key, "standby request ended unused")
                    }
                    InvocationEnd::EndedEarly(why) => {
                        tracing::warn!(envoy_key = %standby.key, %why, "standby request ended early")
                    }
                    InvocationEnd::Failed { code, message } => {
                        tracing::warn!(envoy_key = %standby.key, %code, %message, "standby request failed")
                    }
                }
                self.apply(Input::RunnerLost { envoy: standby.key }).await;
            }
            return;
        }
        if self
            .invocation
            .as_ref()
            .is_some_and(|live| live.generation == generation)
        {
            self.invocation = None;
            self.ports
                .invokers
                .cancel_claim(&self.record.actor_id, generation);
        }
        let error = match end {
            InvocationEnd::Finished => {
                tracing::debug!(generation, "serverless request finished");
                return;
            }
            InvocationEnd::EndedEarly(why) => {
                tracing::warn!(generation, %why, "serverless request ended early");
                // Before its runner even claimed the actor: the request is what failed, and
                // waiting clients are told so.
                if self.lifecycle.phase == (crate::actor::lifecycle::Phase::Invoking { generation })
                {
                    self.set_failure(
                        "serverless.ended_early".into(),
                        format!("the serverless request ended before its runner connected: {why}"),
                    );
                }
                format!("serverless request ended early: {why}")
            }
            InvocationEnd::Failed { code, message } => {
                self.set_failure(code.clone(), message.clone());
                format!("{code}: {message}")
            }
        };
        self.apply(Input::Stopped {
            generation,
            error: Some(error),
        })
        .await;
    }

    async fn start(&mut self, envoy: String, generation: u32) -> Option<Input> {
        self.promote_standby(&envoy, generation);
        self.record.generation = generation;
        self.record.envoy_key = Some(envoy.clone());
        self.record.envoy_instance = self.ports.runners.instance_of(&envoy);
        if !self.persist().await {
            // Without the new generation on disk the fence would not protect it.
            return Some(Input::RunnerLost { envoy });
        }
        // Commands of earlier generations must never be replayed to anyone.
        self.ports.runners.forget_commands(&self.record.actor_id);
        if !self
            .ports
            .runners
            .assign(&envoy, &self.record.actor_id, generation)
        {
            return Some(Input::RunnerLost { envoy });
        }
        // The engine numbers each generation's commands from 1; runners see the same here.
        self.next_command_index = 1;
        self.last_event_index = -1;
        let start = self.start_command();
        let cmd = self.command(generation, Command::CommandStartActor(start));
        tracing::info!(envoy_key = %envoy, generation, "starting actor");
        if self.ports.runners.send_command(&envoy, cmd) {
            None
        } else {
            Some(Input::RunnerLost { envoy })
        }
    }

    /// The start command of the next generation: its config, and the client sockets held
    /// for it.
    fn start_command(&self) -> CommandStartActor {
        CommandStartActor {
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
        }
    }

    pub(super) fn command(&mut self, generation: u32, inner: Command) -> CommandWrapper {
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
    pub(super) fn release_runner(&mut self) {
        self.ports.runners.forget_commands(&self.record.actor_id);
        self.ports
            .runners
            .unassign(&self.record.actor_id, self.lifecycle.generation);
    }

    /// Writes the record; returns whether it stuck. A newer generation found in the store
    /// marks the supervisor fenced (fed to the machine by `settle`).
    pub(super) async fn persist(&mut self) -> bool {
        if self.fenced {
            return false;
        }
        match self
            .ports
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
                if let Ok(Some(stored)) = self.ports.store.get_actor(&self.record.actor_id).await {
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

    /// Counts the instance now running as the end of the wake or move under way.
    fn count_start(&mut self) {
        let metrics = &self.ports.metrics;
        if let Some(at) = self.move_started.take() {
            let pool = [self.record.runner_name_selector.as_str()];
            metrics.migrations.with_label_values(&pool).inc();
            metrics
                .migration_pause
                .with_label_values(&pool)
                .observe(at.elapsed().as_secs_f64());
            self.wake_started = None;
        } else if let Some(at) = self.wake_started.take() {
            metrics.wakes.inc();
            metrics.wake_seconds.observe(at.elapsed().as_secs_f64());
        }
    }

    /// Feeds `Fenced` if a write outside `apply` found the actor taken over.
    pub(super) async fn settle(&mut self) {
        if std::mem::take(&mut self.fenced) {
            self.apply(Input::Fenced).await;
        }
    }
}

/// When a request started now must hand its actor on, and when its standby is started.
fn move_times(config: &crate::pool::Invoked) -> (tokio::time::Instant, tokio::time::Instant) {
    let move_at = tokio::time::Instant::now() + config.lifespan.saturating_sub(config.drain_grace);
    let warm_at = move_at.checked_sub(config.warm_lead()).unwrap_or(move_at);
    (move_at, warm_at)
}

/// Follows a request's events to its end, holding its pool slot until then, and posts the
/// end to the actor's mailbox.
fn watch_invocation(
    pool: std::sync::Arc<crate::pool::runtime::InvokedPool>,
    permit: tokio::sync::OwnedSemaphorePermit,
    invocation: rivulet_adapters::Invocation,
    mailbox: std::sync::Arc<crate::actor::mailbox::Mailbox>,
    generation: u32,
) {
    tokio::spawn(async move {
        // The slot is held for as long as the request lives.
        let _permit = permit;
        let opened = tokio::time::Instant::now();
        let mut invocation = invocation;
        // Given up before it ended (a cancelled standby) unless an end comes.
        let mut outcome = "cancelled";
        while let Some(event) = invocation.events.recv().await {
            let end = match event {
                InvocationEvent::Accepted => {
                    pool.succeeded();
                    continue;
                }
                InvocationEvent::Finished => {
                    pool.succeeded();
                    outcome = "finished";
                    InvocationEnd::Finished
                }
                InvocationEvent::EndedEarly(why) => {
                    outcome = "ended_early";
                    InvocationEnd::EndedEarly(why)
                }
                InvocationEvent::Failed(err) => {
                    pool.failed(&err);
                    outcome = err.code();
                    InvocationEnd::Failed {
                        code: format!("serverless.{}", err.code()),
                        message: err.message,
                    }
                }
            };
            let _ = mailbox.put(Msg::InvocationEnded { generation, end });
            break;
        }
        pool.count_request_end(outcome, opened.elapsed());
    });
}
