//! Wire formats shared by the Rivulet gateway and the Rust runner.
//!
//! The envoy protocol types come from the published `rivet-envoy-protocol` crate (pinned
//! exactly in the workspace) so both ends agree with Rivet byte for byte; this crate adds what
//! both ends need around them and nothing that runs: frame codecs with errors that keep
//! "truncated" apart from "invalid", actor key serialization and the actor id format.
//!
//! # Layout
//! - [`codec`]: encode and decode envoy WebSocket frames and version-prefixed payloads.
//! - [`key`]: actor keys as lists of strings, their canonical string form and query form.
//! - [`id`]: actor and namespace ids in the engine's 30-character base36 form.

pub mod codec;
pub mod id;
pub mod key;

/// The envoy protocol types (version 8), re-exported so users name one crate.
pub use rivet_envoy_protocol as envoy;

/// The envoy protocol version this build speaks.
pub const ENVOY_PROTOCOL_VERSION: u16 = rivet_envoy_protocol::PROTOCOL_VERSION;

/// Largest envoy WebSocket message (and frame) either end of a Rivulet link accepts. One
/// message carries at most one client request body or socket message plus its envelope, so
/// the gateway's client limits stay at least [`ENVOY_FRAME_ENVELOPE_BYTES`] below it: no
/// client input can make a frame the other end refuses, which would cut the whole runner.
pub const ENVOY_MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Room kept in an envoy frame for everything around a client payload (ids, headers, path).
pub const ENVOY_FRAME_ENVELOPE_BYTES: usize = 1024 * 1024;

/// Envoy keys the gateway chooses for standby requests start with this; a runner connecting
/// under such a key that the gateway no longer expects is refused with
/// [`STANDBY_NOT_NEEDED`].
pub const STANDBY_KEY_PREFIX: &str = "standby-";

/// Close code (`group.code`) telling a standby request's runner that the gateway gave it up
/// (the move went ahead without it): it ended unused, not in error.
pub const STANDBY_NOT_NEEDED: &str = "envoy.standby_not_needed";
