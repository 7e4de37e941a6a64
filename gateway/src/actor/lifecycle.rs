//! Everything an actor can be on this node, as one pure state machine. It does no I/O: the
//! supervisor feeds it inputs (runner events, requests, timers, the results of store calls)
//! and carries out the effects it returns, so every (phase, input) pair is unit-tested
//! without sockets, a store or a clock (`lifecycle/tests.rs`).
//!
//! ```text
//! sleeping ─wake─▶ claiming ─lease─▶ pending ─runner─▶ starting ─running─▶ running
//!     ▲  └─adopt─▶ claiming ─lease─▶ adopting ─runner back─────────────────▶ │
//!     │                                                                      │
//!     └──────────────── stopping ◀── sleep, stop, destroy ───────────────────┤
//!                            starting(g+1) ◀── handing over ◀── runner going away
//!
//! pending ─invoke─▶ invoking ─a runner claims it─▶ starting ─running─▶ running ─deadline─▶
//!                                                          handing over ─▶ pending ─invoke─▶ …
//! ```
//!
//! Invoked pools (serverless URLs, Lambda, local processes): placement starts a request for
//! the actor instead of picking a connected runner. The start command travels in that
//! request, and the runner it starts connects back and claims the actor (`Claimed`); from
//! then on it is a runner like any other. A request lives for its pool's lifespan, so at
//! `Deadline` (lifespan minus drain grace after the claim) the actor is handed over to a
//! fresh request, as when a runner goes away.
//!
//! Ownership: the node holds the actor's lease exactly in the phases between `claiming` and
//! `sleeping` (adopting, pending, starting, running, stopping, handing over). Losing the
//! node's registration (`OwnershipLost`) or finding a newer generation in the store
//! (`Fenced`) abandons the instance without writing anything: another node owns the actor.
//!
//! Generations: every start increments the generation, and inputs from runners carry the
//! generation they belong to; an input from any other generation is ignored, so a late
//! message from a replaced instance cannot move the actor. Timers carry the generation they
//! were armed for, so a timer that outlived its phase changes nothing.

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
    /// Its runner is going away and no other runner took it (see `HandingOver`).
    GoingAway,
}

/// What a lease is being claimed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// To start it.
    Wake,
    /// To destroy it.
    Destroy,
    /// To adopt the instance its stored record says is running (after a gateway restart).
    Adopt,
}

/// A timer the supervisor runs for the machine; it comes back as `Input::Timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// A start that has not reported running by then is a crash.
    Start {
        /// Generation started.
        generation: u32,
    },
    /// An adopted instance whose runner has not reconnected by then is lost.
    Adopt {
        /// Generation adopted.
        generation: u32,
    },
    /// Placement tries again (no runner of the pool was connected).
    Place,
    /// The serverless request serving this generation nears its end: move the actor.
    Deadline {
        /// Generation serving.
        generation: u32,
    },
    /// Shortly before `Deadline`: start a standby request for the next generation (or warm
    /// the endpoint), so the move does not wait for a cold start.
    Warm {
        /// Generation serving.
        generation: u32,
    },
}

