use super::*;

fn lc(phase: Phase) -> Lifecycle {
    Lifecycle::new(phase, 3, CrashPolicy::Sleep)
}

fn running() -> Phase {
    Phase::Running {
        generation: 3,
        envoy: "e".into(),
    }
}

fn stopping(intent: StopIntent) -> Phase {
    Phase::Stopping {
        generation: 3,
        envoy: "e".into(),
        intent,
    }
}

fn handing_over(to: Option<&str>) -> Phase {
    Phase::HandingOver {
        generation: 3,
        from: "e".into(),
        to: to.map(Into::into),
    }
}

fn pending() -> Phase {
    Phase::Pending { or_sleep: false }
}

fn acquired(generation: u32) -> Input {
    Input::LeaseAcquired {
        generation,
        running_on: None,
    }
}

fn stopped(generation: u32) -> Input {
    Input::Stopped {
        generation,
        error: None,
    }
}

#[test]
fn wake_claims_places_starts_runs() {
    let mut l = lc(Phase::Sleeping);
    assert_eq!(l.handle(Input::Wake), vec![Effect::ClaimLease]);
    assert_eq!(l.phase, Phase::Claiming { then: Claim::Wake });
    assert!(!l.holds_lease());
    // The store's generation wins over the one this supervisor loaded.
    assert_eq!(
        l.handle(acquired(5)),
        vec![Effect::MarkPending, Effect::Place]
    );
    assert!(l.holds_lease());
    assert_eq!(
        l.handle(Input::RunnerPicked { envoy: "e".into() }),
        vec![
            Effect::Start {
                envoy: "e".into(),
                generation: 6
            },
            Effect::Arm(Timer::Start { generation: 6 })
        ]
    );
    assert_eq!(l.handle(Input::Running { generation: 5 }), vec![]);
    assert_eq!(
        l.handle(Input::Running { generation: 6 }),
        vec![Effect::MarkRunning]
    );
    assert_eq!(l.serving(), Some(("e", 6)));
}

#[test]
fn a_refused_lease_leaves_it_asleep_and_a_gone_record_destroyed() {
    let mut l = lc(Phase::Sleeping);
    l.handle(Input::Wake);
    assert_eq!(l.handle(Input::LeaseRefused), vec![]);
    assert_eq!(l.phase, Phase::Sleeping);
    l.handle(Input::DestroyRequested);
    assert_eq!(l.handle(Input::RecordGone), vec![]);
    assert_eq!(l.phase, Phase::Destroyed);
}

#[test]
fn destroy_claims_the_lease_first() {
    let mut l = lc(Phase::Sleeping);
    assert_eq!(l.handle(Input::DestroyRequested), vec![Effect::ClaimLease]);
    assert_eq!(l.handle(acquired(3)), vec![Effect::MarkDestroyed]);
    assert_eq!(l.phase, Phase::Destroyed);
}

#[test]
fn no_runner_waits_and_tries_again() {
    let mut l = lc(pending());
    assert_eq!(l.handle(Input::NoRunner), vec![Effect::Arm(Timer::Place)]);
    assert_eq!(l.handle(Input::Timeout(Timer::Place)), vec![Effect::Place]);
    assert_eq!(l.handle(Input::RunnersChanged), vec![Effect::Place]);
    assert_eq!(l.phase, pending());
}

#[test]
fn a_start_that_never_reports_is_a_crash() {
    let mut l = lc(pending());
    l.handle(Input::RunnerPicked { envoy: "e".into() });
    // A timer of an earlier start changes nothing.
    assert_eq!(
        l.handle(Input::Timeout(Timer::Start { generation: 3 })),
        vec![]
    );
    assert_eq!(
        l.handle(Input::Timeout(Timer::Start { generation: 4 })),
        vec![
            Effect::RecordErrorCode("envoy_connection_lost"),
            Effect::MarkSleeping
        ]
    );
    // Once running, its start timer is stale.
    let mut l = lc(Phase::Running {
        generation: 4,
        envoy: "e".into(),
    });
    assert_eq!(
        l.handle(Input::Timeout(Timer::Start { generation: 4 })),
        vec![]
    );
}

