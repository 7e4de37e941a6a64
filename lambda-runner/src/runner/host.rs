//! The [`Host`] of one running actor generation on an envoy connection: KV goes to the
//! gateway's store fenced by the generation, alarms and sleep/destroy requests become envoy
//! events, and WebSocket frames become tunnel messages on the socket's request.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rivulet_wire::envoy::{
    ToRivetTunnelMessageKind, ToRivetWebSocketClose, ToRivetWebSocketMessage,
    ToRivetWebSocketMessageAck, ToRivetWebSocketOpen,
};

use super::tunnel::Sockets;
use crate::actor::{Host, HostError, SocketId};
use crate::envoy::{EnvoyClient, EnvoyError, ListQuery};
use crate::protocol::Frame;

/// Keys listed per KV request while paging through a prefix.
const LIST_PAGE: u64 = 1024;

/// One actor generation's view of the envoy connection.
pub(crate) struct EnvoyHost {
    pub(crate) client: EnvoyClient,
    pub(crate) actor_id: String,
    pub(crate) generation: u32,
    pub(crate) sockets: Arc<Sockets>,
}

fn host_error(err: EnvoyError) -> HostError {
    match err {
        EnvoyError::ActorNotRunning { .. } | EnvoyError::Shutdown | EnvoyError::Evicted => {
            HostError::Closed
        }
        EnvoyError::Kv(message) => HostError::Rejected(message),
        EnvoyError::TooLarge { size, limit } => {
            HostError::Rejected(format!("{size} bytes exceed the limit of {limit}"))
        }
        other if other.is_retryable() => HostError::Unavailable(other.to_string()),
        other => HostError::Rejected(other.to_string()),
    }
}

impl EnvoyHost {
    fn event_failed(&self, what: &str, err: EnvoyError) {
        // The generation stopped meanwhile; nothing is waiting for this event any more.
        tracing::debug!(actor_id = %self.actor_id, error = %err, "{what} not sent");
    }
}

