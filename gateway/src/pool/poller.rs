//! Polls the `/metadata` of the URL pools this node invokes, as the engine does: a runner
//! redeployed with another protocol version, moved or taken down shows up in the pool's
//! status (`GET /runner-configs`) and the log before actors fail on it, and new actor names
//! become known. One task for all pools; each pool at its own interval
//! (`metadata_poll_interval`, at least 5 s), one fetch at a time per pool.

use std::sync::Arc;
use std::time::Duration;

use super::runtime::InvokedPool;
use super::Target;
use crate::state::Gateway;

/// How often the task looks for pools that are due.
const TICK: Duration = Duration::from_secs(1);

/// Runs until the gateway stops.
pub async fn run(gw: Gateway) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = gw.stopping.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (namespace_id, pool) in gw.pools.live_with_namespace() {
            if let Some(fetch) = pool.take_metadata_poll() {
                let gw = gw.clone();
                gw.tasks.clone().spawn(async move {
                    poll(&gw, &namespace_id, &pool, fetch).await;
                });
            }
        }
    }
}

async fn poll(gw: &Gateway, namespace_id: &str, pool: &Arc<InvokedPool>, url: String) {
    let Target::Http {
        headers, platform, ..
    } = &pool.config.target
    else {
        return;
    };
    let result = super::metadata::fetch(&gw.node.http, &url, headers, *platform).await;
    match result {
        Ok(meta) => {
            if pool.metadata_ok() {
                tracing::info!(pool = %pool.name, "runner endpoint answers again");
            }
            let names: Vec<(String, String)> = meta.actor_names;
            if !names.is_empty() {
                gw.names
                    .put_registered(namespace_id, names.iter().map(|(n, _)| n.clone()), false);
                if let Err(err) = gw.store.put_actor_names(namespace_id, names).await {
                    tracing::debug!(error = %err, "could not store polled actor names");
                }
            }
        }
        Err(err) => {
            if pool.metadata_failed(err.code(), &err.to_string()) {
                tracing::warn!(pool = %pool.name, error = %err, "runner endpoint's metadata check failed");
            }
        }
    }
}
