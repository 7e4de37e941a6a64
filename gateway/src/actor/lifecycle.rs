//! The actor lifecycle as a pure state machine: `sleeping → pending → starting → running →
//! stopping → sleeping | destroyed`. It does no I/O; the supervisor feeds it inputs and
//! carries out the effects it returns, so every (phase, input) pair is unit-tested without
//! sockets or a store (`lifecycle/tests.rs`).
//!
//! Generations: every start increments the generation, and inputs from runners carry the
//! generation they belong to; an input from any other generation is ignored, so a late
//! message from a replaced runner cannot move the actor.

use crate::store::CrashPolicy;

/// Why the actor is being stopped; decides where it goes once stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopIntent {
    /// It goes to sleep and wakes on the next request or alarm.
    Sleep,
    /// It asked to stop for good; a clean stop destroys it.
    Stop,
    /// It is being destroyed.
    Destroy,
    /// Its runner is going away; it moves to another runner (or sleeps if there is none).
    GoingAway,
}

/// Where the actor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not running; wakes on demand.
    Sleeping,
    /// Wants to run, waiting for a runner of its pool.
    Pending,
    /// Start sent to `envoy`, waiting for it to report running.
    Starting {
        /// Generation of this start.
        generation: u32,
        /// Runner it was sent to.
        envoy: String,
    },
    /// Serving traffic on `envoy`.
    Running {
        /// Generation of this start.
        generation: u32,
        /// Runner it runs on.
        envoy: String,
    },
    /// Stop sent, waiting for the runner to report it stopped.
    Stopping {
        /// Generation being stopped.
        generation: u32,
        /// Runner it runs on.
        envoy: String,
        /// Why.
        intent: StopIntent,
    },
    /// Gone for good.
    Destroyed,
}

/// Something that happened to the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A request, alarm or API call needs it running.
    Wake,
    /// The API asked it to sleep.
    SleepRequested,
    /// The API or the actor asked to destroy it.
    DestroyRequested,
    /// Placement found a runner for it.
    RunnerPicked {
        /// The runner's envoy key.
        envoy: String,
    },
    /// The actor asked to sleep (`sleep: true`) or stop.
    Intent {
        /// Generation it came from.
        generation: u32,
        /// Sleep rather than stop.
        sleep: bool,
    },
    /// The runner reports it running.
    Running {
        /// Generation it came from.
        generation: u32,
    },
    /// The runner reports it stopped; `error` set if it stopped with an error.
    Stopped {
        /// Generation it came from.
        generation: u32,
        /// The error message, if it failed.
        error: Option<String>,
    },
    /// The runner's connection is gone for good.
    RunnerLost {
        /// Which runner.
        envoy: String,
    },
    /// The runner announced it is shutting down.
    RunnerStopping {
        /// Which runner.
        envoy: String,
    },
    /// Placement after a runner went away found no other runner.
    NoRunner,
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Find a runner, then feed `RunnerPicked`; keep trying until one connects.
    Place,
    /// Find a runner now, feeding `RunnerPicked`, or `NoRunner` if there is none.
    PlaceOrSleep,
    /// Persist the new generation, then send the start command.
    Start {
        /// Runner to start on.
        envoy: String,
        /// New generation.
        generation: u32,
    },
    /// Send a stop command.
    Stop {
        /// Runner to stop on.
        envoy: String,
        /// Generation to stop.
        generation: u32,
        /// Why.
        intent: StopIntent,
    },
    /// Record that it runs and accepts traffic.
    MarkRunning,
    /// Record that it waits for a runner.
    MarkPending,
    /// Record that it sleeps.
    MarkSleeping,
    /// Record that it is destroyed and drop its data.
    MarkDestroyed,
    /// Record why it failed, with the runner's message.
    RecordError(String),
    /// Record why it stopped, as one of the engine's plain error codes.
    RecordErrorCode(&'static str),
}

/// The lifecycle of one actor.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// Current phase.
    pub phase: Phase,
    /// Last generation handed out.
    pub generation: u32,
    /// What to do after a crash.
    pub crash_policy: CrashPolicy,
    /// A wake arrived while stopping to sleep: start again once stopped.
    rewake: bool,
}

