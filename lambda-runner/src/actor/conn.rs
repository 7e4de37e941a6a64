//! Connections: [`Conn`], one client of an actor (a `/connect` WebSocket, or the short-lived
//! connection an HTTP action runs under), with its params, its state and its event
//! subscriptions; and [`RawSocket`], a WebSocket under `/websocket/...` that the actor's own
//! handlers drive.
//!
//! A `/connect` connection is hibernatable unless the actor opts out
//! ([`ActorDef::can_hibernate`](super::ActorDef::can_hibernate)): it is kept in the actor's KV
//! (see `hibernate`) and outlives the instance, so the actor may sleep or move while the
//! client stays connected.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{Arc, Weak};

use ciborium::Value;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, ReentrantMutex};

use super::args::IntoArgs;
use super::host::{Host, SocketId};
use super::runtime::Control;
use crate::protocol::{self, Encoding, Frame, ProtocolError, ToClient};

/// Where a connection's events go: a `/connect` socket and the encoding its client chose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transport {
    pub(crate) socket: SocketId,
    pub(crate) encoding: Encoding,
}

/// The actor side of a connection: how `Conn::disconnect` reaches the runtime without the
/// connection knowing the actor's state types.
pub(crate) trait ConnOwner: Send + Sync {
    fn disconnect_conn(&self, conn_id: String, reason: String) -> BoxFuture<'static, ()>;
    /// A hibernatable connection's record changed: it goes with the next save, which
    /// `save` asks for now (else it rides with whichever save comes).
    fn conn_changed(&self, conn_id: &str, save: bool);
}

/// What a connection reaches of its actor.
pub(crate) struct ConnLinks {
    pub(crate) host: Arc<dyn Host>,
    pub(crate) control: Arc<Control>,
    pub(crate) owner: Weak<dyn ConnOwner>,
}

/// What a hibernatable connection keeps beyond its params and state.
pub(crate) struct Hibernation {
    /// The params as the client sent them (JSON text), to decode them again on restore.
    pub(crate) params_json: Option<String>,
    /// Index of the last client message taken, for a restored connection.
    pub(crate) last_in: Option<u16>,
}

/// Bookkeeping of a hibernatable connection's record.
#[derive(Debug, Default)]
pub(crate) struct RecordMeta {
    pub(crate) last_in: Option<u16>,
    /// Bumped on every change; `written` is the version the stored record holds.
    pub(crate) version: u64,
    pub(crate) written: u64,
    /// The record outgrew [`MAX_RECORD_BYTES`](super::hibernate::MAX_RECORD_BYTES): the
    /// connection is closed at the stop instead of kept.
    pub(crate) unstorable: bool,
}

impl RecordMeta {
    /// The stored record is behind and can be written.
    pub(crate) fn needs_write(&self) -> bool {
        self.version != self.written && !self.unstorable
    }
}

/// One client connection. Cheap to clone; all clones are the same connection.
pub struct Conn<CP, CS> {
    inner: Arc<ConnInner<CP, CS>>,
}

struct ConnInner<CP, CS> {
    id: String,
    params: Option<CP>,
    // Reentrant so that reading the state inside `update` on the same thread is a clean
    // `RefCell` panic instead of a deadlock; other threads wait.
    state: ReentrantMutex<RefCell<CS>>,
    transport: Option<Transport>,
    subscriptions: Mutex<HashSet<String>>,
    host: Arc<dyn Host>,
    control: Arc<Control>,
    owner: Weak<dyn ConnOwner>,
    /// `Some` for a hibernatable connection: its params' JSON text.
    hibernation: Option<Option<String>>,
    record: Mutex<RecordMeta>,
}

