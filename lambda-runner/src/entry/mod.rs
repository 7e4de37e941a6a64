//! The three ways to run actors, sharing one runtime ([`Runner`]):
//!
//! - `serve`: a long-lived runner that keeps one envoy connection to a gateway (development,
//!   containers, VMs).
//! - `lambda`: an AWS Lambda function; each invocation carries one actor's start command,
//!   serves that actor until it stops or the invocation's deadline comes near, then returns.
//! - `http`: the same for platforms that call a URL (`POST {base}/start`, answered with a
//!   server-sent event stream), as RivetKit's serverless handler does.
//!
//! The serverless entries share [`Connections`]: one envoy connection per gateway, namespace
//! and pool, opened on the first start that needs it and closed once no actor runs on it, so
//! a frozen function never looks like an idle runner the gateway could place actors on.

pub mod http;
pub mod lambda;
pub mod serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::envoy::{EnvoyClient, EnvoyConfig, EnvoyError};
use crate::runner::{Runner, RunnerHandler};
use crate::serverless::{Outcome, Start, StartRequest};

/// Builds the envoy configuration announcing `runner`'s actor types.
pub fn envoy_config(runner: &Runner, endpoint: &str) -> EnvoyConfig {
    let mut config = EnvoyConfig::new(endpoint);
    config.actor_names = runner
        .registry()
        .names()
        .into_iter()
        .map(|name| (name.to_owned(), serde_json::json!({})))
        .collect();
    config
}

type ConnKey = (String, String, String, Option<String>);

/// One envoy connection and how many start requests use it now.
struct Shared {
    client: EnvoyClient,
    users: usize,
}

/// A start request's hold on its connection; give it back with [`Connections::run`].
pub struct Lease {
    /// The shared connection's key; `None` for a standby request's own connection.
    key: Option<ConnKey>,
    client: EnvoyClient,
}

/// What a request served, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The actor and generation (for a standby request, those of the start it was sent).
    pub actor: Option<(String, u32)>,
    /// How it ended.
    pub outcome: Outcome,
}

/// The envoy connections of a serverless process.
pub struct Connections {
    runner: Arc<Runner>,
    cancel: CancellationToken,
    /// Time kept back before a deadline to stop the actor and leave.
    pub drain_margin: Duration,
    /// Longest one request serves its actor, whatever the platform's deadline (the pool's
    /// request lifespan); `None`: up to the deadline.
    pub max_invocation: Option<Duration>,
    clients: Mutex<HashMap<ConnKey, Shared>>,
}

