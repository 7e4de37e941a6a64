//! Pools declared at start (`--runner-configs`, `[runner_configs.NAME]` in the file): stored
//! in the `default` namespace before the gateway serves, exactly as `PUT /runner-configs`
//! would store them, so a deployment (Terraform, a container's environment) brings its
//! pools with it and every node of a cluster declares the same ones without harm.
//!
//! Their bodies were checked when the configuration was loaded. What can still fail here is
//! the store or a URL pool's `/metadata`: such a pool is logged and tried again in the
//! background until it is stored or the gateway stops, while the rest of the gateway serves.

use std::time::Duration;

use serde_json::Value;

use crate::api::actors::resolve_namespace;
use crate::state::{Gateway, DEFAULT_NAMESPACE};

/// Wait between attempts to store a declared pool that failed.
const RETRY: Duration = Duration::from_secs(5);

/// Stores every declared pool once; the ones that fail keep being retried in the background.
pub async fn apply(gw: &Gateway) {
    let mut left = Vec::new();
    for (name, body) in &gw.config.runner_configs {
        if let Err(err) = store(gw, name, body).await {
            tracing::error!(pool = %name, error = %err, "declared runner pool not stored yet; retrying every {} s", RETRY.as_secs());
            left.push((name.clone(), body.clone()));
        }
    }
    if left.is_empty() {
        return;
    }
    let gw2 = gw.clone();
    gw.tasks.spawn(async move {
        let stop = gw2.stopping.clone();
        while !left.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
            let mut still = Vec::new();
            for (name, body) in left {
                match store(&gw2, &name, &body).await {
                    Ok(()) => tracing::info!(pool = %name, "declared runner pool stored"),
                    Err(err) => {
                        tracing::debug!(pool = %name, error = %err, "declared runner pool still not stored");
                        still.push((name, body));
                    }
                }
            }
            left = still;
        }
    });
}

async fn store(gw: &Gateway, name: &str, body: &Value) -> Result<(), String> {
    let store = async {
        let ns = resolve_namespace(gw, Some(DEFAULT_NAMESPACE)).await?;
        crate::api::meta::store_runner_config(gw, &ns.namespace_id, name, body).await
    };
    store.await.map(|_| ()).map_err(|e| e.message)
}
