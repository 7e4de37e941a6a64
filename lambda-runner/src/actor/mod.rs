//! The actor API users write against, and the per-actor runtime that serves it.
//!
//! # Writing an actor
//!
//! An actor type is an [`ActorDef`]: state, hooks and actions, registered by name in a
//! [`Registry`]. A counter:
//!
//! ```
//! use rivulet_lambda_runner::actor::{ActorDef, Registry};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Counter {
//!     count: i64,
//! }
//!
//! fn counter() -> ActorDef<Counter> {
//!     ActorDef::new()
//!         .state(Counter { count: 0 })
//!         .action("increment", |c, (n,): (i64,)| async move {
//!             let count = c.update(|s| {
//!                 s.count += n;
//!                 s.count
//!             });
//!             c.broadcast("newCount", (count,));
//!             Ok(count)
//!         })
//!         .action("get", |c, ()| async move { Ok(c.state(|s| s.count)) })
//! }
//!
//! let registry = Registry::new().register("counter", counter());
//! assert_eq!(registry.names(), ["counter"]);
//! ```
//!
//! - **State** (`S`) is any serde type. Read it with [`Ctx::state`], change it with
//!   [`Ctx::update`]. **An action's reply means its state change is durable**: an action
//!   that changed the state replies once it is saved (actions finishing meanwhile share one
//!   write). A change that makes the state too large to save (864 KiB encoded) or not
//!   encodable is undone and fails its action with `state.too_large` /
//!   `state.not_serializable`; a store that refuses the write fails it with
//!   `state.save_failed`. [`ActorDef::action_unsaved`] opts one action out: it replies first
//!   and its change is saved within `state_save_interval` (1 s), as RivetKit does for every
//!   action. Changes outside actions (hooks, scheduled actions) are saved within the interval
//!   and on stop. [`Ctx::save_state`] saves at once and returns when the write is durable. A new actor gets its state from [`ActorDef::state`] (a value
//!   cloned per actor) or [`ActorDef::create_state`] (from the creation input).
//! - **Actions** take the context and a tuple of typed arguments decoded from the client's
//!   argument array ([`FromArgs`]), and return `Result<impl Serialize, ActorError>`. They run
//!   one at a time per actor.
//! - **Errors**: return a [`UserError`] (`Err(UserError::new("..").with_code("..").into())`) for
//!   the client to see as group `user`; anything else (`?` on any `std::error::Error`, or
//!   [`ActorError::internal`]) reaches the client as `core.internal_error`, "An internal error
//!   occurred", and goes to the log in full.
//! - **Events**: [`Ctx::broadcast`] reaches the connections that subscribed to the event;
//!   [`Conn::send`] reaches one connection.
//! - **Connections** (`CP` params, `CS` state): [`ActorDef::on_before_connect`] may reject a
//!   client, [`ActorDef::conn_state`] builds its state, [`Ctx::conn`] is the caller. HTTP
//!   actions run under a short-lived connection too, so the same checks apply.
//! - **Vars** (`V`): [`ActorDef::vars`] builds them on every start; never persisted.
//! - **Lifecycle**: new actor: `create_state` → `on_create` → first save → `vars` →
//!   `on_wake`; later starts: `vars` → `on_wake`; stop: `on_sleep` or `on_destroy`, then
//!   `on_disconnect` per connection, then the final save. [`Ctx::sleep`] and [`Ctx::destroy`]
//!   ask the host to stop the actor that way; an actor with no sockets that keep it awake
//!   asks to sleep by itself after `sleep_timeout` (30 s) without work.
//! - **Scheduling**: `ctx.schedule().after(duration, "action", (args,))` or `.at(ms, ..)` is
//!   persisted before it returns and runs even if the actor slept in between.
//! - **Raw handlers**: [`ActorDef::on_request`] serves `/request/...`;
//!   [`ActorDef::on_websocket`] and friends serve `/websocket/...`.
//!
//! # Running actors (the glue's side)
//!
//! The glue implements [`Host`] for each actor generation it runs (KV, alarm, sleep and
//! destroy requests, socket frames), calls [`Registry::start`], forwards requests and socket
//! events to the returned [`ActorRuntime`], and ends it with [`ActorRuntime::stop`]. See
//! [`runtime`] for how work is queued and what happens when the queue is full.
//!
//! - **Hibernatable connections**: a `/connect` socket outlives the actor instance unless
//!   [`ActorDef::can_hibernate`] says otherwise. Its connection (params, state,
//!   subscriptions) is saved with the actor; the actor sleeps when idle even while such
//!   clients are connected; when it stops to sleep or move, the gateway holds the client's
//!   socket, and the next instance takes the connection back without `on_connect` or
//!   `on_disconnect` running. Client messages are applied exactly once across the stop.
//!   Raw `/websocket/...` sockets and opted-out connections keep the actor awake and are
//!   closed when it stops.
//!
//! Not supported yet: streamed HTTP bodies, queues, cron schedules,
//! `onBeforeActionResponse`, actor-to-actor clients.

mod args;
mod conn;
mod context;
mod def;
mod dispatch;
mod error;
mod hibernate;
mod host;
mod persist;
mod registry;
pub mod runtime;
mod schedule;
mod wire;

#[cfg(test)]
mod tests;

pub use args::{FromArgs, IntoArgs, RawArgs};
pub use conn::{Conn, RawSocket};
pub use context::{Ctx, Kv, Schedule};
pub use def::{ActorDef, ActorInfo, ActorOptions, ActorState, ActorVars, ConnParams, ConnState};
pub use error::{
    ActorError, HostError, RuntimeError, SaveError, StartError, UserError, USER_ERROR_CODE,
};
pub use host::{Host, HttpRequest, HttpResponse, SocketId, StartInfo, StopReason};
pub use registry::Registry;
pub use runtime::ActorRuntime;
pub use schedule::ScheduledEvent;
