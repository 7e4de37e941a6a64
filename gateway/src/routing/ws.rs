//! One client WebSocket through the tunnel.
//!
//! Messages towards the actor are numbered from 1 (the open is 0). If the actor accepted the
//! socket as hibernatable, each message is kept until the actor acknowledges its index; when
//! the actor sleeps (close with `hibernate`) or its runner is lost, the client socket stays
//! open here. The next client message is kept too and wakes the actor, whose runner restores
//! the socket and sends a new open; everything unacknowledged is then resent in order with
//! its original index, so nothing is lost and nothing is delivered twice.
//!
//! A socket that has been idle for `gateway.client_park_after_ms` puts its codec down
//! (`client_ws`) and leaves its task (`parking`): an idle socket then costs its state, its
//! connection and its route, and no buffers.

use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rivulet_wire::envoy::{
    MessageId, ToEnvoy, ToEnvoyTunnelMessage, ToEnvoyTunnelMessageKind, ToEnvoyWebSocketClose,
    ToEnvoyWebSocketMessage, ToEnvoyWebSocketOpen, ToRivetTunnelMessageKind,
};
use tokio_tungstenite::tungstenite::Message;

use super::client_ws::{Client, Woken};
use super::http::forward_headers;
use super::parking;
use super::target::Target;
use crate::actor::{ActorHandle, Msg, Ready, Status};
use crate::cluster::{self, forward::ForwardError};
use crate::envoy::{truncate_reason, EnvoyHandle};
use crate::error::ApiError;
use crate::socket_buffer::{self, SocketBuffer};
use crate::state::Gateway;
use crate::tunnel::Inbound;

pub(super) fn serve(gw: Gateway, target: Target, mut parts: Parts) -> Response {
    // One permit per open socket, held until it ends (by its task, or its slot while parked).
    let permit = match gw.client_sockets.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            let max = gw.config.gateway.max_client_sockets;
            tracing::warn!(max, "client socket refused: this node holds its maximum");
            let mut resp = ApiError::too_many_sockets(max).into_response();
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
            return resp;
        }
    };
    let handshake = match super::upgrade::accept(&mut parts, &["rivet"]) {
        Ok(h) => h,
        Err(err) => return err.into_response(),
    };
    let response = handshake.response();
    // Owned copies: hyper's header values and URI are slices of the connection's read
    // buffer (16 KiB), which they would keep alive for as long as the socket is open.
    // Boxed, as everything the socket needs only until it settles: a future keeps room for
    // what it captured for as long as it lives.
    let setup = Box::new(Setup {
        request: Request {
            target,
            headers: owned_headers(&parts.headers),
            uri: owned_uri(&parts.uri),
        },
        on_upgrade: handshake.on_upgrade,
    });
    drop(parts);
    tokio::spawn(parking::Task::new(permit, Box::pin(start(gw, setup))));
    response
}

/// Opens the socket and runs it until it first parks.
async fn start(gw: Gateway, setup: Box<Setup>) -> Option<Box<Socket>> {
    // Boxed: opening (placing the actor, a forward's TLS stream) takes kilobytes, which a
    // socket that never idles would otherwise carry for its whole life.
    let socket = Box::pin(open(&gw, setup)).await?;
    run(socket).await
}

/// Upgrades the connection, places the actor and opens the socket to it. `None` once the
/// socket has ended on the way: refused (and closed with why) or forwarded to the node
/// serving the actor until it closed.
async fn open(gw: &Gateway, setup: Box<Setup>) -> Option<Box<Socket>> {
    let (mut client, request) = connect(gw, setup).await?;
    match settle(gw, request, &mut client).await {
        Ok(Some((tunnel, rx))) => Some(Box::new(Socket { tunnel, rx, client })),
        Ok(None) => None,
        Err(err) => {
            fail(gw, &mut client, err).await;
            None
        }
    }
}

