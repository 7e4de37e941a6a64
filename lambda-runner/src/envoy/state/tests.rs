//! Delivery rules of the envoy's memory, without sockets.
#![allow(clippy::unwrap_used)]

use rivulet_wire::envoy::{
    ActorCheckpoint, ActorConfig, ActorState, ActorStateStopped, Command, CommandStartActor,
    CommandStopActor, CommandWrapper, Event, EventActorSetAlarm, EventActorStateUpdate,
    KvErrorResponse, KvGetRequest, KvRequestData, KvResponseData, MessageId, StopActorReason,
    StopCode, ToRivet, ToRivetTunnelMessage, ToRivetTunnelMessageKind, ToRivetWebSocketMessageAck,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::*;

fn state() -> State {
    State::new(Limits {
        in_flight_kv: 4,
        queued_tunnel: 2,
    })
}

fn connect(s: &mut State, id: u64) -> (Vec<ToRivet>, CancellationToken) {
    let cancel = CancellationToken::new();
    let frames = s.on_connected(LiveConn {
        id,
        cancel: cancel.clone(),
    });
    (frames, cancel)
}

fn cp(actor: &str, generation: u32, index: i64) -> ActorCheckpoint {
    ActorCheckpoint {
        actor_id: actor.to_string().into(),
        generation,
        index,
    }
}

fn start(actor: &str, generation: u32, index: i64) -> CommandWrapper {
    CommandWrapper {
        checkpoint: cp(actor, generation, index),
        inner: Command::CommandStartActor(CommandStartActor {
            config: ActorConfig {
                name: "counter".into(),
                key: Some("k".into()),
                create_ts: 1,
                input: None,
            },
            hibernating_requests: vec![],
            preloaded_kv: None,
        }),
    }
}

fn stop(actor: &str, generation: u32, index: i64, reason: StopActorReason) -> CommandWrapper {
    CommandWrapper {
        checkpoint: cp(actor, generation, index),
        inner: Command::CommandStopActor(CommandStopActor { reason }),
    }
}

fn running() -> Event {
    Event::EventActorStateUpdate(EventActorStateUpdate {
        state: ActorState::ActorStateRunning,
    })
}

fn stopped() -> Event {
    Event::EventActorStateUpdate(EventActorStateUpdate {
        state: ActorState::ActorStateStopped(ActorStateStopped {
            code: StopCode::Ok,
            message: None,
        }),
    })
}

fn alarm(ts: i64) -> Event {
    Event::EventActorSetAlarm(EventActorSetAlarm { alarm_ts: Some(ts) })
}

fn tunnel(index: u16) -> ToRivetTunnelMessage {
    ToRivetTunnelMessage {
        message_id: MessageId {
            gateway_id: [1; 4],
            request_id: [2; 4],
            message_index: index,
        },
        message_kind: ToRivetTunnelMessageKind::ToRivetWebSocketMessageAck(
            ToRivetWebSocketMessageAck { index },
        ),
    }
}

fn drain(s: &mut State) -> Vec<ToRivet> {
    let frames = s.take_batch(1000);
    s.batch_written();
    frames
}

fn event_indices(frames: &[ToRivet]) -> Vec<(String, u32, i64)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ToRivet::ToRivetEvents(events) => Some(events),
            _ => None,
        })
        .flatten()
        .map(|e| {
            (
                e.checkpoint.actor_id.to_string(),
                e.checkpoint.generation,
                e.checkpoint.index,
            )
        })
        .collect()
}

/// Starts `actor` at `generation` on a connected state and drains the ack.
fn started(s: &mut State, actor: &str, generation: u32) -> NewLane {
    let mut lanes = s.on_commands(vec![start(actor, generation, 1)]);
    drain(s);
    lanes.pop().unwrap()
}

