//! What every part of the gateway shares: configuration, the store, the registries of
//! connected runners, active actors and in-flight tunnel requests, and the process-wide
//! cancellation token and task tracker used for a clean shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actor::Directory;
use crate::config::Config;
use crate::envoy::Registry;
use crate::store::Store;
use crate::tunnel::Routes;

/// Datacenter label of this gateway, embedded in every actor id it creates.
pub const DATACENTER_LABEL: u16 = 1;
/// Name of the single datacenter a gateway reports.
pub const DATACENTER_NAME: &str = "default";
/// Name of the namespace that exists from the start.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Shared gateway state; cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

/// The fields behind [`Gateway`].
pub struct Inner {
    /// Validated configuration.
    pub config: Config,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Connected runners.
    pub envoys: Registry,
    /// Supervisors of active actors.
    pub actors: Directory,
    /// In-flight tunnel requests.
    pub routes: Routes,
    /// Alarms of actors whose supervisors unloaded, fired from memory.
    pub alarms: crate::scheduler::Wheel,
    /// Namespaces and key → actor id, kept so the hot path reads no store.
    pub names: crate::names::Names,
    /// The runner pools this node invokes (serverless, Lambda, local processes).
    pub pools: crate::pool::runtime::Pools,
    /// This node among the gateways sharing the store.
    pub node: crate::cluster::Node,
    /// Identifies this gateway process in tunnel message ids.
    pub gateway_id: [u8; 4],
    /// Fires when shutdown starts: stop accepting, close client sockets, let in-flight
    /// requests finish.
    pub shutdown: CancellationToken,
    /// Fires once requests have drained (or the drain deadline passed): runner connections,
    /// supervisors and background tasks stop. Runner connections outlive `shutdown` so the
    /// replies of requests in flight can still arrive.
    pub stopping: CancellationToken,
    /// Every spawned long-running task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Bytes of client request bodies buffered at once, one permit per byte
    /// (`gateway.max_buffered_body_bytes`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// Client WebSockets open on this node, one permit each (`gateway.max_client_sockets`).
    pub client_sockets: Arc<tokio::sync::Semaphore>,
    /// What `GET /metrics` reports.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl std::ops::Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Gateway {
    /// Builds the shared state.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        node: crate::cluster::Node,
        shutdown: CancellationToken,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let outbound = config.envoy.outbound_queue_frames;
        let body_budget = Arc::new(tokio::sync::Semaphore::new(
            config
                .gateway
                .max_buffered_body_bytes
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let client_sockets = Arc::new(tokio::sync::Semaphore::new(
            config
                .gateway
                .max_client_sockets
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        Gateway(Arc::new(Inner {
            config,
            store,
            envoys: Registry::new(outbound),
            actors: Directory::default(),
            routes: Routes::default(),
            names: crate::names::Names::default(),
            pools: crate::pool::runtime::Pools::new(metrics.clone()),
            alarms: crate::scheduler::Wheel::default(),
            node,
            gateway_id: rand::random(),
            shutdown,
            stopping: CancellationToken::new(),
            tasks: TaskTracker::new(),
            body_budget,
            client_sockets,
            metrics,
        }))
    }
}