impl Connections {
    /// Connections for `runner`, all ended by `cancel`.
    pub fn new(runner: Arc<Runner>, drain_margin: Duration, cancel: CancellationToken) -> Self {
        Self {
            runner,
            cancel,
            drain_margin,
            max_invocation: None,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// The deadline of a request that arrived now with the platform deadline `platform`,
    /// capped by [`Self::max_invocation`].
    pub fn deadline(&self, platform: Option<tokio::time::Instant>) -> Option<tokio::time::Instant> {
        let capped = self
            .max_invocation
            .map(|max| tokio::time::Instant::now() + max);
        match (platform, capped) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Connects to the request's gateway (or joins the open connection to it). Fails when
    /// the gateway cannot be reached or refuses, before anything was started.
    pub async fn acquire(&self, req: &StartRequest) -> Result<Lease, EnvoyError> {
        if let Start::Standby(envoy_key) = &req.start {
            // Its own connection, under the key the gateway chose: that is how the gateway
            // knows this request is ready, and where it sends the start.
            let mut config = self.config_for(req);
            config.envoy_key = envoy_key.clone();
            let client = EnvoyClient::connect(
                config,
                Arc::new(RunnerHandler(self.runner.clone())),
                self.cancel.child_token(),
            )
            .await?;
            return Ok(Lease { key: None, client });
        }
        let key = (
            req.endpoint.clone(),
            req.namespace.clone(),
            req.pool_name.clone(),
            req.token.clone(),
        );
        if let Some(shared) = self.clients.lock().await.get_mut(&key) {
            shared.users += 1;
            return Ok(Lease {
                key: Some(key),
                client: shared.client.clone(),
            });
        }
        // Connecting can take a while; other starts must not wait on the lock for it.
        let client = EnvoyClient::connect(
            self.config_for(req),
            Arc::new(RunnerHandler(self.runner.clone())),
            self.cancel.child_token(),
        )
        .await?;
        let mut clients = self.clients.lock().await;
        if let Some(shared) = clients.get_mut(&key) {
            // Another start connected first: use that one, close ours.
            shared.users += 1;
            let existing = shared.client.clone();
            drop(clients);
            client.shutdown().await;
            return Ok(Lease {
                key: Some(key),
                client: existing,
            });
        }
        clients.insert(
            key.clone(),
            Shared {
                client: client.clone(),
                users: 1,
            },
        );
        Ok(Lease {
            key: Some(key),
            client,
        })
    }

    fn config_for(&self, req: &StartRequest) -> EnvoyConfig {
        let mut config = envoy_config(&self.runner, &req.endpoint);
        config.namespace = req.namespace.clone();
        config.pool_name = req.pool_name.clone();
        config.token = req.token.clone();
        // Leaving must fit in the margin before the platform's deadline.
        config.shutdown_timeout = self
            .drain_margin
            .saturating_sub(Duration::from_secs(2))
            .max(Duration::from_secs(1));
        config
    }

    /// Starts the request's actor on its connection (a standby request first waits for the
    /// gateway to send its start) and waits until the actor stops, or until `deadline` minus
    /// the drain margin. Then, if no other request uses the connection, it is closed: the
    /// gateway stops whatever still runs here ("going away", state flushed) and places it
    /// elsewhere. If others still use it, only this actor is handed back (it sleeps, and its
    /// next request wakes it wherever a runner is).
    pub async fn run(
        &self,
        lease: Lease,
        req: StartRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Served {
        let Lease { key, client } = lease;
        let drain_at = deadline.map(|d| d.checked_sub(self.drain_margin).unwrap_or(d));
        let (actor_id, generation) = match req.start {
            Start::Command(command) => {
                let actor = (
                    command.checkpoint.actor_id.to_string(),
                    command.checkpoint.generation,
                );
                client.inject_commands(vec![*command]);
                actor
            }
            Start::Standby(envoy_key) => {
                let waited = tokio::select! {
                    started = self.runner.wait_start(&envoy_key) => Ok(started),
                    _ = sleep_until_opt(drain_at) => Err(Outcome::Unused),
                    // Its own connection ends only when the gateway dismisses the standby
                    // (or evicts the key): nothing ran, so it ended unused.
                    _ = client.ended() => Err(Outcome::Unused),
                    _ = self.cancel.cancelled() => Err(Outcome::GatewayLost),
                };
                match waited {
                    Ok(started) => started,
                    Err(outcome) => {
                        tracing::info!(%envoy_key, ?outcome, "standby request sent no start");
                        client.shutdown().await;
                        return Served {
                            actor: None,
                            outcome,
                        };
                    }
                }
            }
        };
        let span = tracing::info_span!("serverless", %actor_id, generation);
        let _enter = span.enter();
        let outcome = tokio::select! {
            _ = self.runner.wait_stopped(&actor_id, generation) => Outcome::ActorStopped,
            _ = sleep_until_opt(drain_at) => {
                tracing::info!("deadline near: handing the actor back to the gateway");
                Outcome::Deadline
            }
            _ = self.cancel.cancelled() => Outcome::GatewayLost,
        };
        let last = match &key {
            None => true,
            Some(key) => {
                let mut clients = self.clients.lock().await;
                match clients.get_mut(key) {
                    Some(shared) => {
                        shared.users = shared.users.saturating_sub(1);
                        if shared.users == 0 {
                            clients.remove(key);
                            true
                        } else {
                            false
                        }
                    }
                    None => false,
                }
            }
        };
        if last {
            // Replies of actions that ran must leave before the connection closes.
            self.runner.requests_answered(Duration::from_secs(5)).await;
            client.shutdown().await;
        } else if outcome == Outcome::Deadline && client.intent_sleep(&actor_id, generation).is_ok()
        {
            let _ = tokio::time::timeout(
                self.drain_margin,
                self.runner.wait_stopped(&actor_id, generation),
            )
            .await;
        }
        tracing::info!(?outcome, "serverless request done");
        Served {
            actor: Some((actor_id, generation)),
            outcome,
        }
    }

    /// [`Self::acquire`] then [`Self::run`].
    pub async fn serve(
        &self,
        req: StartRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Served, EnvoyError> {
        let lease = match self.acquire(&req).await {
            Ok(lease) => lease,
            // A standby the gateway gave up before it connected ran nothing: unused, not
            // an error.
            Err(EnvoyError::Refused { code, detail })
                if matches!(req.start, Start::Standby(_))
                    && code == rivulet_wire::STANDBY_NOT_NEEDED =>
            {
                tracing::info!(%detail, "standby request not needed");
                return Ok(Served {
                    actor: None,
                    outcome: Outcome::Unused,
                });
            }
            Err(err) => return Err(err),
        };
        Ok(self.run(lease, req, deadline).await)
    }

    /// Closes every connection gracefully.
    pub async fn shutdown(&self) {
        let clients: Vec<EnvoyClient> = self
            .clients
            .lock()
            .await
            .drain()
            .map(|(_, shared)| shared.client)
            .collect();
        for client in clients {
            client.shutdown().await;
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
