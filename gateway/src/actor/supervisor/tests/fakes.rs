//! In-memory ports for supervisor tests: a store of records and leases with the real
//! stores' revision and lease rules, runners that record commands, and a directory.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rivulet_wire::envoy::CommandWrapper;
use tokio::sync::{mpsc, watch};

use crate::actor::mailbox::Mailbox;
use crate::actor::ports::{ActorStore, Home, Runners};
use crate::store::{ActorRecord, Lease, LeaseClaim, NodeLease, StoreError, StoreResult};

/// One thing that happened, in order across the store and the runners.
#[derive(Debug, Clone, PartialEq)]
pub enum Log {
    /// A record write that stuck, with the generation written.
    Write(u32),
    /// A command sent: runner, generation, and whether it is a start.
    Command(String, u32, bool),
    /// A lease given back.
    Release,
}

#[derive(Default)]
pub struct MemStore {
    pub records: Mutex<HashMap<String, ActorRecord>>,
    pub leases: Mutex<HashMap<String, Lease>>,
    pub log: Arc<Mutex<Vec<Log>>>,
    /// How long taking a lease takes (a busy store).
    pub lease_delay: Mutex<std::time::Duration>,
}

#[async_trait]
impl ActorStore for MemStore {
    async fn get_actor(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>> {
        Ok(self.records.lock().get(actor_id).cloned())
    }
    async fn update_actor(&self, mut actor: ActorRecord, expected: u64) -> StoreResult<()> {
        let mut records = self.records.lock();
        let stored = records.get(&actor.actor_id).map(|r| r.revision);
        if stored != Some(expected) {
            return Err(StoreError::Conflict {
                what: "actor".into(),
            });
        }
        actor.revision = expected + 1;
        self.log.lock().push(Log::Write(actor.generation));
        records.insert(actor.actor_id.clone(), actor);
        Ok(())
    }
    async fn get_lease(&self, actor_id: &str) -> StoreResult<Option<Lease>> {
        Ok(self.leases.lock().get(actor_id).cloned())
    }
    async fn acquire_lease(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim> {
        let delay = *self.lease_delay.lock();
        tokio::time::sleep(delay).await;
        let mut leases = self.leases.lock();
        let previous = leases.get(actor_id).cloned();
        if let Some(held) = &previous {
            if held.node_id != node.node_id && held.is_live(now_ms) {
                return Ok(LeaseClaim::HeldBy(held.clone()));
            }
        }
        let lease = Lease {
            actor_id: actor_id.into(),
            node_id: node.node_id.clone(),
            node_url: node.node_url.clone(),
            epoch: previous.map_or(1, |l| l.epoch + 1),
            node_incarnation: node.incarnation,
            expires_ms: node.expires_ms,
        };
        leases.insert(actor_id.into(), lease.clone());
        Ok(LeaseClaim::Acquired(lease))
    }
    async fn release_lease(&self, lease: &Lease) -> StoreResult<bool> {
        let mut leases = self.leases.lock();
        match leases.get_mut(&lease.actor_id) {
            Some(held) if held.epoch == lease.epoch => {
                held.expires_ms = 0;
                self.log.lock().push(Log::Release);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn clear_actor_data(&self, _actor_id: &str) -> StoreResult<()> {
        Ok(())
    }
}

pub struct FakeRunners {
    pub connected: Mutex<BTreeSet<String>>,
    /// Connected but going away: never picked.
    pub stopping: Mutex<BTreeSet<String>>,
    pub assigned: Mutex<HashMap<String, (String, u32)>>,
    pub sent: mpsc::UnboundedSender<(String, CommandWrapper)>,
    pub log: Arc<Mutex<Vec<Log>>>,
    pub changed: watch::Sender<u64>,
}

impl FakeRunners {
    pub fn new(
        log: Arc<Mutex<Vec<Log>>>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<(String, CommandWrapper)>) {
        let (sent, rx) = mpsc::unbounded_channel();
        let runners = FakeRunners {
            connected: Mutex::default(),
            stopping: Mutex::default(),
            assigned: Mutex::default(),
            sent,
            log,
            changed: watch::channel(0).0,
        };
        (Arc::new(runners), rx)
    }

    pub fn connect(&self, envoy: &str) {
        self.connected.lock().insert(envoy.into());
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn disconnect(&self, envoy: &str) {
        self.connected.lock().remove(envoy);
        self.changed.send_modify(|n| *n += 1);
    }
}

impl Runners for FakeRunners {
    fn pick(&self, _namespace_id: &str, _pool: &str) -> Option<String> {
        let stopping = self.stopping.lock();
        self.connected
            .lock()
            .iter()
            .find(|e| !stopping.contains(*e))
            .cloned()
    }
    fn is_connected(&self, envoy: &str) -> bool {
        self.connected.lock().contains(envoy)
    }
    fn send_command(&self, envoy: &str, cmd: CommandWrapper) -> bool {
        if !self.is_connected(envoy) {
            return false;
        }
        let start = matches!(
            cmd.inner,
            rivulet_wire::envoy::Command::CommandStartActor(_)
        );
        self.log
            .lock()
            .push(Log::Command(envoy.into(), cmd.checkpoint.generation, start));
        let _ = self.sent.send((envoy.into(), cmd));
        true
    }
    fn assign(&self, envoy: &str, actor_id: &str, generation: u32) -> bool {
        if !self.is_connected(envoy) {
            return false;
        }
        self.assigned
            .lock()
            .insert(actor_id.into(), (envoy.into(), generation));
        true
    }
    fn unassign(&self, actor_id: &str, generation: u32) {
        let mut assigned = self.assigned.lock();
        if assigned
            .get(actor_id)
            .is_some_and(|(_, g)| *g == generation)
        {
            assigned.remove(actor_id);
        }
    }
    fn forget_commands(&self, _actor_id: &str) {}
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[derive(Default)]
pub struct FakeHome {
    pub unloaded: Mutex<bool>,
    /// Actors whose in-memory leftovers were dropped at unload.
    pub forgotten: Mutex<Vec<String>>,
    pub alarms: Mutex<Vec<(i64, String)>>,
}

impl Home for FakeHome {
    fn unload(&self, _actor_id: &str, mailbox: &Arc<Mailbox>) -> bool {
        if mailbox.close_if_empty() {
            *self.unloaded.lock() = true;
            true
        } else {
            false
        }
    }
    fn remove(&self, _actor_id: &str, _mailbox: &Arc<Mailbox>) {}
    fn park_alarm(&self, ts: i64, actor_id: &str) {
        self.alarms.lock().push((ts, actor_id.into()));
    }
    fn forget_key(&self, _namespace_id: &str, _name: &str, _key: &str) {}
    fn forget_unloaded(&self, record: &ActorRecord) {
        self.forgotten.lock().push(record.actor_id.clone());
    }
}