#[test]
fn adoption_waits_for_the_runner_then_runs() {
    let mut l = lc(Phase::Sleeping);
    assert_eq!(l.handle(Input::Adopt), vec![Effect::ClaimAdoption]);
    assert_eq!(
        l.handle(Input::LeaseAcquired {
            generation: 7,
            running_on: Some("e".into())
        }),
        vec![
            Effect::Arm(Timer::Adopt { generation: 7 }),
            Effect::CheckRunner { envoy: "e".into() }
        ]
    );
    assert_eq!(l.serving(), None);
    assert_eq!(
        l.handle(Input::RunnerConnected {
            envoy: "other".into()
        }),
        vec![]
    );
    assert_eq!(
        l.handle(Input::RunnersChanged),
        vec![Effect::CheckRunner { envoy: "e".into() }]
    );
    assert_eq!(
        l.handle(Input::RunnerConnected { envoy: "e".into() }),
        vec![Effect::Assign {
            envoy: "e".into(),
            generation: 7
        }]
    );
    assert_eq!(l.serving(), Some(("e", 7)));
    assert_eq!(
        l.handle(Input::Timeout(Timer::Adopt { generation: 7 })),
        vec![]
    );
}

#[test]
fn adoption_of_what_stopped_meanwhile_gives_the_lease_back() {
    let mut l = lc(Phase::Sleeping);
    l.handle(Input::Adopt);
    assert_eq!(l.handle(acquired(7)), vec![Effect::ReleaseLease]);
    assert_eq!(l.phase, Phase::Sleeping);
    assert_eq!(l.generation, 7);
}

#[test]
fn an_adopted_runner_that_never_returns_is_lost() {
    let mut l = lc(Phase::Adopting {
        generation: 3,
        envoy: "e".into(),
    });
    assert_eq!(
        l.handle(Input::Timeout(Timer::Adopt { generation: 3 })),
        vec![
            Effect::RecordErrorCode("envoy_connection_lost"),
            Effect::MarkSleeping
        ]
    );
}

#[test]
fn word_from_an_adopted_instance_registers_it() {
    let mut l = lc(Phase::Adopting {
        generation: 3,
        envoy: "e".into(),
    });
    assert_eq!(
        l.handle(Input::Intent {
            generation: 3,
            sleep: true
        }),
        vec![
            Effect::Assign {
                envoy: "e".into(),
                generation: 3
            },
            Effect::Stop {
                envoy: "e".into(),
                generation: 3,
                intent: StopIntent::Sleep
            }
        ]
    );
    assert_eq!(l.phase, stopping(StopIntent::Sleep));
}

#[test]
fn sleep_intent_then_stopped_sleeps() {
    let mut l = lc(running());
    assert_eq!(
        l.handle(Input::Intent {
            generation: 3,
            sleep: true
        }),
        vec![Effect::Stop {
            envoy: "e".into(),
            generation: 3,
            intent: StopIntent::Sleep
        }]
    );
    assert_eq!(l.handle(stopped(3)), vec![Effect::MarkSleeping]);
    assert_eq!(l.phase, Phase::Sleeping);
}

#[test]
fn wake_while_stopping_restarts_after_stop() {
    let mut l = lc(stopping(StopIntent::Sleep));
    assert_eq!(l.handle(Input::Wake), vec![]);
    assert_eq!(
        l.handle(stopped(3)),
        vec![Effect::MarkPending, Effect::Place]
    );
    assert_eq!(l.phase, pending());
}

#[test]
fn events_of_other_generations_are_ignored() {
    let mut l = lc(running());
    for input in [
        Input::Intent {
            generation: 2,
            sleep: true,
        },
        stopped(2),
        Input::Running { generation: 9 },
        Input::RunnerLost {
            envoy: "other".into(),
        },
    ] {
        assert_eq!(l.handle(input), vec![]);
        assert_eq!(l.phase, running());
    }
}

#[test]
fn clean_exit_without_intent_destroys() {
    let mut l = lc(running());
    assert_eq!(l.handle(stopped(3)), vec![Effect::MarkDestroyed]);
    assert_eq!(l.phase, Phase::Destroyed);
    assert_eq!(l.handle(Input::Wake), vec![]);
}