impl<CP, CS> Clone for Conn<CP, CS> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<CP, CS> std::fmt::Debug for Conn<CP, CS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl<CP, CS> Conn<CP, CS>
where
    CP: Send + Sync + 'static,
    CS: Send + 'static,
{
    pub(crate) fn new(
        id: String,
        params: Option<CP>,
        state: CS,
        transport: Option<Transport>,
        links: ConnLinks,
        hibernation: Option<Hibernation>,
    ) -> Self {
        let ConnLinks {
            host,
            control,
            owner,
        } = links;
        let record = RecordMeta {
            last_in: hibernation.as_ref().and_then(|h| h.last_in),
            ..RecordMeta::default()
        };
        Self {
            inner: Arc::new(ConnInner {
                id,
                params,
                state: ReentrantMutex::new(RefCell::new(state)),
                transport,
                subscriptions: Mutex::new(HashSet::new()),
                host,
                control,
                owner,
                hibernation: hibernation.map(|h| h.params_json),
                record: Mutex::new(record),
            }),
        }
    }

    /// A connection restored from its record: written as it is, with its subscriptions.
    pub(crate) fn with_id(
        id: String,
        params: Option<CP>,
        state: CS,
        transport: Option<Transport>,
        links: ConnLinks,
        hibernation: Hibernation,
        subscriptions: Vec<String>,
    ) -> Self {
        let conn = Self::new(id, params, state, transport, links, Some(hibernation));
        conn.inner.subscriptions.lock().extend(subscriptions);
        conn
    }

    /// Whether this connection outlives its actor instance (a hibernatable `/connect`
    /// socket).
    pub fn is_hibernatable(&self) -> bool {
        self.inner.hibernation.is_some() && self.inner.transport.is_some()
    }

    /// The params' JSON text kept for a hibernatable connection.
    pub(crate) fn params_json(&self) -> Option<&str> {
        self.inner.hibernation.as_ref().and_then(|p| p.as_deref())
    }

    /// The record's bookkeeping.
    pub(crate) fn record(&self) -> parking_lot::MutexGuard<'_, RecordMeta> {
        self.inner.record.lock()
    }

    /// Marks the record changed, to be written with the next save.
    pub(crate) fn touch(&self) {
        if !self.is_hibernatable() {
            return;
        }
        self.inner.record.lock().version += 1;
        if let Some(owner) = self.inner.owner.upgrade() {
            owner.conn_changed(&self.inner.id, true);
        }
    }

    /// Takes client message `index`: `false` if it was taken before (a message the gateway
    /// resent after a restore). The new index rides with the next save (the one a state
    /// change of this message makes, or the stop's) but does not cause one: read-only
    /// traffic writes nothing.
    pub(crate) fn take_message(&self, index: u16) -> bool {
        if !self.is_hibernatable() {
            return true;
        }
        let mut record = self.inner.record.lock();
        if let Some(last) = record.last_in {
            if !super::hibernate::is_after(index, last) {
                return false;
            }
        }
        record.last_in = Some(index);
        record.version += 1;
        drop(record);
        if let Some(owner) = self.inner.owner.upgrade() {
            owner.conn_changed(&self.inner.id, false);
        }
        true
    }

    /// Events it subscribed to.
    pub(crate) fn subscriptions(&self) -> Vec<String> {
        let mut subs: Vec<String> = self.inner.subscriptions.lock().iter().cloned().collect();
        subs.sort();
        subs
    }

    /// Connection id, as the client got it in `Init`.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The params the client connected with, if it sent any.
    pub fn params(&self) -> Option<&CP> {
        self.inner.params.as_ref()
    }

    /// Reads the connection's state.
    pub fn state<R>(&self, f: impl FnOnce(&CS) -> R) -> R {
        let guard = self.inner.state.lock();
        let state = guard.borrow();
        f(&state)
    }

    /// Changes the connection's state. A hibernatable connection's state is saved with the
    /// actor's next save (within `state_save_interval`, and on stop); others keep it in
    /// memory only.
    pub fn update<R>(&self, f: impl FnOnce(&mut CS) -> R) -> R {
        let result = {
            let guard = self.inner.state.lock();
            let mut state = guard.borrow_mut();
            f(&mut state)
        };
        self.touch();
        result
    }

    /// Whether this is a `/connect` WebSocket (and not the connection of one HTTP action).
    pub fn is_websocket(&self) -> bool {
        self.inner.transport.is_some()
    }

    /// Sends an event to this connection, whether or not it subscribed (as RivetKit's
    /// `conn.send`). A connection without a socket drops it.
    pub fn send(&self, name: &str, args: impl IntoArgs) {
        match args.into_args() {
            Ok(args) => self.send_event(name, Value::Array(args)),
            Err(error) => {
                tracing::error!(event = name, %error, "event arguments are not serializable")
            }
        }
    }

    /// Closes the connection from the actor's side; `on_disconnect` has run when this
    /// returns.
    pub async fn disconnect(&self, reason: &str) {
        if let Some(owner) = self.inner.owner.upgrade() {
            owner
                .disconnect_conn(self.inner.id.clone(), reason.to_owned())
                .await;
        }
    }

    pub(crate) fn transport(&self) -> Option<Transport> {
        self.inner.transport
    }

    pub(crate) fn subscribe(&self, event: String) {
        if self.inner.subscriptions.lock().insert(event) {
            self.touch();
        }
    }

    pub(crate) fn unsubscribe(&self, event: &str) {
        if self.inner.subscriptions.lock().remove(event) {
            self.touch();
        }
    }

    pub(crate) fn is_subscribed(&self, event: &str) -> bool {
        self.inner.subscriptions.lock().contains(event)
    }

    pub(crate) fn send_event(&self, name: &str, args: Value) {
        let Some(transport) = self.inner.transport else {
            tracing::debug!(conn_id = %self.inner.id, event = name, "event to a connection without a socket dropped");
            return;
        };
        let message = ToClient::Event {
            name: name.to_owned(),
            args,
        };
        send_to_client(&*self.inner.host, &self.inner.control, transport, &message);
    }
}

