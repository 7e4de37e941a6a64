//! The runner: the envoy connection on one side, the actor runtime on the other. It starts
//! and stops actor generations when the gateway says so, hands each tunnelled HTTP request
//! and WebSocket to its actor, and gives every actor generation a [`Host`](crate::actor::Host)
//! that turns what the actor does into envoy messages.
//!
//! Ordering: tunnel messages arrive one at a time for all actors, so nothing here waits on an
//! actor while holding the tunnel. Every HTTP request runs in its own task; every WebSocket
//! has its own task and bounded queue, so its frames reach the actor in order and only after
//! the actor accepted it.
//!
//! # Layout
//! - `host`: the `Host` of one generation on the envoy connection.
//! - `tunnel`: socket numbering and chunked request bodies.

mod host;
mod tunnel;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rivulet_wire::envoy::{
    HttpStreamAbortReason, HttpStreamAbortReasonKind, StopActorReason, ToEnvoyTunnelMessage,
    ToEnvoyTunnelMessageKind, ToRivetResponseAbort, ToRivetResponseStart, ToRivetTunnelMessageKind,
    ToRivetWebSocketClose,
};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actor::{ActorRuntime, HttpRequest, Registry, SocketId, StartInfo, StopReason};
use crate::envoy::{ActorStart, EnvoyClient, EnvoyHandler};
use crate::protocol::Frame;
use host::EnvoyHost;
use tunnel::{Bodies, Chunk, PendingBody, RequestKey, SocketEvent, Sockets};

/// Frames queued per WebSocket before the actor takes them; a full queue closes the socket
/// (1011 `actor.overloaded`), as a client that outruns its actor cannot be slowed down here.
const SOCKET_QUEUE: usize = 1024;
/// Stopped generations remembered for [`Runner::wait_stopped`].
const STOPPED_MEMORY: usize = 1024;

/// One running actor generation.
struct Running {
    generation: u32,
    runtime: ActorRuntime,
    cancel: CancellationToken,
}

/// Hosts actors of a [`Registry`] on envoy connections. Cheap to share (`Arc`).
pub struct Runner {
    registry: Arc<Registry>,
    actors: Mutex<HashMap<String, Running>>,
    sockets: Arc<Sockets>,
    bodies: Bodies,
    stopped: Mutex<VecDeque<(String, u32)>>,
    stopped_changed: Notify,
    /// Start commands received, newest last (envoy key, actor, generation), for standby
    /// requests waiting for theirs ([`Runner::wait_start`]).
    starts: Mutex<VecDeque<(String, String, u32)>>,
    starts_changed: Notify,
    tasks: TaskTracker,
    /// HTTP requests being handled, whose answers must leave before the connection closes.
    requests: TaskTracker,
}

impl Runner {
    /// A runner for the actor types of `registry`.
    pub fn new(registry: Registry) -> Arc<Self> {
        Arc::new(Self {
            registry: Arc::new(registry),
            actors: Mutex::new(HashMap::new()),
            sockets: Arc::new(Sockets::default()),
            bodies: Bodies::default(),
            stopped: Mutex::new(VecDeque::new()),
            stopped_changed: Notify::new(),
            starts: Mutex::new(VecDeque::new()),
            starts_changed: Notify::new(),
            tasks: TaskTracker::new(),
            requests: TaskTracker::new(),
        })
    }

