//! The messages of client-protocol v4, independent of their encoding.

use ciborium::Value;

/// How a client encodes what it sends and expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// BARE with a `u16le` version prefix; binary WebSocket frames. The stock client's default.
    #[default]
    Bare,
    /// CBOR; binary WebSocket frames.
    Cbor,
    /// JSON with RivetKit's tagged forms for bigints, bytes and undefined; text frames.
    Json,
}

/// Identifies the actor an error came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorSpecifier {
    /// Actor id.
    pub actor_id: String,
    /// Generation that answered.
    pub generation: u64,
    /// Canonical key string, if the actor has a key.
    pub key: Option<String>,
}

/// An error as a client sees it: a stable `group.code`, a message, optional metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBody {
    /// Error group, e.g. `user` or `actor`.
    pub group: String,
    /// Error code within the group.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Structured details for the client, if any.
    pub metadata: Option<Value>,
    /// The action this error answers, on a WebSocket connection.
    pub action_id: Option<u64>,
    /// Which actor answered.
    pub actor: Option<ActorSpecifier>,
}

/// Server to client, on the `/connect` WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum ToClient {
    /// First message of every connection.
    Init {
        /// Actor id.
        actor_id: String,
        /// Id of this connection.
        connection_id: String,
    },
    /// An error, for one action (`action_id` set) or for the whole connection.
    Error(ErrorBody),
    /// The result of an action.
    ActionResponse {
        /// Id the client gave the action.
        id: u64,
        /// What the action returned.
        output: Value,
    },
    /// An event the client subscribed to.
    Event {
        /// Event name.
        name: String,
        /// Event arguments (an array).
        args: Value,
    },
}

/// Client to server, on the `/connect` WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum ToServer {
    /// Call an action.
    ActionRequest {
        /// Client-chosen id, echoed in the response.
        id: u64,
        /// Action name.
        name: String,
        /// Arguments (an array).
        args: Value,
    },
    /// Start or stop receiving an event.
    SubscriptionRequest {
        /// Event name.
        event_name: String,
        /// Whether to subscribe (true) or unsubscribe.
        subscribe: bool,
    },
}

/// One WebSocket frame of the protocol: JSON travels as text, BARE and CBOR as binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}
