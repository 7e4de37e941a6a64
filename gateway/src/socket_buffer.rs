//! The client-to-actor side of one client WebSocket, as a pure type: message indices (the open
//! is 0, messages count from 1, wrapping at u16), the messages the actor has not acknowledged
//! yet, and what to resend, from the first unacknowledged index, when the actor reopens the
//! socket (after a sleep, a lost runner or, later, a hand-over).
//!
//! It is bounded: past `max_pending` unacknowledged messages a new one is refused
//! (`Full`), and the caller closes the client socket with a named code; nothing is dropped
//! silently. A socket the actor did not accept as hibernatable keeps nothing: its messages are
//! numbered and sent once.

use std::collections::VecDeque;

use bytes::Bytes;

/// One client message kept until the actor acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its message index.
    pub index: u16,
    /// The payload.
    pub data: Bytes,
    /// Binary (true) or text frame.
    pub binary: bool,
}

/// Why a message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_pending` messages wait for an acknowledgement already.
    Full,
}

/// The buffer of one socket.
#[derive(Debug)]
pub struct SocketBuffer {
    next_index: u16,
    keep: bool,
    pending: VecDeque<Pending>,
    /// Payload bytes in `pending`.
    pending_bytes: usize,
    max_pending: usize,
}

/// Whether message `index` is covered by an acknowledgement of `ack` (wrapping u16: an ack
/// covers the 32,768 indices at or before it).
pub fn is_acked(index: u16, ack: u16) -> bool {
    ack.wrapping_sub(index) < 0x8000
}

impl SocketBuffer {
    /// A buffer for a new socket; messages start at index 1.
    pub fn new(max_pending: usize) -> Self {
        Self {
            next_index: 1,
            keep: false,
            pending: VecDeque::new(),
            pending_bytes: 0,
            max_pending,
        }
    }

    /// The actor accepted (or restored) the socket; `hibernatable` decides whether messages
    /// are kept until acknowledged.
    pub fn set_hibernatable(&mut self, hibernatable: bool) {
        self.keep = hibernatable;
    }

    /// Whether messages are kept until acknowledged.
    pub fn is_hibernatable(&self) -> bool {
        self.keep
    }

    /// Numbers a client message, keeping it if the socket is hibernatable; returns its index.
    pub fn push(&mut self, data: Bytes, binary: bool) -> Result<u16, Refused> {
        if self.keep && self.pending.len() >= self.max_pending {
            return Err(Refused::Full);
        }
        let index = self.next_index;
        self.next_index = self.next_index.wrapping_add(1);
        if self.keep {
            self.pending_bytes += data.len();
            self.pending.push_back(Pending {
                index,
                data,
                binary,
            });
        }
        Ok(index)
    }

    /// The index the next message (or the close) gets.
    pub fn next_index(&self) -> u16 {
        self.next_index
    }

    /// The actor acknowledged everything up to `ack`.
    pub fn ack(&mut self, ack: u16) {
        // Pending indices increase, so the acknowledged ones are a prefix.
        while self.pending.front().is_some_and(|p| is_acked(p.index, ack)) {
            if let Some(p) = self.pending.pop_front() {
                self.pending_bytes -= p.data.len();
            }
        }
    }

    /// Gives back the room of messages no longer kept: called as the socket parks, since an
    /// idle socket should hold no buffer (a drained queue keeps its capacity otherwise).
    pub fn shrink(&mut self) {
        self.pending.shrink_to_fit();
    }

    /// What to resend when the actor reopens the socket: every unacknowledged message, in
    /// order, with its original index.
    pub fn replay(&self) -> impl Iterator<Item = &Pending> {
        self.pending.iter()
    }

    /// Whether messages wait for an acknowledgement.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// How many wait.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Their payload bytes.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_drained_buffer_gives_its_room_back_when_shrunk() {
        let mut b = SocketBuffer::new(16);
        b.set_hibernatable(true);
        for _ in 0..5 {
            b.push(Bytes::from_static(b"m"), false).unwrap();
        }
        b.ack(3);
        b.shrink();
        assert_eq!(b.pending.capacity(), 2);
        b.ack(5);
        b.shrink();
        assert_eq!(b.pending.capacity(), 0);
        assert_eq!(b.next_index(), 6);
    }

    fn msg(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn indices(b: &SocketBuffer) -> Vec<u16> {
        b.replay().map(|p| p.index).collect()
    }

    #[test]
    fn acks_compare_with_wrapping() {
        assert!(is_acked(5, 5));
        assert!(is_acked(4, 5));
        assert!(!is_acked(6, 5));
        assert!(is_acked(65_535, 2));
        assert!(!is_acked(3, 65_535));
    }

    #[test]
    fn messages_are_numbered_from_one_and_kept_until_acknowledged() {
        let mut b = SocketBuffer::new(10);
        b.set_hibernatable(true);
        assert_eq!(b.push(msg("a"), false), Ok(1));
        assert_eq!(b.push(msg("b"), true), Ok(2));
        assert_eq!(b.push(msg("c"), false), Ok(3));
        b.ack(1);
        assert_eq!(indices(&b), [2, 3]);
        let replay: Vec<_> = b.replay().cloned().collect();
        assert_eq!(
            replay[0],
            Pending {
                index: 2,
                data: msg("b"),
                binary: true
            }
        );
        assert_eq!(b.pending_bytes(), 2);
        b.ack(3);
        assert!(!b.has_pending());
        assert_eq!(b.pending_bytes(), 0);
        assert_eq!(b.next_index(), 4);
    }

    #[test]
    fn an_old_or_repeated_ack_changes_nothing() {
        let mut b = SocketBuffer::new(10);
        b.set_hibernatable(true);
        for s in ["a", "b", "c"] {
            b.push(msg(s), false).unwrap();
        }
        b.ack(2);
        b.ack(1);
        b.ack(2);
        assert_eq!(indices(&b), [3]);
    }

    #[test]
    fn replay_starts_at_the_first_unacknowledged_index_across_the_wrap() {
        let mut b = SocketBuffer::new(10);
        b.set_hibernatable(true);
        b.next_index = 65_534;
        for s in ["a", "b", "c", "d"] {
            b.push(msg(s), false).unwrap();
        }
        assert_eq!(indices(&b), [65_534, 65_535, 0, 1]);
        b.ack(65_535);
        assert_eq!(indices(&b), [0, 1]);
        b.ack(0);
        assert_eq!(indices(&b), [1]);
    }

    #[test]
    fn a_full_buffer_refuses_and_keeps_what_it_has() {
        let mut b = SocketBuffer::new(2);
        b.set_hibernatable(true);
        b.push(msg("a"), false).unwrap();
        b.push(msg("b"), false).unwrap();
        assert_eq!(b.push(msg("c"), false), Err(Refused::Full));
        assert_eq!(indices(&b), [1, 2]);
        // The refused message took no index.
        b.ack(1);
        assert_eq!(b.push(msg("c"), false), Ok(3));
    }

    #[test]
    fn a_socket_that_cannot_hibernate_keeps_nothing_and_is_never_full() {
        let mut b = SocketBuffer::new(1);
        for i in 1..=5u16 {
            assert_eq!(b.push(msg("x"), false), Ok(i));
        }
        assert!(!b.has_pending());
        // Accepted as hibernatable later (a restored socket): from then on it keeps.
        b.set_hibernatable(true);
        b.push(msg("y"), false).unwrap();
        assert_eq!(indices(&b), [6]);
    }
}