    /// Waits, at most `within`, until every HTTP request being handled has been answered:
    /// a connection closed before that would leave a client without the reply of an action
    /// that ran.
    pub async fn requests_answered(&self, within: std::time::Duration) {
        let _ = tokio::time::timeout(within, async {
            // Twice in a row, a moment apart: a request still in the tunnel queue when the
            // first check runs is picked up (and answered, if only with "not running here")
            // before the second.
            let mut quiet = 0;
            while quiet < 2 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                quiet = if self.requests.is_empty() {
                    quiet + 1
                } else {
                    0
                };
            }
        })
        .await;
    }

    /// The actor types it hosts.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Actor generations running now.
    pub fn running(&self) -> usize {
        self.actors.lock().len()
    }

    /// Waits until generation `generation` of `actor_id` has stopped here (returns at once if
    /// it already did, among the last [`STOPPED_MEMORY`] stops).
    pub async fn wait_stopped(&self, actor_id: &str, generation: u32) {
        loop {
            let notified = self.stopped_changed.notified();
            if self
                .stopped
                .lock()
                .iter()
                .any(|(a, g)| a == actor_id && *g == generation)
            {
                return;
            }
            notified.await;
        }
    }

    /// Waits for the first start command that arrives over the connection with `envoy_key`
    /// (a standby request's), and returns its actor and generation.
    pub async fn wait_start(&self, envoy_key: &str) -> (String, u32) {
        loop {
            let notified = self.starts_changed.notified();
            if let Some((_, actor, generation)) = self
                .starts
                .lock()
                .iter()
                .find(|(key, _, _)| key == envoy_key)
            {
                return (actor.clone(), *generation);
            }
            notified.await;
        }
    }

    fn mark_started(&self, envoy_key: &str, actor_id: &str, generation: u32) {
        let mut starts = self.starts.lock();
        if starts.len() >= STOPPED_MEMORY {
            starts.pop_front();
        }
        starts.push_back((envoy_key.to_owned(), actor_id.to_owned(), generation));
        drop(starts);
        self.starts_changed.notify_waiters();
    }

    fn mark_stopped(&self, actor_id: &str, generation: u32) {
        let mut stopped = self.stopped.lock();
        if stopped.len() >= STOPPED_MEMORY {
            stopped.pop_front();
        }
        stopped.push_back((actor_id.to_owned(), generation));
        drop(stopped);
        self.stopped_changed.notify_waiters();
    }

    fn runtime(&self, actor_id: &str) -> Option<ActorRuntime> {
        self.actors.lock().get(actor_id).map(|r| r.runtime.clone())
    }

    /// Serves one HTTP request in its own task.
    fn serve_http(self: &Arc<Self>, client: EnvoyClient, key: RequestKey, pending: PendingBody) {
        let Some(runtime) = self.runtime(&pending.actor_id) else {
            let _ = tunnel::respond(&client, key, not_running_here());
            return;
        };
        self.requests.spawn(async move {
            let request = HttpRequest {
                method: pending.method,
                path: pending.path,
                headers: pending.headers,
                body: pending.body,
            };
            let response = runtime.handle_http(request).await;
            let start = ToRivetResponseStart {
                status: response.status,
                headers: response
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
                body: Some(Bytes::from(response.body)),
                stream: false,
            };
            if tunnel::respond(
                &client,
                key,
                ToRivetTunnelMessageKind::ToRivetResponseStart(start),
            )
            .is_err()
            {
                // Too large for the gateway, or the outbox is full: the client still gets
                // an answer instead of waiting for its timeout.
                let _ = tunnel::respond(
                    &client,
                    key,
                    error_response(500, "actor", "response_not_sent", "The actor's response could not be sent (too large, or the runner is overloaded)."),
                );
            }
        });
    }

    /// Opens a WebSocket on its actor; its frames follow through the socket's queue.
    fn open_socket(
        self: &Arc<Self>,
        client: EnvoyClient,
        key: RequestKey,
        actor_id: String,
        path: String,
        headers: HashMap<String, String>,
    ) {
        let socket = tunnel::socket_id(key);
        let Some(runtime) = self.runtime(&actor_id) else {
            close_socket(&self.sockets, &client, socket, 1011, "actor.not_running");
            return;
        };
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let token = self.sockets.set_queue(socket, tx);
        let runner = self.clone();
        self.tasks.spawn(async move {
            if let Err(err) = runtime.ws_open(socket, path, headers).await {
                tracing::debug!(error = %err, "websocket not opened");
                close_socket(&runner.sockets, &client, socket, 1011, "actor.stopping");
                return;
            }
            runner.pump_socket(runtime, socket, rx, token).await;
        });
    }

    /// Feeds a socket's frames to its actor, in order. Ends when the client closes, or when
    /// the socket is forgotten (the actor closed or hibernated it, or its queue overflowed),
    /// which drops the queue.
    async fn pump_socket(
        &self,
        runtime: ActorRuntime,
        socket: SocketId,
        mut rx: mpsc::Receiver<SocketEvent>,
        token: u64,
    ) {
        while let Some(event) = rx.recv().await {
            match event {
                SocketEvent::Frame(index, frame) => runtime.ws_message(socket, index, frame),
                SocketEvent::Closed => break,
            }
        }
        // However it ended, the actor learns the connection is gone (a socket it closed or
        // hibernated itself is ignored there).
        runtime.ws_closed(socket);
        self.sockets.forget_queue(socket, token);
    }

    fn socket_event(&self, client: &EnvoyClient, socket: SocketId, event: SocketEvent) {
        let closing = matches!(event, SocketEvent::Closed);
        let Some(queue) = self.sockets.queue(socket) else {
            return; // closed already, or never opened here
        };
        if queue.try_send(event).is_err() {
            if closing {
                // The task is behind; dropping its queue ends it all the same.
                self.sockets.forget(socket);
            } else {
                tracing::warn!(socket = socket.0, "websocket queue full; closing");
                close_socket(&self.sockets, client, socket, 1011, "actor.overloaded");
            }
        }
    }

    /// Stops every actor at once (the runner is going away without the gateway).
    pub fn abort_all(&self) {
        for (_, running) in self.actors.lock().drain() {
            running.runtime.abort();
            running.cancel.cancel();
        }
    }
}

