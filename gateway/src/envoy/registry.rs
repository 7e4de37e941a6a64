//! Connected runners (envoys) and the commands sent to them.
//!
//! Commands are kept per envoy key until the runner acknowledges them, and replayed in order
//! when the same runner reconnects, so a dropped connection never loses a start or stop. The
//! runner drops duplicates by checkpoint index. A newer connection with the same key evicts
//! the older one.
//!
//! A key alone does not say whether the process behind it survived: Rivulet's runner can be
//! given a fixed key and restarted under it. A runner that names its process (`instance`)
//! and comes back under a known key with another instance is a new process: the actors the
//! key had are lost at once (not after the lost threshold, and never waited on), and the
//! commands kept for the old process are dropped rather than replayed to the new one. A
//! connection that names no instance is taken to be the same process, as the engine does;
//! RivetKit's runners pick a fresh random key per process, so for them a new process is a
//! new key.
//!
//! Frames towards a runner share one ordered queue, in two classes. Control frames (commands,
//! acks, storage replies, pings) never wait: a full queue means the runner stopped reading,
//! and its connection is cut so it reconnects and gets its commands replayed. Tunnel frames
//! (client requests and socket messages) may fill at most half the queue; past that, the
//! client's task waits for room, so a burst of client traffic slows those clients and never
//! cuts a runner. A tunnel frame holds its slot until the writer has handed it to the socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rivulet_wire::envoy::{ActorCheckpoint, CommandWrapper, ToEnvoy};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::util::now_ms;

/// One live runner connection.
#[derive(Debug)]
pub struct EnvoyHandle {
    /// The runner's stable key (it keeps it across reconnects).
    pub key: String,
    /// Namespace it serves.
    pub namespace_id: String,
    /// Pool (runner config) it belongs to.
    pub pool_name: String,
    /// The application version it reported.
    pub version: u32,
    /// Distinguishes this connection from earlier ones with the same key.
    pub conn_id: u64,
    /// The runner process, if it names itself.
    pub instance: Option<String>,
    /// Frames towards the runner; bounded, see [`EnvoyHandle::send`].
    tx: mpsc::Sender<Outbound>,
    /// Room tunnel frames may take in `tx` (half of it), see [`EnvoyHandle::send_tunnel`].
    tunnel_slots: Arc<Semaphore>,
    /// When the connection was established.
    pub connected_ts: i64,
    /// Last pong, ms since the epoch.
    pub last_ping_ts: AtomicI64,
    /// Last measured round trip, ms.
    pub last_rtt_ms: AtomicI64,
    /// Metadata JSON the runner sent.
    pub metadata: Mutex<Option<String>>,
    /// Actors started on this runner, with their generation: the fence for KV requests,
    /// which carry no generation of their own.
    pub assigned: Mutex<HashMap<String, u32>>,
    /// Set once the runner said it is stopping; no new actors go to it.
    pub stopping: AtomicBool,
    /// Cancels the connection (eviction, stuck queue, shutdown).
    pub cancel: CancellationToken,
    /// Close frame to send when the connection is cancelled: (code, `group.code#detail`).
    close_reason: Mutex<Option<(u16, String)>>,
}

/// A frame in a runner's queue; a tunnel frame carries the slot it occupies.
#[derive(Debug)]
pub struct Outbound {
    /// The frame.
    pub msg: ToEnvoy,
    /// Released when the writer has sent the frame.
    _slot: Option<OwnedSemaphorePermit>,
}

impl EnvoyHandle {
    /// Queues a control frame without waiting. A full queue means the runner stopped reading
    /// (tunnel frames can take only half of it): the connection is cancelled so it
    /// reconnects and gets unacknowledged commands replayed, which is safer than blocking
    /// every actor on this runner behind it.
    pub fn send(&self, msg: ToEnvoy) -> bool {
        self.enqueue(Outbound { msg, _slot: None })
    }

