//! Passing a request to the node that serves its actor. HTTP requests are re-sent whole (the
//! gateway already buffered the body) and the response is streamed back; a WebSocket is
//! opened to the owner with the client's headers and subprotocols, and frames are copied both
//! ways until either side closes. Only a failure to *connect* is reported as `Unreachable`:
//! then nothing reached the owner and the caller may wait for its lease and try again.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame as UpCloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as UpMessage;

use super::HOPS_HEADER;
use crate::state::Gateway;

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The owner could not be reached; nothing was delivered.
    #[error("owner unreachable: {0}")]
    Unreachable(String),
    /// The request may have reached the owner, but no answer came back.
    #[error("forwarding failed: {0}")]
    Failed(String),
}

/// Headers that describe one connection, not the request, and must not be passed on.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "sec-websocket-key"
            | "sec-websocket-version"
            | "sec-websocket-extensions"
            | "sec-websocket-accept"
    ) || name.as_str() == HOPS_HEADER
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, hops: u32) {
    for (name, value) in from {
        if !is_hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
    to.insert(
        HeaderName::from_static(HOPS_HEADER),
        HeaderValue::from(hops),
    );
}

/// Sends an HTTP request to `node_url` + `path_and_query` and streams the answer back.
pub async fn http(
    gw: &Gateway,
    node_url: &str,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
    hops: u32,
) -> Result<Response, ForwardError> {
    let mut out = HeaderMap::new();
    copy_headers(headers, &mut out, hops);
    let url = format!("{}{path_and_query}", node_url.trim_end_matches('/'));
    let resp = gw
        .node
        .http
        .request(method.clone(), &url)
        .headers(out)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                ForwardError::Unreachable(format!("{url}: {e}"))
            } else {
                ForwardError::Failed(format!("{url}: {e}"))
            }
        })?;
    let mut builder = Response::builder().status(resp.status());
    if let Some(h) = builder.headers_mut() {
        for (name, value) in resp.headers() {
            if !is_hop_by_hop(name) {
                h.append(name.clone(), value.clone());
            }
        }
    }
    builder
        .body(Body::from_stream(resp.bytes_stream()))
        .map_err(|e| ForwardError::Failed(format!("response from {url}: {e}")))
}

/// How long opening a WebSocket to the owning node may take before it counts as unreachable.
const WS_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An open WebSocket to the owning node.
pub type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the client's WebSocket on the owning node.
pub async fn connect_ws(
    gw: &Gateway,
    node_url: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    hops: u32,
) -> Result<Upstream, ForwardError> {
    let base = node_url.trim_end_matches('/');
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    let url = format!("{ws_base}{path_and_query}");
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| ForwardError::Failed(format!("{url}: {e}")))?;
    copy_headers(headers, req.headers_mut(), hops);
    let max = gw.config.gateway.max_ws_message_bytes;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let connect = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
    let (upstream, _resp) = tokio::time::timeout(WS_CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            ForwardError::Unreachable(format!("{url}: no answer within {WS_CONNECT_TIMEOUT:?}"))
        })?
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Io(io) => {
                ForwardError::Unreachable(format!("{url}: {io}"))
            }
            other => ForwardError::Failed(format!("{url}: {other}")),
        })?;
    Ok(upstream)
}

/// Copies frames between the client and the owner until one side closes or the gateway
/// stops; the other side then gets the same close.
pub async fn pipe_ws<C>(gw: &Gateway, client: &mut C, upstream: Upstream)
where
    C: futures_util::Stream<Item = Result<UpMessage, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<UpMessage, Error = tokio_tungstenite::tungstenite::Error>
        + Unpin,
{
    let (mut up_sink, mut up_stream) = upstream.split();
    loop {
        tokio::select! {
            _ = gw.shutdown.cancelled() => {
                let _ = up_sink.send(UpMessage::Close(None)).await;
                let _ = client
                    .send(UpMessage::Close(Some(UpCloseFrame {
                        code: CloseCode::Away,
                        reason: "gateway shutting down".into(),
                    })))
                    .await;
                return;
            }
            msg = client.next() => {
                let Some(Ok(msg)) = msg else {
                    let _ = up_sink.send(UpMessage::Close(None)).await;
                    return;
                };
                if matches!(msg, UpMessage::Frame(_)) {
                    continue;
                }
                let closing = matches!(msg, UpMessage::Close(_));
                if up_sink.send(msg).await.is_err() || closing {
                    let _ = client.close().await;
                    return;
                }
            }
            msg = up_stream.next() => {
                let Some(Ok(msg)) = msg else {
                    let _ = client
                        .send(UpMessage::Close(Some(UpCloseFrame {
                            code: CloseCode::Restart,
                            reason: "gateway node went away".into(),
                        })))
                        .await;
                    return;
                };
                if matches!(msg, UpMessage::Frame(_)) {
                    continue;
                }
                let closing = matches!(msg, UpMessage::Close(_));
                if client.send(msg).await.is_err() || closing {
                    let _ = up_sink.close().await;
                    return;
                }
            }
        }
    }
}
