//! Carrying out the machine's effects: record writes, commands to runners, timers. An
//! effect may report back an input (a failed send is a lost runner; a placement is a picked
//! runner or none), which the supervisor feeds to the machine next.

use rivulet_wire::envoy::{
    ActorCheckpoint, ActorConfig, Command, CommandStartActor, CommandStopActor, CommandWrapper,
    HibernatingRequest, StopActorReason,
};
use serde_json::json;

use super::Supervisor;
use crate::actor::lifecycle::{Effect, Input, StopIntent, Timer};
use crate::util::now_ms;

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
            Effect::Place => Some(self.place()),
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
                let wait = match timer {
                    Timer::Start { .. } => timing.start_timeout,
                    Timer::Adopt { .. } => timing.adopt_wait,
                    Timer::Place => timing.place_retry,
                };
                self.timers.arm(timer, tokio::time::Instant::now() + wait);
                None
            }
            Effect::MarkRunning => {
                let now = now_ms();
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

    fn place(&mut self) -> Input {
        match self
            .ports
            .runners
            .pick(&self.record.namespace_id, &self.record.runner_name_selector)
        {
            Some(envoy) => Input::RunnerPicked { envoy },
            None => Input::NoRunner,
        }
    }

    async fn start(&mut self, envoy: String, generation: u32) -> Option<Input> {
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
        let cmd = self.command(generation, Command::CommandStartActor(start));
        tracing::info!(envoy_key = %envoy, generation, "starting actor");
        if self.ports.runners.send_command(&envoy, cmd) {
            None
        } else {
            Some(Input::RunnerLost { envoy })
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

    /// Feeds `Fenced` if a write outside `apply` found the actor taken over.
    pub(super) async fn settle(&mut self) {
        if std::mem::take(&mut self.fenced) {
            self.apply(Input::Fenced).await;
        }
    }
}
