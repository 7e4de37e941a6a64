//! Example actors, written as a user of the actor API would write them: [`counter`] and
//! [`chat`]. [`registry`] registers both under the names the demo app uses.

pub mod chat;
pub mod counter;

use crate::actor::Registry;

/// A registry with `counter` and `chat`.
pub fn registry() -> Registry {
    Registry::new()
        .register("counter", counter::counter())
        .register("chat", chat::chat())
}