#[test]
fn crash_follows_policy() {
    for (policy, phase) in [
        (CrashPolicy::Sleep, Phase::Sleeping),
        (CrashPolicy::Restart, pending()),
        (CrashPolicy::Destroy, Phase::Destroyed),
    ] {
        let mut l = Lifecycle::new(running(), 3, policy);
        let effects = l.handle(Input::Stopped {
            generation: 3,
            error: Some("boom".into()),
        });
        assert_eq!(effects[0], Effect::RecordError("boom".into()));
        assert_eq!(l.phase, phase, "{policy:?}");
    }
}

#[test]
fn runner_lost_counts_as_crash() {
    let mut l = lc(running());
    let effects = l.handle(Input::RunnerLost { envoy: "e".into() });
    assert_eq!(
        effects,
        vec![
            Effect::RecordErrorCode("envoy_connection_lost"),
            Effect::MarkSleeping
        ]
    );
}

#[test]
fn destroy_from_every_phase() {
    let cases = [
        (
            Phase::Sleeping,
            Phase::Claiming {
                then: Claim::Destroy,
            },
        ),
        (pending(), Phase::Destroyed),
        (running(), stopping(StopIntent::Destroy)),
        (stopping(StopIntent::Sleep), stopping(StopIntent::Destroy)),
        (handing_over(Some("f")), stopping(StopIntent::Destroy)),
        (Phase::Destroyed, Phase::Destroyed),
    ];
    for (from, to) in cases {
        let mut l = lc(from.clone());
        l.handle(Input::DestroyRequested);
        assert_eq!(l.phase, to, "from {from:?}");
    }
    let mut l = lc(stopping(StopIntent::Destroy));
    assert_eq!(l.handle(stopped(3)), vec![Effect::MarkDestroyed]);
}

#[test]
fn stop_intent_clean_destroys_and_failed_sleeps() {
    let mut l = lc(stopping(StopIntent::Stop));
    l.handle(stopped(3));
    assert_eq!(l.phase, Phase::Destroyed);
    let mut l = lc(stopping(StopIntent::Stop));
    l.handle(Input::Stopped {
        generation: 3,
        error: Some("x".into()),
    });
    assert_eq!(l.phase, Phase::Sleeping);
}

#[test]
fn sleep_request_from_each_phase() {
    let mut l = lc(pending());
    assert_eq!(l.handle(Input::SleepRequested), vec![Effect::MarkSleeping]);
    let mut l = lc(Phase::Sleeping);
    assert_eq!(l.handle(Input::SleepRequested), vec![]);
    let mut l = lc(running());
    l.handle(Input::SleepRequested);
    assert_eq!(l.phase, stopping(StopIntent::Sleep));
}

#[test]
fn runner_going_away_hands_the_actor_over() {
    let mut l = lc(running());
    assert_eq!(
        l.handle(Input::RunnerStopping {
            envoy: "other".into()
        }),
        vec![]
    );
    assert_eq!(
        l.handle(Input::RunnerStopping { envoy: "e".into() }),
        vec![
            Effect::Stop {
                envoy: "e".into(),
                generation: 3,
                intent: StopIntent::GoingAway
            },
            Effect::Place
        ]
    );
    assert_eq!(l.phase, handing_over(None));
    assert_eq!(l.serving(), None, "traffic waits during a hand-over");
    assert_eq!(l.handle(Input::RunnerPicked { envoy: "f".into() }), vec![]);
    assert_eq!(l.phase, handing_over(Some("f")));
    // Only once the old instance has stopped (its last writes fenced at 3) does 4 start.
    assert_eq!(l.handle(Input::Running { generation: 3 }), vec![]);
    assert_eq!(
        l.handle(stopped(3)),
        vec![
            Effect::MarkPending,
            Effect::Start {
                envoy: "f".into(),
                generation: 4
            },
            Effect::Arm(Timer::Start { generation: 4 })
        ]
    );
    assert_eq!(
        l.phase,
        Phase::Starting {
            generation: 4,
            envoy: "f".into()
        }
    );
}

#[test]
fn a_hand_over_with_no_runner_left_sleeps() {
    let mut l = lc(handing_over(None));
    assert_eq!(l.handle(Input::NoRunner), vec![]);
    assert_eq!(
        l.handle(stopped(3)),
        vec![Effect::MarkPending, Effect::Place]
    );
    assert_eq!(l.phase, Phase::Pending { or_sleep: true });
    assert_eq!(
        l.handle(Input::NoRunner),
        vec![Effect::RecordErrorCode("no_envoys"), Effect::MarkSleeping]
    );
    assert_eq!(l.phase, Phase::Sleeping);
}

