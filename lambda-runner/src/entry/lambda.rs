//! The AWS Lambda entry: every invocation's event is a [`LambdaStart`] (one actor's start
//! command and where to connect back, or a standby key to wait under for the start). The function serves that actor until it stops, or
//! until the invocation's deadline minus the drain margin, when it hands the actor back to
//! the gateway, waits for its state to be flushed and returns. The answer says which.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, LambdaEvent};
use serde::Serialize;

use super::Connections;
use crate::serverless::{LambdaStart, Outcome};

/// What an invocation returns.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaResult {
    /// The actor served (none for a standby invocation that was sent no start).
    pub actor_id: Option<String>,
    /// Its generation.
    pub generation: Option<u32>,
    /// How the invocation ended.
    pub outcome: Outcome,
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The event was not a valid start.
    #[error(transparent)]
    Start(#[from] crate::serverless::StartError),
    /// The gateway could not be reached.
    #[error(transparent)]
    Envoy(#[from] crate::envoy::EnvoyError),
}

impl From<LambdaError> for lambda_runtime::Diagnostic {
    fn from(err: LambdaError) -> Self {
        let error_type = match &err {
            LambdaError::Start(_) => "InvalidStart",
            LambdaError::Envoy(_) => "GatewayUnreachable",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: err.to_string(),
        }
    }
}

/// Handles one invocation.
pub async fn handle(
    conns: &Connections,
    event: LambdaEvent<LambdaStart>,
) -> Result<LambdaResult, LambdaError> {
    let request = event.payload.into_request()?;
    let deadline = conns.deadline(Some(deadline_instant(event.context.deadline)));
    let served = conns.serve(request, deadline).await?;
    let (actor_id, generation) = served.actor.unzip();
    Ok(LambdaResult {
        actor_id,
        generation,
        outcome: served.outcome,
    })
}

/// Deadlines below this are durations, not times: AWS sends ms since the epoch, while the
/// `cargo lambda watch` emulator sends the function timeout itself.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// The invocation deadline as a monotonic instant.
fn deadline_instant(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let left = if deadline_ms < EPOCH_MS_FLOOR {
        Duration::from_millis(deadline_ms)
    } else {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    };
    tracing::info!(
        deadline_ms,
        left_ms = left.as_millis() as u64,
        "invocation deadline"
    );
    tokio::time::Instant::now() + left
}

/// Runs the Lambda runtime loop until the platform ends the process.
pub async fn run(conns: Arc<Connections>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<LambdaStart>| {
        let conns = conns.clone();
        async move { handle(&conns, event).await }
    }))
    .await
}
