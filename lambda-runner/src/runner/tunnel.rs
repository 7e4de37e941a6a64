//! Client traffic tunnelled to this runner: which actor each WebSocket belongs to, the
//! numbering of the messages sent back on it, and request bodies that arrive in chunks.
//!
//! Numbering follows what the gateway expects of a runner: on a WebSocket the open is message
//! 0 and data messages count up from 1; a close always carries 0; an HTTP response is 0.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;
use rivulet_wire::envoy::{
    MessageId, ToRivetTunnelMessage, ToRivetTunnelMessageKind, ToRivetWebSocketClose,
};

use crate::actor::SocketId;
use crate::envoy::{EnvoyClient, EnvoyError};

/// (gateway id, request id) of a tunnelled request.
pub(crate) type RequestKey = ([u8; 4], [u8; 4]);

/// The socket id the runtime sees for a tunnelled WebSocket.
pub(crate) fn socket_id(key: RequestKey) -> SocketId {
    let (gateway, request) = key;
    SocketId(
        (u64::from(u32::from_be_bytes(gateway)) << 32) | u64::from(u32::from_be_bytes(request)),
    )
}

fn request_key(socket: SocketId) -> RequestKey {
    let gateway = u32::try_from(socket.0 >> 32).unwrap_or(0).to_be_bytes();
    let request = u32::try_from(socket.0 & 0xffff_ffff)
        .unwrap_or(0)
        .to_be_bytes();
    (gateway, request)
}

/// What a socket's task receives after the open.
pub(crate) enum SocketEvent {
    /// A client frame and its message index.
    Frame(u16, crate::protocol::Frame),
    /// The client or the gateway closed the socket.
    Closed,
}

/// The open WebSockets: their message counters and the queues of their tasks. Forgetting a
/// socket drops its queue, which ends its task.
///
/// A hibernatable socket can be taken over by the next instance of its actor on this same
/// runner while the old instance's task is still ending; each queue therefore carries a
/// token, and a task ending forgets only its own queue.
#[derive(Default)]
pub(crate) struct Sockets {
    next_index: Mutex<HashMap<SocketId, u16>>,
    queues: Mutex<HashMap<SocketId, (u64, tokio::sync::mpsc::Sender<SocketEvent>)>>,
    next_token: std::sync::atomic::AtomicU64,
}

impl Sockets {
    /// Sends one message on a socket, numbered as the gateway expects.
    pub(crate) fn send(
        &self,
        client: &EnvoyClient,
        socket: SocketId,
        kind: ToRivetTunnelMessageKind,
    ) {
        let index = match &kind {
            ToRivetTunnelMessageKind::ToRivetWebSocketOpen(_) => {
                self.next_index.lock().insert(socket, 1);
                0
            }
            ToRivetTunnelMessageKind::ToRivetWebSocketMessage(_) => {
                let mut counters = self.next_index.lock();
                let Some(next) = counters.get_mut(&socket) else {
                    tracing::debug!(socket = socket.0, "frame for a socket no longer open");
                    return;
                };
                let index = *next;
                *next = next.wrapping_add(1);
                index
            }
            _ => 0,
        };
        let (gateway_id, request_id) = request_key(socket);
        let msg = ToRivetTunnelMessage {
            message_id: MessageId {
                gateway_id,
                request_id,
                message_index: index,
            },
            message_kind: kind,
        };
        match client.tunnel_send(msg) {
            Ok(()) => {}
            Err(EnvoyError::Overloaded(why)) => {
                // Dropping one message would corrupt the socket's stream: end the socket
                // with a code that says so (a close is always accepted), and send nothing
                // more on it.
                tracing::warn!(socket = socket.0, "{why}; closing the socket");
                self.next_index.lock().remove(&socket);
                let close = ToRivetTunnelMessage {
                    message_id: MessageId {
                        gateway_id,
                        request_id,
                        message_index: 0,
                    },
                    message_kind: ToRivetTunnelMessageKind::ToRivetWebSocketClose(
                        ToRivetWebSocketClose {
                            code: Some(1013),
                            reason: Some("envoy.tunnel_overloaded".into()),
                            hibernate: false,
                        },
                    ),
                };
                let _ = client.tunnel_send(close);
            }
            Err(err) => {
                tracing::debug!(socket = socket.0, error = %err, "websocket message not sent");
            }
        }
    }

