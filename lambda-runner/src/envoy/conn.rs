//! The connection to the gateway: one task that connects, serves the connection until it
//! ends, and reconnects with bounded exponential backoff, until the client is shut down,
//! cancelled or evicted.
//!
//! One connection: open the WebSocket (`rivet` and `rivet_token.{t}` subprotocols), send
//! `ToRivetMetadata` at once (RivetKit does not wait for init), wait for `ToEnvoyInit`, then
//! send the replay `State::on_connected` returns and run a reader (this task) and a writer
//! (a child task draining the outbox, pongs first). Whichever ends first ends the other.
//!
//! While disconnected, the gateway keeps this envoy's actors for its lost threshold (from
//! init). Past it without a connection, the envoy stops its actors too (`Lost`), as the
//! gateway has given up on them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use rivulet_wire::codec::{decode_to_envoy, encode_to_rivet};
use rivulet_wire::envoy::{
    ActorName, MessageId, ProtocolMetadata, ToEnvoy, ToEnvoyTunnelMessage,
    ToEnvoyTunnelMessageKind, ToRivet, ToRivetMetadata, ToRivetPong, ToRivetResponseStart,
    ToRivetTunnelMessage, ToRivetTunnelMessageKind, ToRivetWebSocketClose,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::EnvoyError;
use super::state::{LaneCmd, LiveConn, NewLane};
use super::{EnvoyClient, Inner};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsSink = futures_util::stream::SplitSink<Ws, Message>;

/// Frames the writer takes from the outbox at once (one lock acquisition).
const WRITE_BATCH: usize = 64;
/// Bound on sending our close frame, so a stuck socket cannot hold up shutdown.
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why one connection ended.
#[derive(Debug)]
enum End {
    /// The client is shutting down gracefully or was cancelled.
    Finished,
    /// Another connection took over this envoy key.
    Evicted,
    /// The gateway gave up the standby request this connection was for.
    Dismissed(String),
    /// The gateway is going away (restart); reconnect at once.
    GoingAway,
    /// Anything else: reconnect with backoff.
    Lost(String),
}

/// Runs connections until the client finishes. `ready` learns the outcome of the first
/// connection: `Ok` after its init, or the error that makes retrying pointless.
pub(super) async fn run(inner: Arc<Inner>, ready: oneshot::Sender<Result<(), EnvoyError>>) {
    let mut ready = Some(ready);
    let mut attempt: u32 = 0;
    // Set while disconnected after having been connected: when the gateway gives up on us.
    let mut lost_at: Option<tokio::time::Instant> = None;
    loop {
        if inner.cancel.is_cancelled() || inner.closing.is_cancelled() {
            break;
        }
        let connected = {
            let attempt_fut = connect(&inner);
            tokio::pin!(attempt_fut);
            loop {
                tokio::select! {
                    r = &mut attempt_fut => break Some(r),
                    _ = inner.cancel.cancelled() => break None,
                    _ = sleep_until_opt(lost_at), if lost_at.is_some() => {
                        lost_at = None;
                        declare_lost(&inner);
                    }
                }
            }
        };
        let Some(connected) = connected else { break };
        match connected {
            Ok((ws, metadata)) => {
                attempt = 0;
                inner
                    .lost_threshold_ms
                    .store(metadata.envoy_lost_threshold, Ordering::Relaxed);
                *inner.protocol.lock() = Some(metadata);
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                let end = serve(&inner, ws).await;
                let lost_after = inner.lost_threshold_ms.load(Ordering::Relaxed);
                lost_at = Some(
                    tokio::time::Instant::now()
                        + Duration::from_millis(u64::try_from(lost_after).unwrap_or(0)),
                );
                match end {
                    End::Finished => break,
                    End::Evicted => {
                        tracing::error!("evicted: another envoy connected with this key; stopping");
                        declare_lost(&inner);
                        inner.state.lock().close(EnvoyError::Evicted);
                        break;
                    }
                    End::Dismissed(detail) => {
                        tracing::info!(%detail, "the gateway no longer needs this standby; stopping");
                        inner.state.lock().close(EnvoyError::Refused {
                            code: rivulet_wire::STANDBY_NOT_NEEDED.into(),
                            detail,
                        });
                        break;
                    }
                    End::GoingAway => tracing::info!("gateway going away, reconnecting"),
                    End::Lost(why) => {
                        tracing::warn!(reason = %why, "connection to the gateway lost, reconnecting")
                    }
                }
            }
            Err(err) => {
                if ready.is_some() && is_fatal(&err) {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(err));
                    }
                    break;
                }
                tracing::warn!(error = %err, attempt, "connecting to the gateway failed");
            }
        }
        let delay = backoff(
            attempt,
            inner.config.reconnect_initial,
            inner.config.reconnect_max,
        );
        attempt = attempt.saturating_add(1);
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        let finished = loop {
            tokio::select! {
                _ = &mut sleep => break false,
                _ = inner.cancel.cancelled() => break true,
                _ = inner.closing.cancelled() => break true,
                _ = sleep_until_opt(lost_at), if lost_at.is_some() => {
                    lost_at = None;
                    declare_lost(&inner);
                }
            }
        };
        if finished {
            break;
        }
    }
    inner.connected.store(false, Ordering::Relaxed);
    if let Some(r) = ready.take() {
        let _ = r.send(Err(EnvoyError::Shutdown));
    }
    inner.conn_done.cancel();
    tracing::debug!("envoy connection loop ended");
}

