//! The native Rust runner and actor SDK for Rivulet.
//!
//! # Layout
//! - `protocol`: the client-facing actor protocol (client-protocol v4: BARE, CBOR, JSON) the
//!   stock RivetKit client speaks to an actor, over HTTP and WebSocket.
//! - `actor`: the actor API users write against, and the per-actor runtime that serves it
//!   independently of any transport (through the `actor::Host` seam).
//! - `cli`: the command line of the `rivulet-runner` binary, reusable in users' binaries.
//! - `entry`: the long-lived, AWS Lambda and serverless-URL entry points.
//! - `envoy`: the runner side of envoy protocol v8: the connection to the gateway.
//! - `runner`: the glue: envoy commands and tunnel traffic to actor runtimes.
//! - `serverless`: the start payload of a serverless request and how such a request ends.

pub mod actor;
pub mod cli;
pub mod entry;
pub mod envoy;
pub mod examples;
pub mod protocol;
pub mod runner;
pub mod serverless;