/// Closes the client's socket with the code and reason that name `err`.
async fn fail(gw: &Gateway, client: &mut Client, err: ApiError) {
    tracing::debug!(reason = %err.reason(), "closing client websocket");
    gw.metrics.error(err.group, err.code);
    let (code, reason) = err.to_close();
    close(client, code, reason).await;
}

/// The request a socket came with, needed until it settles.
struct Request {
    target: Target,
    headers: HeaderMap,
    uri: Uri,
}

/// What a socket needs until it is upgraded.
struct Setup {
    request: Request,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

/// Waits for the upgrade and starts the codec.
async fn connect(gw: &Gateway, setup: Box<Setup>) -> Option<(Client, Box<Request>)> {
    let Setup {
        request,
        on_upgrade,
    } = *setup;
    let io = match on_upgrade.await {
        Ok(io) => io,
        Err(err) => {
            tracing::debug!(error = %err, "client websocket upgrade failed");
            return None;
        }
    };
    let hard = read_bound(gw.config.gateway.max_ws_message_bytes);
    let client = Client::new(io, hard, gw.metrics.parked_sockets.clone()).await;
    Some((client, Box::new(request)))
}

/// The headers with every value copied out of the request's buffer.
fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        owned.append(name.clone(), copy);
    }
    owned
}

/// The URI copied out of the request's buffer.
fn owned_uri(uri: &Uri) -> Uri {
    uri.to_string().parse().unwrap_or_else(|_| uri.clone())
}

/// What the socket reads at most. Messages between the configured limit and this bound are
/// read whole and then refused with a clean 1009 close; refusing in the middle of a message
/// would leave the client's unread bytes behind, and the close would arrive as a reset.
fn read_bound(limit: usize) -> usize {
    limit
        .saturating_mul(2)
        .min(rivulet_wire::ENVOY_MAX_FRAME_BYTES)
        .max(limit)
}

/// Sends the close frame and closes, within a bound: a client that stopped reading must not
/// keep the socket's task alive by not taking its close either.
async fn close(client: &mut Client, code: u16, reason: String) {
    client
        .close(code, truncate_reason(reason), CLOSE_WITHIN)
        .await;
}

/// How long a close may wait for the client.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

struct Tunnel {
    gw: Gateway,
    actor: ActorHandle,
    request_id: [u8; 4],
    envoy: std::sync::Arc<EnvoyHandle>,
    /// Generation of the instance holding the socket.
    generation: u32,
    /// Indices, and the messages the actor has not acknowledged (see `socket_buffer`).
    buffer: SocketBuffer,
    /// Whether the actor currently has this socket open.
    attached: bool,
    /// The buffer's bytes as last added to `rivulet_replay_buffered_bytes`.
    counted_bytes: usize,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.gw.routes.close(&self.request_id);
        let metrics = &self.gw.metrics;
        metrics.replay_bytes.sub(self.counted_bytes as i64);
        if !self.attached {
            metrics.hibernating_sockets.dec();
        }
    }
}

impl Tunnel {
    /// Brings `rivulet_replay_buffered_bytes` in step with this socket's buffer.
    fn count_bytes(&mut self) {
        let now = self.buffer.pending_bytes();
        if now != self.counted_bytes {
            let gauge = &self.gw.metrics.replay_bytes;
            gauge.add(now as i64 - self.counted_bytes as i64);
            self.counted_bytes = now;
        }
    }

    /// Records whether the actor has the socket (`rivulet_client_sockets{state="hibernating"}`
    /// counts the ones it does not).
    fn set_attached(&mut self, attached: bool) {
        if self.attached != attached {
            let gauge = &self.gw.metrics.hibernating_sockets;
            if attached {
                gauge.dec();
            } else {
                gauge.inc();
            }
            self.attached = attached;
        }
    }