/// Errors that will not go away by retrying the first connection.
fn is_fatal(err: &EnvoyError) -> bool {
    matches!(err, EnvoyError::Config(_) | EnvoyError::Refused { .. })
}

/// `initial * 2^attempt`, capped at `max`, with ±20 % jitter so many envoys do not
/// reconnect in lockstep.
pub(crate) fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(16));
    let base = initial.saturating_mul(factor).min(max);
    let jitter = rand::random::<f64>() * 0.4 + 0.8;
    base.mul_f64(jitter).min(max)
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn declare_lost(inner: &Inner) {
    let mut state = inner.state.lock();
    if state.live_count() > 0 || state.kv_in_flight() > 0 {
        tracing::warn!("gateway unreachable past the lost threshold; stopping actors");
    }
    state.declare_lost();
}

// === connect ===

/// Opens a connection and completes the handshake: metadata out, init in.
async fn connect(inner: &Inner) -> Result<(Ws, ProtocolMetadata), EnvoyError> {
    let config = &inner.config;
    let mut request = inner
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| EnvoyError::Config(format!("endpoint: {e}")))?;
    let protocols = HeaderValue::from_str(&config.subprotocols()).map_err(|_| {
        EnvoyError::Config("token contains characters a header cannot carry".into())
    })?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols);
    let handshake = async {
        // The gateway sends a client's request body or socket message in one frame, up to
        // this bound (tungstenite's default frame limit, 16 MiB, is below the gateway's
        // client limits and would cut the connection over one client's large message).
        let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(rivulet_wire::ENVOY_MAX_FRAME_BYTES))
            .max_frame_size(Some(rivulet_wire::ENVOY_MAX_FRAME_BYTES));
        let (mut ws, _resp) =
            tokio_tungstenite::connect_async_with_config(request, Some(limits), false)
                .await
                .map_err(connect_error)?;
        send(&mut ws, &metadata_frame(config)).await?;
        loop {
            let frame = ws
                .next()
                .await
                .ok_or_else(|| EnvoyError::Connect("connection closed before init".into()))?
                .map_err(|e| EnvoyError::Connect(e.to_string()))?;
            match frame {
                Message::Binary(bytes) => match decode_to_envoy(bytes) {
                    Ok(ToEnvoy::ToEnvoyInit(init)) => return Ok((ws, init.metadata)),
                    Ok(other) => {
                        return Err(EnvoyError::Protocol(format!(
                            "expected init as the first frame, got {}",
                            frame_name(&other)
                        )))
                    }
                    Err(err) => return Err(EnvoyError::Protocol(err.to_string())),
                },
                Message::Close(frame) => {
                    let (code, detail) = frame
                        .map(|f| parse_close_reason(f.reason.as_str()))
                        .unwrap_or_else(|| ("ws.closed".into(), String::new()));
                    return Err(EnvoyError::Refused { code, detail });
                }
                Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    };
    tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .map_err(|_| EnvoyError::Timeout("envoy handshake"))?
}

