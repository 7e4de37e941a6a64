//! The supervisor with in-memory ports and paused time: timers fire when the clock is
//! advanced, so timeouts are tested without waiting for them.

mod fakes;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rivulet_wire::envoy::{
    ActorCheckpoint, ActorState, ActorStateStopped, Command, CommandWrapper, Event,
    EventActorStateUpdate, EventWrapper, StopActorReason, StopCode,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::actor::ports::Timing;
use crate::cluster::Node;
use crate::config::Config;
use crate::store::{CrashPolicy, NodeLease};
use fakes::{FakeHome, FakeRunners, Log, MemStore};

const ACTOR: &str = "actor-1";

struct Harness {
    store: Arc<MemStore>,
    runners: Arc<FakeRunners>,
    home: Arc<FakeHome>,
    node: Node,
    commands: mpsc::UnboundedReceiver<(String, CommandWrapper)>,
    handle: ActorHandle,
    status: watch::Receiver<Status>,
    events: i64,
    _cancel: tokio_util::sync::DropGuard,
}

fn timing() -> Timing {
    Timing {
        start_timeout: Duration::from_secs(30),
        place_retry: Duration::from_millis(500),
        adopt_wait: Duration::from_secs(15),
        unload_after: Duration::from_secs(10),
    }
}

fn record() -> ActorRecord {
    ActorRecord {
        actor_id: ACTOR.into(),
        namespace_id: "ns".into(),
        name: "counter".into(),
        key: Some("k".into()),
        runner_name_selector: "default".into(),
        crash_policy: CrashPolicy::Sleep,
        input: None,
        create_ts: now_ms(),
        start_ts: None,
        pending_allocation_ts: None,
        connectable_ts: None,
        sleep_ts: None,
        reschedule_ts: None,
        destroy_ts: None,
        error: None,
        generation: 0,
        envoy_key: None,
        envoy_instance: None,
        alarm_ts: None,
        revision: 1,
    }
}

fn register(node: &Node, incarnation: u64) {
    let lease = NodeLease {
        node_id: node.id.clone(),
        node_url: node.url.clone(),
        incarnation,
        expires_ms: now_ms() + 3_600_000,
    };
    node.publish(
        Some(lease),
        tokio::time::Instant::now() + Duration::from_secs(3_600),
    );
}

impl Harness {
    /// A supervisor for `record`, stored as is, with `runners` connected.
    fn start(record: ActorRecord, runners: &[&str]) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::new(MemStore {
            log: log.clone(),
            ..MemStore::default()
        });
        store.records.lock().insert(ACTOR.into(), record.clone());
        let (fake_runners, commands) = FakeRunners::new(log);
        for envoy in runners {
            fake_runners.connect(envoy);
        }
        let home = Arc::new(FakeHome::default());
        let config = Config::for_tests("/nonexistent".into());
        let node = Node::new(&config, "127.0.0.1:1".parse().expect("address"));
        register(&node, 1);
        let cancel = CancellationToken::new();
        let ports = Ports {
            store: store.clone(),
            runners: fake_runners.clone(),
            home: home.clone(),
            invokers: Arc::new(NoInvokers),
            node: node.clone(),
            timing: timing(),
            cancel: cancel.clone(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        };
        let (handle, sup) = build(ports, record);
        tokio::spawn(sup.run());
        Harness {
            store,
            runners: fake_runners,
            home,
            node,
            commands,
            status: handle.watch(),
            handle,
            events: 0,
            _cancel: cancel.drop_guard(),
        }
    }

    fn send(&self, msg: super::super::Msg) {
        self.handle.send(msg).expect("supervisor takes messages");
    }

    fn event(&mut self, generation: u32, state: ActorState) {
        self.events += 1;
        self.send(super::super::Msg::Event(EventWrapper {
            checkpoint: ActorCheckpoint {
                actor_id: ACTOR.into(),
                generation,
                index: self.events,
            },
            inner: Event::EventActorStateUpdate(EventActorStateUpdate { state }),
        }));
    }

