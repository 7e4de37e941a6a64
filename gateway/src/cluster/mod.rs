//! Several gateway nodes on one store. Each awake actor is served by exactly one node, the
//! holder of its lease (see `Store::acquire_lease`). A node takes the lease when it wakes an
//! actor and gives it up when the actor sleeps. Leases are not renewed one by one: each names
//! the node's incarnation, and the node renews its own registration (`heartbeat`), so the
//! store traffic of keeping actors owned grows with nodes, not actors. A node that dies stops
//! renewing; once its registration runs out, any node may take its actors over. Every start
//! still bumps the actor's generation, so even a node that lost its lease without noticing
//! cannot write over the new owner's state.
//!
//! A request that lands on a node that does not hold the lease is forwarded, whole, to the
//! holder's URL (`forward`). Runners only ever talk to the node they connected to: the
//! lease holder starts the actor on one of its own runners.
//!
//! # Layout
//! - `forward`: passing one HTTP request or WebSocket to the owning node.
//! - `heartbeat`: this node's registration, renewed.

pub mod forward;
pub mod heartbeat;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};

use crate::actor::{ActorHandle, Status};
use crate::config::Config;
use crate::error::ApiError;
use crate::state::Gateway;
use crate::store::{Lease, NodeLease};
use crate::util::now_ms;
use tokio::sync::watch;

/// Header counting how often a request was forwarded between nodes.
pub const HOPS_HEADER: &str = "x-rivulet-hops";
/// Forwarding stops here: leases moving faster than requests is a fault, not a route.
pub const MAX_HOPS: u32 = 2;

/// This node, as the other nodes see it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Stable name (`--node-id`).
    pub id: String,
    /// Where the others forward to (`--node-url`).
    pub url: String,
    /// Lease duration.
    pub lease_ttl: Duration,
    /// Client for forwarded HTTP requests (keeps connections to the other nodes open).
    pub http: reqwest::Client,
    /// This node's registration while it holds it, and until when it counts as held.
    registration: std::sync::Arc<watch::Sender<Registration>>,
}

/// This node's registration as the heartbeat last saw it.
#[derive(Debug, Clone)]
pub struct Registration {
    lease: Option<NodeLease>,
    valid_until: tokio::time::Instant,
}

