//! One client HTTP request through the tunnel. The whole request body goes to the actor in
//! a single `RequestStart` (index 0). The response comes back either whole, or, when the
//! actor streams it (`ResponseStart{stream: true}`, e.g. server-sent events from a raw
//! `onRequest` handler), as chunks that are passed to the client as they arrive. Streamed
//! responses are flow-controlled: the gateway returns credit to the runner with cumulative
//! `ResponseBodyWindowUpdate`s as the client consumes the body, so a slow client slows the
//! actor instead of filling the gateway's memory. The route is closed on every exit path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use rivulet_wire::envoy::{
    MessageId, ToEnvoy, ToEnvoyRequestStart, ToEnvoyResponseBodyWindowUpdate, ToEnvoyTunnelMessage,
    ToEnvoyTunnelMessageKind, ToRivetTunnelMessageKind,
};
use tokio::sync::mpsc;

use super::target::Target;
use crate::actor::Ready;
use crate::cluster::{self, forward::ForwardError};
use crate::envoy::EnvoyHandle;
use crate::error::ApiError;
use crate::state::Gateway;
use crate::tunnel::Inbound;

/// Chunks of a streamed response buffered between the runner and a slow client.
const STREAM_BUFFER_CHUNKS: usize = 16;

/// Closes the route when the request ends, however it ends.
pub(super) struct RouteGuard {
    pub gw: Gateway,
    pub request_id: [u8; 4],
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.gw.routes.close(&self.request_id);
    }
}

/// Reads a client's body within the per-request limit and the gateway-wide budget. A body
/// declared too large is refused before any of it is read.
async fn read_body(
    gw: &Gateway,
    body: Body,
) -> Result<(bytes::Bytes, Option<tokio::sync::OwnedSemaphorePermit>), ApiError> {
    let limit = gw.config.gateway.max_body_bytes;
    let mut body = http_body_util::Limited::new(body, limit);
    if axum::body::HttpBody::size_hint(&body)
        .upper()
        .is_some_and(|n| n > limit as u64)
    {
        return Err(ApiError::body_too_large(limit));
    }
    let mut buf = bytes::BytesMut::new();
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                ApiError::body_too_large(limit)
            } else {
                ApiError::bad_request(format!("reading the request body failed: {err}"))
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing the actor gets
        };
        let n = u32::try_from(data.len()).map_err(|_| ApiError::body_too_large(limit))?;
        let permit = gw
            .body_budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| ApiError::bodies_over_budget())?;
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), held))
}

