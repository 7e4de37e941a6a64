//! Actors on this gateway node: one supervisor task per active actor, owning its lifecycle,
//! and a directory to find it. Callers talk to a supervisor through a bounded queue and
//! watch its status; they never touch its state.
//!
//! # Layout
//! - `lifecycle`: the pure state machine.
//! - `mailbox`: the supervisor's input, coalesced so no lifecycle input is ever dropped.
//! - `supervisor`: the task that feeds it and carries out its effects.
//! - `ports`: what a supervisor talks to (store, runners, directory), as narrow traits.

pub mod lifecycle;
pub mod mailbox;
pub mod ports;
mod supervisor;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rivulet_wire::envoy::EventWrapper;
use tokio::sync::watch;

use crate::envoy::EnvoyHandle;
use crate::error::ApiError;
use crate::state::Gateway;
use crate::store::ActorRecord;
pub use lifecycle::{Input, Phase};
use mailbox::Mailbox;
pub use mailbox::Refused;

/// Times a request wakes an actor that keeps stopping before it is ready.
pub const MAX_REWAKES: u32 = 8;

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
    /// Its serverless pool could not run it: the request failed (`serverless.{code}`) or
    /// the pool backs off after failures. `attempt` as above.
    Failed {
        /// `serverless.{code}`.
        code: String,
        /// What failed, for the client.
        message: String,
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

/// A message for a supervisor (see `mailbox` for how each is kept until applied).
#[derive(Debug, Clone)]
pub enum Msg {
    /// A request, alarm or API call needs it running.
    Wake,
    /// The API asked it to sleep.
    Sleep,
    /// The API asked to destroy it.
    Destroy,
    /// This runner's connection is gone for good.
    RunnerLost(String),
    /// This runner announced it is shutting down.
    RunnerStopping(String),
    /// An event from the runner.
    Event(EventWrapper),
    /// A client socket of this actor can hibernate (gateway id, request id): every later start
    /// restores it until it closes.
    Hibernating([u8; 4], [u8; 4]),
    /// A hibernating client socket closed.
    HibernatingClosed([u8; 4], [u8; 4]),
    /// Its stored record may have changed on another node (an alarm came due): re-read it
    /// unless this node serves the actor.
    Refresh,
    /// A runner started by a serverless request claimed this generation of the actor.
    Claimed {
        /// The runner.
        envoy: String,
        /// Generation claimed.
        generation: u32,
    },
    /// A standby request's runner connected under its key (see `Effect::Standby`).
    StandbyReady {
        /// Its envoy key.
        envoy: String,
    },
    /// The serverless request started for this generation ended.
    InvocationEnded {
        /// Generation it carried.
        generation: u32,
        /// How.
        end: InvocationEnd,
    },
}

/// How a serverless request ended, as the supervisor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationEnd {
    /// Its runner said the actor stopped.
    Finished,
    /// It ended without its runner saying so: a crash, a cut stream, a killed process.
    EndedEarly(String),
    /// The platform refused or could not be reached; nothing ran.
    Failed {
        /// `serverless.{code}`.
        code: String,
        /// What failed.
        message: String,
    },
}

/// A handle to a running supervisor.
#[derive(Clone)]
pub struct ActorHandle {
    /// The actor.
    pub actor_id: String,
    mailbox: Arc<Mailbox>,
    status: watch::Receiver<Status>,
}