#[test]
fn start_opens_a_lane_and_is_acknowledged() {
    let mut s = state();
    connect(&mut s, 1);
    let mut lanes = s.on_commands(vec![start("a", 1, 1)]);
    assert_eq!(lanes.len(), 1);
    let mut lane = lanes.pop().unwrap();
    match lane.rx.try_recv().unwrap() {
        LaneCmd::Start(st) => {
            assert_eq!((st.actor_id.as_str(), st.generation), ("a", 1));
            assert_eq!(st.config.name, "counter");
            assert_eq!(st.config.key.as_deref(), Some("k"));
        }
        LaneCmd::Stop(_) => panic!("expected start"),
    }
    match drain(&mut s).as_slice() {
        [ToRivet::ToRivetAckCommands(ack)] => {
            assert_eq!(ack.last_command_checkpoints, vec![cp("a", 1, 1)])
        }
        other => panic!("expected one ack, got {other:?}"),
    }
    assert!(s.is_live("a", Some(1)));
    assert!(s.is_live("a", None));
    assert_eq!(s.live_count(), 1);
}

#[test]
fn replayed_commands_are_acknowledged_but_not_run_again() {
    let mut s = state();
    connect(&mut s, 1);
    let mut lane = started(&mut s, "a", 1);
    lane.rx.try_recv().unwrap();
    let lanes = s.on_commands(vec![stop("a", 1, 2, StopActorReason::SleepIntent)]);
    assert!(lanes.is_empty());
    assert!(matches!(
        lane.rx.try_recv().unwrap(),
        LaneCmd::Stop(StopActorReason::SleepIntent)
    ));
    drain(&mut s);
    // After a reconnect the gateway replays both: nothing runs, both are acknowledged.
    let lanes = s.on_commands(vec![
        start("a", 1, 1),
        stop("a", 1, 2, StopActorReason::SleepIntent),
    ]);
    assert!(lanes.is_empty());
    assert!(lane.rx.try_recv().is_err());
    match drain(&mut s).as_slice() {
        [ToRivet::ToRivetAckCommands(ack)] => {
            assert_eq!(ack.last_command_checkpoints, vec![cp("a", 1, 2)])
        }
        other => panic!("expected one ack, got {other:?}"),
    }
}

#[test]
fn a_second_stop_of_a_generation_is_not_delivered() {
    let mut s = state();
    connect(&mut s, 1);
    let mut lane = started(&mut s, "a", 1);
    lane.rx.try_recv().unwrap();
    s.on_commands(vec![stop("a", 1, 2, StopActorReason::SleepIntent)]);
    s.on_commands(vec![stop("a", 1, 3, StopActorReason::Destroy)]);
    assert!(matches!(lane.rx.try_recv().unwrap(), LaneCmd::Stop(_)));
    assert!(lane.rx.try_recv().is_err());
}

/// A process restarted under its old key gets stops for generations it never ran: it says
/// they are stopped (once), so the gateway does not wait on them.
#[test]
fn a_stop_for_a_generation_not_running_here_is_answered_stopped() {
    let mut s = state();
    connect(&mut s, 1);
    drain(&mut s);
    assert!(s
        .on_commands(vec![stop("gone", 4, 9, StopActorReason::SleepIntent)])
        .is_empty());
    let frames = drain(&mut s);
    assert_eq!(event_indices(&frames), vec![("gone".to_string(), 4, 0)]);
    let stops = frames
        .iter()
        .filter_map(|f| match f {
            ToRivet::ToRivetEvents(events) => Some(events),
            _ => None,
        })
        .flatten()
        .filter(|e| e.inner == stopped())
        .count();
    assert_eq!(stops, 1);
    assert!(!s.is_live("gone", Some(4)));
    // The same stop replayed after a reconnect is acknowledged, not answered again.
    s.on_commands(vec![stop("gone", 4, 9, StopActorReason::SleepIntent)]);
    assert!(event_indices(&drain(&mut s)).is_empty());
}