    /// Sends towards the actor, waiting while the runner's queue is busy with client
    /// traffic (the backpressure that slows this client rather than cutting the runner).
    async fn send(&self, kind: ToEnvoyTunnelMessageKind, index: u16) -> bool {
        self.envoy
            .send_tunnel(ToEnvoy::ToEnvoyTunnelMessage(ToEnvoyTunnelMessage {
                message_id: MessageId {
                    gateway_id: self.gw.gateway_id,
                    request_id: self.request_id,
                    message_index: index,
                },
                message_kind: kind,
            }))
            .await
    }

    fn message(data: bytes::Bytes, binary: bool) -> ToEnvoyTunnelMessageKind {
        ToEnvoyTunnelMessageKind::ToEnvoyWebSocketMessage(ToEnvoyWebSocketMessage { data, binary })
    }

    /// Forwards a client message, keeping it until acknowledged if the socket hibernates.
    /// Tells the actor the client's side ended with `code`, if the actor has the socket.
    async fn tell_closed(&mut self, code: u16) {
        if self.attached {
            let index = self.buffer.next_index();
            let close = ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(ToEnvoyWebSocketClose {
                code: Some(code),
                reason: None,
            });
            self.send(close, index).await;
        }
    }

    async fn forward(&mut self, data: bytes::Bytes, binary: bool) -> Result<(), ApiError> {
        let index = match self.buffer.push(data.clone(), binary) {
            Ok(index) => index,
            Err(socket_buffer::Refused::Full) => {
                return Err(ApiError::new(
                    "guard",
                    "websocket_pending_limit_reached",
                    "Too many messages wait for the actor to acknowledge them.",
                ))
            }
        };
        self.count_bytes();
        if !self.attached {
            return Ok(());
        }
        // The gate: once the supervisor decided to stop or hand over the instance that
        // holds this socket, a kept message waits for the instance that restores the
        // socket (which gets everything unacknowledged, in order). A socket that keeps
        // nothing ends with its instance, so its messages still go there until it closes.
        if self.buffer.is_hibernatable()
            && !self.actor.delivers_to(&self.envoy.key, self.generation)
        {
            tracing::debug!(index, "holding a client message while the actor moves");
            return Ok(());
        }
        if !self.send(Self::message(data, binary), index).await && !self.buffer.is_hibernatable() {
            return Err(ApiError::runner_lost());
        }
        Ok(())
    }

    /// The actor let go of this socket: the gateway holds it, and the actor's next start
    /// must restore it. The supervisor may have unloaded; `deliver` loads it again.
    async fn detach(&mut self) -> Result<(), ApiError> {
        self.set_attached(false);
        let msg = Msg::Hibernating(self.gw.gateway_id, self.request_id);
        match self
            .gw
            .actors
            .deliver(&self.gw, &self.actor.actor_id, msg)
            .await?
        {
            Some(actor) => {
                self.actor = actor;
                Ok(())
            }
            None => Err(ApiError::actor_not_found()),
        }
    }

    /// Wakes the actor so its runner restores this socket.
    async fn wake(&mut self) -> Result<(), ApiError> {
        let timeout = Duration::from_millis(self.gw.config.gateway.actor_ready_timeout_ms);
        let (envoy, generation) = match self.actor.ready(&self.gw, timeout).await? {
            Ready::Local { envoy, generation } => (envoy, generation),
            // Another node took the actor while this socket hibernated here; the client
            // reconnects and is forwarded there.
            Ready::Remote(lease) => {
                return Err(ApiError::new(
                    "guard",
                    "actor_moved",
                    format!(
                        "The actor is now served by gateway node {}; reconnect.",
                        lease.node_id
                    ),
                ))
            }
        };
        self.gw.routes.rebind(self.request_id, &envoy.key);
        self.envoy = envoy;
        self.generation = generation;
        Ok(())
    }

