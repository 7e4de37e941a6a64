//! The client-facing actor protocol: what the stock RivetKit client sends to an actor and
//! expects back, over HTTP (`POST /action/{name}`) and over the `/connect` WebSocket
//! (client-protocol v4), in the three encodings the client can choose (BARE is its default).
//!
//! Values (action arguments, outputs, event arguments, error metadata) are kept as
//! `ciborium::Value`: BARE and CBOR carry them as CBOR, and JSON maps onto the same values
//! through RivetKit's tagged forms (`["$BigInt", "1"]`, `["$Uint8Array", base64]`, ...).
//! `value` says how a value stands for a JavaScript one. Encoders lay bytes out as RivetKit
//! 2.3.19's own codec does (golden vectors in `tests/golden/client-v4.json` hold us to it);
//! decoders accept any well-formed input and tell truncated from invalid.
//!
//! # Layout
//! - `types`: the messages, independent of encoding.
//! - `error`: `ProtocolError` and its mapping to client-visible codes and HTTP statuses.
//! - `messages`: WebSocket messages; `http`: HTTP bodies, headers and subprotocols.
//! - `bare`, `cbor`, `json`: the three encodings; `value`: the value model and compat forms.

mod bare;
mod cbor;
mod error;
mod http;
mod json;
mod messages;
mod types;
mod value;

#[cfg(test)]
mod tests;

use ciborium::Value;

pub use error::{http_status_for, ProtocolError};
pub use http::{
    content_type, decode_http_action_args_with_limit, decode_http_action_output, decode_http_error,
    encode_http_action_args, encode_http_action_output_with_limit, encode_http_error,
    encoding_name, parse_conn_params_header, parse_connect_protocols, parse_encoding,
    selected_subprotocol, ConnectRequest, HEADER_ACTOR, HEADER_ACTOR_GENERATION, HEADER_ACTOR_KEY,
    HEADER_CONN_PARAMS, HEADER_ENCODING, WS_PROTOCOL_CONN_PARAMS, WS_PROTOCOL_ENCODING,
    WS_PROTOCOL_STANDARD,
};
pub use types::*;
pub use value::{json_compat_to_value, json_to_value, value_to_json};

/// Largest client message an actor accepts by default (RivetKit `maxIncomingMessageSize`).
pub const MAX_INCOMING_MESSAGE: usize = 65_536;
/// Largest message an actor sends by default (RivetKit `maxOutgoingMessageSize`).
pub const MAX_OUTGOING_MESSAGE: usize = 1_048_576;

/// Encodes a server-to-client message, refusing one over `MAX_OUTGOING_MESSAGE`.
pub fn encode_to_client(enc: Encoding, msg: &ToClient) -> Result<Frame, ProtocolError> {
    encode_to_client_with_limit(enc, msg, MAX_OUTGOING_MESSAGE)
}

/// Encodes a server-to-client message, refusing one over `limit` bytes.
pub fn encode_to_client_with_limit(
    enc: Encoding,
    msg: &ToClient,
    limit: usize,
) -> Result<Frame, ProtocolError> {
    let frame = messages::encode_to_client(enc, msg)?;
    let size = messages::frame_len(&frame);
    if size > limit {
        return Err(ProtocolError::OutgoingTooLong { size, limit });
    }
    Ok(frame)
}

/// Decodes a client-to-server frame, refusing one over `MAX_INCOMING_MESSAGE`. Action
/// arguments come back as an array (null is no arguments, a non-array the one argument).
pub fn decode_to_server(enc: Encoding, frame: &Frame) -> Result<ToServer, ProtocolError> {
    decode_to_server_with_limit(enc, frame, MAX_INCOMING_MESSAGE)
}

/// Decodes a client-to-server frame, refusing one over `limit` bytes.
pub fn decode_to_server_with_limit(
    enc: Encoding,
    frame: &Frame,
    limit: usize,
) -> Result<ToServer, ProtocolError> {
    let size = messages::frame_len(frame);
    if size > limit {
        return Err(ProtocolError::IncomingTooLong { size, limit });
    }
    messages::decode_to_server(enc, frame)
}

/// Encodes a client-to-server message as the RivetKit client does (for Rust clients and tests).
pub fn encode_to_server(enc: Encoding, msg: &ToServer) -> Result<Frame, ProtocolError> {
    messages::encode_to_server(enc, msg)
}

/// Decodes a server-to-client frame as the RivetKit client does (for Rust clients and tests).
pub fn decode_to_client(enc: Encoding, frame: &Frame) -> Result<ToClient, ProtocolError> {
    messages::decode_to_client(enc, frame)
}

/// Action arguments from an HTTP action request body, refusing one over
/// `MAX_INCOMING_MESSAGE`. `args` that is an array is the list, null or missing is no
/// arguments, anything else the one argument (as rivetkit-core does).
pub fn decode_http_action_args(enc: Encoding, body: &[u8]) -> Result<Vec<Value>, ProtocolError> {
    decode_http_action_args_with_limit(enc, body, MAX_INCOMING_MESSAGE)
}

/// An action's return value as an HTTP response body, refusing one over `MAX_OUTGOING_MESSAGE`.
pub fn encode_http_action_output(enc: Encoding, output: &Value) -> Result<Vec<u8>, ProtocolError> {
    encode_http_action_output_with_limit(enc, output, MAX_OUTGOING_MESSAGE)
}
