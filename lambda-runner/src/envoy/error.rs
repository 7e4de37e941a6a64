//! Errors of the envoy client. Each variant says who failed and whether trying again can
//! help ([`EnvoyError::is_retryable`]).

/// Why an envoy operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvoyError {
    /// The configuration cannot work (bad key, endpoint scheme, TLS not built in, …).
    #[error("invalid envoy configuration: {0}")]
    Config(String),
    /// The gateway refused the connection with a close reason `code#detail`.
    #[error("the gateway refused the envoy connection: {code}: {detail}")]
    Refused {
        /// `group.code`, e.g. `ws.unauthorized`.
        code: String,
        /// The gateway's explanation.
        detail: String,
    },
    /// No connection could be made (the last attempt's error).
    #[error("cannot reach the gateway: {0}")]
    Connect(String),
    /// A deadline passed.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The gateway answered a KV request with an error.
    #[error("kv request failed: {0}")]
    Kv(String),
    /// The generation is not running on this envoy (never started, stopped or lost).
    #[error("actor {actor_id} generation {generation} is not running on this envoy")]
    ActorNotRunning {
        /// The actor.
        actor_id: String,
        /// The generation asked for.
        generation: u32,
    },
    /// A bounded queue is full; the operation was not carried out.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// A tunnel payload exceeds what the gateway accepts.
    #[error("tunnel payload of {size} bytes exceeds the gateway's limit of {limit} bytes")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The gateway's `maxResponsePayloadSize`.
        limit: u64,
    },
    /// The gateway stayed unreachable past its lost threshold; this envoy's actors were
    /// stopped and requests of that time failed.
    #[error("the gateway was unreachable past the lost threshold; actors were stopped")]
    Lost,
    /// Another connection with the same envoy key replaced this one; the client stopped.
    #[error("evicted (ws.eviction): another runner process connected with the same envoy key")]
    Evicted,
    /// The client was shut down or its cancel token fired.
    #[error("the envoy client is shut down")]
    Shutdown,
    /// The gateway sent something this client cannot use.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl EnvoyError {
    /// Whether the same call may succeed later without a configuration change.
    pub fn is_retryable(&self) -> bool {
        match self {
            EnvoyError::Connect(_)
            | EnvoyError::Timeout(_)
            | EnvoyError::Overloaded(_)
            | EnvoyError::Lost => true,
            EnvoyError::Config(_)
            | EnvoyError::Refused { .. }
            | EnvoyError::Kv(_)
            | EnvoyError::ActorNotRunning { .. }
            | EnvoyError::TooLarge { .. }
            | EnvoyError::Evicted
            | EnvoyError::Shutdown
            | EnvoyError::Protocol(_) => false,
        }
    }
}