#[test]
fn a_start_of_an_older_generation_is_ignored() {
    let mut s = state();
    connect(&mut s, 1);
    started(&mut s, "a", 3);
    assert!(s.on_commands(vec![start("a", 2, 1)]).is_empty());
    assert!(!s.is_live("a", Some(2)));
}

#[test]
fn events_are_numbered_per_generation_from_zero() {
    let mut s = state();
    connect(&mut s, 1);
    started(&mut s, "a", 1);
    started(&mut s, "b", 4);
    s.record_event("a", 1, running()).unwrap();
    s.record_event("b", 4, running()).unwrap();
    s.record_event("a", 1, alarm(5)).unwrap();
    let frames = drain(&mut s);
    // Consecutive events share one frame.
    assert_eq!(frames.len(), 1);
    assert_eq!(
        event_indices(&frames),
        vec![("a".into(), 1, 0), ("b".into(), 4, 0), ("a".into(), 1, 1)]
    );
    let err = s.record_event("a", 2, running()).unwrap_err();
    assert_eq!(
        err,
        EnvoyError::ActorNotRunning {
            actor_id: "a".into(),
            generation: 2
        }
    );
}

#[test]
fn unacknowledged_events_are_replayed_on_each_connection() {
    let mut s = state();
    connect(&mut s, 1);
    started(&mut s, "b", 1);
    started(&mut s, "a", 1);
    for _ in 0..3 {
        s.record_event("a", 1, running()).unwrap();
    }
    s.record_event("b", 1, running()).unwrap();
    s.on_ack_events(&[cp("a", 1, 1)]);
    s.on_disconnected(1);
    // While disconnected, events only go to the history.
    s.record_event("b", 1, alarm(9)).unwrap();
    assert!(s.take_batch(10).is_empty());
    let (frames, _) = connect(&mut s, 2);
    assert_eq!(
        event_indices(&frames),
        vec![("a".into(), 1, 2), ("b".into(), 1, 0), ("b".into(), 1, 1)]
    );
    // Nothing from before the reconnect is sent twice.
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_stopped_generation_ends_but_its_history_is_kept() {
    let mut s = state();
    connect(&mut s, 1);
    let mut lane = started(&mut s, "a", 1);
    s.record_event("a", 1, running()).unwrap();
    s.record_event("a", 1, stopped()).unwrap();
    assert!(!s.is_live("a", Some(1)));
    assert_eq!(s.live_count(), 0);
    // The lane sees its sender gone once drained.
    assert!(matches!(lane.rx.try_recv().unwrap(), LaneCmd::Start(_)));
    assert!(matches!(
        lane.rx.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
    assert!(s.record_event("a", 1, alarm(1)).is_err());
    s.on_disconnected(1);
    let (frames, _) = connect(&mut s, 2);
    assert_eq!(
        event_indices(&frames),
        vec![("a".into(), 1, 0), ("a".into(), 1, 1)]
    );
}

#[test]
fn retained_stopped_generations_are_bounded() {
    let mut s = state();
    for generation in 1..=(RETIRED_GENERATIONS as u32 + 10) {
        s.on_commands(vec![start("a", generation, 1)]);
        s.record_event("a", generation, stopped()).unwrap();
    }
    let (frames, _) = connect(&mut s, 1);
    let replayed = event_indices(&frames);
    assert_eq!(replayed.len(), RETIRED_GENERATIONS);
    assert_eq!(replayed[0].1, 11, "the oldest generations go first");
}

#[test]
fn history_per_generation_is_bounded() {
    let mut s = state();
    s.on_commands(vec![start("a", 1, 1)]);
    for i in 0..(HISTORY_PER_GENERATION as i64 + 5) {
        s.record_event("a", 1, alarm(i)).unwrap();
    }
    let (frames, _) = connect(&mut s, 1);
    let replayed = event_indices(&frames);
    assert_eq!(replayed.len(), HISTORY_PER_GENERATION);
    assert_eq!(replayed[0].2, 5);
    assert!(frames.len() >= HISTORY_PER_GENERATION / REPLAY_CHUNK);
}

#[test]
fn kv_requests_wait_for_a_connection_and_are_resent_after_a_reconnect() {
    let mut s = state();
    let (tx, mut rx) = oneshot::channel();
    let id = s
        .kv_insert("a", None, KvRequestData::KvDropRequest, tx)
        .unwrap();
    assert!(s.take_batch(10).is_empty(), "not sent while disconnected");
    let (frames, _) = connect(&mut s, 1);
    assert!(matches!(frames.as_slice(), [ToRivet::ToRivetKvRequest(r)] if r.request_id == id));
    s.on_disconnected(1);
    let (frames, _) = connect(&mut s, 2);
    assert!(matches!(frames.as_slice(), [ToRivet::ToRivetKvRequest(r)] if r.request_id == id));
    assert!(s.kv_complete(id, KvResponseData::KvDropResponse));
    assert_eq!(rx.try_recv().unwrap(), Ok(KvResponseData::KvDropResponse));
    assert!(!s.kv_complete(id, KvResponseData::KvDropResponse));
}

#[test]
fn kv_requests_are_resent_in_the_order_they_were_made() {
    let mut s = state();
    let mut ids = Vec::new();
    let mut replies = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = oneshot::channel();
        replies.push(rx);
        ids.push(
            s.kv_insert("a", None, KvRequestData::KvDropRequest, tx)
                .unwrap(),
        );
    }
    let (frames, _) = connect(&mut s, 1);
    let sent: Vec<u32> = frames
        .iter()
        .map(|f| match f {
            ToRivet::ToRivetKvRequest(r) => r.request_id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sent, ids);
}

#[test]
fn kv_is_fenced_by_generation() {
    let mut s = state();
    connect(&mut s, 1);
    let (tx, _rx) = oneshot::channel();
    let err = s
        .kv_insert("a", Some(1), KvRequestData::KvDropRequest, tx)
        .unwrap_err();
    assert!(matches!(err, EnvoyError::ActorNotRunning { .. }));
    started(&mut s, "a", 1);
    let (tx, mut rx) = oneshot::channel();
    s.kv_insert("a", Some(1), KvRequestData::KvDropRequest, tx)
        .unwrap();
    // The generation stops before the request leaves: it must not reach storage.
    s.record_event("a", 1, stopped()).unwrap();
    let frames = drain(&mut s);
    assert!(frames
        .iter()
        .all(|f| !matches!(f, ToRivet::ToRivetKvRequest(_))));
    assert!(matches!(
        rx.try_recv().unwrap(),
        Err(EnvoyError::ActorNotRunning { generation: 1, .. })
    ));
}

#[test]
fn kv_errors_and_bounds() {
    let mut s = state();
    connect(&mut s, 1);
    let (tx, mut rx) = oneshot::channel();
    let id = s
        .kv_insert(
            "a",
            None,
            KvRequestData::KvGetRequest(KvGetRequest { keys: vec![] }),
            tx,
        )
        .unwrap();
    s.kv_complete(
        id,
        KvResponseData::KvErrorResponse(KvErrorResponse {
            message: "nope".into(),
        }),
    );
    assert_eq!(rx.try_recv().unwrap(), Err(EnvoyError::Kv("nope".into())));
    let mut keep = Vec::new();
    for _ in 0..4 {
        let (tx, rx) = oneshot::channel();
        keep.push(rx);
        s.kv_insert("a", None, KvRequestData::KvDropRequest, tx)
            .unwrap();
    }
    let (tx, _rx) = oneshot::channel();
    assert!(matches!(
        s.kv_insert("a", None, KvRequestData::KvDropRequest, tx),
        Err(EnvoyError::Overloaded(_))
    ));
    assert_eq!(s.kv_in_flight(), 4);
}

#[test]
fn tunnel_messages_survive_a_reconnect_and_are_bounded() {
    let mut s = state();
    s.push_tunnel(tunnel(0)).unwrap();
    s.push_tunnel(tunnel(1)).unwrap();
    assert!(matches!(
        s.push_tunnel(tunnel(2)),
        Err(EnvoyError::Overloaded(_))
    ));
    connect(&mut s, 1);
    let frames = drain(&mut s);
    assert_eq!(frames.len(), 2);
    assert!(s.is_flushed());
    s.push_tunnel(tunnel(3)).unwrap();
}

/// A full queue still takes the message that ends a socket: without it the client would
/// wait on a socket nothing is behind.
#[test]
fn a_close_is_queued_even_when_the_tunnel_queue_is_full() {
    let mut s = state();
    s.push_tunnel(tunnel(0)).unwrap();
    s.push_tunnel(tunnel(1)).unwrap();
    let mut close = tunnel(2);
    close.message_kind = ToRivetTunnelMessageKind::ToRivetWebSocketClose(
        rivulet_wire::envoy::ToRivetWebSocketClose {
            code: Some(1000),
            reason: None,
            hibernate: false,
        },
    );
    s.push_tunnel(close).unwrap();
    assert!(matches!(
        s.push_tunnel(tunnel(3)),
        Err(EnvoyError::Overloaded(_))
    ));
    connect(&mut s, 1);
    assert_eq!(drain(&mut s).len(), 3);
}

#[test]
fn lost_stops_every_live_generation_and_fails_kv() {
    let mut s = state();
    connect(&mut s, 1);
    let mut a = started(&mut s, "a", 1);
    let mut b = started(&mut s, "b", 1);
    a.rx.try_recv().unwrap();
    b.rx.try_recv().unwrap();
    s.on_commands(vec![stop("b", 1, 2, StopActorReason::SleepIntent)]);
    b.rx.try_recv().unwrap();
    let (tx, mut rx) = oneshot::channel();
    s.kv_insert("a", Some(1), KvRequestData::KvDropRequest, tx)
        .unwrap();
    s.on_disconnected(1);
    s.declare_lost();
    assert!(matches!(
        a.rx.try_recv().unwrap(),
        LaneCmd::Stop(StopActorReason::Lost)
    ));
    assert!(b.rx.try_recv().is_err(), "b already had its stop");
    assert_eq!(rx.try_recv().unwrap(), Err(EnvoyError::Lost));
    // The actor still reports its stop, which ends it.
    s.record_event("a", 1, stopped()).unwrap();
    let (tx, _rx) = oneshot::channel();
    assert!(s
        .kv_insert("b", Some(1), KvRequestData::KvDropRequest, tx)
        .is_err());
}

#[test]
fn a_stuck_connection_is_replaced() {
    let mut s = state();
    let (_, cancel) = connect(&mut s, 1);
    started(&mut s, "a", 1);
    for i in 0..QUEUED_CONTROL_FRAMES as i64 {
        s.record_event("a", 1, alarm(i)).unwrap();
    }
    assert!(!cancel.is_cancelled());
    s.record_event("a", 1, alarm(-1)).unwrap();
    assert!(cancel.is_cancelled());
}

#[test]
fn stopping_is_sent_after_the_replay_of_a_later_connection() {
    let mut s = state();
    s.on_commands(vec![start("a", 1, 1)]);
    s.record_event("a", 1, running()).unwrap();
    s.begin_shutdown();
    let (frames, _) = connect(&mut s, 1);
    assert!(matches!(frames.first(), Some(ToRivet::ToRivetEvents(_))));
    assert!(matches!(frames.last(), Some(ToRivet::ToRivetStopping)));
    s.close(EnvoyError::Shutdown);
    assert_eq!(s.push_tunnel(tunnel(0)), Err(EnvoyError::Shutdown));
    assert_eq!(s.record_event("a", 1, running()), Err(EnvoyError::Shutdown));
}