#[test]
fn a_hand_over_whose_target_leaves_looks_again() {
    let mut l = lc(handing_over(Some("f")));
    assert_eq!(l.handle(Input::RunnerLost { envoy: "f".into() }), vec![]);
    assert_eq!(l.phase, handing_over(None));
    // The old runner vanishing counts as its stop, with the error recorded.
    assert_eq!(
        l.handle(Input::RunnerLost { envoy: "e".into() }),
        vec![
            Effect::RecordErrorCode("envoy_connection_lost"),
            Effect::MarkPending,
            Effect::Place
        ]
    );
}

#[test]
fn runner_lost_while_stopping_completes_the_stop() {
    let mut l = lc(stopping(StopIntent::Sleep));
    assert_eq!(
        l.handle(Input::RunnerLost { envoy: "e".into() }),
        vec![
            Effect::RecordErrorCode("envoy_connection_lost"),
            Effect::MarkSleeping
        ]
    );
    let mut l = lc(stopping(StopIntent::Destroy));
    l.handle(Input::RunnerLost { envoy: "e".into() });
    assert_eq!(l.phase, Phase::Destroyed);
}

#[test]
fn lost_ownership_abandons_the_instance_without_writing() {
    let mut l = lc(running());
    assert_eq!(
        l.handle(Input::OwnershipLost),
        vec![Effect::Abandon {
            instance: Some(("e".into(), 3))
        }]
    );
    assert_eq!(l.phase, Phase::Sleeping);
    let mut l = lc(pending());
    assert_eq!(
        l.handle(Input::Fenced),
        vec![Effect::Abandon { instance: None }, Effect::Reload]
    );
    assert_eq!(l.handle(Input::Reloaded { generation: 9 }), vec![]);
    assert_eq!(l.generation, 9);
}

#[test]
fn an_invoked_actor_is_claimed_runs_and_moves_to_a_fresh_request_at_its_deadline() {
    let mut l = lc(pending());
    assert_eq!(
        l.handle(Input::Invoke),
        vec![
            Effect::Invoke { generation: 4 },
            Effect::Arm(Timer::Start { generation: 4 })
        ]
    );
    assert_eq!(l.phase, Phase::Invoking { generation: 4 });
    // Events of the generation before the claim change nothing; a claim of another
    // generation neither.
    assert_eq!(l.handle(Input::Running { generation: 4 }), vec![]);
    assert_eq!(
        l.handle(Input::Claimed {
            generation: 3,
            envoy: "e".into()
        }),
        vec![]
    );
    assert_eq!(
        l.handle(Input::Claimed {
            generation: 4,
            envoy: "e".into()
        }),
        vec![
            Effect::Attach { envoy: "e".into() },
            Effect::Arm(Timer::Deadline { generation: 4 }),
            Effect::Arm(Timer::Warm { generation: 4 })
        ]
    );
    assert_eq!(
        l.handle(Input::Running { generation: 4 }),
        vec![Effect::MarkRunning]
    );
    assert_eq!(l.serving(), Some(("e", 4)));
    // The request nears its end: the actor stops there and goes to a fresh request.
    assert_eq!(
        l.handle(Input::Timeout(Timer::Deadline { generation: 4 })),
        vec![
            Effect::Stop {
                envoy: "e".into(),
                generation: 4,
                intent: StopIntent::GoingAway
            },
            Effect::Place
        ]
    );
    assert_eq!(l.serving(), None);
    assert_eq!(
        l.handle(Input::Invoke),
        vec![],
        "no second copy before the stop"
    );
    assert_eq!(
        l.handle(stopped(4)),
        vec![Effect::MarkPending, Effect::Place]
    );
    assert_eq!(
        l.handle(Input::Invoke),
        vec![
            Effect::Invoke { generation: 5 },
            Effect::Arm(Timer::Start { generation: 5 })
        ]
    );
}

/// A claimed, running invoked actor (generation 4 on "e").
fn invoked_running() -> Lifecycle {
    let mut l = lc(pending());
    l.handle(Input::Invoke);
    l.handle(Input::Claimed {
        generation: 4,
        envoy: "e".into(),
    });
    l.handle(Input::Running { generation: 4 });
    l
}

