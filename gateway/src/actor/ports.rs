//! What a supervisor needs from the rest of the gateway, as narrow traits: the part of the
//! store that holds actor records and leases, the runners it places actors on and commands,
//! and the directory it lives in. The gateway implements them over its shared state; the
//! supervisor's tests implement them in memory and run it with paused time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rivulet_wire::envoy::CommandWrapper;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::mailbox::Mailbox;
use crate::cluster::Node;
use crate::pool::runtime::InvokedPool;
use crate::state::Gateway;
use crate::store::{ActorRecord, Lease, LeaseClaim, NodeLease, Store, StoreResult};

/// Actor records and leases.
#[async_trait]
pub trait ActorStore: Send + Sync + 'static {
    /// Reads a record.
    async fn get_actor(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>>;
    /// Writes a record if its revision is still `expected_revision`.
    async fn update_actor(&self, actor: ActorRecord, expected_revision: u64) -> StoreResult<()>;
    /// Reads a lease.
    async fn get_lease(&self, actor_id: &str) -> StoreResult<Option<Lease>>;
    /// Takes a lease for `node`.
    async fn acquire_lease(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim>;
    /// Gives a lease back.
    async fn release_lease(&self, lease: &Lease) -> StoreResult<bool>;
    /// Drops a destroyed actor's data.
    async fn clear_actor_data(&self, actor_id: &str) -> StoreResult<()>;
}

/// The gateway's store, seen through [`ActorStore`].
pub struct StoreActors(pub Arc<dyn Store>);

#[async_trait]
impl ActorStore for StoreActors {
    async fn get_actor(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>> {
        self.0.get_actor(actor_id).await
    }
    async fn update_actor(&self, actor: ActorRecord, expected_revision: u64) -> StoreResult<()> {
        self.0.update_actor(actor, expected_revision).await
    }
    async fn get_lease(&self, actor_id: &str) -> StoreResult<Option<Lease>> {
        self.0.get_lease(actor_id).await
    }
    async fn acquire_lease(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim> {
        self.0.acquire_lease(actor_id, node, now_ms).await
    }
    async fn release_lease(&self, lease: &Lease) -> StoreResult<bool> {
        self.0.release_lease(lease).await
    }
    async fn clear_actor_data(&self, actor_id: &str) -> StoreResult<()> {
        self.0.clear_actor_data(actor_id).await
    }
}

/// The runners connected to this node.
pub trait Runners: Send + Sync + 'static {
    /// The eligible runner of a pool with the fewest actors.
    fn pick(&self, namespace_id: &str, pool: &str) -> Option<String>;
    /// Whether a runner is connected.
    fn is_connected(&self, envoy: &str) -> bool;
    /// The process a connected runner named (`instance`), if any.
    fn instance_of(&self, _envoy: &str) -> Option<String> {
        None
    }
    /// Sends a command, kept until acknowledged; `false` if the runner is not connected.
    fn send_command(&self, envoy: &str, cmd: CommandWrapper) -> bool;
    /// Records that `envoy` runs `generation` of the actor (its storage requests are
    /// accepted); `false` if the runner is not connected.
    fn assign(&self, envoy: &str, actor_id: &str, generation: u32) -> bool;
    /// Forgets that any runner runs `generation` of the actor.
    fn unassign(&self, actor_id: &str, generation: u32);
    /// Drops the actor's unacknowledged commands.
    fn forget_commands(&self, actor_id: &str);
    /// Notifies when runners come or go.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

impl Runners for Gateway {
    fn pick(&self, namespace_id: &str, pool: &str) -> Option<String> {
        self.envoys.pick(namespace_id, pool).map(|h| h.key.clone())
    }
    fn is_connected(&self, envoy: &str) -> bool {
        self.envoys.get(envoy).is_some()
    }
    fn instance_of(&self, envoy: &str) -> Option<String> {
        self.envoys.get(envoy).and_then(|h| h.instance.clone())
    }
    fn send_command(&self, envoy: &str, cmd: CommandWrapper) -> bool {
        self.envoys.send_command(envoy, cmd)
    }
    fn assign(&self, envoy: &str, actor_id: &str, generation: u32) -> bool {
        let Some(handle) = self.envoys.get(envoy) else {
            return false;
        };
        handle
            .assigned
            .lock()
            .insert(actor_id.to_string(), generation);
        true
    }
    fn unassign(&self, actor_id: &str, generation: u32) {
        for envoy in self.envoys.list() {
            let mut assigned = envoy.assigned.lock();
            if assigned.get(actor_id) == Some(&generation) {
                assigned.remove(actor_id);
            }
        }
    }
    fn forget_commands(&self, actor_id: &str) {
        self.envoys.forget_actor(actor_id);
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.envoys.subscribe()
    }
}

/// The pools the gateway invokes, and the claims their runners make.
#[async_trait]
pub trait Invokers: Send + Sync + 'static {
    /// The actor's pool if the gateway invokes it; `None` if its runners connect by
    /// themselves.
    async fn pool(
        &self,
        _namespace_id: &str,
        _pool: &str,
    ) -> StoreResult<Option<Arc<InvokedPool>>> {
        Ok(None)
    }
    /// Lets the first runner of `pool` that mentions the actor claim `generation` of it.
    fn await_claim(&self, _actor_id: &str, _generation: u32, _namespace_id: &str, _pool: &str) {}
    /// Withdraws an unclaimed claim.
    fn cancel_claim(&self, _actor_id: &str, _generation: u32) {}
    /// Reports a runner connecting under `envoy_key` to the actor as its standby.
    fn expect_standby(&self, _envoy_key: &str, _actor_id: &str) {}
    /// The standby under `envoy_key` was used.
    fn forget_standby(&self, _envoy_key: &str) {}
    /// The standby under `envoy_key` was given up; its runner, if connected, is told to end.
    fn dismiss_standby(&self, _envoy_key: &str) {}
    /// The runner that claimed `generation` of the actor, if one did.
    fn claimant(&self, _actor_id: &str, _generation: u32) -> Option<String> {
        None
    }
    /// Where runners connect back to, and the token they present.
    fn endpoint(&self) -> (String, Option<String>) {
        (String::new(), None)
    }
}

#[async_trait]
impl Invokers for Gateway {
    async fn pool(&self, namespace_id: &str, pool: &str) -> StoreResult<Option<Arc<InvokedPool>>> {
        self.pools.invoked(&*self.store, namespace_id, pool).await
    }
    fn await_claim(&self, actor_id: &str, generation: u32, namespace_id: &str, pool: &str) {
        self.envoys
            .await_claim(actor_id, generation, namespace_id, pool);
    }
    fn cancel_claim(&self, actor_id: &str, generation: u32) {
        self.envoys.cancel_claim(actor_id, generation);
    }
    fn expect_standby(&self, envoy_key: &str, actor_id: &str) {
        self.envoys.expect_standby(envoy_key, actor_id);
    }
    fn forget_standby(&self, envoy_key: &str) {
        self.envoys.forget_standby(envoy_key);
    }
    fn dismiss_standby(&self, envoy_key: &str) {
        self.envoys.dismiss_standby(envoy_key);
    }
    fn claimant(&self, actor_id: &str, generation: u32) -> Option<String> {
        self.envoys
            .list()
            .into_iter()
            .find(|h| h.generation_of(actor_id) == Some(generation))
            .map(|h| h.key.clone())
    }
    fn endpoint(&self) -> (String, Option<String>) {
        // This node's own URL: the claim waits here, not on whichever node a load balancer
        // picks.
        (self.node.url.clone(), self.config.auth_token.clone())
    }
}

/// The directory a supervisor is listed in, and what outlives it when it unloads.
pub trait Home: Send + Sync + 'static {
    /// Unlists the supervisor if `mailbox` is still the listed one and nothing waits in it.
    fn unload(&self, actor_id: &str, mailbox: &Arc<Mailbox>) -> bool;
    /// Unlists an exited supervisor, unless a newer one took its place.
    fn remove(&self, actor_id: &str, mailbox: &Arc<Mailbox>);
    /// Keeps an unloaded actor's alarm so it fires without the supervisor.
    fn park_alarm(&self, ts: i64, actor_id: &str);
    /// Forgets a destroyed actor's key.
    fn forget_key(&self, namespace_id: &str, name: &str, key: &str);
    /// Drops what is kept in memory for an actor that sleeps with no supervisor loaded: its
    /// cached key (trusted only while the actor is awake here) and the store's hints.
    fn forget_unloaded(&self, record: &ActorRecord);
}

impl Home for Gateway {
    fn unload(&self, actor_id: &str, mailbox: &Arc<Mailbox>) -> bool {
        self.actors.unload(actor_id, mailbox)
    }
    fn remove(&self, actor_id: &str, mailbox: &Arc<Mailbox>) {
        self.actors.remove(actor_id, mailbox)
    }
    fn park_alarm(&self, ts: i64, actor_id: &str) {
        self.alarms.add(ts, actor_id);
    }
    fn forget_key(&self, namespace_id: &str, name: &str, key: &str) {
        self.names.forget_key(namespace_id, name, key);
    }
    fn forget_unloaded(&self, record: &ActorRecord) {
        if let Some(key) = &record.key {
            self.names
                .forget_key(&record.namespace_id, &record.name, key);
        }
        self.store.forget_actor(&record.actor_id);
    }
}

/// How long the supervisor's timers run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A start that has not reported running by then is a crash.
    pub start_timeout: Duration,
    /// Placement retries this often while no runner of the pool is connected.
    pub place_retry: Duration,
    /// How long an adopted actor's runner has to reconnect.
    pub adopt_wait: Duration,
    /// How long an actor sleeps idle before its supervisor unloads.
    pub unload_after: Duration,
}