impl Node {
    /// Resolves the identity of a node bound to `bound`.
    pub fn new(config: &Config, bound: SocketAddr) -> Self {
        let url = config.cluster.node_url.clone().unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                config.public_url.trim_end_matches('/').to_string()
            } else {
                format!("http://{bound}")
            }
        });
        let id = config
            .cluster
            .node_id
            .clone()
            .unwrap_or_else(|| match config.store {
                // One process at a time can open an embedded store, so every process on it is
                // the same node, whatever port it binds: a restart adopts its actors at once.
                crate::config::StoreConfig::Embedded => "local".to_string(),
                crate::config::StoreConfig::Dynamodb { .. } => url
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .to_string(),
            });
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // A pooled connection to a node that vanished must not hang a forward for as
            // long as TCP takes to notice.
            .pool_idle_timeout(Duration::from_secs(20))
            .tcp_keepalive(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "custom HTTP client failed; using defaults");
                reqwest::Client::new()
            });
        Node {
            id,
            url,
            lease_ttl: Duration::from_millis(config.cluster.lease_ms),
            http,
            registration: std::sync::Arc::new(
                watch::channel(Registration {
                    lease: None,
                    valid_until: tokio::time::Instant::now(),
                })
                .0,
            ),
        }
    }

    /// The registration this node holds now: `None` before it registered and after it lost
    /// its registration; actor leases taken under it are valid while it is the same.
    pub fn current(&self) -> Option<NodeLease> {
        let reg = self.registration.borrow();
        reg.lease
            .as_ref()
            .filter(|_| reg.valid_until > tokio::time::Instant::now())
            .cloned()
    }

    /// Until when the current registration counts as held.
    pub fn valid_until(&self) -> tokio::time::Instant {
        self.registration.borrow().valid_until
    }

    /// Notifies when the registration changes (renewed, lost, registered again).
    pub fn watch(&self) -> watch::Receiver<Registration> {
        self.registration.subscribe()
    }

    /// Records the heartbeat's latest result.
    pub(crate) fn publish(&self, lease: Option<NodeLease>, valid_until: tokio::time::Instant) {
        // Only a change of incarnation (or its loss) matters to supervisors; a renewal just
        // moves the deadline.
        self.registration.send_if_modified(|reg| {
            let changed =
                reg.lease.as_ref().map(|l| l.incarnation) != lease.as_ref().map(|l| l.incarnation);
            reg.lease = lease;
            reg.valid_until = valid_until;
            changed
        });
    }

    /// Lease duration in ms, as the store takes it.
    pub fn lease_ttl_ms(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// How often a request was forwarded already.
pub fn hops(headers: &HeaderMap) -> u32 {
    headers
        .get(HOPS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The live lease of another node on this actor, if there is one; `None` means this node
/// serves it (it holds the lease, or nobody does and waking it will take it).
pub async fn remote_owner(gw: &Gateway, actor: &ActorHandle) -> Result<Option<Lease>, ApiError> {
    if matches!(
        actor.status(),
        Status::Running { .. } | Status::Waking | Status::Stopping
    ) {
        return Ok(None);
    }
    let lease = gw.store.get_lease(&actor.actor_id).await?;
    Ok(lease.filter(|l| l.is_live(now_ms()) && l.node_id != gw.node.id))
}

/// The owner did not answer: wait until its lease expires (or `deadline`), so the caller can
/// look again and, if the owner is dead, take the actor over.
pub async fn await_expiry(lease: &Lease, deadline: tokio::time::Instant) -> Result<(), ApiError> {
    let wait = u64::try_from(lease.expires_ms.saturating_sub(now_ms())).unwrap_or(0);
    // A little past the expiry, so the store agrees it is over.
    let until = tokio::time::Instant::now() + Duration::from_millis(wait + 20);
    if until > deadline {
        tokio::time::sleep_until(deadline).await;
        return Err(owner_unreachable(lease));
    }
    tracing::info!(owner = %lease.node_id, wait_ms = wait, "owner unreachable; waiting for its lease to expire");
    tokio::time::sleep_until(until).await;
    Ok(())
}

/// The error for a request whose owning node cannot be reached.
pub fn owner_unreachable(lease: &Lease) -> ApiError {
    ApiError::new(
        "guard",
        "owner_unreachable",
        format!(
            "The gateway node serving this actor ({}) cannot be reached; retry shortly.",
            lease.node_id
        ),
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

/// The error for a request forwarded too often.
pub fn too_many_hops() -> ApiError {
    ApiError::new(
        "guard",
        "forward_loop",
        "The request was forwarded between gateway nodes too often; retry shortly.",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

/// For API calls on one actor (destroy, sleep, reschedule): passes the call to the node
/// serving the actor and returns its answer, or `None` when this node should handle it
/// (it serves the actor, nobody does, or the owner died and its lease has run out).
pub async fn forward_api_call(
    gw: &Gateway,
    actor: &ActorHandle,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<Option<axum::response::Response>, ApiError> {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(gw.config.gateway.actor_ready_timeout_ms);
    let hops = hops(headers);
    while let Some(lease) = remote_owner(gw, actor).await? {
        if hops >= MAX_HOPS {
            return Err(too_many_hops());
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let sent = forward::http(
            gw,
            &lease.node_url,
            method,
            path,
            headers,
            bytes::Bytes::new(),
            hops + 1,
        )
        .await;
        match sent {
            Ok(resp) => return Ok(Some(resp)),
            Err(forward::ForwardError::Unreachable(err)) => {
                tracing::warn!(owner = %lease.node_id, error = %err, "owner node unreachable");
                await_expiry(&lease, deadline).await?;
            }
            Err(err) => return Err(ApiError::forward_failed(err)),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Overrides};

    fn config(o: Overrides) -> Config {
        match Config::from_parts(FileConfig::default(), o) {
            Ok(c) => c,
            Err(err) => panic!("config: {err}"),
        }
    }

    #[test]
    fn embedded_nodes_share_one_identity_dynamo_nodes_differ_by_url() {
        let bound: SocketAddr = ([127, 0, 0, 1], 7000).into();
        let local = Node::new(&config(Overrides::default()), bound);
        assert_eq!(
            (local.id.as_str(), local.url.as_str()),
            ("local", "http://127.0.0.1:7000")
        );
        let dynamo = Node::new(
            &config(Overrides {
                store: Some("dynamodb".into()),
                ..Overrides::default()
            }),
            bound,
        );
        assert_eq!(dynamo.id, "127.0.0.1:7000");
        let named = Node::new(
            &config(Overrides {
                store: Some("dynamodb".into()),
                node_id: Some("gw-1".into()),
                node_url: Some("http://10.0.0.5:6420".into()),
                lease_ms: Some(3_000),
                ..Overrides::default()
            }),
            bound,
        );
        assert_eq!(
            (named.id.as_str(), named.url.as_str()),
            ("gw-1", "http://10.0.0.5:6420")
        );
        assert_eq!(named.lease_ttl_ms(), 3_000);
    }

    #[test]
    fn bound_to_all_interfaces_advertises_the_public_url() {
        let bound: SocketAddr = ([0, 0, 0, 0], 6420).into();
        let node = Node::new(
            &config(Overrides {
                public_url: Some("https://gw.example.com/".into()),
                ..Overrides::default()
            }),
            bound,
        );
        assert_eq!(node.url, "https://gw.example.com");
        // On DynamoDB every node would share that URL and name: refused without --node-url.
        let shared = Config::from_parts(
            FileConfig::default(),
            Overrides {
                host: Some([0, 0, 0, 0].into()),
                store: Some("dynamodb".into()),
                ..Overrides::default()
            },
        );
        assert!(shared.is_err());
        let named = config(Overrides {
            host: Some([0, 0, 0, 0].into()),
            store: Some("dynamodb".into()),
            node_url: Some("http://10.0.0.7:6420".into()),
            ..Overrides::default()
        });
        assert_eq!(Node::new(&named, bound).id, "10.0.0.7:6420");
    }

    #[test]
    fn hop_count_reads_garbage_as_zero() {
        let mut h = HeaderMap::new();
        assert_eq!(hops(&h), 0);
        h.insert(HOPS_HEADER, "1".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(hops(&h), 1);
        h.insert(HOPS_HEADER, "x".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(hops(&h), 0);
    }

    #[test]
    fn bad_cluster_settings_are_refused() {
        let short = Config::from_parts(
            FileConfig::default(),
            Overrides {
                lease_ms: Some(10),
                ..Overrides::default()
            },
        );
        assert!(short.is_err());
        let url = Config::from_parts(
            FileConfig::default(),
            Overrides {
                node_url: Some("10.0.0.5:6420".into()),
                ..Overrides::default()
            },
        );
        assert!(url.is_err());
    }
}