#[test]
fn a_ready_standby_takes_the_actor_over_at_the_deadline_without_a_fresh_request() {
    let mut l = invoked_running();
    // Shortly before the deadline: a standby request is asked for, once.
    assert_eq!(
        l.handle(Input::Timeout(Timer::Warm { generation: 4 })),
        vec![Effect::Standby { generation: 4 }]
    );
    assert_eq!(
        l.handle(Input::Timeout(Timer::Warm { generation: 3 })),
        vec![]
    );
    assert_eq!(l.handle(Input::StandbyReady { envoy: "f".into() }), vec![]);
    assert_eq!(l.standby(), Some("f"));
    assert_eq!(l.serving(), Some(("e", 4)), "the old instance serves on");
    assert_eq!(
        l.handle(Input::Timeout(Timer::Warm { generation: 4 })),
        vec![],
        "a standby is already there"
    );
    // The deadline: the old instance stops, nothing is placed or invoked.
    assert_eq!(
        l.handle(Input::Timeout(Timer::Deadline { generation: 4 })),
        vec![Effect::Stop {
            envoy: "e".into(),
            generation: 4,
            intent: StopIntent::GoingAway
        }]
    );
    assert_eq!(l.serving(), None);
    assert_eq!(l.handle(Input::Invoke), vec![]);
    // Once it stopped, the next generation starts on the standby, with its own deadline.
    assert_eq!(
        l.handle(stopped(4)),
        vec![
            Effect::MarkPending,
            Effect::Start {
                envoy: "f".into(),
                generation: 5
            },
            Effect::Arm(Timer::Start { generation: 5 }),
            Effect::Arm(Timer::Deadline { generation: 5 }),
            Effect::Arm(Timer::Warm { generation: 5 }),
        ]
    );
    assert_eq!(
        l.handle(Input::Running { generation: 5 }),
        vec![Effect::MarkRunning]
    );
    assert_eq!(l.serving(), Some(("f", 5)));
    assert_eq!(l.standby(), None);
}

#[test]
fn a_standby_not_ready_or_gone_falls_back_to_a_fresh_request() {
    // Not connected by the deadline: the move is the plain one.
    let mut l = invoked_running();
    l.handle(Input::Timeout(Timer::Warm { generation: 4 }));
    assert_eq!(
        l.handle(Input::Timeout(Timer::Deadline { generation: 4 })),
        vec![
            Effect::Stop {
                envoy: "e".into(),
                generation: 4,
                intent: StopIntent::GoingAway
            },
            Effect::Place
        ]
    );
    // Connected, then gone before the deadline.
    let mut l = invoked_running();
    l.handle(Input::StandbyReady { envoy: "f".into() });
    l.handle(Input::RunnerLost { envoy: "f".into() });
    assert_eq!(l.standby(), None);
    assert_eq!(l.serving(), Some(("e", 4)));
    // Gone during the hand-over: once the old one stopped, a fresh request is placed, and
    // that start has no deadline of the standby's.
    let mut l = invoked_running();
    l.handle(Input::StandbyReady { envoy: "f".into() });
    l.handle(Input::Timeout(Timer::Deadline { generation: 4 }));
    assert_eq!(l.handle(Input::RunnerLost { envoy: "f".into() }), vec![]);
    assert_eq!(
        l.handle(stopped(4)),
        vec![Effect::MarkPending, Effect::Place]
    );
    assert_eq!(
        l.handle(Input::Invoke),
        vec![
            Effect::Invoke { generation: 5 },
            Effect::Arm(Timer::Start { generation: 5 })
        ]
    );
    // Asked to sleep while a standby waits: it is forgotten.
    let mut l = invoked_running();
    l.handle(Input::StandbyReady { envoy: "f".into() });
    l.handle(Input::SleepRequested);
    assert_eq!(l.standby(), None);
}

