//! Hibernatable `/connect` connections: what is kept of one in the actor's KV so that it
//! outlives its actor instance (a sleep, a move to another request, a restart), and how a
//! client message already applied is told from a new one.
//!
//! The gateway holds the client's socket while no instance runs and keeps every client
//! message the actor has not acknowledged; the next instance reopens the socket and gets
//! those messages again, with their original indices. A connection's record holds the index
//! of the last message the actor took (`last_in`), set before the message runs, so a state
//! change the message makes is saved in the same KV put as that index (see
//! `persist::Saver`). Read-only messages write nothing: their index rides with the next save
//! or the stop's. A message is acknowledged once applied, its state change durable by then.
//! So a resent message at or before the stored `last_in` is dropped, and each state change
//! happens once across any stop or crash; after a crash only a read-only message that was in
//! flight may run again.
//!
//! # KV layout
//! `04 <connection id>`: CBOR [`ConnRecord`].

use serde::{Deserialize, Serialize};

use super::host::SocketId;
use crate::protocol::Encoding;

pub(crate) const CONN_TAG: u8 = 0x04;
const RECORD_VERSION: u8 = 1;
/// Largest record written; a connection whose state is larger is not kept across a stop
/// (it is closed instead, and the log says why).
pub(crate) const MAX_RECORD_BYTES: usize = 64 * 1024;

pub(crate) fn conn_key(conn_id: &str) -> Vec<u8> {
    let mut key = vec![CONN_TAG];
    key.extend_from_slice(conn_id.as_bytes());
    key
}

/// One hibernatable connection as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConnRecord {
    pub(crate) v: u8,
    /// Connection id, as the client got it in `Init`.
    pub(crate) id: String,
    /// The tunnel request the socket is (gateway id and request id packed).
    pub(crate) socket: u64,
    /// 0 BARE, 1 CBOR, 2 JSON.
    pub(crate) encoding: u8,
    /// The params the client connected with, as JSON text.
    pub(crate) params: Option<String>,
    /// The connection's state, CBOR.
    #[serde(with = "serde_bytes")]
    pub(crate) state: Vec<u8>,
    /// Events it subscribed to.
    pub(crate) subscriptions: Vec<String>,
    /// Index of the last client message the actor took.
    pub(crate) last_in: Option<u16>,
}

impl ConnRecord {
    pub(crate) fn new(
        id: String,
        socket: SocketId,
        encoding: Encoding,
        params: Option<String>,
        state: Vec<u8>,
        subscriptions: Vec<String>,
        last_in: Option<u16>,
    ) -> Self {
        Self {
            v: RECORD_VERSION,
            id,
            socket: socket.0,
            encoding: match encoding {
                Encoding::Bare => 0,
                Encoding::Cbor => 1,
                Encoding::Json => 2,
            },
            params,
            state,
            subscriptions,
            last_in,
        }
    }

    pub(crate) fn encoding(&self) -> Option<Encoding> {
        match self.encoding {
            0 => Some(Encoding::Bare),
            1 => Some(Encoding::Cbor),
            2 => Some(Encoding::Json),
            _ => None,
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        ciborium::into_writer(self, &mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let record: Self = ciborium::from_reader(bytes).map_err(|e| e.to_string())?;
        if record.v != RECORD_VERSION {
            return Err(format!("connection record version {} is unknown", record.v));
        }
        Ok(record)
    }
}

/// Whether client message `index` comes after `last` (message indices wrap at u16; the
/// gateway never keeps more than half the space unacknowledged).
pub(crate) fn is_after(index: u16, last: u16) -> bool {
    let ahead = index.wrapping_sub(last);
    ahead != 0 && ahead < 0x8000
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn indices_compare_across_the_wrap() {
        assert!(is_after(2, 1));
        assert!(!is_after(1, 1));
        assert!(!is_after(1, 2));
        assert!(is_after(0, u16::MAX));
        assert!(is_after(3, 65_530));
        assert!(!is_after(65_530, 3));
    }

    #[test]
    fn records_round_trip() {
        let record = ConnRecord::new(
            "c1".into(),
            SocketId(42),
            Encoding::Json,
            Some("{\"name\":\"ann\"}".into()),
            vec![0xa0],
            vec!["message".into()],
            Some(7),
        );
        let bytes = record.encode().unwrap();
        assert_eq!(ConnRecord::decode(&bytes).unwrap(), record);
        assert_eq!(record.encoding(), Some(Encoding::Json));
        assert_eq!(conn_key("c1"), vec![CONN_TAG, b'c', b'1']);
    }
}
