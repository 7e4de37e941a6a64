//! Envoy frame codec. A WebSocket frame carries exactly one BARE message with no version
//! prefix (the version is fixed per connection by the `protocol_version` query parameter);
//! payloads that travel outside a connection (the serverless start body) carry a `u16`
//! little-endian version prefix.
//!
//! Decoding errors say whether the input was cut short (`Truncated`) or is not a valid
//! message at all (`Invalid`), so a caller reading a byte stream can wait for more bytes in
//! the first case and must reject in the second.

use bytes::Bytes;
use vbare::{DecodeErrorKind, Encode, Message};

use crate::envoy::{ToEnvoy, ToRivet};

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The input ended inside a value; more bytes could complete it.
    #[error("truncated frame: {0}")]
    Truncated(String),
    /// The input is not a valid message of this protocol version.
    #[error("invalid frame: {0}")]
    Invalid(String),
    /// A version-prefixed payload names a version this build does not speak.
    #[error("unsupported envoy protocol version {got}, this build speaks {supported}")]
    UnsupportedVersion {
        /// Version found in the prefix.
        got: u16,
        /// Version this build speaks.
        supported: u16,
    },
}

impl From<vbare::DecodeError> for CodecError {
    fn from(err: vbare::DecodeError) -> Self {
        match err.kind() {
            DecodeErrorKind::Truncated | DecodeErrorKind::LengthExceedsInput => {
                CodecError::Truncated(err.to_string())
            }
            _ => CodecError::Invalid(err.to_string()),
        }
    }
}

/// Decodes one runner-to-gateway frame.
pub fn decode_to_rivet(frame: impl Into<Bytes>) -> Result<ToRivet, CodecError> {
    Ok(ToRivet::decode(frame.into())?)
}

/// Decodes one gateway-to-runner frame.
pub fn decode_to_envoy(frame: impl Into<Bytes>) -> Result<ToEnvoy, CodecError> {
    Ok(ToEnvoy::decode(frame.into())?)
}

/// Encodes one gateway-to-runner frame.
pub fn encode_to_envoy(msg: &ToEnvoy) -> Vec<u8> {
    msg.encode_to_vec()
}

/// Encodes one runner-to-gateway frame.
pub fn encode_to_rivet(msg: &ToRivet) -> Vec<u8> {
    msg.encode_to_vec()
}

/// Encodes a gateway-to-runner message behind a `u16` little-endian version prefix, the form
/// of a serverless start request body.
pub fn encode_to_envoy_versioned(msg: &ToEnvoy) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + msg.encoded_len());
    out.extend_from_slice(&crate::ENVOY_PROTOCOL_VERSION.to_le_bytes());
    msg.encode(&mut out);
    out
}

/// Decodes a version-prefixed gateway-to-runner payload; the version must be exactly ours.
pub fn decode_to_envoy_versioned(payload: &[u8]) -> Result<ToEnvoy, CodecError> {
    let Some((prefix, body)) = payload.split_first_chunk::<2>() else {
        return Err(CodecError::Truncated("missing version prefix".into()));
    };
    let got = u16::from_le_bytes(*prefix);
    if got != crate::ENVOY_PROTOCOL_VERSION {
        return Err(CodecError::UnsupportedVersion {
            got,
            supported: crate::ENVOY_PROTOCOL_VERSION,
        });
    }
    decode_to_envoy(Bytes::copy_from_slice(body))
}

#[cfg(test)]
mod tests;