/// Where the actor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not running, no lease held; wakes on demand.
    Sleeping,
    /// Taking the actor's lease (and re-reading its record) before acting on it.
    Claiming {
        /// What for.
        then: Claim,
    },
    /// Found running after a gateway restart; waiting for its runner to reconnect.
    Adopting {
        /// Generation that runs.
        generation: u32,
        /// Runner it runs on.
        envoy: String,
    },
    /// A request was started for `generation` on an invoked pool; waiting for the runner it
    /// starts to connect back and claim the actor.
    Invoking {
        /// Generation of the start the request carries.
        generation: u32,
    },
    /// Wants to run, waiting for a runner of its pool.
    Pending {
        /// Sleep rather than wait if no runner is connected (after its runner went away).
        or_sleep: bool,
    },
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
    /// Moving from a runner that is going away: the old instance is stopping (its last
    /// writes still fenced at `generation`), and once it reports stopped the next generation
    /// starts on `to`. Traffic waits meanwhile.
    HandingOver {
        /// Generation being stopped.
        generation: u32,
        /// Runner going away.
        from: String,
        /// Runner taking over, once one is found.
        to: Option<String>,
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
    /// The stored record says an instance runs (the supervisor was loaded after a restart).
    Adopt,
    /// The lease is this node's; the record was re-read.
    LeaseAcquired {
        /// The stored generation.
        generation: u32,
        /// The runner the stored record says the actor runs on, if it says so.
        running_on: Option<String>,
    },
    /// Another node holds the lease, or the store failed (the supervisor publishes which).
    LeaseRefused,
    /// The record is gone or marks the actor destroyed.
    RecordGone,
    /// The record was re-read while sleeping.
    Reloaded {
        /// The stored generation.
        generation: u32,
    },
    /// The stored record may have changed on another node: re-read it if sleeping.
    Refresh,
    /// This node's registration changed: leases taken under the old one bind nobody.
    OwnershipLost,
    /// A write found a newer generation in the store: another node runs the actor.
    Fenced,
    /// The runner set changed.
    RunnersChanged,
    /// This runner is connected.
    RunnerConnected {
        /// The runner's envoy key.
        envoy: String,
    },
    /// Placement found a runner for it.
    RunnerPicked {
        /// The runner's envoy key.
        envoy: String,
    },
    /// Placement found no runner.
    NoRunner,
    /// Placement found an invoked pool with room: start a request for the actor.
    Invoke,
    /// A runner started by a request claimed `generation` of the actor.
    Claimed {
        /// Generation claimed.
        generation: u32,
        /// The runner that claimed it.
        envoy: String,
    },
    /// A standby request's runner connected under its key and waits for the next start.
    StandbyReady {
        /// Its envoy key.
        envoy: String,
    },
    /// A timer fired.
    Timeout(Timer),
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
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Take the lease and re-read the record; feed `LeaseAcquired`, `LeaseRefused` or
    /// `RecordGone`.
    ClaimLease,
    /// Take the lease only if this node ran the actor (its lease, or none); then as
    /// `ClaimLease`.
    ClaimAdoption,
    /// Give the lease back (nothing runs).
    ReleaseLease,
    /// Re-read the record; feed `Reloaded` or `RecordGone`.
    Reload,
    /// Find a runner of the pool; feed `RunnerPicked` or `NoRunner`.
    Place,
    /// Persist the new generation, then start a request carrying its start command.
    Invoke {
        /// New generation.
        generation: u32,
    },
    /// Record the runner that claimed the invoked instance.
    Attach {
        /// The runner.
        envoy: String,
    },
    /// End the request started for the actor (nothing runs there, or it is abandoned).
    CancelInvocation,
    /// Start a standby request for the generation after `generation` (or, on platforms
    /// without them, warm the endpoint); its runner reports `StandbyReady`.
    Standby {
        /// Generation serving now.
        generation: u32,
    },
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
    /// Register an adopted instance with its reconnected runner.
    Assign {
        /// The runner.
        envoy: String,
        /// Generation it runs.
        generation: u32,
    },
    /// Feed `RunnerConnected` if this runner is connected.
    CheckRunner {
        /// The runner.
        envoy: String,
    },
    /// Another node owns the actor: stop this node's instance (if any) without waiting,
    /// forget the lease, and write nothing.
    Abandon {
        /// The instance to stop.
        instance: Option<(String, u32)>,
    },
    /// Start a timer.
    Arm(Timer),
    /// Record that it runs and accepts traffic.
    MarkRunning,
    /// Record that it waits for a runner.
    MarkPending,
    /// Record that it sleeps, and give the lease back.
    MarkSleeping,
    /// Record that it is destroyed, drop its data, and give the lease back.
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
    /// Last generation handed out (or read from the store).
    pub generation: u32,
    /// What to do after a crash.
    pub crash_policy: CrashPolicy,
    /// A wake arrived while stopping to sleep: start again once stopped.
    rewake: bool,
    /// The runner of a standby request, connected and waiting, while the instance it will
    /// take over runs (`Running`, `Starting`).
    standby: Option<String>,
    /// The hand-over under way moves onto a standby request: the next start is an invoked
    /// one, with its own deadline.
    onto_standby: bool,
}

