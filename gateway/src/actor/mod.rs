//! Actors on this gateway node: one supervisor task per active actor, owning its lifecycle,
//! and a directory to find it. Callers talk to a supervisor through a bounded queue and
//! watch its status; they never touch its state.
//!
//! # Layout
//! - `lifecycle`: the pure state machine.
//! - `supervisor`: the task that feeds it and carries out its effects.

pub mod lifecycle;
mod supervisor;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rivulet_wire::envoy::EventWrapper;
use tokio::sync::{mpsc, watch};

use crate::envoy::EnvoyHandle;
use crate::error::ApiError;
use crate::state::Gateway;
use crate::store::ActorRecord;
pub use lifecycle::{Input, Phase};

/// Times a request wakes an actor that keeps stopping before it is ready.
pub const MAX_REWAKES: u32 = 8;

/// Messages queued per supervisor; a full queue answers callers with an overload error.
pub const SUPERVISOR_QUEUE: usize = 256;

/// What an actor's supervisor publishes for waiting requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not running.
    Sleeping,
    /// Starting or waiting for a runner.
    Waking,
    /// Accepting traffic on `envoy_key` with `generation`.
    Running {
        /// Runner serving it.
        envoy_key: String,
        /// Generation serving.
        generation: u32,
    },
    /// Being stopped.
    Stopping,
    /// Gone.
    Destroyed,
    /// Another gateway node serves it (its live lease); `attempt` counts refusals so every
    /// refusal is a visible change.
    Elsewhere {
        /// The other node's lease.
        lease: crate::store::Lease,
        /// Refusals so far.
        attempt: u64,
    },
    /// Its lease could not be read or written (the store failed); `attempt` as above.
    Unavailable {
        /// Failures so far.
        attempt: u64,
    },
}

/// Where a request for an actor goes once it is awake.
#[derive(Clone)]
pub enum Ready {
    /// To a runner of this node.
    Local {
        /// The runner.
        envoy: Arc<EnvoyHandle>,
        /// Generation serving.
        generation: u32,
    },
    /// To the node holding the actor's lease.
    Remote(crate::store::Lease),
}

/// A message for a supervisor.
#[derive(Debug)]
pub enum Msg {
    /// A lifecycle input.
    Input(Input),
    /// Events from the runner.
    Event(EventWrapper),
    /// A client socket of this actor hibernates on the gateway (request id).
    Hibernating([u8; 4], [u8; 4]),
    /// A hibernating client socket closed.
    HibernatingClosed([u8; 4], [u8; 4]),
    /// Its stored record may have changed on another node (an alarm came due): re-read it
    /// unless this node serves the actor.
    Refresh,
}

/// A handle to a running supervisor.
#[derive(Clone)]
pub struct ActorHandle {
    /// The actor.
    pub actor_id: String,
    tx: mpsc::Sender<Msg>,
    status: watch::Receiver<Status>,
}

impl ActorHandle {
    /// Queues a message without waiting; fails if the supervisor is saturated or gone.
    pub fn send(&self, msg: Msg) -> Result<(), ApiError> {
        self.tx.try_send(msg).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => ApiError::overloaded("actor"),
            mpsc::error::TrySendError::Closed(_) => ApiError::actor_not_found(),
        })
    }

    /// A receiver of status changes.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Wakes the actor if needed and waits until it serves traffic here, or finds that
    /// another node serves it.
    pub async fn ready(&self, gw: &Gateway, timeout: Duration) -> Result<Ready, ApiError> {
        let mut rx = self.status.clone();
        // A running actor whose runner is reconnecting becomes reachable when the runner is
        // back, which changes the runner set, not the actor's status.
        let mut runners = gw.envoys.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut woke = false;
        let mut rewakes = 0;
        loop {
            let status = rx.borrow_and_update().clone();
            match status {
                Status::Running {
                    envoy_key,
                    generation,
                } => {
                    if let Some(envoy) = gw.envoys.get(&envoy_key) {
                        return Ok(Ready::Local { envoy, generation });
                    }
                }
                Status::Destroyed => return Err(ApiError::actor_not_found()),
                // A refusal from before this request is stale: ask again first.
                Status::Sleeping | Status::Elsewhere { .. } | Status::Unavailable { .. }
                    if !woke =>
                {
                    self.send(Msg::Input(Input::Wake))?;
                    woke = true;
                }
                Status::Elsewhere { lease, .. } => return Ok(Ready::Remote(lease)),
                Status::Unavailable { .. } => {
                    return Err(ApiError::new(
                        "store",
                        "unavailable",
                        "The store did not answer while the actor was being placed; retry shortly.",
                    )
                    .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE))
                }
                Status::Sleeping => {
                    // It went back to sleep while we waited (a crash, or its runner left):
                    // ask again, a bounded number of times, as the engine does.
                    rewakes += 1;
                    if rewakes > MAX_REWAKES {
                        return Err(ApiError::new(
                            "guard",
                            "actor_wake_retries_exceeded",
                            format!("The actor stopped before becoming ready {MAX_REWAKES} times; see its error in the actors API."),
                        )
                        .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE));
                    }
                    self.send(Msg::Input(Input::Wake))?;
                }
                Status::Waking | Status::Stopping => {
                    if !woke {
                        self.send(Msg::Input(Input::Wake))?;
                        woke = true;
                    }
                }
            }
            let changed = async {
                tokio::select! {
                    r = rx.changed() => r.is_ok(),
                    r = runners.changed() => r.is_ok(),
                }
            };
            match tokio::time::timeout_at(deadline, changed).await {
                Ok(true) => {}
                Ok(false) => return Err(ApiError::actor_not_found()),
                Err(_) => return Err(ApiError::actor_ready_timeout()),
            }
        }
    }
}

/// Supervisors of this node's active actors.
#[derive(Default)]
pub struct Directory {
    inner: Mutex<HashMap<String, ActorHandle>>,
}

impl Directory {
    /// The supervisor of an actor, if one runs.
    pub fn get(&self, actor_id: &str) -> Option<ActorHandle> {
        self.inner.lock().get(actor_id).cloned()
    }

    /// The supervisor of a live actor, started from its stored record if none runs; `None`
    /// for an unknown or destroyed actor.
    pub async fn ensure(
        &self,
        gw: &Gateway,
        actor_id: &str,
    ) -> Result<Option<ActorHandle>, ApiError> {
        if let Some(handle) = self.get(actor_id) {
            return Ok(Some(handle));
        }
        let Some(record) = gw.store.get_actor(actor_id).await? else {
            return Ok(None);
        };
        if record.is_destroyed() {
            return Ok(None);
        }
        Ok(Some(self.spawn(gw, record)))
    }

    /// Starts a supervisor for a record unless one runs already.
    pub fn spawn(&self, gw: &Gateway, record: ActorRecord) -> ActorHandle {
        let mut inner = self.inner.lock();
        if let Some(handle) = inner.get(&record.actor_id) {
            return handle.clone();
        }
        let handle = supervisor::spawn(gw.clone(), record);
        inner.insert(handle.actor_id.clone(), handle.clone());
        handle
    }

    fn remove(&self, actor_id: &str) {
        self.inner.lock().remove(actor_id);
    }

    /// Number of supervisors (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether none run.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().is_empty()
    }
}
