//! The seam between the envoy connection and the actor runtime: the [`EnvoyHandler`] the
//! client calls for commands and tunnel traffic, and what a start command carries.

use async_trait::async_trait;
use bytes::Bytes;
use rivulet_wire::envoy::{
    CommandStartActor, HibernatingRequest, PreloadedKv, StopActorReason, ToEnvoyTunnelMessage,
};

use super::EnvoyClient;

/// What the runtime does when the gateway asks. Calls for one actor generation are made in
/// order, one at a time: `start_actor`, then at most one `stop_actor`. Tunnel messages
/// are delivered in arrival order, one at a time, for all actors together.
#[async_trait]
pub trait EnvoyHandler: Send + Sync + 'static {
    /// Start a generation. Return once it is set up (or handed off); report progress with
    /// [`EnvoyClient::actor_running`] and [`EnvoyClient::actor_stopped`]. The generation's
    /// life is not tied to this future.
    async fn start_actor(&self, client: EnvoyClient, start: ActorStart);

    /// Stop a generation; report [`EnvoyClient::actor_stopped`] when done (now or later).
    /// Called at most once per generation, also when the gateway repeats the command.
    async fn stop_actor(
        &self,
        client: EnvoyClient,
        actor_id: String,
        generation: u32,
        reason: StopActorReason,
    );

    /// A client HTTP request or WebSocket message for an actor of this envoy. Return
    /// quickly (hand it to the actor): this call holds up every later tunnel message.
    /// Requests for actors not running here never reach it (the envoy answers them), but
    /// follow-up messages of unknown requests can; ignore those.
    async fn tunnel(&self, client: EnvoyClient, msg: ToEnvoyTunnelMessage);
}

/// A start command.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorStart {
    /// The actor.
    pub actor_id: String,
    /// The generation to run; every wake gets a new one.
    pub generation: u32,
    /// Name, key, allocation time and input.
    pub config: StartConfig,
    /// Client WebSockets that hibernated on the gateway while the actor slept; the actor
    /// restores those it knows (sending `ToRivetWebSocketOpen`) and closes the others.
    pub hibernating_requests: Vec<HibernatingRequest>,
    /// KV the gateway sent along, if any.
    pub preloaded_kv: Option<PreloadedKv>,
}

/// The actor configuration in a start command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartConfig {
    /// Actor name (selects the actor definition).
    pub name: String,
    /// Serialized key, `None` for keyless actors.
    pub key: Option<String>,
    /// When this generation was allocated, ms since the epoch.
    pub create_ts: i64,
    /// CBOR input given at creation.
    pub input: Option<Bytes>,
}

impl ActorStart {
    pub(crate) fn from_wire(actor_id: String, generation: u32, start: CommandStartActor) -> Self {
        Self {
            actor_id,
            generation,
            config: StartConfig {
                name: start.config.name.to_string(),
                key: start.config.key.map(|k| k.to_string()),
                create_ts: start.config.create_ts,
                input: start.config.input,
            },
            hibernating_requests: start.hibernating_requests,
            preloaded_kv: start.preloaded_kv,
        }
    }
}