    /// Queues a tunnel frame, waiting while tunnel frames fill their half of the queue: the
    /// waiting is the client's backpressure. Returns false if the connection ended first.
    pub async fn send_tunnel(&self, msg: ToEnvoy) -> bool {
        let slot = tokio::select! {
            slot = self.tunnel_slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return false,
            },
            _ = self.cancel.cancelled() => return false,
        };
        self.enqueue(Outbound {
            msg,
            _slot: Some(slot),
        })
    }

    fn enqueue(&self, out: Outbound) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(envoy_key = %self.key, "envoy outbound queue full, dropping connection");
                self.close(1011, "ws.overloaded#outbound queue full");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Ends the connection with the given close code and reason.
    pub fn close(&self, code: u16, reason: impl Into<String>) {
        let reason = super::truncate_reason(reason.into());
        self.close_reason.lock().get_or_insert((code, reason));
        self.cancel.cancel();
    }

    /// The close frame to send, once cancelled.
    pub fn close_reason(&self) -> (u16, String) {
        self.close_reason
            .lock()
            .clone()
            .unwrap_or((1000, "ws.going_away".to_string()))
    }

    /// Generation of the actor on this runner, if it was started here.
    pub fn generation_of(&self, actor_id: &str) -> Option<u32> {
        self.assigned.lock().get(actor_id).copied()
    }

    /// Whether it can take new actors.
    pub fn is_eligible(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed) && !self.cancel.is_cancelled()
    }
}

/// Everything known about runners.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_conn_id: AtomicU64,
    outbound_capacity: usize,
    changed: watch::Sender<u64>,
    /// Claims waiting (`Inner::awaiting`'s size), read without the lock on every frame.
    awaiting: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<String, Arc<EnvoyHandle>>,
    /// The last connection of a key that dropped, until the key reconnects or the lost
    /// threshold passes: a reconnect of the same process takes over its actors.
    parked: HashMap<String, Arc<EnvoyHandle>>,
    /// Commands not yet acknowledged, per envoy key, in send order.
    unacked: HashMap<String, Vec<CommandWrapper>>,
    /// Actors started by a serverless request, waiting for the runner it starts to claim
    /// them: actor id -> (generation, namespace id, pool). One entry per actor being
    /// invoked; an entry leaves when claimed or withdrawn.
    awaiting: HashMap<String, (u32, String, String)>,
    /// Standby requests started but not yet used: envoy key -> the actor it is for. Its
    /// runner connecting under the key is reported to the actor, and so is its leaving.
    standbys: HashMap<String, String>,
}

/// What `register` hands the connection task.
pub struct Registration {
    /// The new handle.
    pub handle: Arc<EnvoyHandle>,
    /// Its outbound frames.
    pub rx: mpsc::Receiver<Outbound>,
    /// Commands to replay right after init.
    pub replay: Vec<CommandWrapper>,
    /// Set when the key was last served by another process: the actors it ran there, now
    /// lost.
    pub orphaned: Option<Vec<String>>,
}

/// Identity of a connecting runner.
pub struct EnvoyIdentity {
    /// Envoy key.
    pub key: String,
    /// Namespace id.
    pub namespace_id: String,
    /// Pool name.
    pub pool_name: String,
    /// Application version.
    pub version: u32,
    /// The runner process, if it names itself.
    pub instance: Option<String>,
}

