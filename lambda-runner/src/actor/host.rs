//! The seam between the actor runtime and whatever carries it: the [`Host`] trait the glue
//! implements once per running actor generation, and the plain values that cross it.
//!
//! The runtime never sees a socket or the envoy protocol. It reads and writes its KV, pushes its
//! alarm, asks to sleep or be destroyed, and sends WebSocket frames, all through `Host`; the
//! glue turns those into envoy messages. Tests implement `Host` in memory.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::error::HostError;
use crate::protocol::Frame;

/// Identifies one WebSocket of one actor. The glue chooses the value (for example the gateway
/// and request ids of the tunnel packed into 64 bits) and uses the same one in every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

/// The services a running actor generation needs from its carrier.
///
/// One `Host` serves one generation of one actor; its KV calls act on that actor's KV only.
/// Calls that return nothing must not block: queue the work and return.
#[async_trait]
pub trait Host: Send + Sync + 'static {
    /// Reads keys; the answer has one entry per key, in order.
    async fn kv_get(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>, HostError>;

    /// Writes all entries in one atomic step; they are durable once this returns `Ok`.
    /// The runtime keeps each call within the gateway's limits (128 keys, 128 KiB per value,
    /// 976 KiB per call) for its own data; user KV calls are passed through as given.
    async fn kv_put(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), HostError>;

    /// Deletes keys in one atomic step; missing keys are not an error.
    async fn kv_delete(&self, keys: Vec<Vec<u8>>) -> Result<(), HostError>;

    /// Every entry whose key starts with `prefix`, in key order. The glue pages through the
    /// gateway's list limit if it must.
    async fn kv_list_prefix(&self, prefix: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, HostError>;

    /// Sets (or clears with `None`) the actor's durable alarm, in ms since the epoch. The
    /// gateway starts a sleeping actor when it is due; while the actor runs, the runtime keeps
    /// its own timer, so the glue need not call anything when it fires.
    fn set_alarm(&self, at_ms: Option<i64>);

    /// The actor asks to sleep (idle, or `ctx.sleep()`); the glue later calls
    /// [`ActorRuntime::stop`](super::ActorRuntime::stop) with [`StopReason::Sleep`].
    fn request_sleep(&self);

    /// The actor asks to be destroyed (`ctx.destroy()`); the glue later calls `stop` with
    /// [`StopReason::Destroy`].
    fn request_destroy(&self);

    /// Accepts a WebSocket that [`ActorRuntime::ws_open`](super::ActorRuntime::ws_open)
    /// offered, or restores one of [`StartInfo::hibernating`]. Called at most once per socket
    /// and instance, always before the first `ws_send` on it. A socket the runtime refuses
    /// gets `ws_close` without `ws_accept`. `hibernatable`: the runtime keeps the connection
    /// across its stops, so the carrier may hold the client's socket while no instance runs
    /// and must keep each client message until [`Host::ws_ack`] covers it.
    fn ws_accept(&self, socket: SocketId, hibernatable: bool);

    /// Client messages of a hibernatable socket up to `index` (wrapping) are durably taken:
    /// the carrier need not deliver them again.
    fn ws_ack(&self, socket: SocketId, index: u16);

    /// The instance is stopping and keeps this hibernatable socket's connection for the
    /// next one: the carrier holds the client's socket open instead of closing it.
    fn ws_hibernate(&self, socket: SocketId);

    /// Sends one frame on an accepted socket.
    fn ws_send(&self, socket: SocketId, frame: Frame);

    /// Closes a socket. The runtime is done with it when it calls this: it has already run (or
    /// queued) the socket's close hooks, so the glue need not report it with
    /// [`ActorRuntime::ws_closed`](super::ActorRuntime::ws_closed); a report is ignored.
    fn ws_close(&self, socket: SocketId, code: u16, reason: String);

    /// Wall-clock time in ms since the epoch, used for schedules. Tests override it.
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// What the glue knows about an actor when it starts one generation of it.
#[derive(Debug, Clone, PartialEq)]
pub struct StartInfo {
    /// Actor id.
    pub actor_id: String,
    /// Canonical key string, if the actor has a key.
    pub key: Option<String>,
    /// Generation this start runs as.
    pub generation: u32,
    /// Input given at creation, CBOR-encoded; used only when the actor has no state yet.
    pub input: Option<Vec<u8>>,
    /// Creation time, ms since the epoch.
    pub create_ts: i64,
    /// Hibernatable sockets the carrier still holds for this actor: their connections are
    /// restored from the actor's storage and the sockets accepted again; any other stored
    /// connection is gone (its `on_disconnect` runs). Client messages on them are numbered
    /// as before the stop ([`ActorRuntime::ws_message`](super::ActorRuntime::ws_message)).
    pub hibernating: Vec<SocketId>,
}

/// Why the glue stops an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The actor goes to sleep and wakes on its next request or alarm; runs `on_sleep`.
    Sleep,
    /// The actor is destroyed for good; runs `on_destroy`.
    Destroy,
    /// The runner is going away (drain, deadline, stop intent); the actor will start elsewhere.
    /// Runs `on_sleep`, as for a sleep.
    GoingAway,
}

/// An HTTP request to an actor, as the gateway tunnels it: `path` is what the actor sees
/// (`/action/increment`, `/request/users?id=1`), query included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers; names compare case-insensitively.
    pub headers: HashMap<String, String>,
    /// Whole body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The value of a header, matching its name case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(self.path.as_str(), |(path, _)| path)
    }
}

/// An HTTP response from an actor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HashMap<String, String>,
    /// Whole body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with a body and a content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: HashMap::from([("content-type".to_owned(), content_type.to_owned())]),
            body: body.into(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// An `application/json` response; a value that cannot be serialized gives a 500.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status, "application/json", body),
            Err(error) => {
                tracing::error!(%error, "response body is not serializable");
                Self::text(500, "response body is not serializable")
            }
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The value of a header, matching its name case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// Case-insensitive header lookup.
pub(crate) fn header_value<'a>(
    headers: &'a HashMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}
