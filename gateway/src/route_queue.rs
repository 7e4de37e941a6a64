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

impl RouteSender {
    /// Queues a message without waiting.
    pub fn try_send(&self, msg: Inbound) -> Result<(), TrySendError> {
        let waker = {
            let mut state = self.0.state.lock();
            if !state.receiver_alive {
                return Err(TrySendError::Closed);
            }
            if state.items.len() >= self.0.capacity {
                return Err(TrySendError::Full);
            }
            state.items.push_back(msg);
            state.waker.take()
        };
        // Woken outside the lock: the receiver's task may run at once on another thread.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl RouteSender {
    /// Wakes the receiver's task, if it waits, without a message: it polls again.
    pub fn wake(&self) {
        let waker = self.0.state.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
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
