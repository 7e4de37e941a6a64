//! In-flight tunnel requests. Each client HTTP request or WebSocket that reaches an actor gets
//! a request id; messages the runner sends for it are routed here by (gateway id, request id)
//! to the task serving the client.
//!
//! Each route has a bounded queue. A runner that sends faster than the client reads fills it;
//! the route is then closed (the client gets an overload error or close frame) rather than
//! letting one slow client hold the runner's whole connection.

use std::collections::HashMap;

use parking_lot::Mutex;
use rivulet_wire::envoy::{MessageIndex, ToRivetTunnelMessageKind};

use crate::route_queue::{route_queue, RouteReceiver, RouteSender, TrySendError};

/// Messages buffered per route before it counts as overloaded.
pub const ROUTE_QUEUE: usize = 1024;

/// Identity of a tunnel request.
pub type RequestKey = [u8; 4];

/// What a route receives.
#[derive(Debug)]
pub enum Inbound {
    /// A tunnel message from the runner, boxed: queued messages are few, and a small
    /// `Inbound` keeps every queue slot small.
    Message(MessageIndex, Box<ToRivetTunnelMessageKind>),
    /// The runner connection carrying this request is gone.
    RunnerLost,
}

struct Route {
    tx: RouteSender,
    /// Runner the request was sent to; messages from others are dropped. Keyed by envoy key,
    /// not connection, so a runner that reconnects keeps serving its in-flight requests.
    envoy_key: String,
}

/// The table of in-flight requests.
#[derive(Default)]
pub struct Routes {
    inner: Mutex<HashMap<RequestKey, Route>>,
    /// Requests whose route was dropped for a full queue, until their reader closes them;
    /// bounded by the requests in flight.
    overflowed: Mutex<std::collections::HashSet<RequestKey>>,
}

impl Routes {
    /// Registers a new request served by runner `envoy_key` under a fresh random id. Ids are
    /// 4 random bytes, so two in flight can collide; a collision draws again instead of
    /// replacing the live route (which would hand one client's replies to another).
    pub fn open(&self, envoy_key: &str) -> (RequestKey, RouteReceiver) {
        loop {
            if let Some(opened) = self.try_open(rand::random(), envoy_key) {
                return opened;
            }
        }
    }

    /// Registers a request under `request_id` unless that id is in flight.
    pub fn try_open(
        &self,
        request_id: RequestKey,
        envoy_key: &str,
    ) -> Option<(RequestKey, RouteReceiver)> {
        let mut inner = self.inner.lock();
        if inner.contains_key(&request_id) {
            tracing::debug!("tunnel request id collision; drawing another");
            return None;
        }
        let (tx, rx) = route_queue(ROUTE_QUEUE);
        let route = Route {
            tx,
            envoy_key: envoy_key.to_string(),
        };
        inner.insert(request_id, route);
        Some((request_id, rx))
    }

    /// Moves a request to another runner (after its actor restarted elsewhere).
    pub fn rebind(&self, request_id: RequestKey, envoy_key: &str) {
        if let Some(route) = self.inner.lock().get_mut(&request_id) {
            route.envoy_key = envoy_key.to_string();
        }
    }

    /// Removes a request.
    pub fn close(&self, request_id: &RequestKey) {
        // Dropped once the lock is let go: the route's end wakes its reader.
        let route = self.inner.lock().remove(request_id);
        self.overflowed.lock().remove(request_id);
        drop(route);
    }

    /// Wakes the task of every route, with nothing to deliver: a parked client socket
    /// waits on its queue and its connection only, and this is how it learns that the
    /// gateway is shutting down (no socket keeps a shutdown waiter of its own).
    pub fn wake_all(&self) {
        let wakeups: Vec<_> = self.inner.lock().values().map(|r| r.tx.wakeup()).collect();
        for wakeup in wakeups {
            wakeup.wake();
        }
    }

    /// Whether the request's route was dropped because its queue was full.
    pub fn overflowed(&self, request_id: &RequestKey) -> bool {
        self.overflowed.lock().contains(request_id)
    }

    /// Delivers a runner message; returns false if no such request or its queue is full
    /// (the route is then removed).
    pub fn deliver(
        &self,
        envoy_key: &str,
        request_id: RequestKey,
        index: MessageIndex,
        kind: ToRivetTunnelMessageKind,
    ) -> bool {
        // Woken or dropped once the lock is let go (see `route_queue::Wakeup`).
        let (wakeup, removed) = {
            let mut inner = self.inner.lock();
            let Some(route) = inner.get(&request_id) else {
                return false;
            };
            if route.envoy_key != envoy_key {
                // A hibernating socket may be restored by its actor on another runner; the
                // route follows it. Request ids are random per request, so this cannot
                // misdeliver between requests.
                tracing::debug!(from = %envoy_key, bound = %route.envoy_key, "tunnel message from another runner");
            }
            match route.tx.try_send(Inbound::Message(index, Box::new(kind))) {
                Ok(wakeup) => (Some(wakeup), None),
                Err(TrySendError::Full) => {
                    // The request's reader (a client socket that stopped reading) is behind:
                    // drop the route so the runner is never held up, and say why.
                    tracing::warn!("tunnel route queue full, closing request");
                    self.overflowed.lock().insert(request_id);
                    (None, inner.remove(&request_id))
                }
                Err(TrySendError::Closed) => (None, inner.remove(&request_id)),
            }
        };
        drop(removed);
        match wakeup {
            Some(wakeup) => {
                wakeup.wake();
                true
            }
            None => false,
        }
    }

    /// Tells every request served by a runner that it is gone.
    pub fn runner_lost(&self, envoy_key: &str) {
        let wakeups: Vec<_> = self
            .inner
            .lock()
            .values()
            .filter(|r| r.envoy_key == envoy_key)
            // A full queue will surface as closed soon anyway.
            .filter_map(|r| r.tx.try_send(Inbound::RunnerLost).ok())
            .collect();
        for wakeup in wakeups {
            wakeup.wake();
        }
    }

    /// Number of in-flight requests (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_colliding_id_never_replaces_a_live_route() {
        let routes = Routes::default();
        let (id, mut first) = routes.try_open([1, 2, 3, 4], "runner-a").unwrap();
        assert!(routes.try_open(id, "runner-b").is_none());
        // The live route still gets its messages.
        let kind = ToRivetTunnelMessageKind::ToRivetRequestBodyCancel;
        assert!(routes.deliver("runner-a", id, 0, kind));
        assert!(matches!(first.try_recv(), Some(Inbound::Message(0, _))));
        assert_eq!(routes.len(), 1);
    }

    #[test]
    fn open_draws_ids_that_are_not_in_flight() {
        let routes = Routes::default();
        let mut ids = std::collections::HashSet::new();
        let mut keep = Vec::new();
        for _ in 0..10_000 {
            let (id, rx) = routes.open("r");
            assert!(ids.insert(id));
            keep.push(rx);
        }
        assert_eq!(routes.len(), 10_000);
    }
}
