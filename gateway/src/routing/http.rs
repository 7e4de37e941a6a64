//! One client HTTP request through the tunnel: the whole body goes to the actor in a single
//! `RequestStart` (index 0); the response comes back whole or as chunks, and is returned once
//! complete. The route is closed on every exit path.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use rivulet_wire::envoy::{
    MessageId, ToEnvoy, ToEnvoyRequestStart, ToEnvoyTunnelMessage, ToEnvoyTunnelMessageKind,
    ToRivetTunnelMessageKind,
};

use super::target::Target;
use crate::error::ApiError;
use crate::state::Gateway;
use crate::tunnel::Inbound;

/// Closes the route when the request ends, however it ends.
pub(super) struct RouteGuard<'a> {
    pub gw: &'a Gateway,
    pub request_id: [u8; 4],
}

impl Drop for RouteGuard<'_> {
    fn drop(&mut self) {
        self.gw.routes.close(&self.request_id);
    }
}

pub(super) async fn serve(
    gw: Gateway,
    target: Target,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = gw.config.gateway.max_body_bytes;
    let body = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|_| ApiError::body_too_large(limit))?
        .to_bytes();

    let actor = super::resolve(&gw, &target).await?;
    let ready_timeout = Duration::from_millis(gw.config.gateway.actor_ready_timeout_ms);
    let (envoy, generation) = actor.ready(&gw, ready_timeout).await?;

    let request_id: [u8; 4] = rand::random();
    let mut rx = gw.routes.open(request_id, &envoy.key);
    let _guard = RouteGuard {
        gw: &gw,
        request_id,
    };

    let start = ToEnvoyRequestStart {
        actor_id: actor.actor_id.clone().into(),
        actor_generation: Some(generation),
        method: parts.method.as_str().to_string().into(),
        path: target.actor_path.clone().into(),
        headers: forward_headers(&parts.headers),
        body: if body.is_empty() { None } else { Some(body) },
        stream: false,
        response_stream: false,
    };
    let msg = ToEnvoy::ToEnvoyTunnelMessage(ToEnvoyTunnelMessage {
        message_id: MessageId {
            gateway_id: gw.gateway_id,
            request_id,
            message_index: 0,
        },
        message_kind: ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(start),
    });
    if !envoy.send(msg) {
        return Err(ApiError::runner_lost());
    }

    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(gw.config.gateway.response_start_timeout_ms);
    let mut response: Option<(u16, BTreeMap<vbare::Str, vbare::Str>, Vec<u8>)> = None;
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
            Some(Inbound::Message(_, kind)) => match kind {
                ToRivetTunnelMessageKind::ToRivetResponseStart(start) => {
                    let body = start.body.map(|b| b.to_vec()).unwrap_or_default();
                    if !start.stream {
                        return build(start.status, start.headers, body);
                    }
                    response = Some((start.status, start.headers, body));
                }
                ToRivetTunnelMessageKind::ToRivetResponseChunk(chunk) => {
                    let Some((_, _, buf)) = response.as_mut() else {
                        continue; // a chunk before the start is a runner bug; ignore it
                    };
                    if buf.len() + chunk.body.len()
                        > gw.config.envoy.max_response_payload_bytes as usize
                    {
                        return Err(ApiError::new(
                            "guard",
                            "response_too_large",
                            "The actor's response is larger than the gateway accepts.",
                        )
                        .with_status(StatusCode::BAD_GATEWAY));
                    }
                    buf.extend_from_slice(&chunk.body);
                    if chunk.finish {
                        if let Some((status, headers, body)) = response.take() {
                            return build(status, headers, body);
                        }
                    }
                }
                ToRivetTunnelMessageKind::ToRivetResponseAbort(abort) => {
                    return Err(ApiError::new(
                        "guard",
                        "response_aborted",
                        format!(
                            "The actor aborted the response: {}",
                            abort.reason.detail.as_deref().unwrap_or("no detail")
                        ),
                    )
                    .with_status(StatusCode::BAD_GATEWAY));
                }
                ToRivetTunnelMessageKind::ToRivetRequestBodyWindowUpdate(_)
                | ToRivetTunnelMessageKind::ToRivetRequestBodyCancel
                | ToRivetTunnelMessageKind::ToRivetWebSocketOpen(_)
                | ToRivetTunnelMessageKind::ToRivetWebSocketMessage(_)
                | ToRivetTunnelMessageKind::ToRivetWebSocketMessageAck(_)
                | ToRivetTunnelMessageKind::ToRivetWebSocketClose(_) => {}
            },
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

fn build(
    status: u16,
    headers: BTreeMap<vbare::Str, vbare::Str>,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(status)
        .map_err(|_| ApiError::internal(format!("runner sent invalid status {status}")))?;
    let mut resp = Response::new(Body::from(body));
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