    fn running(&mut self, generation: u32) {
        self.events = 0;
        self.event(generation, ActorState::ActorStateRunning);
    }

    fn stopped(&mut self, generation: u32) {
        self.event(
            generation,
            ActorState::ActorStateStopped(ActorStateStopped {
                code: StopCode::Ok,
                message: None,
            }),
        );
    }

    /// The next command a runner was sent.
    async fn command(&mut self) -> (String, CommandWrapper) {
        tokio::time::timeout(Duration::from_secs(1), self.commands.recv())
            .await
            .expect("a command in time")
            .expect("runners alive")
    }

    async fn status_becomes(&mut self, want: impl Fn(&Status) -> bool) -> Status {
        tokio::time::timeout(Duration::from_secs(1), self.status.wait_for(|s| want(s)))
            .await
            .expect("status in time")
            .expect("supervisor alive")
            .clone()
    }

    /// Settles whatever the supervisor is doing without moving the clock.
    async fn settle(&self) {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    fn stored(&self) -> ActorRecord {
        self.store.records.lock()[ACTOR].clone()
    }

    /// Wakes the actor and has the runner report it running at `generation`.
    async fn run_on(&mut self, envoy: &str, generation: u32) {
        self.send(super::super::Msg::Wake);
        let (to, cmd) = self.command().await;
        assert_eq!(to, envoy);
        assert!(matches!(cmd.inner, Command::CommandStartActor(_)));
        assert_eq!(cmd.checkpoint.generation, generation);
        self.running(generation);
        let want = Status::Running {
            envoy_key: envoy.into(),
            generation,
        };
        self.status_becomes(|s| *s == want).await;
    }
}

fn stop_reason(cmd: &CommandWrapper) -> Option<StopActorReason> {
    match &cmd.inner {
        Command::CommandStopActor(stop) => Some(stop.reason),
        Command::CommandStartActor(_) => None,
    }
}

#[tokio::test(start_paused = true)]
async fn wakes_persists_the_generation_before_starting_and_serves() {
    let mut h = Harness::start(record(), &["e"]);
    h.run_on("e", 1).await;
    let log = h.store.log.lock().clone();
    let write = log.iter().position(|l| *l == Log::Write(1));
    let start = log
        .iter()
        .position(|l| *l == Log::Command("e".into(), 1, true));
    assert!(write < start && write.is_some(), "{log:?}");
    let stored = h.stored();
    assert_eq!(stored.generation, 1);
    assert!(stored.connectable_ts.is_some());
    assert_eq!(h.runners.assigned.lock()[ACTOR], ("e".to_string(), 1));
}

#[tokio::test(start_paused = true)]
async fn a_start_never_reported_is_a_crash_after_the_timeout() {
    let mut h = Harness::start(record(), &["e"]);
    h.send(super::super::Msg::Wake);
    h.command().await;
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(*h.status.borrow(), Status::Waking);
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.status_becomes(|s| *s == Status::Sleeping).await;
    let stored = h.stored();
    assert_eq!(
        stored.error,
        Some(serde_json::json!("envoy_connection_lost"))
    );
    assert!(stored.sleep_ts.is_some());
    assert!(h.store.log.lock().contains(&Log::Release));
}

#[tokio::test(start_paused = true)]
async fn waits_for_a_runner_of_its_pool_then_starts() {
    let mut h = Harness::start(record(), &[]);
    h.send(super::super::Msg::Wake);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(*h.status.borrow(), Status::Waking);
    assert!(h.commands.try_recv().is_err());
    h.runners.connect("e");
    let (to, cmd) = h.command().await;
    assert_eq!((to.as_str(), cmd.checkpoint.generation), ("e", 1));
}

/// A wake shows at once, before its lease is written: a runner asking for the actor's
/// storage meanwhile (a serverless start racing the gateway's own) waits for the placement
/// instead of being told the actor sleeps.
#[tokio::test(start_paused = true)]
async fn a_wake_shows_before_its_lease_is_written() {
    let mut h = Harness::start(record(), &["e"]);
    *h.store.lease_delay.lock() = Duration::from_millis(1_500);
    h.send(super::super::Msg::Wake);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        h.store.leases.lock().is_empty(),
        "the lease is still being taken"
    );
    assert_eq!(*h.status.borrow(), Status::Waking);
    let (to, cmd) = h.command().await;
    assert_eq!((to.as_str(), cmd.checkpoint.generation), ("e", 1));
}

#[tokio::test(start_paused = true)]
async fn a_runner_going_away_hands_the_actor_to_another_before_starting_it_there() {
    let mut h = Harness::start(record(), &["e"]);
    h.run_on("e", 1).await;
    h.runners.connect("f");
    // The stopping runner is no longer picked.
    h.runners.stopping.lock().insert("e".into());
    h.send(super::super::Msg::RunnerStopping("e".into()));
    let (to, cmd) = h.command().await;
    assert_eq!(to, "e");
    assert_eq!(stop_reason(&cmd), Some(StopActorReason::GoingAway));
    h.status_becomes(|s| *s == Status::Waking).await;
    // Nothing starts on the new runner while the old instance may still write.
    h.settle().await;
    assert!(h.commands.try_recv().is_err());
    h.stopped(1);
    let (to, cmd) = h.command().await;
    assert_eq!((to.as_str(), cmd.checkpoint.generation), ("f", 2));
    assert!(matches!(cmd.inner, Command::CommandStartActor(_)));
    assert_eq!(h.stored().generation, 2);
    h.running(2);
    h.status_becomes(|s| {
        *s == Status::Running {
            envoy_key: "f".into(),
            generation: 2,
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn losing_the_node_registration_abandons_the_actor_without_writing() {
    let mut h = Harness::start(record(), &["e"]);
    h.run_on("e", 1).await;
    let writes_before = h.store.log.lock().len();
    register(&h.node, 2);
    let (to, cmd) = h.command().await;
    assert_eq!(to, "e");
    assert_eq!(stop_reason(&cmd), Some(StopActorReason::GoingAway));
    h.status_becomes(|s| *s == Status::Sleeping).await;
    let log = h.store.log.lock().clone();
    assert!(
        !log[writes_before..]
            .iter()
            .any(|l| matches!(l, Log::Write(_) | Log::Release)),
        "a node that lost the actor wrote: {log:?}"
    );
    assert!(h.runners.assigned.lock().get(ACTOR).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_newer_generation_in_the_store_fences_this_node_off() {
    let mut h = Harness::start(record(), &["e"]);
    h.run_on("e", 1).await;
    // Another node took the actor over and started generation 5.
    {
        let mut records = h.store.records.lock();
        let r = records.get_mut(ACTOR).expect("record");
        r.generation = 5;
        r.revision += 1;
        r.envoy_key = Some("elsewhere".into());
    }
    h.send(super::super::Msg::Sleep);
    let (_, cmd) = h.command().await;
    assert_eq!(stop_reason(&cmd), Some(StopActorReason::SleepIntent));
    h.stopped(1);
    h.status_becomes(|s| *s == Status::Sleeping).await;
    let stored = h.stored();
    assert_eq!(stored.generation, 5, "the fence was rolled back");
    assert_eq!(stored.envoy_key.as_deref(), Some("elsewhere"));
}

#[tokio::test(start_paused = true)]
async fn adopts_an_instance_whose_runner_reconnects() {
    let mut running = record();
    running.generation = 4;
    running.envoy_key = Some("e".into());
    running.connectable_ts = Some(now_ms());
    let mut h = Harness::start(running, &[]);
    h.settle().await;
    assert_eq!(*h.status.borrow(), Status::Waking);
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.runners.connect("e");
    h.status_becomes(|s| {
        *s == Status::Running {
            envoy_key: "e".into(),
            generation: 4,
        }
    })
    .await;
    assert!(
        h.commands.try_recv().is_err(),
        "an adopted actor is not started again"
    );
    assert_eq!(h.runners.assigned.lock()[ACTOR], ("e".to_string(), 4));
}

#[tokio::test(start_paused = true)]
async fn an_adopted_instance_whose_runner_never_returns_is_lost() {
    let mut running = record();
    running.generation = 4;
    running.envoy_key = Some("e".into());
    running.connectable_ts = Some(now_ms());
    let mut h = Harness::start(running, &[]);
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert_eq!(*h.status.borrow(), Status::Waking);
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.status_becomes(|s| *s == Status::Sleeping).await;
    assert_eq!(
        h.stored().error,
        Some(serde_json::json!("envoy_connection_lost"))
    );
}

#[tokio::test(start_paused = true)]
async fn another_nodes_lease_is_published_for_forwarding() {
    let mut h = Harness::start(record(), &["e"]);
    h.store.leases.lock().insert(
        ACTOR.into(),
        Lease {
            actor_id: ACTOR.into(),
            node_id: "other-node".into(),
            node_url: "http://127.0.0.1:2".into(),
            epoch: 3,
            node_incarnation: 1,
            expires_ms: now_ms() + 60_000,
        },
    );
    h.send(super::super::Msg::Wake);
    let status = h
        .status_becomes(|s| matches!(s, Status::Elsewhere { .. }))
        .await;
    let Status::Elsewhere { lease, attempt } = status else {
        unreachable!()
    };
    assert_eq!((lease.node_id.as_str(), attempt), ("other-node", 1));
    // Asking again is a new, visible refusal.
    h.send(super::super::Msg::Wake);
    h.status_becomes(|s| matches!(s, Status::Elsewhere { attempt: 2, .. }))
        .await;
    assert!(h.commands.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_sleeping_idle_actor_unloads_and_leaves_its_alarm_behind() {
    let mut h = Harness::start(record(), &["e"]);
    h.run_on("e", 1).await;
    // An alarm far off: the supervisor unloads before it and hands it over.
    h.events += 1;
    h.send(super::super::Msg::Event(EventWrapper {
        checkpoint: ActorCheckpoint {
            actor_id: ACTOR.into(),
            generation: 1,
            index: h.events,
        },
        inner: Event::EventActorSetAlarm(rivulet_wire::envoy::EventActorSetAlarm {
            alarm_ts: Some(now_ms() + 3_600_000),
        }),
    }));
    h.send(super::super::Msg::Sleep);
    h.command().await;
    h.stopped(1);
    h.status_becomes(|s| *s == Status::Sleeping).await;
    assert!(h.stored().alarm_ts.is_some());
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(!*h.home.unloaded.lock());
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.settle().await;
    assert!(*h.home.unloaded.lock());
    assert!(h.handle.send(super::super::Msg::Wake).is_err(), "unloaded");
    assert_eq!(
        h.home.alarms.lock().len(),
        1,
        "the alarm outlives the supervisor"
    );
    assert_eq!(*h.home.forgotten.lock(), vec![ACTOR.to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_due_alarm_wakes_the_actor() {
    let mut r = record();
    r.alarm_ts = Some(now_ms() + 5_000);
    let mut h = Harness::start(r, &["e"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(h.commands.try_recv().is_err());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (to, cmd) = h.command().await;
    assert_eq!((to.as_str(), cmd.checkpoint.generation), ("e", 1));
}

#[tokio::test(start_paused = true)]
async fn a_runner_lost_mid_run_follows_the_crash_policy() {
    let mut r = record();
    r.crash_policy = CrashPolicy::Restart;
    let mut h = Harness::start(r, &["e", "f"]);
    h.run_on("e", 1).await;
    h.runners.disconnect("e");
    h.send(super::super::Msg::RunnerLost("e".into()));
    let (to, cmd) = h.command().await;
    assert_eq!((to.as_str(), cmd.checkpoint.generation), ("f", 2));
}

/// The supervisor tests place on connected runners only.
struct NoInvokers;

impl crate::actor::ports::Invokers for NoInvokers {}
