//! The [`Registry`]: actor types by name, and the one way to start an instance of one.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};
use tokio_util::sync::CancellationToken;

use super::def::{ActorDef, ActorState, ActorVars, ConnParams, ConnState, DefInner};
use super::error::StartError;
use super::host::{Host, StartInfo};
use super::runtime::{start_actor, ActorRuntime};

/// An actor type with its state types erased, so types of any shape share one map.
trait ErasedActor: Send + Sync {
    fn start(
        &self,
        name: String,
        info: StartInfo,
        host: Arc<dyn Host>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<ActorRuntime, StartError>>;

    fn action_names(&self) -> Vec<String>;
}

struct Erased<S, CP, CS, V>(Arc<DefInner<S, CP, CS, V>>);

impl<S, CP, CS, V> ErasedActor for Erased<S, CP, CS, V>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    fn start(
        &self,
        name: String,
        info: StartInfo,
        host: Arc<dyn Host>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<ActorRuntime, StartError>> {
        start_actor(Arc::clone(&self.0), name, info, host, cancel).boxed()
    }

    fn action_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.actions.keys().cloned().collect();
        names.sort_unstable();
        names
    }
}

/// The actor types a runner serves, by name: `Registry::new().register("counter", counter())`.
#[derive(Default, Clone)]
pub struct Registry {
    actors: HashMap<String, Arc<dyn ErasedActor>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("names", &self.names())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an actor type under `name` (replacing one of the same name).
    pub fn register<S, CP, CS, V>(mut self, name: &str, def: ActorDef<S, CP, CS, V>) -> Self
    where
        S: ActorState,
        CP: ConnParams,
        CS: ConnState,
        V: ActorVars,
    {
        self.actors
            .insert(name.to_owned(), Arc::new(Erased(Arc::new(def.inner))));
        self
    }

    /// Names of the registered actor types, sorted (what the runner announces).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.actors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether an actor type of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.actors.contains_key(name)
    }

    /// Action names of an actor type, sorted.
    pub fn action_names(&self, name: &str) -> Option<Vec<String>> {
        self.actors.get(name).map(|actor| actor.action_names())
    }

    /// Starts one generation of an actor on `host`: loads its state (or, the first time,
    /// creates it from the input with `create_state` and `on_create` and saves it durably),
    /// builds its vars, runs `on_wake`, pushes its alarm, and starts its task. The actor is
    /// ready to serve when this returns. `cancel` ends it without a stop (see
    /// [`ActorRuntime::abort`]).
    pub async fn start(
        &self,
        name: &str,
        info: StartInfo,
        host: Arc<dyn Host>,
        cancel: CancellationToken,
    ) -> Result<ActorRuntime, StartError> {
        let actor = self
            .actors
            .get(name)
            .ok_or_else(|| StartError::UnknownActor(name.to_owned()))?;
        actor.start(name.to_owned(), info, host, cancel).await
    }
}