#[test]
fn an_invocation_that_fails_or_is_never_claimed_is_a_crash() {
    for policy in [
        CrashPolicy::Sleep,
        CrashPolicy::Restart,
        CrashPolicy::Destroy,
    ] {
        for input in [
            Input::Stopped {
                generation: 4,
                error: Some("serverless.unreachable: down".into()),
            },
            Input::Timeout(Timer::Start { generation: 4 }),
        ] {
            let mut l = Lifecycle::new(Phase::Invoking { generation: 4 }, 4, policy);
            let effects = l.handle(input.clone());
            assert_eq!(effects[0], Effect::CancelInvocation, "{input:?}");
            let want = match policy {
                CrashPolicy::Sleep => Phase::Sleeping,
                CrashPolicy::Restart => Phase::Pending { or_sleep: false },
                CrashPolicy::Destroy => Phase::Destroyed,
            };
            assert_eq!(l.phase, want, "{policy:?} {input:?}");
        }
    }
}

// === every (phase, input) pair ===

fn all_phases() -> Vec<Phase> {
    let mut phases = vec![
        Phase::Sleeping,
        Phase::Claiming { then: Claim::Wake },
        Phase::Claiming {
            then: Claim::Destroy,
        },
        Phase::Claiming { then: Claim::Adopt },
        Phase::Adopting {
            generation: 3,
            envoy: "e".into(),
        },
        Phase::Pending { or_sleep: false },
        Phase::Pending { or_sleep: true },
        Phase::Invoking { generation: 3 },
        Phase::Starting {
            generation: 3,
            envoy: "e".into(),
        },
        running(),
        handing_over(None),
        handing_over(Some("f")),
        Phase::Destroyed,
    ];
    for intent in [
        StopIntent::Sleep,
        StopIntent::Stop,
        StopIntent::Destroy,
        StopIntent::GoingAway,
    ] {
        phases.push(stopping(intent));
    }
    phases
}

/// Every input: for the current generation (3) and for stale (2) and future (4) ones; about
/// the actor's runner ("e"), the one it is handed to ("f") and an unrelated one ("other").
fn all_inputs() -> Vec<Input> {
    let mut inputs = vec![
        Input::Wake,
        Input::SleepRequested,
        Input::DestroyRequested,
        Input::Adopt,
        Input::LeaseAcquired {
            generation: 3,
            running_on: None,
        },
        Input::LeaseAcquired {
            generation: 3,
            running_on: Some("e".into()),
        },
        Input::LeaseRefused,
        Input::RecordGone,
        Input::Reloaded { generation: 3 },
        Input::Refresh,
        Input::OwnershipLost,
        Input::Fenced,
        Input::RunnersChanged,
        Input::NoRunner,
        Input::Invoke,
        Input::Timeout(Timer::Place),
    ];
    for envoy in ["e", "f", "other"] {
        inputs.push(Input::RunnerLost {
            envoy: envoy.into(),
        });
        inputs.push(Input::RunnerStopping {
            envoy: envoy.into(),
        });
        inputs.push(Input::RunnerConnected {
            envoy: envoy.into(),
        });
    }
    inputs.push(Input::RunnerPicked { envoy: "e".into() });
    inputs.push(Input::RunnerPicked { envoy: "f".into() });
    inputs.push(Input::StandbyReady { envoy: "f".into() });
    for generation in [2, 3, 4] {
        inputs.push(Input::Intent {
            generation,
            sleep: true,
        });
        inputs.push(Input::Intent {
            generation,
            sleep: false,
        });
        inputs.push(Input::Running { generation });
        inputs.push(stopped(generation));
        inputs.push(Input::Stopped {
            generation,
            error: Some("boom".into()),
        });
        inputs.push(Input::Timeout(Timer::Start { generation }));
        inputs.push(Input::Timeout(Timer::Adopt { generation }));
        inputs.push(Input::Timeout(Timer::Deadline { generation }));
        inputs.push(Input::Timeout(Timer::Warm { generation }));
        for envoy in ["e", "f"] {
            inputs.push(Input::Claimed {
                generation,
                envoy: envoy.into(),
            });
        }
    }
    inputs
}

/// The generation a runner event or timer belongs to.
fn generation_of(input: &Input) -> Option<u32> {
    match input {
        Input::Intent { generation, .. }
        | Input::Running { generation }
        | Input::Stopped { generation, .. }
        | Input::Claimed { generation, .. }
        | Input::Timeout(
            Timer::Start { generation }
            | Timer::Adopt { generation }
            | Timer::Deadline { generation }
            | Timer::Warm { generation },
        ) => Some(*generation),
        _ => None,
    }
}