fn close_socket(
    sockets: &Sockets,
    client: &EnvoyClient,
    socket: SocketId,
    code: u16,
    reason: &str,
) {
    sockets.send(
        client,
        socket,
        ToRivetTunnelMessageKind::ToRivetWebSocketClose(ToRivetWebSocketClose {
            code: Some(code),
            reason: Some(reason.to_owned().into()),
            hibernate: false,
        }),
    );
    sockets.forget(socket);
}

/// The actor does not run here (it moved, slept or stopped between the gateway's gate and
/// this runner). Named as RivetKit's runner names it, so the gateway knows the request never
/// reached the actor and sends it to the next instance.
fn not_running_here() -> ToRivetTunnelMessageKind {
    error_response(
        503,
        "envoy",
        "actor_not_running",
        "the actor is not running on this runner",
    )
}

fn error_response(status: u16, group: &str, code: &str, message: &str) -> ToRivetTunnelMessageKind {
    let body = serde_json::json!({
        "group": group,
        "code": code,
        "message": message,
    });
    ToRivetTunnelMessageKind::ToRivetResponseStart(ToRivetResponseStart {
        status,
        headers: [(
            "content-type".to_owned().into(),
            "application/json".to_owned().into(),
        )]
        .into_iter()
        .collect(),
        body: Some(Bytes::from(body.to_string())),
        stream: false,
    })
}

