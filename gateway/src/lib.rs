//! The Rivulet gateway: the long-lived process that owns clients' sockets, the actor
//! directory and every actor's durable state, and speaks the Rivet engine's protocols so stock
//! RivetKit runners and clients work against it unchanged.
//!
//! A request from a client resolves its actor (`routing`), wakes it through its supervisor
//! (`actor`), and travels to the runner's envoy connection (`envoy`) as a tunnel message
//! (`tunnel`); replies come back the same way. Runners read and write actor KV and SQLite
//! pages through the envoy connection, fenced by the generation the supervisor gave them;
//! everything durable lives behind the `store::Store` trait.
//!
//! # Layout
//! - [`config`]: typed configuration from defaults, a TOML file, flags and environment.
//! - [`server`]: binds nothing itself; serves a given listener until a shutdown token fires.
//! - [`startup`]: opening the store and binding, with one-line errors for what a user must fix.
//! - [`api`]: the public HTTP API (actors, namespaces, runner configs, health, metadata).
//! - [`quickack`]: accepted sockets that ACK at once, so runner replies are not held back.
//! - [`routing`]: `/gateway/...` client routes, HTTP and WebSocket, to actors.
//! - [`envoy`]: the `/envoys/connect` endpoint runners connect to (protocol v8).
//! - [`actor`]: one supervisor task per active actor and its lifecycle state machine.
//! - [`cluster`]: several nodes on one store: actor leases and forwarding to the owner.
//! - [`scheduler`]: wakes actors whose durable alarm is due.
//! - [`tunnel`]: in-flight tunnel requests keyed by (gateway id, request id).
//! - [`socket_buffer`]: one client socket's message indices and unacknowledged messages (pure).
//! - [`names`]: namespaces and key → actor id in memory, for a hot path with no store reads.
//! - [`store`]: the `Store` trait, the embedded backend and the conformance suite.
//! - [`error`]: the single mapping from failures to wire errors.

pub mod actor;
pub mod api;
pub mod cluster;
pub mod config;
pub mod envoy;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod names;
pub mod open_files;
pub mod pool;
pub mod quickack;
pub mod route_queue;
pub mod routing;
pub mod scheduler;
pub mod server;
pub mod socket_buffer;
pub mod startup;
pub mod state;
pub mod store;
pub mod tunnel;
pub mod util;

pub use config::Config;
pub use server::run;