/// The runner a piece of news is about.
fn runner_of(input: &Input) -> Option<&str> {
    match input {
        Input::RunnerLost { envoy }
        | Input::RunnerStopping { envoy }
        | Input::RunnerConnected { envoy } => Some(envoy),
        _ => None,
    }
}

/// Why an instance the node ran may be forgotten.
fn ends_instance(input: &Input, envoy: &str, generation: u32, effects: &[Effect]) -> bool {
    let told = match input {
        Input::Stopped { generation: g, .. } => *g == generation,
        Input::RunnerLost { envoy: e } => e == envoy,
        Input::Timeout(Timer::Start { generation: g } | Timer::Adopt { generation: g }) => {
            *g == generation
        }
        _ => false,
    };
    told || effects.iter().any(|e| {
        *e == Effect::Abandon {
            instance: Some((envoy.to_string(), generation)),
        }
    })
}

/// The rules every transition keeps, checked on every phase x input under each crash policy:
/// - destroyed is final;
/// - a runner event or timer of another generation, or news about an unrelated runner,
///   changes nothing;
/// - only a placement (or a finished hand-over) starts, at the next generation, and arms its
///   start timer; only a start or a store read moves the generation;
/// - a stop goes only to the instance the phase runs, and an instance is never forgotten:
///   it reported stopped, was lost, timed out or was abandoned (told to stop);
/// - the lease is taken only by `LeaseAcquired` and never dropped silently;
/// - traffic is served only by a running instance.
#[test]
fn every_phase_and_input_keeps_the_rules() {
    let mut pairs = 0;
    let (phases, inputs) = (all_phases(), all_inputs());
    for policy in [
        CrashPolicy::Sleep,
        CrashPolicy::Restart,
        CrashPolicy::Destroy,
    ] {
        for phase in &phases {
            for input in &inputs {
                pairs += 1;
                let mut l = Lifecycle::new(phase.clone(), 3, policy);
                let before = l.clone();
                let effects = l.handle(input.clone());
                let case = format!(
                    "{phase:?} + {input:?} ({policy:?}) -> {:?} {effects:?}",
                    l.phase
                );
                check(&before, input, &l, &effects, &case);
            }
        }
    }
    assert_eq!(pairs, 3 * all_phases().len() * all_inputs().len());
}