    /// Forgets a closed socket and ends its task.
    pub(crate) fn forget(&self, socket: SocketId) {
        self.next_index.lock().remove(&socket);
        self.queues.lock().remove(&socket);
    }

    /// Registers the queue of a socket's task; returns its token.
    pub(crate) fn set_queue(
        &self,
        socket: SocketId,
        tx: tokio::sync::mpsc::Sender<SocketEvent>,
    ) -> u64 {
        let token = self
            .next_token
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.queues.lock().insert(socket, (token, tx));
        token
    }

    /// Forgets the socket if its queue is still the one registered under `token`.
    pub(crate) fn forget_queue(&self, socket: SocketId, token: u64) {
        let mut queues = self.queues.lock();
        if queues.get(&socket).is_some_and(|(t, _)| *t == token) {
            queues.remove(&socket);
            drop(queues);
            self.next_index.lock().remove(&socket);
        }
    }

    /// The queue of a socket's task, if it is still open.
    pub(crate) fn queue(&self, socket: SocketId) -> Option<tokio::sync::mpsc::Sender<SocketEvent>> {
        self.queues.lock().get(&socket).map(|(_, tx)| tx.clone())
    }
}

/// Sends the one message of an HTTP response.
pub(crate) fn respond(
    client: &EnvoyClient,
    key: RequestKey,
    kind: ToRivetTunnelMessageKind,
) -> Result<(), crate::envoy::EnvoyError> {
    let (gateway_id, request_id) = key;
    let msg = ToRivetTunnelMessage {
        message_id: MessageId {
            gateway_id,
            request_id,
            message_index: 0,
        },
        message_kind: kind,
    };
    client.tunnel_send(msg).inspect_err(|err| {
        tracing::warn!(error = %err, "response not sent");
    })
}

/// A request whose body arrives in chunks.
pub(crate) struct PendingBody {
    pub(crate) actor_id: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

/// Request bodies being received; bounded in count and size.
#[derive(Default)]
pub(crate) struct Bodies {
    inner: Mutex<HashMap<RequestKey, PendingBody>>,
}

/// Chunked bodies received at once per runner; more are refused.
pub(crate) const MAX_PENDING_BODIES: usize = 256;
/// Largest body assembled from chunks (RivetKit's HTTP body limit).
pub(crate) const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;

/// What a chunk did to its request.
pub(crate) enum Chunk {
    /// More to come.
    Partial,
    /// The body is complete.
    Done(PendingBody),
    /// Over a limit, or no such request: the request is dropped.
    Refused,
}

impl Bodies {
    /// Starts receiving a body; `false` when too many are in progress.
    pub(crate) fn start(&self, key: RequestKey, pending: PendingBody) -> bool {
        let mut inner = self.inner.lock();
        if inner.len() >= MAX_PENDING_BODIES {
            return false;
        }
        inner.insert(key, pending);
        true
    }

    /// Adds one chunk.
    pub(crate) fn chunk(&self, key: RequestKey, data: &Bytes, finish: bool) -> Chunk {
        let mut inner = self.inner.lock();
        let Some(pending) = inner.get_mut(&key) else {
            return Chunk::Refused;
        };
        if pending.body.len() + data.len() > MAX_BODY_BYTES {
            inner.remove(&key);
            return Chunk::Refused;
        }
        pending.body.extend_from_slice(data);
        if !finish {
            return Chunk::Partial;
        }
        match inner.remove(&key) {
            Some(done) => Chunk::Done(done),
            None => Chunk::Refused,
        }
    }

    /// Drops a request the gateway aborted.
    pub(crate) fn abort(&self, key: RequestKey) {
        self.inner.lock().remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_round_trip() {
        let key = ([1, 2, 3, 4], [0xff, 0, 0xab, 9]);
        assert_eq!(request_key(socket_id(key)), key);
    }
}
