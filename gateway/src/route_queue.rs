//! The queue of one tunnel route: runner messages waiting for the task that serves the
//! client. Bounded (the sender learns when it is full, and the route is then closed, see
//! `tunnel`), single consumer, and free of allocations while empty: most routes are idle
//! client sockets, and a channel that allocates its slots up front (tokio's mpsc takes about
//! 1 KiB per queue) would cost each of them more than everything else they hold.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::tunnel::Inbound;

/// A queue that has grown past this many slots is given back once it drains.
const KEEP_CAPACITY: usize = 8;

struct Shared {
    state: Mutex<State>,
    capacity: usize,
}

struct State {
    items: VecDeque<Inbound>,
    sender_alive: bool,
    receiver_alive: bool,
    /// The receiver's task while it waits. Kept here rather than in a waiting future, so
    /// a parked socket that polls its queue by hand carries no waiter of its own.
    waker: Option<Waker>,
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
            waker: None,
        }),
        capacity,
    });
    (RouteSender(shared.clone()), RouteReceiver(shared))
}

/// The receiver to wake once a message is queued. Returned rather than woken at once so the
/// caller wakes it after letting go of its own locks: waking a parked socket may run code
/// that takes them (see `routing::parking`).
#[must_use = "the receiver waits until woken"]
pub struct Wakeup(Option<Waker>);

impl Wakeup {
    /// Wakes the receiver, if it waits.
    pub fn wake(self) {
        if let Some(waker) = self.0 {
            waker.wake();
        }
    }
}

impl RouteSender {
    /// Queues a message without waiting; the receiver is woken through the [`Wakeup`].
    pub fn try_send(&self, msg: Inbound) -> Result<Wakeup, TrySendError> {
        let mut state = self.0.state.lock();
        if !state.receiver_alive {
            return Err(TrySendError::Closed);
        }
        if state.items.len() >= self.0.capacity {
            return Err(TrySendError::Full);
        }
        state.items.push_back(msg);
        Ok(Wakeup(state.waker.take()))
    }

    /// The receiver to wake without a message (it polls again).
    pub fn wakeup(&self) -> Wakeup {
        Wakeup(self.0.state.lock().waker.take())
    }
}

impl Drop for RouteSender {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.state.lock();
            state.sender_alive = false;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl RouteReceiver {
    /// The next message; `None` once the route is closed and drained. Cancel-safe: a message
    /// is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<Inbound> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`RouteReceiver::recv`] by hand: `Pending` registers the task to be woken by the
    /// next message or the sender's end (the last task polled is the one woken).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        match self.take(Some(cx.waker())) {
            Some(next) => Poll::Ready(next),
            None => Poll::Pending,
        }
    }

    /// Gives back the room of a drained queue: called as the socket parks, since an idle
    /// socket should hold no buffer (a queue keeps up to `KEEP_CAPACITY` slots while used).
    pub fn shrink(&mut self) {
        let mut state = self.0.state.lock();
        if state.items.is_empty() {
            state.items = VecDeque::new();
        }
    }

    /// The next message if one waits.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        self.take(None).flatten()
    }

    /// `Some(Some(msg))`, `Some(None)` once closed and drained, `None` while waiting (with
    /// `waker` registered, if given).
    fn take(&mut self, waker: Option<&Waker>) -> Option<Option<Inbound>> {
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
        if let Some(waker) = waker {
            match &mut state.waker {
                Some(kept) => kept.clone_from(waker),
                None => state.waker = Some(waker.clone()),
            }
        }
        None
    }
}

impl Drop for RouteReceiver {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.receiver_alive = false;
        state.items.clear();
        state.waker = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn messages_arrive_in_order_until_the_sender_goes() {
        let (tx, mut rx) = route_queue(3);
        tx.try_send(Inbound::RunnerLost).unwrap().wake();
        let waiter = tokio::spawn(async move {
            let mut got = 0;
            while let Some(msg) = rx.recv().await {
                assert!(matches!(msg, Inbound::RunnerLost));
                got += 1;
            }
            got
        });
        tokio::task::yield_now().await;
        tx.try_send(Inbound::RunnerLost).unwrap().wake();
        drop(tx);
        assert_eq!(waiter.await.ok(), Some(2));
    }

    #[test]
    fn a_drained_queue_gives_its_room_back_when_shrunk() {
        let (tx, mut rx) = route_queue(4);
        tx.try_send(Inbound::RunnerLost).unwrap().wake();
        rx.shrink();
        assert_eq!(
            rx.0.state.lock().items.capacity(),
            4,
            "a message still waits"
        );
        assert!(rx.try_recv().is_some());
        rx.shrink();
        assert_eq!(rx.0.state.lock().items.capacity(), 0);
    }

    #[test]
    fn a_full_queue_refuses_and_a_gone_receiver_closes() {
        let (tx, mut rx) = route_queue(2);
        tx.try_send(Inbound::RunnerLost).unwrap().wake();
        tx.try_send(Inbound::RunnerLost).unwrap().wake();
        assert_eq!(
            tx.try_send(Inbound::RunnerLost).err(),
            Some(TrySendError::Full)
        );
        assert!(rx.try_recv().is_some());
        tx.try_send(Inbound::RunnerLost).unwrap().wake();
        drop(rx);
        assert_eq!(
            tx.try_send(Inbound::RunnerLost).err(),
            Some(TrySendError::Closed)
        );
    }
}