pub(super) async fn serve(
    gw: Gateway,
    target: Target,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // Held until the request ends: the body lives in the gateway that long.
    let (body, _budget) = read_body(&gw, body).await?;

    let actor = super::resolve(&gw, &target).await?;
    let ready_timeout = Duration::from_millis(gw.config.gateway.actor_ready_timeout_ms);
    let deadline = tokio::time::Instant::now() + ready_timeout;
    let hops = cluster::hops(&parts.headers);
    let mut attempt = 0;
    'attempt: loop {
        attempt += 1;
        let (envoy, generation) = loop {
            let lease = match super::place(&gw, &actor, deadline).await? {
                Ready::Local { envoy, generation } => break (envoy, generation),
                Ready::Remote(lease) => lease,
            };
            if hops >= cluster::MAX_HOPS {
                return Err(cluster::too_many_hops());
            }
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let sent = cluster::forward::http(
                &gw,
                &lease.node_url,
                &parts.method,
                path,
                &parts.headers,
                body.clone(),
                hops + 1,
            )
            .await;
            match sent {
                Ok(resp) => return Ok(resp),
                Err(ForwardError::Unreachable(err)) => {
                    tracing::warn!(owner = %lease.node_id, error = %err, "owner node unreachable");
                    cluster::await_expiry(&lease, deadline).await?;
                }
                Err(err) => return Err(ApiError::forward_failed(&err)),
            }
        };

        let (request_id, mut rx) = gw.routes.open(&envoy.key);
        let guard = RouteGuard {
            gw: gw.clone(),
            request_id,
        };

        let start = ToEnvoyRequestStart {
            actor_id: actor.actor_id.clone().into(),
            actor_generation: Some(generation),
            method: parts.method.as_str().to_string().into(),
            path: target.actor_path.clone().into(),
            headers: forward_headers(&parts.headers),
            body: if body.is_empty() {
                None
            } else {
                Some(body.clone())
            },
            stream: false,
            response_stream: true,
        };
        let msg = tunnel_msg(
            &gw,
            request_id,
            0,
            ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(start),
        );
        if !envoy.send_tunnel(msg).await {
            return Err(ApiError::runner_lost());
        }

        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(gw.config.gateway.response_start_timeout_ms);
        loop {
            let next = tokio::select! {
                // Past the drain deadline the gateway stops; the client gets an answer, not a
                // connection that hangs until it is dropped.
                _ = gw.stopping.cancelled() => return Err(ApiError::shutting_down()),
                next = tokio::time::timeout_at(deadline, rx.recv()) => next,
            }
            .map_err(|_| {
                ApiError::new(
                    "guard",
                    "request_timeout",
                    "The actor did not answer in time.",
                )
                .with_status(StatusCode::GATEWAY_TIMEOUT)
            })?;
            match next {
                None | Some(Inbound::RunnerLost) => return Err(ApiError::runner_lost()),
                Some(Inbound::Message(_, kind)) => match *kind {
                    ToRivetTunnelMessageKind::ToRivetResponseStart(start) => {
                        // The instance had already let the actor go (it moved or slept between
                        // the gate and the runner): the request never reached the actor, so it
                        // goes to the next instance, as the client would have wanted.
                        if attempt < MAX_DELIVERY_ATTEMPTS && not_delivered(&start) {
                            tracing::debug!(attempt, "the instance had let the actor go; sending the request to the next one");
                            drop(guard);
                            continue 'attempt;
                        }
                        let mut resp = build(start.status, start.headers)?;
                        if start.stream {
                            let (tx, body) = mpsc::channel::<Result<Bytes, std::io::Error>>(
                                STREAM_BUFFER_CHUNKS,
                            );
                            if let Some(first) = start.body.filter(|b| !b.is_empty()) {
                                let _ = tx.try_send(Ok(first));
                            }
                            let pump = StreamPump {
                                gw: gw.clone(),
                                envoy,
                                request_id,
                                rx,
                                tx,
                                _guard: guard,
                            };
                            gw.tasks.spawn(pump.run());
                            *resp.body_mut() = Body::from_stream(tokio_stream_from(body));
                        } else {
                            *resp.body_mut() = Body::from(start.body.unwrap_or_default());
                        }
                        return Ok(resp);
                    }
                    ToRivetTunnelMessageKind::ToRivetResponseAbort(abort) => {
                        return Err(aborted(abort.reason.detail.as_deref()));
                    }
                    ToRivetTunnelMessageKind::ToRivetResponseChunk(_)
                    | ToRivetTunnelMessageKind::ToRivetRequestBodyWindowUpdate(_)
                    | ToRivetTunnelMessageKind::ToRivetRequestBodyCancel
                    | ToRivetTunnelMessageKind::ToRivetWebSocketOpen(_)
                    | ToRivetTunnelMessageKind::ToRivetWebSocketMessage(_)
                    | ToRivetTunnelMessageKind::ToRivetWebSocketMessageAck(_)
                    | ToRivetTunnelMessageKind::ToRivetWebSocketClose(_) => {}
                },
            }
        }
    }
}

/// Times a request is sent to an actor whose instance answers that it no longer runs it.
const MAX_DELIVERY_ATTEMPTS: u32 = 3;