impl Lifecycle {
    /// A lifecycle resuming from the stored generation.
    pub fn new(phase: Phase, generation: u32, crash_policy: CrashPolicy) -> Self {
        Self {
            phase,
            generation,
            crash_policy,
            rewake: false,
        }
    }

    /// Applies one input and returns the effects to carry out, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let phase = std::mem::replace(&mut self.phase, Phase::Destroyed);
        let (next, effects) = self.step(phase, input);
        self.phase = next;
        effects
    }

    fn step(&mut self, phase: Phase, input: Input) -> (Phase, Vec<Effect>) {
        use Effect as E;
        match (phase, input) {
            // --- destroyed is final ---
            (Phase::Destroyed, _) => (Phase::Destroyed, vec![]),

            // --- waking ---
            (Phase::Sleeping, Input::Wake) => (Phase::Pending, vec![E::MarkPending, E::Place]),
            (
                p @ (Phase::Pending | Phase::Starting { .. } | Phase::Running { .. }),
                Input::Wake,
            ) => (p, vec![]),
            (p @ Phase::Stopping { .. }, Input::Wake) => {
                self.rewake = true;
                (p, vec![])
            }

            // --- placement ---
            (Phase::Pending, Input::RunnerPicked { envoy }) => {
                self.generation += 1;
                let generation = self.generation;
                (
                    Phase::Starting {
                        generation,
                        envoy: envoy.clone(),
                    },
                    vec![E::Start { envoy, generation }],
                )
            }
            (p, Input::RunnerPicked { .. }) => (p, vec![]),

            // --- running ---
            (Phase::Starting { generation, envoy }, Input::Running { generation: g })
                if g == generation =>
            {
                (Phase::Running { generation, envoy }, vec![E::MarkRunning])
            }
            (p, Input::Running { .. }) => (p, vec![]),

            // --- sleep and stop requests ---
            (
                Phase::Running { generation, envoy },
                Input::Intent {
                    generation: g,
                    sleep,
                },
            ) if g == generation => {
                let intent = if sleep {
                    StopIntent::Sleep
                } else {
                    StopIntent::Stop
                };
                self.stop(generation, envoy, intent)
            }
            (p, Input::Intent { .. }) => (p, vec![]),
            (Phase::Running { generation, envoy }, Input::SleepRequested) => {
                self.stop(generation, envoy, StopIntent::Sleep)
            }
            (Phase::Pending, Input::SleepRequested) => (Phase::Sleeping, vec![E::MarkSleeping]),
            (
                p @ (Phase::Sleeping | Phase::Starting { .. } | Phase::Stopping { .. }),
                Input::SleepRequested,
            ) => (p, vec![]),

            // --- destroy ---
            (Phase::Sleeping | Phase::Pending, Input::DestroyRequested) => {
                (Phase::Destroyed, vec![E::MarkDestroyed])
            }
            (
                Phase::Starting { generation, envoy } | Phase::Running { generation, envoy },
                Input::DestroyRequested,
            ) => self.stop(generation, envoy, StopIntent::Destroy),
            (
                Phase::Stopping {
                    generation, envoy, ..
                },
                Input::DestroyRequested,
            ) => (
                // The runner already stops it; when it reports stopped, it is destroyed.
                Phase::Stopping {
                    generation,
                    envoy,
                    intent: StopIntent::Destroy,
                },
                vec![],
            ),

            // --- stopped ---
            (
                Phase::Stopping {
                    generation, intent, ..
                },
                Input::Stopped {
                    generation: g,
                    error,
                },
            ) if g == generation => self.after_stop(intent, error),
            (
                Phase::Starting { generation, .. } | Phase::Running { generation, .. },
                Input::Stopped {
                    generation: g,
                    error,
                },
            ) if g == generation => match error {
                // A clean exit nobody asked for means the actor is done.
                None => (Phase::Destroyed, vec![E::MarkDestroyed]),
                Some(message) => self.crashed(Ok(message)),
            },
            (p, Input::Stopped { .. }) => (p, vec![]),

            // --- runner lost ---
            (
                Phase::Starting { envoy, .. } | Phase::Running { envoy, .. },
                Input::RunnerLost { envoy: lost },
            ) if envoy == lost => self.crashed(Err("envoy_connection_lost")),
            (Phase::Stopping { envoy, intent, .. }, Input::RunnerLost { envoy: lost })
                if envoy == lost =>
            {
                self.after_lost(intent)
            }
            (p, Input::RunnerLost { .. }) => (p, vec![]),

            // --- runner going away ---
            (
                Phase::Starting { generation, envoy } | Phase::Running { generation, envoy },
                Input::RunnerStopping { envoy: stopping },
            ) if envoy == stopping => self.stop(generation, envoy, StopIntent::GoingAway),
            (p, Input::RunnerStopping { .. }) => (p, vec![]),
            (Phase::Pending, Input::NoRunner) => (
                Phase::Sleeping,
                vec![E::RecordErrorCode("no_envoys"), E::MarkSleeping],
            ),
            (p, Input::NoRunner) => (p, vec![]),
        }
    }

    fn stop(&mut self, generation: u32, envoy: String, intent: StopIntent) -> (Phase, Vec<Effect>) {
        (
            Phase::Stopping {
                generation,
                envoy: envoy.clone(),
                intent,
            },
            vec![Effect::Stop {
                envoy,
                generation,
                intent,
            }],
        )
    }

    /// The runner vanished while stopping the actor: the stop counts as done, with an error.
    fn after_lost(&mut self, intent: StopIntent) -> (Phase, Vec<Effect>) {
        let (phase, mut effects) = self.after_stop(intent, None);
        effects.insert(0, Effect::RecordErrorCode("envoy_connection_lost"));
        (phase, effects)
    }

    fn after_stop(&mut self, intent: StopIntent, error: Option<String>) -> (Phase, Vec<Effect>) {
        let rewake = std::mem::take(&mut self.rewake);
        let mut effects: Vec<Effect> = error.iter().cloned().map(Effect::RecordError).collect();
        match intent {
            StopIntent::GoingAway => {
                effects.extend([Effect::MarkPending, Effect::PlaceOrSleep]);
                (Phase::Pending, effects)
            }
            StopIntent::Destroy => {
                effects.push(Effect::MarkDestroyed);
                (Phase::Destroyed, effects)
            }
            StopIntent::Stop if error.is_none() => {
                effects.push(Effect::MarkDestroyed);
                (Phase::Destroyed, effects)
            }
            StopIntent::Sleep | StopIntent::Stop => {
                if rewake {
                    effects.extend([Effect::MarkPending, Effect::Place]);
                    (Phase::Pending, effects)
                } else {
                    effects.push(Effect::MarkSleeping);
                    (Phase::Sleeping, effects)
                }
            }
        }
    }

    /// A crash with the runner's message (`Ok`) or one of the engine's error codes (`Err`).
    fn crashed(&mut self, reason: Result<String, &'static str>) -> (Phase, Vec<Effect>) {
        self.rewake = false;
        let record = match reason {
            Ok(message) => Effect::RecordError(message),
            Err(code) => Effect::RecordErrorCode(code),
        };
        match self.crash_policy {
            CrashPolicy::Sleep => (Phase::Sleeping, vec![record, Effect::MarkSleeping]),
            CrashPolicy::Restart => (
                Phase::Pending,
                vec![record, Effect::MarkPending, Effect::Place],
            ),
            CrashPolicy::Destroy => (Phase::Destroyed, vec![record, Effect::MarkDestroyed]),
        }
    }

    /// Whether traffic can be sent to the actor now, and where.
    pub fn serving(&self) -> Option<(&str, u32)> {
        match &self.phase {
            Phase::Running { generation, envoy } => Some((envoy.as_str(), *generation)),
            Phase::Sleeping
            | Phase::Pending
            | Phase::Starting { .. }
            | Phase::Stopping { .. }
            | Phase::Destroyed => None,
        }
    }
}

#[cfg(test)]
mod tests;
