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