/// Whether a runner answered that the actor does not run there (`envoy.actor_not_running`,
/// RivetKit's and Rivulet's runners alike): the request never reached the actor.
fn not_delivered(start: &rivulet_wire::envoy::ToRivetResponseStart) -> bool {
    if start.status != 503 || start.stream {
        return false;
    }
    let Some(body) = &start.body else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v["group"] == "envoy" && v["code"] == "actor_not_running")
}

fn tunnel_msg(
    gw: &Gateway,
    request_id: [u8; 4],
    index: u16,
    kind: ToEnvoyTunnelMessageKind,
) -> ToEnvoy {
    ToEnvoy::ToEnvoyTunnelMessage(ToEnvoyTunnelMessage {
        message_id: MessageId {
            gateway_id: gw.gateway_id,
            request_id,
            message_index: index,
        },
        message_kind: kind,
    })
}

fn aborted(detail: Option<&str>) -> ApiError {
    ApiError::new(
        "guard",
        "response_aborted",
        format!(
            "The actor aborted the response: {}",
            detail.unwrap_or("no detail")
        ),
    )
    .with_status(StatusCode::BAD_GATEWAY)
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Moves a streamed response body from the runner to the client.
struct StreamPump {
    gw: Gateway,
    envoy: Arc<EnvoyHandle>,
    request_id: [u8; 4],
    rx: crate::route_queue::RouteReceiver,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    _guard: RouteGuard,
}

impl StreamPump {
    async fn run(mut self) {
        let mut consumed: u64 = 0;
        let mut next_index: u16 = 1;
        loop {
            let next = tokio::select! {
                _ = self.gw.stopping.cancelled() => {
                    let _ = self.tx.send(Err(std::io::Error::other("gateway shutting down"))).await;
                    return;
                }
                // The client went away: stop reading; the route guard closes the request.
                _ = self.tx.closed() => return,
                next = self.rx.recv() => next,
            };
            match next {
                None | Some(Inbound::RunnerLost) => {
                    let _ = self
                        .tx
                        .send(Err(std::io::Error::other(
                            "the actor's runner disconnected",
                        )))
                        .await;
                    return;
                }
                Some(Inbound::Message(_, kind)) => match *kind {
                    ToRivetTunnelMessageKind::ToRivetResponseChunk(chunk) => {
                        let len = chunk.body.len() as u64;
                        if !chunk.body.is_empty() && self.tx.send(Ok(chunk.body)).await.is_err() {
                            return;
                        }
                        // The chunk is in the client's buffer: give the runner its credit back.
                        consumed += len;
                        let update = ToEnvoyTunnelMessageKind::ToEnvoyResponseBodyWindowUpdate(
                            ToEnvoyResponseBodyWindowUpdate {
                                consumed_bytes: consumed,
                            },
                        );
                        self.envoy
                            .send_tunnel(tunnel_msg(&self.gw, self.request_id, next_index, update))
                            .await;
                        next_index = next_index.wrapping_add(1);
                        if chunk.finish {
                            return;
                        }
                    }
                    ToRivetTunnelMessageKind::ToRivetResponseAbort(abort) => {
                        let detail = abort.reason.detail.map(|d| d.to_string());
                        let _ = self
                            .tx
                            .send(Err(std::io::Error::other(format!(
                                "the actor aborted the response: {}",
                                detail.as_deref().unwrap_or("no detail")
                            ))))
                            .await;
                        return;
                    }
                    _ => {}
                },
            }
        }
    }
}

/// Client headers as the actor sees them: lower-case names, repeated values joined.
pub(super) fn forward_headers(headers: &axum::http::HeaderMap) -> BTreeMap<vbare::Str, vbare::Str> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    out.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn build(status: u16, headers: BTreeMap<vbare::Str, vbare::Str>) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(status)
        .map_err(|_| ApiError::internal(format!("runner sent invalid status {status}")))?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.as_str()),
        ) else {
            continue;
        };
        if name == axum::http::header::CONTENT_LENGTH
            || name == axum::http::header::TRANSFER_ENCODING
        {
            continue; // recomputed for the body we actually send
        }
        h.append(name, value);
    }
    Ok(resp)
}
