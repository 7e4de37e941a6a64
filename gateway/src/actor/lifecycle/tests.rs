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

#[test]
fn wake_place_start_run() {
    let mut l = lc(Phase::Sleeping);
    assert_eq!(
        l.handle(Input::Wake),
        vec![Effect::MarkPending, Effect::Place]
    );
    assert_eq!(l.phase, Phase::Pending);
    assert_eq!(
        l.handle(Input::RunnerPicked { envoy: "e".into() }),
        vec![Effect::Start {
            envoy: "e".into(),
            generation: 4
        }]
    );
    assert_eq!(l.handle(Input::Running { generation: 3 }), vec![]);
    assert_eq!(
        l.handle(Input::Running { generation: 4 }),
        vec![Effect::MarkRunning]
    );
    assert_eq!(l.serving(), Some(("e", 4)));
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
    assert_eq!(
        l.handle(Input::Stopped {
            generation: 3,
            error: None
        }),
        vec![Effect::MarkSleeping]
    );
    assert_eq!(l.phase, Phase::Sleeping);
}

#[test]
fn wake_while_stopping_restarts_after_stop() {
    let mut l = lc(stopping(StopIntent::Sleep));
    assert_eq!(l.handle(Input::Wake), vec![]);
    assert_eq!(
        l.handle(Input::Stopped {
            generation: 3,
            error: None
        }),
        vec![Effect::MarkPending, Effect::Place]
    );
}