fn check(before: &Lifecycle, input: &Input, l: &Lifecycle, effects: &[Effect], case: &str) {
    let phase = &before.phase;
    if *phase == Phase::Destroyed {
        assert_eq!(l.phase, Phase::Destroyed, "{case}");
        assert!(effects.is_empty(), "{case}");
        return;
    }
    if generation_of(input).is_some_and(|g| g != 3) {
        assert_eq!(l.phase, *phase, "stale or future generation: {case}");
        assert!(effects.is_empty(), "{case}");
    }
    if runner_of(input) == Some("other") {
        assert_eq!(l.phase, *phase, "an unrelated runner's news: {case}");
        assert!(effects.is_empty(), "{case}");
    }
    let started = effects
        .iter()
        .any(|e| matches!(e, Effect::Start { .. } | Effect::Invoke { .. }));
    for effect in effects {
        match effect {
            Effect::Start { generation, envoy } => {
                assert!(
                    matches!(phase, Phase::Pending { .. } | Phase::HandingOver { .. }),
                    "start only from pending or a hand-over: {case}"
                );
                assert_eq!(*generation, before.generation + 1, "{case}");
                assert_eq!(
                    l.phase,
                    Phase::Starting {
                        generation: *generation,
                        envoy: envoy.clone()
                    },
                    "{case}"
                );
                assert!(
                    effects.contains(&Effect::Arm(Timer::Start {
                        generation: *generation
                    })),
                    "a start arms its timer: {case}"
                );
            }
            Effect::Invoke { generation } => {
                assert!(
                    matches!(phase, Phase::Pending { .. }),
                    "a request is started only from pending: {case}"
                );
                assert_eq!(*generation, before.generation + 1, "{case}");
                assert_eq!(
                    l.phase,
                    Phase::Invoking {
                        generation: *generation
                    },
                    "{case}"
                );
                assert!(
                    effects.contains(&Effect::Arm(Timer::Start {
                        generation: *generation
                    })),
                    "a request arms the start timer: {case}"
                );
            }
            Effect::Attach { envoy } => {
                let Phase::Invoking { generation } = phase else {
                    panic!("only an invoked start is claimed: {case}");
                };
                assert_eq!(
                    l.phase,
                    Phase::Starting {
                        generation: *generation,
                        envoy: envoy.clone()
                    },
                    "{case}"
                );
            }
            Effect::CancelInvocation => assert!(
                matches!(phase, Phase::Invoking { .. }),
                "only an unclaimed request is cancelled: {case}"
            ),
            Effect::Standby { generation } => {
                assert!(
                    matches!(phase, Phase::Running { generation: g, .. } | Phase::Starting { generation: g, .. } if g == generation),
                    "a standby only for the instance that runs: {case}"
                );
                assert_eq!(
                    l.phase, *phase,
                    "asking for a standby moves nothing: {case}"
                );
            }
            Effect::Stop {
                generation, envoy, ..
            } => {
                let runs = match phase {
                    Phase::Adopting { generation, envoy }
                    | Phase::Starting { generation, envoy }
                    | Phase::Running { generation, envoy } => (envoy.as_str(), *generation),
                    _ => panic!("stop from a phase with no live instance: {case}"),
                };
                assert_eq!((envoy.as_str(), *generation), runs, "{case}");
            }
            Effect::Abandon { instance } => {
                assert_eq!(
                    instance.as_ref().map(|(e, g)| (e.as_str(), *g)),
                    before.instance(),
                    "{case}"
                );
                assert_eq!(l.phase, Phase::Sleeping, "{case}");
            }
            Effect::ClaimLease | Effect::ClaimAdoption => {
                assert_eq!(*phase, Phase::Sleeping, "{case}");
                assert!(matches!(l.phase, Phase::Claiming { .. }), "{case}");
            }
            Effect::MarkDestroyed => assert_eq!(l.phase, Phase::Destroyed, "{case}"),
            Effect::MarkRunning => assert!(matches!(l.phase, Phase::Running { .. }), "{case}"),
            Effect::MarkSleeping | Effect::ReleaseLease => {
                assert_eq!(l.phase, Phase::Sleeping, "{case}")
            }
            Effect::MarkPending => assert!(
                matches!(l.phase, Phase::Pending { .. } | Phase::Starting { .. }),
                "{case}"
            ),
            Effect::Assign { envoy, generation } => {
                assert!(matches!(phase, Phase::Adopting { .. }), "{case}");
                assert_eq!(
                    before.instance(),
                    Some((envoy.as_str(), *generation)),
                    "{case}"
                )
            }
            Effect::Arm(_)
            | Effect::CheckRunner { .. }
            | Effect::Reload
            | Effect::Place
            | Effect::RecordError(_)
            | Effect::RecordErrorCode(_) => {}
        }
    }
    // Instances.
    if let Some((envoy, generation)) = before.instance() {
        if l.instance() != Some((envoy, generation)) {
            assert!(
                ends_instance(input, envoy, generation, effects),
                "an instance was forgotten while it may still run: {case}"
            );
        }
    }
    // The lease.
    if !before.holds_lease() && l.holds_lease() {
        assert!(
            matches!(input, Input::LeaseAcquired { .. }),
            "lease taken without a claim: {case}"
        );
    }
    if before.holds_lease() && !l.holds_lease() && l.phase != Phase::Destroyed {
        assert!(
            effects.iter().any(|e| matches!(
                e,
                Effect::MarkSleeping | Effect::ReleaseLease | Effect::Abandon { .. }
            )),
            "lease dropped silently: {case}"
        );
    }
    if before.holds_lease() && l.phase == Phase::Destroyed {
        assert!(effects.contains(&Effect::MarkDestroyed), "{case}");
    }
    // Generations.
    let read = matches!(input, Input::LeaseAcquired { .. } | Input::Reloaded { .. });
    if !started && !read {
        assert_eq!(
            l.generation, before.generation,
            "only a start or a store read moves the generation: {case}"
        );
    }
    // Serving.
    assert_eq!(
        l.serving().is_some(),
        matches!(l.phase, Phase::Running { .. }),
        "{case}"
    );
}
