//! The long-lived runner: one envoy connection to a gateway, kept until SIGINT/SIGTERM, then
//! a graceful leave (the gateway moves the actors away with their state flushed).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::envoy::{EnvoyClient, EnvoyConfig, EnvoyError};
use crate::runner::{Runner, RunnerHandler};

/// Connects and serves until `stop` fires; then leaves gracefully.
pub async fn run(
    runner: Arc<Runner>,
    config: EnvoyConfig,
    stop: CancellationToken,
) -> Result<(), EnvoyError> {
    let cancel = CancellationToken::new();
    let endpoint = config.endpoint.clone();
    let client = EnvoyClient::connect(
        config,
        Arc::new(RunnerHandler(runner.clone())),
        cancel.clone(),
    )
    .await?;
    tracing::info!(%endpoint, envoy_key = %client.envoy_key(), actors = ?runner.registry().names(), "runner connected");
    tokio::select! {
        _ = stop.cancelled() => {}
        // Another process took the key: serving on would fight it for the actors.
        err = client.ended() => {
            cancel.cancel();
            return Err(err);
        }
    }
    tracing::info!("runner leaving");
    client.shutdown().await;
    cancel.cancel();
    Ok(())
}