#[test]
fn events_of_other_generations_are_ignored() {
    let mut l = lc(running());
    for input in [
        Input::Intent {
            generation: 2,
            sleep: true,
        },
        Input::Stopped {
            generation: 2,
            error: None,
        },
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
    assert_eq!(
        l.handle(Input::Stopped {
            generation: 3,
            error: None
        }),
        vec![Effect::MarkDestroyed]
    );
    assert_eq!(l.phase, Phase::Destroyed);
    assert_eq!(l.handle(Input::Wake), vec![]);
}

#[test]
fn crash_follows_policy() {
    for (policy, phase) in [
        (CrashPolicy::Sleep, Phase::Sleeping),
        (CrashPolicy::Restart, Phase::Pending),
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
        (Phase::Sleeping, Phase::Destroyed),
        (Phase::Pending, Phase::Destroyed),
        (running(), stopping(StopIntent::Destroy)),
        (stopping(StopIntent::Sleep), stopping(StopIntent::Destroy)),
        (Phase::Destroyed, Phase::Destroyed),
    ];
    for (from, to) in cases {
        let mut l = lc(from.clone());
        l.handle(Input::DestroyRequested);
        assert_eq!(l.phase, to, "from {from:?}");
    }
    let mut l = lc(stopping(StopIntent::Destroy));
    assert_eq!(
        l.handle(Input::Stopped {
            generation: 3,
            error: None
        }),
        vec![Effect::MarkDestroyed]
    );
}

#[test]
fn stop_intent_clean_destroys_and_failed_sleeps() {
    let mut l = lc(stopping(StopIntent::Stop));
    l.handle(Input::Stopped {
        generation: 3,
        error: None,
    });
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
    let mut l = lc(Phase::Pending);
    assert_eq!(l.handle(Input::SleepRequested), vec![Effect::MarkSleeping]);
    let mut l = lc(Phase::Sleeping);
    assert_eq!(l.handle(Input::SleepRequested), vec![]);
    let mut l = lc(running());
    l.handle(Input::SleepRequested);
    assert_eq!(l.phase, stopping(StopIntent::Sleep));
}

#[test]
fn runner_going_away_moves_the_actor_or_sleeps_it() {
    let mut l = lc(running());
    assert_eq!(
        l.handle(Input::RunnerStopping {
            envoy: "other".into()
        }),
        vec![]
    );
    assert_eq!(
        l.handle(Input::RunnerStopping { envoy: "e".into() }),
        vec![Effect::Stop {
            envoy: "e".into(),
            generation: 3,
            intent: StopIntent::GoingAway
        }]
    );
    assert_eq!(
        l.handle(Input::Stopped {
            generation: 3,
            error: None
        }),
        vec![Effect::MarkPending, Effect::PlaceOrSleep]
    );
    // Another runner: it starts there at the next generation.
    let mut moved = l.clone();
    assert_eq!(
        moved.handle(Input::RunnerPicked { envoy: "f".into() }),
        vec![Effect::Start {
            envoy: "f".into(),
            generation: 4
        }]
    );
    // No runner: it sleeps with the engine's error code, and wakes on the next request.
    assert_eq!(
        l.handle(Input::NoRunner),
        vec![Effect::RecordErrorCode("no_envoys"), Effect::MarkSleeping]
    );
    assert_eq!(l.phase, Phase::Sleeping);
    assert_eq!(l.handle(Input::NoRunner), vec![]);
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

// === every (phase, input) pair ===

fn all_phases() -> Vec<Phase> {
    let mut phases = vec![
        Phase::Sleeping,
        Phase::Pending,
        Phase::Starting {
            generation: 3,
            envoy: "e".into(),
        },
        running(),
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

/// Every input, for the current generation (3) and for stale (2) and future (4) ones, and
/// for the actor's runner ("e") and another one ("other").
fn all_inputs() -> Vec<Input> {
    let mut inputs = vec![
        Input::Wake,
        Input::SleepRequested,
        Input::DestroyRequested,
        Input::RunnerPicked { envoy: "e".into() },
        Input::NoRunner,
    ];
    for envoy in ["e", "other"] {
        inputs.push(Input::RunnerLost {
            envoy: envoy.into(),
        });
        inputs.push(Input::RunnerStopping {
            envoy: envoy.into(),
        });
    }
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
        inputs.push(Input::Stopped {
            generation,
            error: None,
        });
        inputs.push(Input::Stopped {
            generation,
            error: Some("boom".into()),
        });
    }
    inputs
}

fn generation_of(input: &Input) -> Option<u32> {
    match input {
        Input::Intent { generation, .. }
        | Input::Running { generation }
        | Input::Stopped { generation, .. } => Some(*generation),
        Input::Wake
        | Input::SleepRequested
        | Input::DestroyRequested
        | Input::RunnerPicked { .. }
        | Input::RunnerLost { .. }
        | Input::RunnerStopping { .. }
        | Input::NoRunner => None,
    }
}

fn runner_of(input: &Input) -> Option<&str> {
    match input {
        Input::RunnerLost { envoy } | Input::RunnerStopping { envoy } => Some(envoy),
        Input::Wake
        | Input::SleepRequested
        | Input::DestroyRequested
        | Input::RunnerPicked { .. }
        | Input::NoRunner
        | Input::Intent { .. }
        | Input::Running { .. }
        | Input::Stopped { .. } => None,
    }
}

/// The rules every transition keeps, checked on all 9 phases x 24 inputs under each crash
/// policy: a message of another generation or about another runner changes nothing; destroyed
/// is final; only a placement starts, at the next generation; only a phase with an instance
/// sends a stop, to that instance; and traffic is served only by a running instance.
#[test]
fn every_phase_and_input_keeps_the_rules() {
    let mut pairs = 0;
    for policy in [
        CrashPolicy::Sleep,
        CrashPolicy::Restart,
        CrashPolicy::Destroy,
    ] {
        for phase in all_phases() {
            for input in all_inputs() {
                pairs += 1;
                let mut l = Lifecycle::new(phase.clone(), 3, policy);
                let before_generation = l.generation;
                let effects = l.handle(input.clone());
                let case = format!(
                    "{phase:?} + {input:?} ({policy:?}) -> {:?} {effects:?}",
                    l.phase
                );

                if phase == Phase::Destroyed {
                    assert_eq!(l.phase, Phase::Destroyed, "{case}");
                    assert!(effects.is_empty(), "{case}");
                    continue;
                }
                if generation_of(&input).is_some_and(|g| g != 3) {
                    assert_eq!(l.phase, phase, "stale or future generation: {case}");
                    assert!(effects.is_empty(), "{case}");
                }
                if runner_of(&input) == Some("other") {
                    assert_eq!(l.phase, phase, "another runner's news: {case}");
                    assert!(effects.is_empty(), "{case}");
                }
                for effect in &effects {
                    match effect {
                        Effect::Start { generation, envoy } => {
                            assert_eq!(phase, Phase::Pending, "start only from pending: {case}");
                            assert_eq!(*generation, before_generation + 1, "{case}");
                            assert_eq!(
                                l.phase,
                                Phase::Starting {
                                    generation: *generation,
                                    envoy: envoy.clone()
                                },
                                "{case}"
                            );
                        }
                        Effect::Stop {
                            generation, envoy, ..
                        } => {
                            let (g, e) = match &phase {
                                Phase::Starting { generation, envoy }
                                | Phase::Running { generation, envoy } => (generation, envoy),
                                Phase::Sleeping
                                | Phase::Pending
                                | Phase::Stopping { .. }
                                | Phase::Destroyed => {
                                    panic!("stop from a phase with no instance to stop: {case}")
                                }
                            };
                            assert_eq!((generation, envoy), (g, e), "{case}");
                        }
                        Effect::MarkDestroyed => {
                            assert_eq!(l.phase, Phase::Destroyed, "{case}")
                        }
                        Effect::MarkRunning => {
                            assert!(matches!(l.phase, Phase::Running { .. }), "{case}")
                        }
                        Effect::MarkSleeping => {
                            assert_eq!(l.phase, Phase::Sleeping, "{case}")
                        }
                        Effect::MarkPending => {
                            assert!(
                                matches!(l.phase, Phase::Pending | Phase::Starting { .. }),
                                "{case}"
                            )
                        }
                        Effect::Place
                        | Effect::PlaceOrSleep
                        | Effect::RecordError(_)
                        | Effect::RecordErrorCode(_) => {}
                    }
                }
                let serving = l.serving().is_some();
                assert_eq!(serving, matches!(l.phase, Phase::Running { .. }), "{case}");
                if !effects.iter().any(|e| matches!(e, Effect::Start { .. })) {
                    assert_eq!(
                        l.generation, before_generation,
                        "only a start moves the generation: {case}"
                    );
                }
            }
        }
    }
    assert_eq!(pairs, 3 * 9 * 24);
}
