//! This node's registration in the store, kept alive. Actor leases name a node and its
//! incarnation; they bind other nodes only while that registration is renewed. So this one
//! task, renewing every third of the lease duration, keeps every actor this node serves
//! owned, and a dead node's actors become free to take once its last renewal runs out.
//!
//! The registration counts as held locally for 90 % of the lease duration after the last
//! renewal started, so clock drift and the store's round trip cannot make this node serve
//! actors the store already lets another node take. Past that without a renewal (the store
//! unreachable, or another process registered the same node id), the node publishes that it
//! holds nothing; every supervisor then stops its instance (see `actor::supervisor`), and the
//! task registers again, as a new incarnation.

use std::time::Duration;

use tokio::time::Instant;

use crate::state::Gateway;
use crate::store::NodeLease;
use crate::util::now_ms;

/// How long a registration counts as held locally, measured from when its renewal started.
pub fn held_for(ttl: Duration) -> Duration {
    ttl.mul_f64(0.9)
}

/// Registers this node once (at start-up, before serving).
pub async fn register(gw: &Gateway) -> Result<NodeLease, crate::store::StoreError> {
    let node = &gw.node;
    let started = Instant::now();
    let lease = gw
        .store
        .register_node(&node.id, &node.url, now_ms(), node.lease_ttl_ms())
        .await?;
    tracing::info!(incarnation = lease.incarnation, "registered this node");
    node.publish(Some(lease.clone()), started + held_for(node.lease_ttl));
    Ok(lease)
}

/// Renews the registration until shutdown.
pub async fn run(gw: Gateway, mut lease: Option<NodeLease>) {
    let ttl = gw.node.lease_ttl;
    let mut next = Instant::now() + ttl / 3;
    loop {
        tokio::select! {
            _ = gw.stopping.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let started = Instant::now();
        let result = match &lease {
            // A renewal may not outlive the registration it renews: past that, this node
            // cannot know whether another one took its actors.
            Some(held) => match tokio::time::timeout_at(
                gw.node.valid_until(),
                gw.store.renew_node(held, now_ms(), gw.node.lease_ttl_ms()),
            )
            .await
            {
                Ok(renewed) => {
                    renewed.map(|renewed| renewed.ok_or("another process registered this node id"))
                }
                Err(_) => Err(crate::store::StoreError::Unavailable(
                    "the renewal outlived the registration".into(),
                )),
            },
            None => gw
                .store
                .register_node(&gw.node.id, &gw.node.url, now_ms(), gw.node.lease_ttl_ms())
                .await
                .map(Ok),
        };
        match result {
            Ok(Ok(renewed)) => {
                if lease.as_ref().map(|l| l.incarnation) != Some(renewed.incarnation) {
                    tracing::info!(
                        incarnation = renewed.incarnation,
                        "registered this node again"
                    );
                }
                gw.node
                    .publish(Some(renewed.clone()), started + held_for(ttl));
                lease = Some(renewed);
                next = Instant::now() + ttl / 3;
            }
            Ok(Err(why)) => {
                tracing::warn!(
                    reason = why,
                    "this node's registration was taken; its actors stop here"
                );
                gw.node.publish(None, Instant::now());
                lease = None;
                next = Instant::now() + ttl / 10;
            }
            Err(err) => {
                // `lease` is what this task holds; the node's published view already hides an
                // expired registration, so it cannot tell whether one was held.
                if lease.is_some() && gw.node.valid_until() <= Instant::now() {
                    tracing::warn!(error = %err, "node registration expired while the store was unreachable; its actors stop here");
                    gw.node.publish(None, Instant::now());
                    lease = None;
                } else {
                    tracing::warn!(error = %err, "node heartbeat failed; retrying");
                }
                next = Instant::now() + ttl / 10;
            }
        }
    }
}