/// Everything a supervisor talks to.
#[derive(Clone)]
pub struct Ports {
    /// Records and leases.
    pub store: Arc<dyn ActorStore>,
    /// Runners.
    pub runners: Arc<dyn Runners>,
    /// Its directory.
    pub home: Arc<dyn Home>,
    /// Invoked pools.
    pub invokers: Arc<dyn Invokers>,
    /// This node and its registration.
    pub node: Node,
    /// Timers.
    pub timing: Timing,
    /// Fires when the gateway stops: the supervisor exits, leaving runners their actors.
    pub cancel: CancellationToken,
    /// Where phases, wakes and moves are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Ports {
    /// The gateway's own.
    pub fn of(gw: &Gateway) -> Self {
        let lost = u64::try_from(gw.config.envoy.lost_threshold_ms).unwrap_or(0);
        Ports {
            store: Arc::new(StoreActors(gw.store.clone())),
            runners: Arc::new(gw.clone()),
            home: Arc::new(gw.clone()),
            invokers: Arc::new(gw.clone()),
            node: gw.node.clone(),
            timing: Timing {
                start_timeout: Duration::from_secs(30),
                place_retry: Duration::from_millis(500),
                adopt_wait: Duration::from_millis(lost),
                unload_after: gw.config.gateway.actor_unload_after(),
            },
            cancel: gw.stopping.clone(),
            metrics: gw.metrics.clone(),
        }
    }
}