/// Encodes and sends one message on a `/connect` socket. A message over the outgoing limit
/// closes the socket with `message.outgoing_too_long`, as RivetKit does; the actor task then
/// cleans the connection up as if the client had closed it.
pub(crate) fn send_to_client(
    host: &dyn Host,
    control: &Control,
    transport: Transport,
    message: &ToClient,
) {
    match protocol::encode_to_client(transport.encoding, message) {
        Ok(frame) => host.ws_send(transport.socket, frame),
        Err(error @ ProtocolError::OutgoingTooLong { .. }) => {
            tracing::warn!(%error, "closing socket");
            control.report_closed(transport.socket);
            host.ws_close(transport.socket, 1011, error.close_reason());
        }
        Err(error) => {
            tracing::error!(%error, "encoding a message for the client failed; closing socket");
            control.report_closed(transport.socket);
            host.ws_close(transport.socket, 1011, "actor.send_failed".to_owned());
        }
    }
}

// === RawSocket ===

/// A raw WebSocket under `/websocket/...`. Cheap to clone.
#[derive(Clone)]
pub struct RawSocket {
    socket: SocketId,
    path: Arc<str>,
    host: Arc<dyn Host>,
    control: Arc<Control>,
}

impl std::fmt::Debug for RawSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSocket")
            .field("socket", &self.socket)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RawSocket {
    pub(crate) fn new(
        socket: SocketId,
        path: &str,
        host: Arc<dyn Host>,
        control: Arc<Control>,
    ) -> Self {
        Self {
            socket,
            path: Arc::from(path),
            host,
            control,
        }
    }

    /// The socket's id.
    pub fn id(&self) -> SocketId {
        self.socket
    }

    /// The path the client opened, with `/websocket` removed (`/` at least), query included.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sends a frame.
    pub fn send(&self, frame: Frame) {
        self.host.ws_send(self.socket, frame);
    }

    /// Sends a text frame.
    pub fn send_text(&self, text: impl Into<String>) {
        self.send(Frame::Text(text.into()));
    }

    /// Sends a binary frame.
    pub fn send_binary(&self, data: impl Into<Vec<u8>>) {
        self.send(Frame::Binary(data.into()));
    }

    /// Closes the socket; `on_websocket_close` runs after the current handler returns.
    pub fn close(&self, code: u16, reason: &str) {
        // Queue the close for the actor task first, so the glue's own notice is ignored.
        self.control.report_closed(self.socket);
        self.host.ws_close(self.socket, code, reason.to_owned());
    }
}