#[async_trait]
impl Host for EnvoyHost {
    async fn kv_get(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>, HostError> {
        let wanted: Vec<Bytes> = keys.iter().cloned().map(Bytes::from).collect();
        let entries = self
            .client
            .kv_get(&self.actor_id, Some(self.generation), wanted)
            .await
            .map_err(host_error)?;
        Ok(keys
            .iter()
            .map(|k| {
                entries
                    .iter()
                    .find(|e| e.key.as_ref() == k.as_slice())
                    .map(|e| e.value.to_vec())
            })
            .collect())
    }

    async fn kv_put(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), HostError> {
        let entries = entries
            .into_iter()
            .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
            .collect();
        self.client
            .kv_put(&self.actor_id, Some(self.generation), entries)
            .await
            .map_err(host_error)
    }

    async fn kv_delete(&self, keys: Vec<Vec<u8>>) -> Result<(), HostError> {
        let keys = keys.into_iter().map(Bytes::from).collect();
        self.client
            .kv_delete(&self.actor_id, Some(self.generation), keys)
            .await
            .map_err(host_error)
    }

    async fn kv_list_prefix(&self, prefix: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, HostError> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut query = ListQuery::Prefix(Bytes::from(prefix.clone()));
        loop {
            let page = self
                .client
                .kv_list(
                    &self.actor_id,
                    Some(self.generation),
                    query,
                    false,
                    Some(LIST_PAGE),
                )
                .await
                .map_err(host_error)?;
            let full = u64::try_from(page.len()).unwrap_or(u64::MAX) >= LIST_PAGE;
            let last = page.last().map(|e| e.key.clone());
            out.extend(page.into_iter().map(|e| (e.key.to_vec(), e.value.to_vec())));
            let Some(last) = last.filter(|_| full) else {
                return Ok(out);
            };
            // Continue after the last key, still inside the prefix.
            let mut end = prefix.clone();
            match prefix_successor(&mut end) {
                true => {
                    query = ListQuery::Range {
                        start: next_key(&last),
                        end: Bytes::from(end),
                        exclusive: true,
                    };
                }
                // A prefix of only 0xff bytes has no successor: list to the end of the space.
                false => {
                    query = ListQuery::Range {
                        start: next_key(&last),
                        end: Bytes::from(vec![0xff; 1024]),
                        exclusive: false,
                    };
                }
            }
        }
    }

    fn set_alarm(&self, at_ms: Option<i64>) {
        if let Err(err) = self
            .client
            .set_alarm(&self.actor_id, self.generation, at_ms)
        {
            self.event_failed("alarm", err);
        }
    }

    fn request_sleep(&self) {
        if let Err(err) = self.client.intent_sleep(&self.actor_id, self.generation) {
            self.event_failed("sleep intent", err);
        }
    }

    fn request_destroy(&self) {
        // A stop intent that ends cleanly is how an actor destroys itself.
        if let Err(err) = self.client.intent_stop(&self.actor_id, self.generation) {
            self.event_failed("stop intent", err);
        }
    }

    fn ws_accept(&self, socket: SocketId, hibernatable: bool) {
        // For a restored socket this open is what makes the gateway reattach it and resend
        // the client messages the actor had not acknowledged.
        self.sockets.send(
            &self.client,
            socket,
            ToRivetTunnelMessageKind::ToRivetWebSocketOpen(ToRivetWebSocketOpen {
                can_hibernate: hibernatable,
            }),
        );
    }

    fn ws_ack(&self, socket: SocketId, index: u16) {
        self.sockets.send(
            &self.client,
            socket,
            ToRivetTunnelMessageKind::ToRivetWebSocketMessageAck(ToRivetWebSocketMessageAck {
                index,
            }),
        );
    }

    fn ws_hibernate(&self, socket: SocketId) {
        self.sockets.send(
            &self.client,
            socket,
            ToRivetTunnelMessageKind::ToRivetWebSocketClose(ToRivetWebSocketClose {
                code: None,
                reason: None,
                hibernate: true,
            }),
        );
        self.sockets.forget(socket);
    }

    fn ws_send(&self, socket: SocketId, frame: Frame) {
        let (data, binary) = match frame {
            Frame::Text(text) => (Bytes::from(text.into_bytes()), false),
            Frame::Binary(bytes) => (Bytes::from(bytes), true),
        };
        self.sockets.send(
            &self.client,
            socket,
            ToRivetTunnelMessageKind::ToRivetWebSocketMessage(ToRivetWebSocketMessage {
                data,
                binary,
            }),
        );
    }

    fn ws_close(&self, socket: SocketId, code: u16, reason: String) {
        self.sockets.send(
            &self.client,
            socket,
            ToRivetTunnelMessageKind::ToRivetWebSocketClose(ToRivetWebSocketClose {
                code: Some(code),
                reason: Some(reason.into()),
                hibernate: false,
            }),
        );
        self.sockets.forget(socket);
    }
}

/// The smallest key after `key`.
fn next_key(key: &[u8]) -> Bytes {
    let mut next = key.to_vec();
    next.push(0);
    Bytes::from(next)
}

/// Turns `prefix` into the first key after every key it prefixes; `false` if there is none.
fn prefix_successor(prefix: &mut Vec<u8>) -> bool {
    while let Some(last) = prefix.pop() {
        if last < 0xff {
            prefix.push(last + 1);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successors() {
        let mut p = b"ab".to_vec();
        assert!(prefix_successor(&mut p));
        assert_eq!(p, b"ac");
        let mut p = vec![b'a', 0xff];
        assert!(prefix_successor(&mut p));
        assert_eq!(p, b"b");
        let mut p = vec![0xff, 0xff];
        assert!(!prefix_successor(&mut p));
        assert_eq!(next_key(b"a").as_ref(), b"a\0");
    }
}