fn connect_error(err: tungstenite::Error) -> EnvoyError {
    match err {
        tungstenite::Error::Url(e) => EnvoyError::Config(format!("endpoint: {e}")),
        tungstenite::Error::Http(resp) if resp.status().is_client_error() => EnvoyError::Refused {
            code: format!("http.{}", resp.status().as_u16()),
            detail: "the endpoint did not accept the envoy WebSocket".into(),
        },
        other => EnvoyError::Connect(other.to_string()),
    }
}

/// `group.code#detail` as sent by the gateway; a reason without `#` is all code.
pub(crate) fn parse_close_reason(reason: &str) -> (String, String) {
    match reason.split_once('#') {
        Some((code, detail)) => (code.to_string(), detail.to_string()),
        None => (reason.to_string(), String::new()),
    }
}

fn metadata_frame(config: &super::EnvoyConfig) -> ToRivet {
    let names: BTreeMap<vbare::Str, ActorName> = config
        .actor_names
        .iter()
        .map(|(name, meta)| {
            (
                name.clone().into(),
                ActorName {
                    metadata: meta.to_string().into(),
                },
            )
        })
        .collect();
    ToRivet::ToRivetMetadata(ToRivetMetadata {
        prepopulate_actor_names: Some(names),
        metadata: Some(config.metadata.to_string().into()),
    })
}

async fn send<S>(sink: &mut S, msg: &ToRivet) -> Result<(), EnvoyError>
where
    S: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    sink.send(Message::Binary(encode_to_rivet(msg).into()))
        .await
        .map_err(|e| EnvoyError::Connect(e.to_string()))
}

fn frame_name(msg: &ToEnvoy) -> &'static str {
    match msg {
        ToEnvoy::ToEnvoyInit(_) => "init",
        ToEnvoy::ToEnvoyCommands(_) => "commands",
        ToEnvoy::ToEnvoyAckEvents(_) => "ack events",
        ToEnvoy::ToEnvoyKvResponse(_) => "kv response",
        ToEnvoy::ToEnvoyTunnelMessage(_) => "tunnel message",
        ToEnvoy::ToEnvoyPing(_) => "ping",
        ToEnvoy::ToEnvoySqliteGetPagesResponse(_)
        | ToEnvoy::ToEnvoySqliteCommitResponse(_)
        | ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(_)
        | ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(_)
        | ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(_)
        | ToEnvoy::ToEnvoySqliteExecResponse(_)
        | ToEnvoy::ToEnvoySqliteExecuteResponse(_)
        | ToEnvoy::ToEnvoySqliteExecuteBatchResponse(_) => "sqlite response",
    }
}

// === serve ===

