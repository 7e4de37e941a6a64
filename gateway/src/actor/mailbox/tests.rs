#![allow(clippy::unwrap_used)]

use rivulet_wire::envoy::{
    ActorCheckpoint, ActorState, Event, EventActorSetAlarm, EventActorStateUpdate, EventWrapper,
};

use super::*;

fn event(generation: u32, index: i64, inner: Event) -> EventWrapper {
    EventWrapper {
        checkpoint: ActorCheckpoint {
            actor_id: "a".to_owned().into(),
            generation,
            index,
        },
        inner,
    }
}

fn running(generation: u32, index: i64) -> EventWrapper {
    event(
        generation,
        index,
        Event::EventActorStateUpdate(EventActorStateUpdate {
            state: ActorState::ActorStateRunning,
        }),
    )
}

fn alarm(generation: u32, index: i64, ts: i64) -> EventWrapper {
    event(
        generation,
        index,
        Event::EventActorSetAlarm(EventActorSetAlarm { alarm_ts: Some(ts) }),
    )
}

fn take_now(mb: &Mailbox) -> Batch {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(1), mb.recv())
            .await
            .unwrap()
            .unwrap()
    })
}

#[test]
fn lifecycle_inputs_are_never_refused_however_many() {
    let mb = Mailbox::default();
    for i in 0..100_000u32 {
        mb.put(Msg::Wake).unwrap();
        mb.put(Msg::Sleep).unwrap();
        mb.put(Msg::RunnerLost(format!("runner-{}", i % 3)))
            .unwrap();
        mb.put(Msg::RunnerStopping("r".into())).unwrap();
        mb.put(Msg::Refresh).unwrap();
        mb.put(Msg::Hibernating([0; 4], (i % 7).to_be_bytes()))
            .unwrap();
    }
    mb.put(Msg::Destroy).unwrap();
    let batch = take_now(&mb);
    assert!(batch.wake && batch.sleep && batch.destroy && batch.refresh);
    assert_eq!(
        batch.runners_lost.len(),
        3,
        "one entry per runner, however often sent"
    );
    assert_eq!(batch.runners_stopping.len(), 1);
    assert_eq!(batch.sockets.len(), 7, "one entry per socket");
}

#[test]
fn a_socket_keeps_its_latest_state() {
    let mb = Mailbox::default();
    let (gw, req) = ([1; 4], [2; 4]);
    mb.put(Msg::Hibernating(gw, req)).unwrap();
    mb.put(Msg::HibernatingClosed(gw, req)).unwrap();
    mb.put(Msg::Hibernating([9; 4], req)).unwrap();
    let batch = take_now(&mb);
    assert_eq!(batch.sockets.get(&(gw, req)), Some(&false));
    assert_eq!(batch.sockets.get(&([9; 4], req)), Some(&true));
}

#[test]
fn events_keep_their_order_and_alarms_coalesce_per_generation() {
    let mb = Mailbox::default();
    mb.put(Msg::Event(alarm(1, 1, 10))).unwrap();
    mb.put(Msg::Event(running(1, 2))).unwrap();
    for i in 3..10_000 {
        mb.put(Msg::Event(alarm(1, i, 10 + i))).unwrap();
    }
    mb.put(Msg::Event(alarm(2, 1, 5))).unwrap();
    let batch = take_now(&mb);
    let got: Vec<(u32, i64)> = batch
        .events
        .iter()
        .map(|e| (e.checkpoint.generation, e.checkpoint.index))
        .collect();
    // The alarm of generation 1 keeps its place but carries the latest value.
    assert_eq!(got, vec![(1, 9_999), (1, 2), (2, 1)]);
    match &batch.events[0].inner {
        Event::EventActorSetAlarm(a) => assert_eq!(a.alarm_ts, Some(10 + 9_999)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_older_alarm_never_replaces_a_newer_one() {
    let mb = Mailbox::default();
    mb.put(Msg::Event(alarm(1, 5, 50))).unwrap();
    mb.put(Msg::Event(alarm(1, 4, 40))).unwrap();
    let batch = take_now(&mb);
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].checkpoint.index, 5);
}

#[test]
fn events_past_the_protocols_bound_are_refused_not_dropped_silently() {
    let mb = Mailbox::default();
    for i in 0..MAX_EVENTS as i64 {
        mb.put(Msg::Event(running(1, i))).unwrap();
    }
    assert_eq!(
        mb.put(Msg::Event(running(1, MAX_EVENTS as i64))),
        Err(Refused::TooManyEvents)
    );
    // Lifecycle inputs still go through.
    mb.put(Msg::RunnerLost("r".into())).unwrap();
    let batch = take_now(&mb);
    assert_eq!(batch.events.len(), MAX_EVENTS);
    assert!(batch.runners_lost.contains("r"));
}

#[test]
fn close_if_empty_refuses_while_something_is_pending() {
    let mb = Mailbox::default();
    mb.put(Msg::Wake).unwrap();
    assert!(!mb.close_if_empty());
    let _ = take_now(&mb);
    assert!(mb.close_if_empty());
    assert_eq!(mb.put(Msg::Wake), Err(Refused::Closed));
    assert!(mb.is_closed());
}

#[tokio::test]
async fn recv_wakes_on_a_put_from_another_task() {
    let mb = std::sync::Arc::new(Mailbox::default());
    let taker = {
        let mb = mb.clone();
        tokio::spawn(async move { mb.recv().await })
    };
    tokio::task::yield_now().await;
    mb.put(Msg::Destroy).unwrap();
    let batch = tokio::time::timeout(std::time::Duration::from_secs(5), taker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(batch.destroy);
}

#[tokio::test]
async fn recv_ends_once_closed() {
    let mb = Mailbox::default();
    mb.close();
    assert!(mb.recv().await.is_none());
}