impl ActorHandle {
    /// Hands a message to the supervisor without waiting. It is refused only when the
    /// supervisor has exited, or for a runner event past what the protocol allows.
    pub fn send(&self, msg: Msg) -> Result<(), ApiError> {
        self.mailbox.put(msg).map_err(|refused| match refused {
            Refused::Closed => ApiError::actor_not_found(),
            Refused::TooManyEvents => ApiError::overloaded("actor"),
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

    /// The delivery gate: whether traffic for the instance `generation` on `envoy_key` may
    /// go to it now. Once the supervisor has decided to stop or hand over that instance it
    /// publishes another status, and frames wait (see `routing::ws`).
    pub fn delivers_to(&self, envoy_key: &str, generation: u32) -> bool {
        matches!(
            &*self.status.borrow(),
            Status::Running { envoy_key: k, generation: g } if k == envoy_key && *g == generation
        )
    }

    /// Wakes the actor if needed and waits until it serves traffic here, or finds that
    /// another node serves it.
    pub async fn ready(&self, gw: &Gateway, timeout: Duration) -> Result<Ready, ApiError> {
        // The supervisor may unload (asleep, idle) while this waits; `wake` then loads it
        // again and this follows the new one.
        let mut handle = self.clone();
        let mut rx = handle.status.clone();
        // A running actor whose runner is reconnecting becomes reachable when the runner is
        // back, which changes the runner set, not the actor's status.
        let mut runners = gw.envoys.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut woke = false;
        let mut rewakes = 0;
        // Whether the actor was seen waking (or running) since the last wake was sent: only
        // then is "sleeping" news that it went back to sleep. Before, the wake is still on
        // its way (the loop also turns on every change of the runner set).
        let mut stirred = false;
        loop {
            let status = rx.borrow_and_update().clone();
            match status {
                Status::Running {
                    envoy_key,
                    generation,
                } => {
                    stirred = true;
                    if let Some(envoy) = gw.envoys.get(&envoy_key) {
                        return Ok(Ready::Local { envoy, generation });
                    }
                }
                Status::Destroyed => return Err(ApiError::actor_not_found()),
                // A refusal from before this request is stale: ask again first.
                Status::Sleeping
                | Status::Elsewhere { .. }
                | Status::Unavailable { .. }
                | Status::Failed { .. }
                    if !woke =>
                {
                    handle.wake(gw, &mut rx).await?;
                    woke = true;
                    stirred = false;
                }
                Status::Elsewhere { lease, .. } => return Ok(Ready::Remote(lease)),
                // The pool could not run it: say why at once, not after the ready timeout.
                Status::Failed { code, message, .. } => {
                    return Err(ApiError::serverless_failed(&code, message))
                }
                Status::Unavailable { .. } => {
                    return Err(ApiError::store_unavailable(
                        " while the actor was being placed",
                    ))
                }
                Status::Sleeping if !stirred => {}
                Status::Sleeping => {
                    // It went back to sleep while we waited (a crash, or its runner left):
                    // ask again, a bounded number of times, as the engine does.
                    rewakes += 1;
                    stirred = false;
                    if rewakes > MAX_REWAKES {
                        return Err(ApiError::new(
                            "guard",
                            "actor_wake_retries_exceeded",
                            format!("The actor stopped before becoming ready {MAX_REWAKES} times; see its error in the actors API."),
                        )
                        .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE));
                    }
                    handle.wake(gw, &mut rx).await?;
                }
                Status::Waking | Status::Stopping => {
                    stirred = true;
                    if !woke {
                        handle.wake(gw, &mut rx).await?;
                        woke = true;
                    }
                }
            }
            // `Some(true)`: the actor's status changed; `Some(false)`: the runner set did.
            let changed = async {
                tokio::select! {
                    r = rx.changed() => r.is_ok().then_some(true),
                    r = runners.changed() => r.is_ok().then_some(false),
                }
            };
            match tokio::time::timeout_at(deadline, changed).await {
                // Any news from the supervisor after the wake counts as it having acted on
                // it, even if it went back to sleep between two looks.
                Ok(Some(true)) => stirred = true,
                Ok(Some(false)) => {}
                // The supervisor exited: destroyed (the next look says so) or unloaded.
                Ok(None) => handle.wake(gw, &mut rx).await?,
                Err(_) => return Err(ApiError::actor_ready_timeout()),
            }
        }
    }

    /// Sends a wake, following the actor to a newly loaded supervisor if this one unloaded.
    async fn wake(
        &mut self,
        gw: &Gateway,
        rx: &mut watch::Receiver<Status>,
    ) -> Result<(), ApiError> {
        match self.mailbox.put(Msg::Wake) {
            Ok(()) => Ok(()),
            Err(Refused::TooManyEvents) => Err(ApiError::overloaded("actor")),
            Err(Refused::Closed) => {
                let delivered = gw.actors.deliver(gw, &self.actor_id, Msg::Wake).await;
                let Some(next) = delivered? else {
                    return Err(ApiError::actor_not_found());
                };
                *rx = next.status.clone();
                *self = next;
                Ok(())
            }
        }
    }
}

/// Supervisors of this node's loaded actors. A supervisor unloads itself once its actor has
/// slept for a while with nothing to keep (see `supervisor`); the next request, event or due
/// alarm loads it again from the stored record.
#[derive(Default)]
pub struct Directory {
    inner: Mutex<HashMap<String, ActorHandle>>,
}

/// Why [`Directory::deliver`] did not deliver.
#[derive(Debug)]
pub enum DeliverError {
    /// Loading the supervisor failed (the store), or it kept unloading.
    Api(ApiError),
    /// A runner event past what the protocol allows (see `mailbox`).
    TooManyEvents,
}

impl From<ApiError> for DeliverError {
    fn from(err: ApiError) -> Self {
        DeliverError::Api(err)
    }
}

impl From<DeliverError> for ApiError {
    fn from(err: DeliverError) -> Self {
        match err {
            DeliverError::Api(err) => err,
            DeliverError::TooManyEvents => ApiError::overloaded("actor"),
        }
    }
}

/// Times a message is retried against a supervisor that unloaded just as it was sent.
const UNLOAD_RACE_RETRIES: usize = 3;

impl Directory {
    /// The supervisor of an actor, if one is loaded.
    pub fn get(&self, actor_id: &str) -> Option<ActorHandle> {
        self.inner.lock().get(actor_id).cloned()
    }

    /// The supervisor of a live actor, started from its stored record if none is loaded;
    /// `None` for an unknown or destroyed actor.
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

    /// Delivers `msg` to the actor's supervisor, loading it if needed and trying again if it
    /// unloaded between being found and being handed the message. `Ok(None)` for an unknown
    /// or destroyed actor.
    pub async fn deliver(
        &self,
        gw: &Gateway,
        actor_id: &str,
        msg: Msg,
    ) -> Result<Option<ActorHandle>, DeliverError> {
        for _ in 0..UNLOAD_RACE_RETRIES {
            let Some(handle) = self.ensure(gw, actor_id).await? else {
                return Ok(None);
            };
            match handle.mailbox.put(msg.clone()) {
                Ok(()) => return Ok(Some(handle)),
                Err(Refused::Closed) => continue,
                Err(Refused::TooManyEvents) => return Err(DeliverError::TooManyEvents),
            }
        }
        // Loaded and unloaded again three times in a row: something keeps it churning.
        Err(DeliverError::Api(ApiError::overloaded("actor")))
    }

    /// Starts a supervisor for a record unless one is loaded already.
    pub fn spawn(&self, gw: &Gateway, record: ActorRecord) -> ActorHandle {
        let mut inner = self.inner.lock();
        if let Some(handle) = inner.get(&record.actor_id) {
            if !handle.mailbox.is_closed() {
                return handle.clone();
            }
        }
        let handle = supervisor::spawn(ports::Ports::of(gw), record, &gw.tasks);
        inner.insert(handle.actor_id.clone(), handle.clone());
        handle
    }

    /// Unloads a supervisor: succeeds only if `mailbox` is still the loaded one and nothing
    /// waits in it, so no message sent before is lost and none sent after can find it.
    fn unload(&self, actor_id: &str, mailbox: &Arc<Mailbox>) -> bool {
        let mut inner = self.inner.lock();
        let ours = inner
            .get(actor_id)
            .is_some_and(|h| Arc::ptr_eq(&h.mailbox, mailbox));
        if ours && mailbox.close_if_empty() {
            inner.remove(actor_id);
            true
        } else {
            false
        }
    }

    /// Removes an exited supervisor's entry, unless a newer one took its place.
    fn remove(&self, actor_id: &str, mailbox: &Arc<Mailbox>) {
        let mut inner = self.inner.lock();
        if inner
            .get(actor_id)
            .is_some_and(|h| Arc::ptr_eq(&h.mailbox, mailbox))
        {
            inner.remove(actor_id);
        }
    }

    /// Number of loaded supervisors (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether none is loaded.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().is_empty()
    }
}