/// Serves one initialised connection until it ends.
async fn serve(inner: &Arc<Inner>, ws: Ws) -> End {
    let conn_id = inner.conn_seq.fetch_add(1, Ordering::Relaxed);
    let conn_cancel = inner.cancel.child_token();
    let initial = inner.state.lock().on_connected(LiveConn {
        id: conn_id,
        cancel: conn_cancel.clone(),
    });
    inner.connected.store(true, Ordering::Relaxed);
    tracing::info!(
        conn = conn_id,
        replayed_frames = initial.len(),
        "connected to the gateway"
    );
    let (sink, mut stream) = ws.split();
    let pong: Arc<Mutex<Option<i64>>> = Arc::new(Mutex::new(None));
    let writer = tokio::spawn(
        write_loop(
            inner.clone(),
            sink,
            initial,
            pong.clone(),
            conn_cancel.clone(),
        )
        .in_current_span(),
    );
    let silence = inner.config.silence_timeout;
    let end = loop {
        let next = tokio::select! {
            _ = conn_cancel.cancelled() => {
                break if inner.cancel.is_cancelled() {
                    End::Finished
                } else {
                    End::Lost("connection replaced".into())
                };
            }
            next = tokio::time::timeout(silence, stream.next()) => next,
        };
        match next {
            Err(_) => break End::Lost("nothing received within the silence timeout".into()),
            Ok(None) => break End::Lost("connection ended".into()),
            Ok(Some(Err(err))) => break End::Lost(err.to_string()),
            Ok(Some(Ok(Message::Binary(bytes)))) => match decode_to_envoy(bytes) {
                Ok(msg) => on_frame(inner, msg, &pong),
                Err(err) => break End::Lost(format!("undecodable frame from the gateway: {err}")),
            },
            Ok(Some(Ok(Message::Close(frame)))) => {
                let (code, detail) = frame
                    .as_ref()
                    .map(|f| parse_close_reason(f.reason.as_str()))
                    .unwrap_or_default();
                tracing::info!(code = %code, detail = %detail, "gateway closed the connection");
                break match code.as_str() {
                    _ if inner.closing.is_cancelled() => End::Finished,
                    "ws.eviction" => End::Evicted,
                    c if c == rivulet_wire::STANDBY_NOT_NEEDED => End::Dismissed(detail),
                    "ws.going_away" => End::GoingAway,
                    _ => End::Lost(format!("closed by the gateway: {code} {detail}")),
                };
            }
            Ok(Some(Ok(Message::Text(_)))) => {
                tracing::warn!("text frame from the gateway ignored");
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
        }
    };
    conn_cancel.cancel();
    let _ = writer.await;
    inner.state.lock().on_disconnected(conn_id);
    inner.connected.store(false, Ordering::Relaxed);
    end
}

/// Sends the replay, then drains the outbox whenever woken; pongs go first.
async fn write_loop(
    inner: Arc<Inner>,
    mut sink: WsSink,
    initial: Vec<ToRivet>,
    pong: Arc<Mutex<Option<i64>>>,
    conn_cancel: CancellationToken,
) {
    let ended_by_us = 'conn: {
        for frame in &initial {
            tokio::select! {
                r = send(&mut sink, frame) => if r.is_err() { break 'conn false },
                _ = conn_cancel.cancelled() => break 'conn true,
            }
        }
        let mut closing_sent = false;
        loop {
            loop {
                let mut batch = Vec::new();
                if let Some(ts) = pong.lock().take() {
                    batch.push(ToRivet::ToRivetPong(ToRivetPong { ts }));
                }
                let taken = {
                    let mut state = inner.state.lock();
                    let frames = state.take_batch(WRITE_BATCH);
                    let taken = !frames.is_empty();
                    batch.extend(frames);
                    taken
                };
                if batch.is_empty() {
                    break;
                }
                let mut failed = false;
                for frame in &batch {
                    tokio::select! {
                        r = send(&mut sink, frame) => if r.is_err() { failed = true; break },
                        _ = conn_cancel.cancelled() => { failed = true; break },
                    }
                }
                if taken {
                    inner.state.lock().batch_written();
                }
                if failed {
                    break 'conn conn_cancel.is_cancelled();
                }
            }
            inner.flushed.notify_waiters();
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = conn_cancel.cancelled() => break 'conn true,
                _ = inner.closing.cancelled(), if !closing_sent => {
                    closing_sent = true;
                    close(&mut sink, "envoy.shutdown").await;
                }
            }
        }
    };
    if ended_by_us && !inner.closing.is_cancelled() {
        let reason = if inner.cancel.is_cancelled() {
            "envoy.shutdown"
        } else {
            "envoy.reconnecting"
        };
        close(&mut sink, reason).await;
    }
    conn_cancel.cancel();
}