    /// The actor reopened the socket: resend what it has not acknowledged.
    async fn reattach(&mut self) {
        // A restored instance reopens its sockets before it reports running, so the
        // supervisor may not have published it yet: wait for that (bounded), or the delivery
        // gate would keep holding this socket's messages for the instance that let it go.
        let mut status = self.actor.watch();
        let wait = Duration::from_millis(self.gw.config.gateway.actor_ready_timeout_ms);
        let running = tokio::time::timeout(wait, async {
            loop {
                // The gate closed when the old instance was left, so a running status seen
                // now is the instance that restored the socket.
                if let Status::Running {
                    envoy_key,
                    generation,
                } = status.borrow_and_update().clone()
                {
                    return Some((envoy_key, generation));
                }
                if status.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten();
        if let Some((envoy_key, generation)) = running {
            if let Some(envoy) = self.gw.envoys.get(&envoy_key) {
                self.gw.routes.rebind(self.request_id, &envoy.key);
                self.envoy = envoy;
                self.generation = generation;
            }
        }
        self.set_attached(true);
        let replay: Vec<_> = self.buffer.replay().cloned().collect();
        for p in replay {
            self.send(Self::message(p.data, p.binary), p.index).await;
        }
    }
}

/// A socket the actor accepted, with its client: what the pump works on, for as long as the
/// socket lives.
struct Socket {
    tunnel: Tunnel,
    rx: crate::route_queue::RouteReceiver,
    client: Client,
}

impl Socket {
    /// The socket ended (with `result`): the actor's supervisor no longer restores it, and a
    /// socket ended by an error is closed with it.
    async fn end(mut self: Box<Self>, result: Result<(), ApiError>) {
        self.release();
        if let Err(err) = result {
            fail(&self.tunnel.gw.clone(), &mut self.client, err).await;
        }
    }

    /// The socket ended: the actor's supervisor no longer restores it.
    fn release(&self) {
        let gw = &self.tunnel.gw;
        // A supervisor holding this socket cannot unload, so one that is not loaded (or is
        // unloading) never had it: nothing to tell.
        if let Some(actor) = gw.actors.get(&self.tunnel.actor.actor_id) {
            let _ = actor.send(Msg::HibernatingClosed(
                gw.gateway_id,
                self.tunnel.request_id,
            ));
        }
    }
}

/// A parked socket waits in no task (see `parking`): its connection and its route's queue
/// keep the waker, and the shutdown wakes every route (`Routes::wake_all`).
impl parking::Park for Socket {
    type Wake = Wake;
    /// The socket's place under `gateway.max_client_sockets`.
    type Hold = tokio::sync::OwnedSemaphorePermit;

    fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<Wake> {
        if let Poll::Ready(woken) = self.client.poll_client(cx) {
            return Poll::Ready(Wake::Client(woken));
        }
        if let Poll::Ready(inbound) = self.rx.poll_recv(cx) {
            return Poll::Ready(Wake::Inbound(inbound));
        }
        // Read after the queue holds the waker: a shutdown that fires after this read still
        // wakes the task through it.
        if self.tunnel.gw.shutdown.is_cancelled() {
            return Poll::Ready(Wake::Shutdown);
        }
        Poll::Pending
    }

    fn resume(self: Box<Self>, wake: Wake) -> parking::Step<Self> {
        Box::pin(resume(self, wake))
    }
}

/// Places the actor and opens the socket to it (or forwards the socket to the node that
/// serves it, returning `None` once that ends).
async fn settle(
    gw: &Gateway,
    request: Box<Request>,
    client: &mut Client,
) -> Result<Option<(Tunnel, crate::route_queue::RouteReceiver)>, ApiError> {
    let Request {
        target,
        headers,
        uri,
    } = *request;
    let target = &target;
    let actor = Box::pin(super::resolve(gw, target)).await?;
    let timeout = Duration::from_millis(gw.config.gateway.actor_ready_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let hops = cluster::hops(&headers);
    let (envoy, generation) = loop {
        let lease = match Box::pin(super::place(gw, &actor, deadline)).await? {
            Ready::Local { envoy, generation } => break (envoy, generation),
            Ready::Remote(lease) => lease,
        };
        if hops >= cluster::MAX_HOPS {
            return Err(cluster::too_many_hops());
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        match Box::pin(forward(
            gw,
            &lease.node_url,
            path,
            &headers,
            hops + 1,
            client,
        ))
        .await
        {
            Ok(()) => return Ok(None),
            Err(ForwardError::Unreachable(err)) => {
                tracing::warn!(owner = %lease.node_id, error = %err, "owner node unreachable");
                Box::pin(cluster::await_expiry(&lease, deadline)).await?;
            }
            Err(err) => return Err(ApiError::forward_failed(&err)),
        }
    };
    // The tunnel closes the route when it drops.
    let (request_id, mut rx) = gw.routes.open(&envoy.key);
    let mut t = Tunnel {
        gw: gw.clone(),
        actor: actor.clone(),
        request_id,
        envoy,
        generation,
        buffer: SocketBuffer::new(gw.config.gateway.max_pending_ws_messages),
        attached: true,
        counted_bytes: 0,
    };
    let open = ToEnvoyTunnelMessageKind::ToEnvoyWebSocketOpen(ToEnvoyWebSocketOpen {
        actor_id: actor.actor_id.clone().into(),
        actor_generation: Some(generation),
        path: target.actor_path.clone().into(),
        headers: forward_headers(&headers),
    });
    // Only the open needed them; the socket lives on without.
    drop((headers, uri));
    if !Box::pin(t.send(open, 0)).await {
        return Err(ApiError::runner_lost());
    }
    Box::pin(wait_open(gw, &mut t, &mut rx, client)).await?;
    // A socket the actor can hibernate belongs in every later start of the actor, not only
    // once it has hibernated: when the actor moves (a serverless request's lifespan, a
    // runner going away) its runner may let go of the socket without a hibernating close,
    // and the next instance must still restore it.
    if t.buffer.is_hibernatable() {
        let _ = actor.send(Msg::Hibernating(gw.gateway_id, request_id));
    }
    Ok(Some((t, rx)))
}

/// Passes the socket to the node that serves its actor, until either side closes. Its own
/// function so the upstream connection (a TLS stream is large) is no part of the socket
/// task's state once the socket settles here.
async fn forward(
    gw: &Gateway,
    node_url: &str,
    path: &str,
    headers: &HeaderMap,
    hops: u32,
    client: &mut Client,
) -> Result<(), ForwardError> {
    let upstream = cluster::forward::connect_ws(gw, node_url, path, headers, hops).await?;
    let ws = client.ws().await;
    cluster::forward::pipe_ws(gw, ws, upstream).await;
    Ok(())
}

async fn wait_open(
    gw: &Gateway,
    t: &mut Tunnel,
    rx: &mut crate::route_queue::RouteReceiver,
    client: &mut Client,
) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(gw.config.gateway.websocket_open_timeout_ms);
    loop {
        let next = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| {
                ApiError::new(
                    "guard",
                    "websocket_open_timeout",
                    "The actor did not accept the WebSocket in time.",
                )
            })?;
        match next {
            None | Some(Inbound::RunnerLost) => return Err(ApiError::runner_lost()),
            Some(Inbound::Message(_, kind)) => match *kind {
                ToRivetTunnelMessageKind::ToRivetWebSocketOpen(open) => {
                    t.buffer.set_hibernatable(open.can_hibernate);
                    return Ok(());
                }
                ToRivetTunnelMessageKind::ToRivetWebSocketClose(c) => {
                    close(
                        client,
                        c.code.unwrap_or(1000),
                        c.reason.map(|r| r.to_string()).unwrap_or_default(),
                    )
                    .await;
                    return Ok(());
                }
                _ => {}
            },
        }
    }
}

/// Whether a read failed because the client's message or frame exceeded the limit.
fn is_too_long(err: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::{error::CapacityError, Error};
    matches!(err, Error::Capacity(CapacityError::MessageTooLong { .. }))
}

/// What the active side of the pump ended with.
enum Step {
    /// The socket was idle for `gateway.client_park_after_ms`: park it.
    Park,
    /// The socket ended (`Ok`) or must be closed with the error.
    Done(Result<(), ApiError>),
}

/// What woke a parked socket.
enum Wake {
    Shutdown,
    Client(Woken),
    Inbound(Option<Inbound>),
}

/// Runs the socket until it parks (returned) or ends (`None`).
async fn run(mut s: Box<Socket>) -> Option<Box<Socket>> {
    loop {
        if s.client.is_parked() {
            return Some(s);
        }
        match active(&mut s).await {
            Step::Park => {
                if s.client.park().await {
                    // Parked, the socket holds no buffer: queues drained while it was active
                    // give their room back.
                    s.rx.shrink();
                    s.tunnel.buffer.shrink();
                    return Some(s);
                }
            }
            Step::Done(result) => {
                s.end(result).await;
                return None;
            }
        }
    }
}

/// Takes up a parked socket with what woke it, then runs it as [`run`] does.
async fn resume(mut s: Box<Socket>, wake: Wake) -> Option<Box<Socket>> {
    let ended = match wake {
        Wake::Shutdown => {
            let reason = "ws.going_away#gateway shutting down".into();
            close(&mut s.client, 1001, reason).await;
            Some(Ok(()))
        }
        Wake::Client(Woken::ClientGone) => {
            s.tunnel.tell_closed(1006).await;
            Some(Ok(()))
        }
        // Picks the socket up with what the client sent.
        Wake::Client(Woken::Client) => {
            s.client.ws().await;
            None
        }
        Wake::Inbound(inbound) => on_inbound(&mut s.tunnel, &mut s.client, inbound).await,
    };
    match ended {
        Some(result) => {
            s.end(result).await;
            None
        }
        None => run(s).await,
    }
}

/// The socket while messages flow, until it ends or has idled for
/// `gateway.client_park_after_ms` (long enough that a chatting client keeps its codec
/// between messages).
async fn active(s: &mut Socket) -> Step {
    let Socket {
        tunnel: t,
        rx,
        client,
        ..
    } = s;
    let shutdown = t.gw.shutdown.clone();
    let park_after = Duration::from_millis(t.gw.config.gateway.client_park_after_ms);
    let idle = tokio::time::sleep(park_after);
    tokio::pin!(idle);
    loop {
        let ws = client.ws().await;
        tokio::select! {
            _ = shutdown.cancelled() => {
                close(client, 1001, "ws.going_away#gateway shutting down".into()).await;
                return Step::Done(Ok(()));
            }
            () = &mut idle => return Step::Park,
            frame = ws.next() => {
                idle.as_mut().reset(tokio::time::Instant::now() + park_after);
                if let Some(result) = on_client_frame(t, frame).await {
                    return Step::Done(result);
                }
            }
            inbound = rx.recv() => {
                idle.as_mut().reset(tokio::time::Instant::now() + park_after);
                if let Some(result) = on_inbound(t, client, inbound).await {
                    return Step::Done(result);
                }
            }
        }
    }
}

/// One frame (or the end) from the client. `Some` ends the socket.
async fn on_client_frame(
    t: &mut Tunnel,
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Option<Result<(), ApiError>> {
    let (data, binary) = match frame {
        Some(Ok(Message::Binary(b))) => (b, true),
        Some(Ok(Message::Text(s))) => (bytes::Bytes::from(s), false),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return None,
        Some(Ok(Message::Close(frame))) => {
            if t.attached {
                let index = t.buffer.next_index();
                let close =
                    ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(ToEnvoyWebSocketClose {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string().into()),
                    });
                t.send(close, index).await;
            }
            return Some(Ok(()));
        }
        Some(Err(err)) if is_too_long(&err) => {
            // Only this socket ends, with the code that names why.
            t.tell_closed(1009).await;
            return Some(Err(ApiError::ws_message_too_large(
                t.gw.config.gateway.max_ws_message_bytes,
            )));
        }
        Some(Err(_)) | None => {
            t.tell_closed(1006).await;
            return Some(Ok(()));
        }
    };
    let limit = t.gw.config.gateway.max_ws_message_bytes;
    if data.len() > limit {
        t.tell_closed(1009).await;
        return Some(Err(ApiError::ws_message_too_large(limit)));
    }
    if let Err(err) = t.forward(data, binary).await {
        return Some(Err(err));
    }
    if !t.attached {
        if let Err(err) = Box::pin(t.wake()).await {
            return Some(Err(err));
        }
    }
    None
}

/// One message from the runner for this socket (or its end). `Some` ends the socket.
async fn on_inbound(
    t: &mut Tunnel,
    client: &mut Client,
    inbound: Option<Inbound>,
) -> Option<Result<(), ApiError>> {
    match inbound {
        None if t.gw.routes.overflowed(&t.request_id) => {
            t.tell_closed(1008).await;
            Some(Err(ApiError::client_not_reading()))
        }
        None => Some(Err(ApiError::runner_lost())),
        Some(Inbound::RunnerLost) if t.buffer.is_hibernatable() => {
            Box::pin(t.detach()).await.err().map(Err)
        }
        Some(Inbound::RunnerLost) => Some(Err(ApiError::runner_lost())),
        Some(Inbound::Message(_, kind)) => match *kind {
            ToRivetTunnelMessageKind::ToRivetWebSocketMessage(m) => {
                let msg = if m.binary {
                    Message::Binary(m.data)
                } else {
                    match String::from_utf8(m.data.to_vec()) {
                        Ok(text) => Message::Text(text.into()),
                        Err(_) => Message::Binary(m.data),
                    }
                };
                let write_timeout =
                    Duration::from_millis(t.gw.config.gateway.client_write_timeout_ms);
                match tokio::time::timeout(write_timeout, client.send(msg)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(_)) => Some(Ok(())),
                    Err(_) => {
                        // The actor learns its client is gone, as for any close.
                        t.tell_closed(1008).await;
                        Some(Err(ApiError::client_not_reading()))
                    }
                }
            }
            ToRivetTunnelMessageKind::ToRivetWebSocketMessageAck(ack) => {
                t.buffer.ack(ack.index);
                t.count_bytes();
                None
            }
            ToRivetTunnelMessageKind::ToRivetWebSocketClose(c) => {
                if c.hibernate && t.buffer.is_hibernatable() {
                    tracing::debug!("client websocket hibernating");
                    if let Err(err) = Box::pin(t.detach()).await {
                        return Some(Err(err));
                    }
                    // Messages the actor never acknowledged must still reach it: wake it
                    // now rather than at the client's next message.
                    if t.buffer.has_pending() {
                        if let Err(err) = Box::pin(t.wake()).await {
                            return Some(Err(err));
                        }
                    }
                    None
                } else {
                    close(
                        client,
                        c.code.unwrap_or(1000),
                        c.reason.map(|r| r.to_string()).unwrap_or_default(),
                    )
                    .await;
                    Some(Ok(()))
                }
            }
            ToRivetTunnelMessageKind::ToRivetWebSocketOpen(open) => {
                // The actor restored this socket after a restart.
                t.buffer.set_hibernatable(open.can_hibernate);
                Box::pin(t.reattach()).await;
                None
            }
            ToRivetTunnelMessageKind::ToRivetResponseStart(_)
            | ToRivetTunnelMessageKind::ToRivetResponseChunk(_)
            | ToRivetTunnelMessageKind::ToRivetResponseAbort(_)
            | ToRivetTunnelMessageKind::ToRivetRequestBodyWindowUpdate(_)
            | ToRivetTunnelMessageKind::ToRivetRequestBodyCancel => None,
        },
    }
}