fn headers_of(
    headers: impl IntoIterator<Item = (impl ToString, impl ToString)>,
) -> HashMap<String, String> {
    headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The handler the envoy client calls; a newtype so the runner can be shared as `Arc<Runner>`.
pub struct RunnerHandler(pub Arc<Runner>);

#[async_trait]
impl EnvoyHandler for RunnerHandler {
    async fn start_actor(&self, client: EnvoyClient, start: ActorStart) {
        let runner = &self.0;
        let actor_id = start.actor_id.clone();
        let generation = start.generation;
        runner.mark_started(client.envoy_key(), &actor_id, generation);
        // Sockets the gateway holds for the actor: queues first, since the runtime reopens
        // them while it starts and the gateway then resends what the actor had not taken.
        let mut restored = Vec::new();
        for hibernating in &start.hibernating_requests {
            let socket = tunnel::socket_id((hibernating.gateway_id, hibernating.request_id));
            let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
            let token = runner.sockets.set_queue(socket, tx);
            restored.push((socket, rx, token));
        }
        let host = Arc::new(EnvoyHost {
            client: client.clone(),
            actor_id: actor_id.clone(),
            generation,
            sockets: runner.sockets.clone(),
        });
        let info = StartInfo {
            actor_id: actor_id.clone(),
            key: start.config.key.clone(),
            generation,
            input: start.config.input.as_ref().map(|b| b.to_vec()),
            create_ts: start.config.create_ts,
            hibernating: restored.iter().map(|(socket, _, _)| *socket).collect(),
        };
        let cancel = CancellationToken::new();
        match runner
            .registry
            .start(&start.config.name, info, host, cancel.clone())
            .await
        {
            Ok(runtime) => {
                for (socket, rx, token) in restored {
                    let runner = runner.clone();
                    let runtime = runtime.clone();
                    runner
                        .tasks
                        .clone()
                        .spawn(async move { runner.pump_socket(runtime, socket, rx, token).await });
                }
                let replaced = {
                    let mut actors = runner.actors.lock();
                    match actors.get(&actor_id) {
                        // A newer generation started meanwhile: this one is already stale.
                        Some(current) if current.generation > generation => Some(Running {
                            generation,
                            runtime,
                            cancel,
                        }),
                        _ => actors.insert(
                            actor_id.clone(),
                            Running {
                                generation,
                                runtime,
                                cancel,
                            },
                        ),
                    }
                };
                match replaced {
                    Some(stale) if stale.generation < generation => {
                        // An older generation still here was fenced off by this start.
                        stale.runtime.abort();
                        stale.cancel.cancel();
                        let _ = client.actor_stopped(&actor_id, stale.generation, None);
                        runner.mark_stopped(&actor_id, stale.generation);
                    }
                    Some(stale) => {
                        stale.runtime.abort();
                        stale.cancel.cancel();
                        let _ = client.actor_stopped(
                            &actor_id,
                            generation,
                            Some("superseded by a newer generation".into()),
                        );
                        runner.mark_stopped(&actor_id, generation);
                        return;
                    }
                    None => {}
                }
                if let Err(err) = client.actor_running(&actor_id, generation) {
                    tracing::warn!(error = %err, "running event not sent");
                }
            }
            Err(err) => {
                for (socket, _, token) in restored {
                    runner.sockets.forget_queue(socket, token);
                }
                tracing::error!(error = %err, name = %start.config.name, "actor failed to start");
                if let Err(err) = client.actor_stopped(&actor_id, generation, Some(err.to_string()))
                {
                    tracing::warn!(error = %err, "stopped event not sent");
                }
                runner.mark_stopped(&actor_id, generation);
            }
        }
    }

    async fn stop_actor(
        &self,
        client: EnvoyClient,
        actor_id: String,
        generation: u32,
        reason: StopActorReason,
    ) {
        let runner = &self.0;
        let running = {
            let mut actors = runner.actors.lock();
            match actors.get(&actor_id) {
                Some(r) if r.generation == generation => actors.remove(&actor_id),
                _ => None,
            }
        };
        let Some(running) = running else {
            // It failed to start, or stopped already: say so again, harmlessly.
            let _ = client.actor_stopped(&actor_id, generation, None);
            runner.mark_stopped(&actor_id, generation);
            return;
        };
        let error = match reason {
            StopActorReason::Lost => {
                // The gateway gave up on this runner; nothing can be saved any more.
                running.runtime.abort();
                None
            }
            StopActorReason::SleepIntent => running.runtime.stop(StopReason::Sleep).await.err(),
            // A clean stop after a stop intent is how an actor destroys itself.
            StopActorReason::StopIntent | StopActorReason::Destroy => {
                running.runtime.stop(StopReason::Destroy).await.err()
            }
            StopActorReason::GoingAway => running.runtime.stop(StopReason::GoingAway).await.err(),
        };
        running.cancel.cancel();
        if let Some(err) = &error {
            tracing::warn!(%actor_id, error = %err, "actor stopped with an error");
        }
        if let Err(err) = client.actor_stopped(&actor_id, generation, error.map(|e| e.to_string()))
        {
            tracing::debug!(error = %err, "stopped event not sent");
        }
        runner.mark_stopped(&actor_id, generation);
    }

    async fn tunnel(&self, client: EnvoyClient, msg: ToEnvoyTunnelMessage) {
        let runner = &self.0;
        let key: RequestKey = (msg.message_id.gateway_id, msg.message_id.request_id);
        match msg.message_kind {
            ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(start) => {
                let pending = PendingBody {
                    actor_id: start.actor_id.to_string(),
                    method: start.method.to_string(),
                    path: start.path.to_string(),
                    headers: headers_of(start.headers),
                    body: start.body.map(|b| b.to_vec()).unwrap_or_default(),
                };
                if !start.stream {
                    runner.serve_http(client, key, pending);
                } else if !runner.bodies.start(key, pending) {
                    let _ = tunnel::respond(
                        &client,
                        key,
                        error_response(503, "actor", "overloaded", "too many requests in progress"),
                    );
                }
            }
            ToEnvoyTunnelMessageKind::ToEnvoyRequestChunk(chunk) => {
                match runner.bodies.chunk(key, &chunk.body, chunk.finish) {
                    Chunk::Partial => {}
                    Chunk::Done(pending) => runner.serve_http(client, key, pending),
                    Chunk::Refused => drop(tunnel::respond(
                        &client,
                        key,
                        ToRivetTunnelMessageKind::ToRivetResponseAbort(ToRivetResponseAbort {
                            reason: HttpStreamAbortReason {
                                kind: HttpStreamAbortReasonKind::HandlerError,
                                detail: Some(
                                    "request body too large or unknown request"
                                        .to_owned()
                                        .into(),
                                ),
                            },
                        }),
                    )),
                }
            }
            ToEnvoyTunnelMessageKind::ToEnvoyRequestAbort(_)
            | ToEnvoyTunnelMessageKind::ToEnvoyRequestBodyCancel => runner.bodies.abort(key),
            // Responses are sent whole, so there is no response stream to pace.
            ToEnvoyTunnelMessageKind::ToEnvoyResponseBodyWindowUpdate(_) => {}
            ToEnvoyTunnelMessageKind::ToEnvoyWebSocketOpen(open) => runner.open_socket(
                client,
                key,
                open.actor_id.to_string(),
                open.path.to_string(),
                headers_of(open.headers),
            ),
            ToEnvoyTunnelMessageKind::ToEnvoyWebSocketMessage(m) => {
                let frame = if m.binary {
                    Frame::Binary(m.data.to_vec())
                } else {
                    match String::from_utf8(m.data.to_vec()) {
                        Ok(text) => Frame::Text(text),
                        // Text frames are UTF-8 by the WebSocket rules; treat damage as binary
                        // and let the protocol layer refuse it.
                        Err(e) => Frame::Binary(e.into_bytes()),
                    }
                };
                runner.socket_event(
                    &client,
                    tunnel::socket_id(key),
                    SocketEvent::Frame(msg.message_id.message_index, frame),
                );
            }
            ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(_) => {
                runner.socket_event(&client, tunnel::socket_id(key), SocketEvent::Closed);
            }
        }
    }
}