async fn close(sink: &mut WsSink, reason: &str) {
    let frame = Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(CLOSE_SEND_TIMEOUT, async {
        let _ = sink.send(frame).await;
        let _ = sink.flush().await;
    })
    .await;
}

// === incoming frames ===

fn on_frame(inner: &Arc<Inner>, msg: ToEnvoy, pong: &Mutex<Option<i64>>) {
    match msg {
        ToEnvoy::ToEnvoyPing(ping) => {
            *pong.lock() = Some(ping.ts);
            inner.wake.notify_one();
        }
        ToEnvoy::ToEnvoyCommands(commands) => apply_commands(inner, commands),
        ToEnvoy::ToEnvoyAckEvents(ack) => {
            inner
                .state
                .lock()
                .on_ack_events(&ack.last_event_checkpoints);
        }
        ToEnvoy::ToEnvoyKvResponse(resp) => {
            if !inner.state.lock().kv_complete(resp.request_id, resp.data) {
                tracing::debug!(
                    request_id = resp.request_id,
                    "kv response for a request nobody awaits"
                );
            }
        }
        ToEnvoy::ToEnvoyTunnelMessage(msg) => dispatch_tunnel(inner, msg),
        ToEnvoy::ToEnvoyInit(init) => {
            tracing::debug!("repeated init");
            inner
                .lost_threshold_ms
                .store(init.metadata.envoy_lost_threshold, Ordering::Relaxed);
            *inner.protocol.lock() = Some(init.metadata);
        }
        other @ (ToEnvoy::ToEnvoySqliteGetPagesResponse(_)
        | ToEnvoy::ToEnvoySqliteCommitResponse(_)
        | ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(_)
        | ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(_)
        | ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(_)
        | ToEnvoy::ToEnvoySqliteExecResponse(_)
        | ToEnvoy::ToEnvoySqliteExecuteResponse(_)
        | ToEnvoy::ToEnvoySqliteExecuteBatchResponse(_)) => {
            // This client sends no SQLite requests, so nothing awaits these.
            tracing::debug!(frame = frame_name(&other), "unexpected frame ignored");
        }
    }
}

/// Applies a batch of commands (from the connection, or injected by a serverless start) and
/// acknowledges it.
pub(crate) fn apply_commands(
    inner: &Arc<Inner>,
    commands: Vec<rivulet_wire::envoy::CommandWrapper>,
) {
    let lanes = inner.state.lock().on_commands(commands);
    for lane in lanes {
        spawn_lane(inner, lane);
    }
    inner.live_changed();
    inner.wake.notify_one();
}