impl Registry {
    /// An empty registry whose connections queue at most `outbound_capacity` frames.
    pub fn new(outbound_capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            next_conn_id: AtomicU64::new(1),
            outbound_capacity,
            changed: watch::channel(0).0,
            awaiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Adds a connection, evicting an older one with the same key.
    pub fn register(&self, id: EnvoyIdentity, parent: &CancellationToken) -> Registration {
        let (tx, rx) = mpsc::channel(self.outbound_capacity);
        let tunnel_room = (self.outbound_capacity / 2).max(1);
        let handle = Arc::new(EnvoyHandle {
            tunnel_slots: Arc::new(Semaphore::new(tunnel_room)),
            key: id.key.clone(),
            namespace_id: id.namespace_id,
            pool_name: id.pool_name,
            version: id.version,
            conn_id: self.next_conn_id.fetch_add(1, Ordering::Relaxed),
            instance: id.instance,
            tx,
            connected_ts: now_ms(),
            last_ping_ts: AtomicI64::new(now_ms()),
            last_rtt_ms: AtomicI64::new(0),
            metadata: Mutex::new(None),
            assigned: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            cancel: parent.child_token(),
            close_reason: Mutex::new(None),
        });
        let (old, previous, replay) = {
            let mut inner = self.inner.lock();
            let parked = inner.parked.remove(&id.key);
            let old = inner.live.insert(id.key.clone(), handle.clone());
            let previous = old.clone().or(parked);
            let restarted = previous
                .as_ref()
                .is_some_and(|p| p.instance != handle.instance);
            if restarted {
                // Those commands were for a process that no longer exists.
                inner.unacked.remove(&id.key);
            }
            let replay = inner.unacked.get(&id.key).cloned().unwrap_or_default();
            (old, previous, replay)
        };
        let mut orphaned = None;
        if let Some(previous) = previous {
            let carried = std::mem::take(&mut *previous.assigned.lock());
            if previous.instance == handle.instance {
                // Same process: its actors carry on over the new connection.
                handle.assigned.lock().extend(carried);
            } else {
                orphaned = Some(carried.into_keys().collect());
            }
        }
        if let Some(old) = old {
            let reason = if orphaned.is_some() {
                "ws.eviction#replaced by another process with the same envoy_key"
            } else {
                "ws.eviction#replaced by a newer connection with the same envoy_key"
            };
            old.close(1000, reason);
        }
        self.changed.send_modify(|v| *v += 1);
        Registration {
            handle,
            rx,
            replay,
            orphaned,
        }
    }

    /// Removes a connection if it is still the live one for its key; returns whether it was.
    pub fn unregister(&self, handle: &EnvoyHandle) -> bool {
        let mut inner = self.inner.lock();
        let is_live = inner
            .live
            .get(&handle.key)
            .is_some_and(|h| h.conn_id == handle.conn_id);
        if is_live {
            if let Some(gone) = inner.live.remove(&handle.key) {
                inner.parked.insert(handle.key.clone(), gone);
            }
        }
        drop(inner);
        if is_live {
            self.changed.send_modify(|v| *v += 1);
        }
        is_live
    }

    /// Forgets a dropped connection once its runner is declared lost; returns its actors
    /// unless the key reconnected meanwhile (the new connection took them over).
    pub fn unpark(&self, handle: &EnvoyHandle) -> Option<Vec<String>> {
        let mut inner = self.inner.lock();
        if inner.live.contains_key(&handle.key) {
            return None;
        }
        if inner
            .parked
            .get(&handle.key)
            .is_some_and(|p| p.conn_id == handle.conn_id)
        {
            inner.parked.remove(&handle.key);
        }
        drop(inner);
        Some(handle.assigned.lock().keys().cloned().collect())
    }

    /// The live connection of a runner.
    pub fn get(&self, key: &str) -> Option<Arc<EnvoyHandle>> {
        self.inner.lock().live.get(key).cloned()
    }

    /// All live connections.
    pub fn list(&self) -> Vec<Arc<EnvoyHandle>> {
        self.inner.lock().live.values().cloned().collect()
    }

    /// The eligible runner of a pool with the fewest actors, if any.
    pub fn pick(&self, namespace_id: &str, pool: &str) -> Option<Arc<EnvoyHandle>> {
        let inner = self.inner.lock();
        inner
            .live
            .values()
            .filter(|h| h.namespace_id == namespace_id && h.pool_name == pool && h.is_eligible())
            .min_by_key(|h| (h.assigned.lock().len(), std::cmp::Reverse(h.version)))
            .cloned()
    }

    /// Notifies when runners come or go.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Sends a command to a runner and keeps it until acknowledged.
    pub fn send_command(&self, envoy_key: &str, cmd: CommandWrapper) -> bool {
        let handle = {
            let mut inner = self.inner.lock();
            inner
                .unacked
                .entry(envoy_key.to_string())
                .or_default()
                .push(cmd.clone());
            inner.live.get(envoy_key).cloned()
        };
        match handle {
            Some(h) => h.send(ToEnvoy::ToEnvoyCommands(vec![cmd])),
            None => false,
        }
    }

    /// Drops acknowledged commands: those at or below each checkpoint of the same actor and
    /// generation, and any of older generations of that actor.
    pub fn ack_commands(&self, envoy_key: &str, checkpoints: &[ActorCheckpoint]) {
        let mut inner = self.inner.lock();
        if let Some(list) = inner.unacked.get_mut(envoy_key) {
            list.retain(|cmd| {
                !checkpoints.iter().any(|cp| {
                    cp.actor_id == cmd.checkpoint.actor_id
                        && (cmd.checkpoint.generation < cp.generation
                            || (cmd.checkpoint.generation == cp.generation
                                && cmd.checkpoint.index <= cp.index))
                })
            });
        }
    }

    /// Lets the first runner of `pool` in the namespace that mentions the actor claim
    /// `generation` of it (see [`Registry::claim`]).
    pub fn await_claim(&self, actor_id: &str, generation: u32, namespace_id: &str, pool: &str) {
        let mut inner = self.inner.lock();
        inner.awaiting.insert(
            actor_id.to_owned(),
            (generation, namespace_id.to_owned(), pool.to_owned()),
        );
        self.awaiting.store(inner.awaiting.len(), Ordering::Relaxed);
    }

    /// A runner connecting under `envoy_key` is the standby request started for `actor_id`.
    pub fn expect_standby(&self, envoy_key: &str, actor_id: &str) {
        self.inner
            .lock()
            .standbys
            .insert(envoy_key.to_owned(), actor_id.to_owned());
    }

    /// The standby was used.
    pub fn forget_standby(&self, envoy_key: &str) {
        self.inner.lock().standbys.remove(envoy_key);
    }

    /// The standby was given up: forgotten, and its runner, if connected and running nothing,
    /// told so, so that its request ends now rather than at its deadline (a Lambda invocation
    /// cannot be cancelled from outside; only its runner can end it).
    pub fn dismiss_standby(&self, envoy_key: &str) {
        self.forget_standby(envoy_key);
        if let Some(handle) = self.get(envoy_key) {
            if handle.assigned.lock().is_empty() {
                handle.close(
                    1000,
                    format!(
                        "{}#the move went ahead without this standby",
                        rivulet_wire::STANDBY_NOT_NEEDED
                    ),
                );
            }
        }
    }

    /// The actor a standby runner under `envoy_key` waits for, if it is one.
    pub fn standby_for(&self, envoy_key: &str) -> Option<String> {
        self.inner.lock().standbys.get(envoy_key).cloned()
    }

    /// Withdraws a claim nobody made.
    pub fn cancel_claim(&self, actor_id: &str, generation: u32) {
        let mut inner = self.inner.lock();
        if inner
            .awaiting
            .get(actor_id)
            .is_some_and(|(g, _, _)| *g == generation)
        {
            inner.awaiting.remove(actor_id);
        }
        self.awaiting.store(inner.awaiting.len(), Ordering::Relaxed);
    }

    /// `handle`'s runner mentioned the actor (an acknowledgement, an event or a storage
    /// request; `generation` when the frame carries one). If a serverless start of that
    /// actor waits for its runner and this runner is of its namespace and pool, the runner
    /// claims it: it now runs that generation. Returns the generation claimed.
    pub fn claim(
        &self,
        handle: &EnvoyHandle,
        actor_id: &str,
        generation: Option<u32>,
    ) -> Option<u32> {
        let mut inner = self.inner.lock();
        let (g, ns, pool) = inner.awaiting.get(actor_id)?;
        if *ns != handle.namespace_id
            || *pool != handle.pool_name
            || generation.is_some_and(|seen| seen != *g)
        {
            return None;
        }
        let g = *g;
        inner.awaiting.remove(actor_id);
        self.awaiting.store(inner.awaiting.len(), Ordering::Relaxed);
        handle.assigned.lock().insert(actor_id.to_owned(), g);
        Some(g)
    }

    /// Whether any claim waits (a cheap check before looking at a frame's actors).
    pub fn claims_waiting(&self) -> bool {
        self.awaiting.load(Ordering::Relaxed) > 0
    }

    /// Forgets the commands kept for an actor on every runner: it left them (slept, moved,
    /// was lost or destroyed), so replaying them to a runner that reconnects would start a
    /// stale copy.
    pub fn forget_actor(&self, actor_id: &str) {
        let mut inner = self.inner.lock();
        for list in inner.unacked.values_mut() {
            list.retain(|cmd| cmd.checkpoint.actor_id != actor_id);
        }
        // Runners that never come back leave empty lists behind; drop them.
        inner.unacked.retain(|_, list| !list.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(instance: Option<&str>) -> EnvoyIdentity {
        EnvoyIdentity {
            key: "k".into(),
            namespace_id: "ns".into(),
            pool_name: "default".into(),
            version: 1,
            instance: instance.map(str::to_string),
        }
    }

    /// Registers, assigns one actor, and drops the connection as a crash would.
    fn served_then_dropped(reg: &Registry, instance: Option<&str>, parent: &CancellationToken) {
        let first = reg.register(id(instance), parent).handle;
        first.assigned.lock().insert("a1".into(), 3);
        assert!(reg.unregister(&first));
    }

    #[test]
    fn a_dismissed_standby_is_told_to_end_unless_it_already_runs_an_actor() {
        let parent = CancellationToken::new();
        let reg = Registry::new(8);
        reg.expect_standby("k", "a1");
        assert_eq!(reg.standby_for("k").as_deref(), Some("a1"));
        let handle = reg.register(id(None), &parent).handle;
        reg.dismiss_standby("k");
        assert_eq!(reg.standby_for("k"), None);
        assert!(handle.cancel.is_cancelled());
        let (code, reason) = handle.close_reason();
        assert_eq!(code, 1000);
        assert!(
            reason.starts_with(rivulet_wire::STANDBY_NOT_NEEDED),
            "{reason}"
        );

        // Once it took the actor over, giving the key up must not cut the actor.
        let reg = Registry::new(8);
        reg.expect_standby("k", "a1");
        let handle = reg.register(id(None), &parent).handle;
        handle.assigned.lock().insert("a1".into(), 2);
        reg.dismiss_standby("k");
        assert!(!handle.cancel.is_cancelled());
    }

    #[test]
    fn a_reconnect_of_the_same_process_keeps_its_actors() {
        let parent = CancellationToken::new();
        for instance in [Some("p1"), None] {
            let reg = Registry::new(8);
            served_then_dropped(&reg, instance, &parent);
            let again = reg.register(id(instance), &parent);
            assert!(again.orphaned.is_none());
            assert_eq!(again.handle.generation_of("a1"), Some(3));
        }
    }

    #[test]
    fn another_process_under_the_same_key_orphans_the_actors_and_their_commands() {
        let parent = CancellationToken::new();
        let reg = Registry::new(8);
        served_then_dropped(&reg, Some("p1"), &parent);
        reg.inner.lock().unacked.insert("k".into(), Vec::new());
        let next = reg.register(id(Some("p2")), &parent);
        assert_eq!(next.orphaned, Some(vec!["a1".to_string()]));
        assert_eq!(next.handle.generation_of("a1"), None);
        assert!(!reg.inner.lock().unacked.contains_key("k"));
        // Once declared lost, the dropped connection has nothing left to report.
        assert!(reg.unpark(&next.handle).is_none(), "the key is live again");
    }

    #[test]
    fn a_live_connection_evicted_by_another_process_is_closed_with_the_reason() {
        let parent = CancellationToken::new();
        let reg = Registry::new(8);
        let first = reg.register(id(Some("p1")), &parent).handle;
        first.assigned.lock().insert("a1".into(), 1);
        let next = reg.register(id(Some("p2")), &parent);
        assert!(first.cancel.is_cancelled());
        assert_eq!(
            first.close_reason(),
            (
                1000,
                "ws.eviction#replaced by another process with the same envoy_key".to_string()
            )
        );
        assert_eq!(next.orphaned, Some(vec!["a1".to_string()]));
    }

    #[test]
    fn a_runner_lost_for_good_reports_its_actors_once() {
        let parent = CancellationToken::new();
        let reg = Registry::new(8);
        let first = reg.register(id(Some("p1")), &parent).handle;
        first.assigned.lock().insert("a1".into(), 1);
        assert!(reg.unregister(&first));
        assert_eq!(reg.unpark(&first), Some(vec!["a1".to_string()]));
        assert!(reg.inner.lock().parked.is_empty());
    }
}
