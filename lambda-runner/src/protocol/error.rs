//! Codec errors, and the one place that maps them (and any `group.code`) to what a client sees:
//! the error body, the HTTP status, and the WebSocket close frame.
//!
//! Codes follow rivetkit-core 2.3.19 (`registry/websocket.rs`, `registry/http.rs`, `error.rs`):
//! a message that does not decode is `actor.invalid_request` (WebSocket close 1011), an
//! oversized one `message.incoming_too_long` (close 1011, HTTP 400), an unknown encoding
//! `encoding.invalid` (the TypeScript router's code; close 1003).

use super::types::ErrorBody;

/// Why a client message could not be decoded, or a reply could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The message ended before a complete value was read (more bytes would not be garbage).
    #[error("message truncated: {0}")]
    Truncated(String),
    /// The message is not well-formed for its encoding or its schema.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// A BARE message carries a protocol version this codec does not speak.
    #[error("unsupported client protocol version {0}")]
    UnsupportedVersion(u16),
    /// A text frame arrived where the encoding is binary (BARE, CBOR).
    #[error("expected a {expected} frame for this encoding")]
    WrongFrameType {
        /// The frame type the encoding uses.
        expected: &'static str,
    },
    /// A client message is larger than the actor accepts.
    #[error("incoming message too long: {size} bytes, limit is {limit} bytes")]
    IncomingTooLong {
        /// Size of the message in bytes.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// A reply is larger than the actor may send.
    #[error("outgoing message too long: {size} bytes, limit is {limit} bytes")]
    OutgoingTooLong {
        /// Size of the reply in bytes.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// `x-rivet-encoding` or `rivet_encoding.*` names no known encoding.
    #[error("unsupported encoding `{0}`")]
    UnsupportedEncoding(String),
    /// Connection parameters are not percent-encoded JSON.
    #[error("invalid connection parameters: {0}")]
    InvalidConnParams(String),
    /// A value has no wire representation (nested too deep, bigint too long).
    #[error("value cannot be encoded: {0}")]
    Unencodable(String),
}

impl ProtocolError {
    /// The group, code and message a client sees for this error.
    pub fn to_error_body(&self) -> ErrorBody {
        let (group, code, message) = match self {
            ProtocolError::Truncated(_)
            | ProtocolError::Invalid(_)
            | ProtocolError::UnsupportedVersion(_)
            | ProtocolError::WrongFrameType { .. }
            | ProtocolError::InvalidConnParams(_) => (
                "actor",
                "invalid_request",
                format!("Invalid request: {self}"),
            ),
            ProtocolError::IncomingTooLong { size, limit } => (
                "message",
                "incoming_too_long",
                format!(
                    "Incoming message too long. Received {size} bytes, limit is {limit} bytes."
                ),
            ),
            ProtocolError::OutgoingTooLong { size, limit } => (
                "message",
                "outgoing_too_long",
                format!(
                    "Outgoing message too long. Produced {size} bytes, limit is {limit} bytes."
                ),
            ),
            ProtocolError::UnsupportedEncoding(enc) => {
                ("encoding", "invalid", format!("Invalid encoding `{enc}`."))
            }
            // The actor produced something the wire cannot carry: the client did nothing wrong.
            ProtocolError::Unencodable(_) => (
                "rivetkit",
                "internal_error",
                "An internal error occurred.".to_owned(),
            ),
        };
        ErrorBody {
            group: group.to_owned(),
            code: code.to_owned(),
            message,
            metadata: None,
            action_id: None,
            actor: None,
        }
    }

    /// The WebSocket close code for a connection ended by this error.
    pub fn close_code(&self) -> u16 {
        match self {
            // 1003: "cannot accept this type of data".
            ProtocolError::UnsupportedEncoding(_) | ProtocolError::WrongFrameType { .. } => 1003,
            _ => 1011,
        }
    }

    /// The WebSocket close reason for this error: `group.code`, which the client parses.
    pub fn close_reason(&self) -> String {
        let body = self.to_error_body();
        format!("{}.{}", body.group, body.code)
    }
}

/// The HTTP status for an error with this `group.code`, as rivetkit-core 2.3.19 maps them
/// (its action route table, then its table of public errors); anything else is 500.
pub fn http_status_for(err: &ErrorBody) -> u16 {
    match (err.group.as_str(), err.code.as_str()) {
        ("auth", "forbidden") => 403,
        ("actor", "action_not_found" | "not_found") => 404,
        ("actor", "method_not_allowed") => 405,
        ("actor", "action_timed_out") => 408,
        ("actor", "invalid_request" | "aborted") => 400,
        // Arguments that do not fit the action's types, and changes that would make the state
        // too big to save, are the caller's to fix, not a server fault.
        ("actor", "validation_error") | ("state", "too_large") => 400,
        ("actor", "restarting") => 503,
        ("message", "incoming_too_long" | "outgoing_too_long") => 400,
        ("encoding", "invalid") | ("request", "invalid") => 400,
        (
            "actor_runtime_socket",
            "unsupported" | "not_enabled" | "closed" | "database_unavailable",
        ) => 400,
        ("queue" | "schedule" | "kv" | "user", _) => 400,
        _ => 500,
    }
}