/// Runs one generation's commands through the handler, in order.
fn spawn_lane(inner: &Arc<Inner>, lane: NewLane) {
    let client = EnvoyClient {
        inner: inner.clone(),
    };
    let span =
        tracing::info_span!("actor", actor_id = %lane.actor_id, generation = lane.generation);
    let NewLane {
        actor_id,
        generation,
        mut rx,
    } = lane;
    let cancel = inner.cancel.clone();
    let handler = inner.handler.clone();
    inner.tasks.spawn(
        async move {
            loop {
                let cmd = tokio::select! {
                    // The process is going away: the handler's work is abandoned with it.
                    _ = cancel.cancelled() => return,
                    cmd = rx.recv() => match cmd {
                        Some(cmd) => cmd,
                        None => return, // the generation stopped
                    },
                };
                let call = async {
                    match cmd {
                        LaneCmd::Start(start) => {
                            tracing::info!("starting actor");
                            handler.start_actor(client.clone(), *start).await;
                        }
                        LaneCmd::Stop(reason) => {
                            tracing::info!(?reason, "stopping actor");
                            handler
                                .stop_actor(client.clone(), actor_id.clone(), generation, reason)
                                .await;
                        }
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    () = call => {}
                }
            }
        }
        .instrument(span),
    );
}

/// Hands a tunnel message to the handler's queue, or answers it here when the actor does
/// not run on this envoy or the queue is full.
fn dispatch_tunnel(inner: &Inner, msg: ToEnvoyTunnelMessage) {
    let target = match &msg.message_kind {
        ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(s) => {
            Some((s.actor_id.to_string(), s.actor_generation))
        }
        ToEnvoyTunnelMessageKind::ToEnvoyWebSocketOpen(o) => {
            Some((o.actor_id.to_string(), o.actor_generation))
        }
        ToEnvoyTunnelMessageKind::ToEnvoyRequestChunk(_)
        | ToEnvoyTunnelMessageKind::ToEnvoyRequestAbort(_)
        | ToEnvoyTunnelMessageKind::ToEnvoyRequestBodyCancel
        | ToEnvoyTunnelMessageKind::ToEnvoyResponseBodyWindowUpdate(_)
        | ToEnvoyTunnelMessageKind::ToEnvoyWebSocketMessage(_)
        | ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(_) => None,
    };
    if let Some((actor_id, generation)) = target {
        if !inner.state.lock().is_live(&actor_id, generation) {
            tracing::debug!(actor_id = %actor_id, ?generation, "tunnel request for an actor not running here");
            refuse(
                inner,
                &msg,
                "actor_not_running",
                "The actor is not running on this runner.",
            );
            return;
        }
    }
    match inner.tunnel_tx.try_send(msg) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(msg)) => {
            tracing::warn!("tunnel handler queue full, refusing message");
            refuse(
                inner,
                &msg,
                "overloaded",
                "The runner is overloaded; try again.",
            );
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Answers a tunnel message on the handler's behalf: 503 for a request, close 1011 for a
/// WebSocket; other messages are dropped.
fn refuse(inner: &Inner, msg: &ToEnvoyTunnelMessage, code: &str, message: &str) {
    let id = &msg.message_id;
    let kind = match &msg.message_kind {
        ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(_) => {
            let body = serde_json::json!({"group": "envoy", "code": code, "message": message});
            ToRivetTunnelMessageKind::ToRivetResponseStart(ToRivetResponseStart {
                status: 503,
                headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
                body: Some(body.to_string().into_bytes().into()),
                stream: false,
            })
        }
        ToEnvoyTunnelMessageKind::ToEnvoyWebSocketOpen(_)
        | ToEnvoyTunnelMessageKind::ToEnvoyWebSocketMessage(_) => {
            ToRivetTunnelMessageKind::ToRivetWebSocketClose(ToRivetWebSocketClose {
                code: Some(1011),
                reason: Some(format!("envoy.{code}").into()),
                hibernate: false,
            })
        }
        ToEnvoyTunnelMessageKind::ToEnvoyRequestChunk(_)
        | ToEnvoyTunnelMessageKind::ToEnvoyRequestAbort(_)
        | ToEnvoyTunnelMessageKind::ToEnvoyRequestBodyCancel
        | ToEnvoyTunnelMessageKind::ToEnvoyResponseBodyWindowUpdate(_)
        | ToEnvoyTunnelMessageKind::ToEnvoyWebSocketClose(_) => return,
    };
    let reply = ToRivetTunnelMessage {
        // Responses and closes carry index 0, as RivetKit sends them.
        message_id: MessageId {
            gateway_id: id.gateway_id,
            request_id: id.request_id,
            message_index: 0,
        },
        message_kind: kind,
    };
    if inner.state.lock().push_tunnel(reply).is_ok() {
        inner.wake.notify_one();
    }
}