impl Lifecycle {
    /// A lifecycle resuming from the stored generation.
    pub fn new(phase: Phase, generation: u32, crash_policy: CrashPolicy) -> Self {
        Self {
            phase,
            generation,
            crash_policy,
            rewake: false,
            standby: None,
            onto_standby: false,
        }
    }

    /// Applies one input and returns the effects to carry out, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let phase = std::mem::replace(&mut self.phase, Phase::Destroyed);
        let (next, effects) = self.step(phase, input);
        if !matches!(next, Phase::Running { .. } | Phase::Starting { .. }) {
            // A standby waits only for the instance it is to take over.
            self.standby = None;
        }
        if !matches!(next, Phase::HandingOver { .. }) {
            self.onto_standby = false;
        }
        self.phase = next;
        effects
    }

    /// The standby runner waiting to take the actor over, if one is connected.
    pub fn standby(&self) -> Option<&str> {
        self.standby.as_deref()
    }

    /// Whether this node holds the actor's lease in the current phase.
    pub fn holds_lease(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Sleeping | Phase::Claiming { .. } | Phase::Destroyed
        )
    }

    /// The instance this node runs (or is stopping), if any.
    pub fn instance(&self) -> Option<(&str, u32)> {
        match &self.phase {
            Phase::Adopting { generation, envoy }
            | Phase::Starting { generation, envoy }
            | Phase::Running { generation, envoy }
            | Phase::Stopping {
                generation, envoy, ..
            }
            | Phase::HandingOver {
                generation,
                from: envoy,
                ..
            } => Some((envoy.as_str(), *generation)),
            Phase::Sleeping
            | Phase::Claiming { .. }
            | Phase::Invoking { .. }
            | Phase::Pending { .. }
            | Phase::Destroyed => None,
        }
    }

    /// Whether traffic can be sent to the actor now, and where.
    pub fn serving(&self) -> Option<(&str, u32)> {
        match &self.phase {
            Phase::Running { generation, envoy } => Some((envoy.as_str(), *generation)),
            _ => None,
        }
    }

    fn step(&mut self, phase: Phase, input: Input) -> (Phase, Vec<Effect>) {
        match phase {
            Phase::Destroyed => (Phase::Destroyed, vec![]),
            Phase::Sleeping => self.sleeping(input),
            Phase::Claiming { then } => self.claiming(then, input),
            Phase::Adopting { generation, envoy } => self.adopting(generation, envoy, input),
            Phase::Pending { or_sleep } => self.pending(or_sleep, input),
            Phase::Invoking { generation } => self.invoking(generation, input),
            Phase::Starting { generation, envoy } => self.starting(generation, envoy, input),
            Phase::Running { generation, envoy } => self.running(generation, envoy, input),
            Phase::Stopping {
                generation,
                envoy,
                intent,
            } => self.stopping(generation, envoy, intent, input),
            Phase::HandingOver {
                generation,
                from,
                to,
            } => self.handing_over(generation, from, to, input),
        }
    }

    fn sleeping(&mut self, input: Input) -> (Phase, Vec<Effect>) {
        use Effect as E;
        let claim = |then| (Phase::Claiming { then }, vec![E::ClaimLease]);
        match input {
            Input::Wake => claim(Claim::Wake),
            Input::DestroyRequested => claim(Claim::Destroy),
            Input::Adopt => (
                Phase::Claiming { then: Claim::Adopt },
                vec![E::ClaimAdoption],
            ),
            Input::Refresh | Input::Fenced => (Phase::Sleeping, vec![E::Reload]),
            Input::Reloaded { generation } => {
                self.generation = generation;
                (Phase::Sleeping, vec![])
            }
            Input::RecordGone => (Phase::Destroyed, vec![]),
            _ => (Phase::Sleeping, vec![]),
        }
    }

    fn claiming(&mut self, then: Claim, input: Input) -> (Phase, Vec<Effect>) {
        use Effect as E;
        match input {
            Input::LeaseAcquired {
                generation,
                running_on,
            } => {
                self.generation = generation;
                match (then, running_on) {
                    (Claim::Wake, _) => (
                        Phase::Pending { or_sleep: false },
                        vec![E::MarkPending, E::Place],
                    ),
                    (Claim::Destroy, _) => (Phase::Destroyed, vec![E::MarkDestroyed]),
                    (Claim::Adopt, Some(envoy)) => (
                        Phase::Adopting {
                            generation,
                            envoy: envoy.clone(),
                        },
                        vec![
                            E::Arm(Timer::Adopt { generation }),
                            E::CheckRunner { envoy },
                        ],
                    ),
                    // It stopped or moved while this node was away: nothing to adopt.
                    (Claim::Adopt, None) => (Phase::Sleeping, vec![E::ReleaseLease]),
                }
            }
            Input::LeaseRefused => (Phase::Sleeping, vec![]),
            Input::RecordGone => (Phase::Destroyed, vec![]),
            _ => (Phase::Claiming { then }, vec![]),
        }
    }

    fn adopting(&mut self, generation: u32, envoy: String, input: Input) -> (Phase, Vec<Effect>) {
        use Effect as E;
        let ours = |g: u32| g == generation;
        match input {
            Input::RunnerConnected { envoy: e } if e == envoy => (
                Phase::Running {
                    generation,
                    envoy: envoy.clone(),
                },
                vec![E::Assign { envoy, generation }],
            ),
            Input::RunnersChanged => (
                Phase::Adopting {
                    generation,
                    envoy: envoy.clone(),
                },
                vec![E::CheckRunner { envoy }],
            ),
            Input::Timeout(Timer::Adopt { generation: g }) if ours(g) => {
                self.crashed(Err("envoy_connection_lost"))
            }
            Input::RunnerLost { envoy: e } if e == envoy => {
                self.crashed(Err("envoy_connection_lost"))
            }
            Input::OwnershipLost | Input::Fenced => self.abandon(Some((envoy, generation)), &input),
            // Word from the instance (or a request to stop it) means its runner is back.
            Input::Intent { generation: g, .. }
            | Input::Running { generation: g }
            | Input::Stopped { generation: g, .. }
                if ours(g) =>
            {
                self.adopted_then(generation, envoy, input)
            }
            Input::SleepRequested | Input::DestroyRequested => {
                self.adopted_then(generation, envoy, input)
            }
            Input::RunnerStopping { envoy: ref e } if *e == envoy => {
                self.adopted_then(generation, envoy, input)
            }
            _ => (Phase::Adopting { generation, envoy }, vec![]),
        }
    }

    /// Treats an adopted instance as running (registering it with its runner) and applies
    /// `input` to it.
    fn adopted_then(
        &mut self,
        generation: u32,
        envoy: String,
        input: Input,
    ) -> (Phase, Vec<Effect>) {
        let assign = Effect::Assign {
            envoy: envoy.clone(),
            generation,
        };
        let (phase, mut effects) = self.running(generation, envoy, input);
        effects.insert(0, assign);
        (phase, effects)
    }

    fn pending(&mut self, or_sleep: bool, input: Input) -> (Phase, Vec<Effect>) {
        use Effect as E;
        match input {
            Input::RunnerPicked { envoy } => self.start(envoy),
            Input::Invoke => self.invoke(),
            Input::NoRunner if or_sleep => (
                Phase::Sleeping,
                vec![E::RecordErrorCode("no_envoys"), E::MarkSleeping],
            ),
            Input::NoRunner => (Phase::Pending { or_sleep }, vec![E::Arm(Timer::Place)]),
            Input::RunnersChanged | Input::Timeout(Timer::Place) => {
                (Phase::Pending { or_sleep }, vec![E::Place])
            }
            Input::SleepRequested => (Phase::Sleeping, vec![E::MarkSleeping]),
            Input::DestroyRequested => (Phase::Destroyed, vec![E::MarkDestroyed]),
            Input::OwnershipLost | Input::Fenced => self.abandon(None, &input),
            _ => (Phase::Pending { or_sleep }, vec![]),
        }
    }

    fn invoke(&mut self) -> (Phase, Vec<Effect>) {
        self.generation += 1;
        let generation = self.generation;
        (
            Phase::Invoking { generation },
            vec![
                Effect::Invoke { generation },
                Effect::Arm(Timer::Start { generation }),
            ],
        )
    }

    fn invoking(&mut self, generation: u32, input: Input) -> (Phase, Vec<Effect>) {
        use Effect as E;
        let ours = |g: u32| g == generation;
        let with_cancel = |(phase, mut effects): (Phase, Vec<Effect>)| {
            effects.insert(0, E::CancelInvocation);
            (phase, effects)
        };
        match input {
            Input::Claimed {
                generation: g,
                envoy,
            } if ours(g) => (
                Phase::Starting {
                    generation,
                    envoy: envoy.clone(),
                },
                vec![
                    E::Attach { envoy },
                    E::Arm(Timer::Deadline { generation }),
                    E::Arm(Timer::Warm { generation }),
                ],
            ),
            // The request failed or ended before any runner claimed the actor.
            Input::Stopped {
                generation: g,
                error,
            } if ours(g) => with_cancel(self.crashed(Ok(error.unwrap_or_else(|| {
                "the serverless request ended before its runner connected".into()
            })))),
            Input::Timeout(Timer::Start { generation: g }) if ours(g) => {
                with_cancel(self.crashed(Err("envoy_connection_lost")))
            }
            Input::SleepRequested => (Phase::Sleeping, vec![E::CancelInvocation, E::MarkSleeping]),
            Input::DestroyRequested => (
                Phase::Destroyed,
                vec![E::CancelInvocation, E::MarkDestroyed],
            ),
            Input::OwnershipLost | Input::Fenced => with_cancel(self.abandon(None, &input)),
            _ => (Phase::Invoking { generation }, vec![]),
        }
    }

    fn start(&mut self, envoy: String) -> (Phase, Vec<Effect>) {
        self.generation += 1;
        let generation = self.generation;
        (
            Phase::Starting {
                generation,
                envoy: envoy.clone(),
            },
            vec![
                Effect::Start { envoy, generation },
                Effect::Arm(Timer::Start { generation }),
            ],
        )
    }

    fn starting(&mut self, generation: u32, envoy: String, input: Input) -> (Phase, Vec<Effect>) {
        use Effect as E;
        let ours = |g: u32| g == generation;
        match input {
            Input::Running { generation: g } if ours(g) => {
                (Phase::Running { generation, envoy }, vec![E::MarkRunning])
            }
            Input::Stopped {
                generation: g,
                error,
            } if ours(g) => self.exited(error),
            Input::DestroyRequested => self.stop(generation, envoy, StopIntent::Destroy),
            Input::RunnerLost { envoy: ref e } if *e == envoy => {
                self.crashed(Err("envoy_connection_lost"))
            }
            // Nothing heard from the start in time: its instance counts as crashed.
            Input::Timeout(Timer::Start { generation: g }) if ours(g) => {
                self.crashed(Err("envoy_connection_lost"))
            }
            Input::RunnerStopping { envoy: ref e } if *e == envoy => {
                self.hand_over(generation, envoy)
            }
            Input::Timeout(Timer::Deadline { generation: g }) if ours(g) => {
                self.move_before_deadline(generation, envoy)
            }
            Input::OwnershipLost | Input::Fenced => self.abandon(Some((envoy, generation)), &input),
            _ => {
                let effects = self.standby_input(generation, input);
                (Phase::Starting { generation, envoy }, effects)
            }
        }
    }

    fn running(&mut self, generation: u32, envoy: String, input: Input) -> (Phase, Vec<Effect>) {
        let ours = |g: u32| g == generation;
        match input {
            Input::Intent {
                generation: g,
                sleep,
            } if ours(g) => {
                let intent = if sleep {
                    StopIntent::Sleep
                } else {
                    StopIntent::Stop
                };
                self.stop(generation, envoy, intent)
            }
            Input::SleepRequested => self.stop(generation, envoy, StopIntent::Sleep),
            Input::DestroyRequested => self.stop(generation, envoy, StopIntent::Destroy),
            Input::Stopped {
                generation: g,
                error,
            } if ours(g) => self.exited(error),
            Input::RunnerLost { envoy: ref e } if *e == envoy => {
                self.crashed(Err("envoy_connection_lost"))
            }
            Input::RunnerStopping { envoy: ref e } if *e == envoy => {
                self.hand_over(generation, envoy)
            }
            Input::Timeout(Timer::Deadline { generation: g }) if ours(g) => {
                self.move_before_deadline(generation, envoy)
            }
            Input::OwnershipLost | Input::Fenced => self.abandon(Some((envoy, generation)), &input),
            _ => {
                let effects = self.standby_input(generation, input);
                (Phase::Running { generation, envoy }, effects)
            }
        }
    }

    fn stopping(
        &mut self,
        generation: u32,
        envoy: String,
        intent: StopIntent,
        input: Input,
    ) -> (Phase, Vec<Effect>) {
        let ours = |g: u32| g == generation;
        match input {
            Input::Wake => {
                self.rewake = true;
                (
                    Phase::Stopping {
                        generation,
                        envoy,
                        intent,
                    },
                    vec![],
                )
            }
            // The runner already stops it; when it reports stopped, it is destroyed.
            Input::DestroyRequested => (
                Phase::Stopping {
                    generation,
                    envoy,
                    intent: StopIntent::Destroy,
                },
                vec![],
            ),
            Input::Stopped {
                generation: g,
                error,
            } if ours(g) => self.after_stop(intent, error),
            Input::RunnerLost { envoy: ref e } if *e == envoy => self.after_lost(intent),
            Input::OwnershipLost | Input::Fenced => self.abandon(Some((envoy, generation)), &input),
            _ => (
                Phase::Stopping {
                    generation,
                    envoy,
                    intent,
                },
                vec![],
            ),
        }
    }

    /// Standby inputs while `generation` runs (or starts): the warm timer asks for a standby
    /// request, its runner reports ready, or goes away again.
    fn standby_input(&mut self, generation: u32, input: Input) -> Vec<Effect> {
        match input {
            Input::Timeout(Timer::Warm { generation: g })
                if g == generation && self.standby.is_none() =>
            {
                vec![Effect::Standby { generation }]
            }
            Input::StandbyReady { envoy } => {
                self.standby = Some(envoy);
                vec![]
            }
            Input::RunnerLost { envoy } if self.standby.as_ref() == Some(&envoy) => {
                self.standby = None;
                vec![]
            }
            _ => vec![],
        }
    }

    /// The request serving `generation` nears its end: hand the actor over to the standby
    /// request if its runner is ready (the old instance stops, then the start goes to the
    /// standby at once), else as when a runner goes away (a fresh request is started once
    /// the old instance has stopped).
    fn move_before_deadline(&mut self, generation: u32, from: String) -> (Phase, Vec<Effect>) {
        match self.standby.take() {
            Some(to) => {
                self.onto_standby = true;
                (
                    Phase::HandingOver {
                        generation,
                        from: from.clone(),
                        to: Some(to),
                    },
                    vec![Effect::Stop {
                        envoy: from,
                        generation,
                        intent: StopIntent::GoingAway,
                    }],
                )
            }
            None => self.hand_over(generation, from),
        }
    }

    /// The runner is going away: stop the instance there (its last writes fenced at its
    /// generation) and look for the runner the next generation starts on.
    fn hand_over(&mut self, generation: u32, from: String) -> (Phase, Vec<Effect>) {
        (
            Phase::HandingOver {
                generation,
                from: from.clone(),
                to: None,
            },
            vec![
                Effect::Stop {
                    envoy: from,
                    generation,
                    intent: StopIntent::GoingAway,
                },
                Effect::Place,
            ],
        )
    }

    fn handing_over(
        &mut self,
        generation: u32,
        from: String,
        to: Option<String>,
        input: Input,
    ) -> (Phase, Vec<Effect>) {
        let ours = |g: u32| g == generation;
        let stay = |to| Phase::HandingOver {
            generation,
            from: from.clone(),
            to,
        };
        match input {
            Input::RunnerPicked { envoy } if to.is_none() && envoy != from => {
                (stay(Some(envoy)), vec![])
            }
            // The runner it was moving to left too: find another once the old one stopped.
            Input::RunnerLost { envoy: ref e } | Input::RunnerStopping { envoy: ref e }
                if to.as_ref() == Some(e) =>
            {
                (stay(None), vec![])
            }
            Input::Stopped {
                generation: g,
                error,
            } if ours(g) => self.handed_over(to, error.map(Effect::RecordError)),
            Input::RunnerLost { envoy: ref e } if *e == from => {
                self.handed_over(to, Some(Effect::RecordErrorCode("envoy_connection_lost")))
            }
            // A stop already runs; what follows it changes.
            Input::Intent {
                generation: g,
                sleep,
            } if ours(g) => {
                let intent = if sleep {
                    StopIntent::Sleep
                } else {
                    StopIntent::Stop
                };
                self.stopping_instead(generation, from, intent)
            }
            Input::SleepRequested => self.stopping_instead(generation, from, StopIntent::Sleep),
            Input::DestroyRequested => self.stopping_instead(generation, from, StopIntent::Destroy),
            Input::OwnershipLost | Input::Fenced => self.abandon(Some((from, generation)), &input),
            _ => (stay(to), vec![]),
        }
    }

    fn stopping_instead(
        &mut self,
        generation: u32,
        envoy: String,
        intent: StopIntent,
    ) -> (Phase, Vec<Effect>) {
        (
            Phase::Stopping {
                generation,
                envoy,
                intent,
            },
            vec![],
        )
    }

    /// The old instance of a hand-over stopped: start the next generation where it goes, or
    /// look once more and sleep if no runner is left.
    fn handed_over(&mut self, to: Option<String>, record: Option<Effect>) -> (Phase, Vec<Effect>) {
        self.rewake = false;
        let onto_standby = std::mem::take(&mut self.onto_standby);
        let mut effects: Vec<Effect> = record.into_iter().collect();
        effects.push(Effect::MarkPending);
        match to {
            Some(envoy) => {
                let (phase, start) = self.start(envoy);
                effects.extend(start);
                if onto_standby {
                    // The standby request is the one serving now: it moves on at its own
                    // deadline.
                    let generation = self.generation;
                    effects.push(Effect::Arm(Timer::Deadline { generation }));
                    effects.push(Effect::Arm(Timer::Warm { generation }));
                }
                (phase, effects)
            }
            None => {
                effects.push(Effect::Place);
                (Phase::Pending { or_sleep: true }, effects)
            }
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

    /// Another node owns the actor now. A fenced one re-reads what that node stored.
    fn abandon(&mut self, instance: Option<(String, u32)>, why: &Input) -> (Phase, Vec<Effect>) {
        self.rewake = false;
        let mut effects = vec![Effect::Abandon { instance }];
        if *why == Input::Fenced {
            effects.push(Effect::Reload);
        }
        (Phase::Sleeping, effects)
    }

    /// The instance exited without being asked to.
    fn exited(&mut self, error: Option<String>) -> (Phase, Vec<Effect>) {
        match error {
            // A clean exit nobody asked for means the actor is done.
            None => (Phase::Destroyed, vec![Effect::MarkDestroyed]),
            Some(message) => self.crashed(Ok(message)),
        }
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
                effects.extend([Effect::MarkPending, Effect::Place]);
                (Phase::Pending { or_sleep: true }, effects)
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
                    (Phase::Pending { or_sleep: false }, effects)
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
                Phase::Pending { or_sleep: false },
                vec![record, Effect::MarkPending, Effect::Place],
            ),
            CrashPolicy::Destroy => (Phase::Destroyed, vec![record, Effect::MarkDestroyed]),
        }
    }
}

#[cfg(test)]
mod tests;
