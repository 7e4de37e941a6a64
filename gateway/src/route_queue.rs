//! The queue of one tunnel route: runner messages waiting for the task that serves the
//! client. Bounded (the sender learns when it is full, and the route is then closed, see
//! `tunnel`), single consumer, and free of allocations while empty: most routes are idle
//! client sockets, and a channel that allocates its slots up front (tokio's mpsc takes about
//! 1 KiB per queue) would cost each of them more than everything else they hold.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::tunnel::Inbound;

/// A queue that has grown past this many slots is given back once it drains.
const KEEP_CAPACITY: usize = 8;

struct Shared {
    state: Mutex<State>,
    /// Wakes the receiver (a stored permit covers a send before it waits).
    notify: Notify,
    capacity: usize,
}

struct State {
    items: VecDeque<Inbound>,
    sender_alive: bool,
    receiver_alive: bool,
}

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// `capacity` messages wait already.
    Full,
    /// The receiver is gone.
    Closed,
}

/// The route's end in the routing table.
pub struct RouteSender(Arc<Shared>);

/// The serving task's end.
pub struct RouteReceiver(Arc<Shared>);

/// A queue of at most `capacity` messages.
pub fn route_queue(capacity: usize) -> (RouteSender, RouteReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            sender_alive: true,
            receiver_alive: true,
        }),
        notify: Notify::new(),
        capacity,
    });
    (RouteSender(shared.clone()), RouteReceiver(shared))
}

impl RouteSender {
    /// Queues a message without waiting.
    pub fn try_send(&self, msg: Inbound) -> Result<(), TrySendError> {
        {
            let mut state = self.0.state.lock();
            if !state.receiver_alive {
                return Err(TrySendError::Closed);
            }
            if state.items.len() >= self.0.capacity {
                return Err(TrySendError::Full);
            }
            state.items.push_back(msg);
        }
        self.0.notify.notify_one();
        Ok(())
    }
}

impl Drop for RouteSender {
    fn drop(&mut self) {
        self.0.state.lock().sender_alive = false;
        self.0.notify.notify_one();
    }
}

impl RouteReceiver {
    /// The next message; `None` once the route is closed and drained. Cancel-safe: a message
    /// is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<Inbound> {
        loop {
            if let Some(next) = self.take() {
                return next;
            }
            self.0.notify.notified().await;
        }
    }

    /// The next message if one waits.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        self.take().flatten()
    }

    /// `Some(Some(msg))`, `Some(None)` once closed and drained, `None` while waiting.
    fn take(&mut self) -> Option<Option<Inbound>> {
        let mut state = self.0.state.lock();
        if let Some(msg) = state.items.pop_front() {
            if state.items.is_empty() && state.items.capacity() > KEEP_CAPACITY {
                state.items = VecDeque::new();
            }
            return Some(Some(msg));
        }
        if !state.sender_alive {
            return Some(None);
        }
        None
    }
}

impl Drop for RouteReceiver {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.receiver_alive = false;
        state.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_arrive_in_order_until_the_sender_goes() {
        let (tx, mut rx) = route_queue(3);
        assert_eq!(tx.try_send(Inbound::RunnerLost), Ok(()));
        let waiter = tokio::spawn(async move {
            let mut got = 0;
            while let Some(msg) = rx.recv().await {
                assert!(matches!(msg, Inbound::RunnerLost));
                got += 1;
            }
            got
        });
        tokio::task::yield_now().await;
        assert_eq!(tx.try_send(Inbound::RunnerLost), Ok(()));
        drop(tx);
        assert_eq!(waiter.await.ok(), Some(2));
    }

    #[test]
    fn a_full_queue_refuses_and_a_gone_receiver_closes() {
        let (tx, mut rx) = route_queue(2);
        assert_eq!(tx.try_send(Inbound::RunnerLost), Ok(()));
        assert_eq!(tx.try_send(Inbound::RunnerLost), Ok(()));
        assert_eq!(tx.try_send(Inbound::RunnerLost), Err(TrySendError::Full));
        assert!(rx.try_recv().is_some());
        assert_eq!(tx.try_send(Inbound::RunnerLost), Ok(()));
        drop(rx);
        assert_eq!(tx.try_send(Inbound::RunnerLost), Err(TrySendError::Closed));
    }
}
