//! Small adapters over the client protocol codec (`crate::protocol`) that the runtime needs in
//! more than one place.

use crate::protocol::{self, Encoding, ErrorBody};

/// An error body in `encoding`. If the metadata cannot be encoded the body goes without it, so
/// the client always learns the group and code.
pub(crate) fn encode_error_body(encoding: Encoding, body: &ErrorBody) -> Vec<u8> {
    match protocol::encode_http_error(encoding, body) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "error metadata cannot be encoded; sending the error without it");
            let bare = ErrorBody {
                metadata: None,
                ..body.clone()
            };
            protocol::encode_http_error(encoding, &bare).unwrap_or_default()
        }
    }
}
