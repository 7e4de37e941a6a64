//! Runner events as lifecycle inputs. Events carry their generation and index: those of
//! another generation are ignored, replays (index already seen) are dropped, and events of
//! the generation about to start are held until its start command is out.

use rivulet_wire::envoy::{ActorIntent, ActorState, Event, EventWrapper, StopCode};

use super::Supervisor;
use crate::actor::lifecycle::{Input, Phase};

/// Events of the next generation held until its start is sent (see `on_event`).
const MAX_EARLY_EVENTS: usize = 64;

impl Supervisor {
    pub(super) async fn on_event(&mut self, event: EventWrapper) {
        let cp = &event.checkpoint;
        if cp.generation != self.lifecycle.generation {
            // A serverless runner starts the generation it was invoked with as soon as it
            // connects, and may report it before this supervisor has sent its own start
            // (which the runner then recognises as the same command). Hold such events
            // until that start is out.
            let next = self.lifecycle.generation.wrapping_add(1);
            if cp.generation == next && self.next_start_pending() {
                if self.early_events.len() < MAX_EARLY_EVENTS {
                    tracing::debug!(
                        event_generation = cp.generation,
                        "holding an event of the generation about to start"
                    );
                    self.early_events.push(event);
                } else {
                    tracing::warn!(
                        event_generation = cp.generation,
                        "too many events ahead of their start; dropping one"
                    );
                }
                return;
            }
            tracing::debug!(
                event_generation = cp.generation,
                "ignoring event of another generation"
            );
            return;
        }
        // A serverless runner reports the generation it was started with; the claim it made
        // (an acknowledgement or a storage request may have come first) names the runner.
        if let Phase::Invoking { generation } = self.lifecycle.phase {
            if cp.generation == generation {
                let claimant = self
                    .ports
                    .invokers
                    .claimant(&self.record.actor_id, generation);
                if let Some(envoy) = claimant {
                    self.apply(Input::Claimed { generation, envoy }).await;
                }
            }
        }
        // A stop is final for its generation, so applying it twice changes nothing; and a
        // runner that no longer knows the generation (restarted under the same key) answers
        // a stop with a fresh index.
        let final_stop = matches!(
            &event.inner,
            Event::EventActorStateUpdate(u) if matches!(u.state, ActorState::ActorStateStopped(_))
        );
        if cp.index <= self.last_event_index && !final_stop {
            return; // replayed after a reconnect; already applied
        }
        self.last_event_index = self.last_event_index.max(cp.index);
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
                    self.settle().await;
                }
                return;
            }
        };
        self.apply(input).await;
    }

    /// Whether the next generation's start is still to be sent.
    fn next_start_pending(&self) -> bool {
        matches!(
            self.lifecycle.phase,
            Phase::Sleeping
                | Phase::Claiming { .. }
                | Phase::Pending { .. }
                | Phase::HandingOver { .. }
        )
    }

    /// Applies held events once their generation's start has been sent; drops those that
    /// can no longer apply.
    pub(super) async fn replay_early_events(&mut self) {
        if self.early_events.is_empty() {
            return;
        }
        let generation = self.lifecycle.generation;
        let waiting = self.next_start_pending();
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
}
