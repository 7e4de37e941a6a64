//! The endpoint runners connect to: `GET /envoys/connect` upgraded to a WebSocket that speaks
//! envoy protocol version 8. The query names the protocol version, namespace, runner key,
//! application version and pool; the token rides in the `rivet_token.{token}` subprotocol.
//!
//! Refusals happen after the upgrade, as a close frame whose reason is `group.code#detail`,
//! so a runner can show why it was refused instead of retrying blindly.
//!
//! # Layout
//! - `registry`: live connections and unacknowledged commands.
//! - `conn`: one task pair per connection (reader and writer), ping and loss detection.
//! - `storage`: KV and SQLite page requests, serialized per actor and fenced by generation.

mod conn;
mod registry;
mod storage;

use std::collections::HashMap;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

pub use registry::{EnvoyHandle, EnvoyIdentity, Registry};

use crate::state::Gateway;

/// Close code for refusals and protocol errors.
pub(crate) const CLOSE_ERROR: u16 = 1011;
/// Close reasons are capped by the WebSocket spec at 123 bytes.
const MAX_CLOSE_REASON: usize = 123;

/// Why a connection attempt was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `group.code`.
    pub code: &'static str,
    /// Explanation for the runner's log.
    pub detail: String,
}

/// The validated query of a connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// Namespace name.
    pub namespace: String,
    /// Runner key.
    pub envoy_key: String,
    /// Application version.
    pub version: u32,
    /// Pool name.
    pub pool_name: String,
    /// The runner process, if it names itself (`instance`, Rivulet's runner does): a
    /// connection with a known key but another instance is a restarted process that runs
    /// none of the actors the key had.
    pub instance: Option<String>,
}

/// Checks the query of `/envoys/connect`.
pub fn parse_connect(query: &HashMap<String, String>) -> Result<ConnectParams, Refusal> {
    let invalid = |detail: String| Refusal {
        code: "ws.invalid_request",
        detail,
    };
    let version = query
        .get("protocol_version")
        .ok_or_else(|| invalid("missing protocol_version".into()))?;
    let version: u16 = version
        .parse()
        .map_err(|_| invalid(format!("protocol_version {version:?} is not a number")))?;
    if version != rivulet_wire::ENVOY_PROTOCOL_VERSION {
        return Err(invalid(format!(
            "unsupported envoy protocol version {version}; this gateway speaks {} (RivetKit 2.3.19)",
            rivulet_wire::ENVOY_PROTOCOL_VERSION
        )));
    }
    let envoy_key = query
        .get("envoy_key")
        .cloned()
        .ok_or_else(|| invalid("missing envoy_key".into()))?;
    if !(3..=128).contains(&envoy_key.len())
        || !envoy_key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(invalid(
            "envoy_key must be 3 to 128 characters of [A-Za-z0-9-_.]".into(),
        ));
    }
    let pool_name = query
        .get("pool_name")
        .cloned()
        .unwrap_or_else(|| "default".to_string());
    if pool_name.is_empty() || pool_name.len() > 128 {
        return Err(invalid("pool_name must be 1 to 128 characters".into()));
    }
    let app_version = match query.get("version") {
        Some(v) => v
            .parse()
            .map_err(|_| invalid(format!("version {v:?} is not a number")))?,
        None => 1,
    };
    let instance = match query.get("instance") {
        Some(i) if i.is_empty() || i.len() > 128 => {
            return Err(invalid("instance must be 1 to 128 characters".into()));
        }
        other => other.cloned(),
    };
    Ok(ConnectParams {
        instance,
        namespace: query
            .get("namespace")
            .cloned()
            .unwrap_or_else(|| crate::state::DEFAULT_NAMESPACE.to_string()),
        envoy_key,
        version: app_version,
        pool_name,
    })
}

/// The token from `rivet_token.{token}` subprotocols or the `x-rivet-token` header.
pub(crate) fn token_from(headers: &HeaderMap) -> Option<String> {
    let from_protocols = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix("rivet_token.").map(str::to_string));
    from_protocols.or_else(|| {
        headers
            .get("x-rivet-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
}

/// `GET /envoys/connect`.
pub async fn connect(
    State(gw): State<Gateway>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = token_from(&headers);
    ws.protocols(["rivet"])
        // A client payload arrives in one frame from a runner too (a response body chunk or
        // socket message); the same bound both ways.
        .max_message_size(rivulet_wire::ENVOY_MAX_FRAME_BYTES)
        .max_frame_size(rivulet_wire::ENVOY_MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let checked = parse_connect(&query)
                .and_then(|params| check_token(&gw, token.as_deref()).map(|()| params));
            match checked {
                Ok(params) => conn::serve(gw, params, socket).await,
                Err(refusal) => close_with(socket, &refusal).await,
            }
        })
}

fn check_token(gw: &Gateway, token: Option<&str>) -> Result<(), Refusal> {
    match &gw.config.auth_token {
        None => Ok(()),
        Some(expected)
            if token.is_some_and(|t| {
                crate::util::constant_time_eq(t.as_bytes(), expected.as_bytes())
            }) =>
        {
            Ok(())
        }
        Some(_) => Err(Refusal {
            code: "ws.unauthorized",
            detail: "missing or wrong rivet_token".into(),
        }),
    }
}

/// Closes a socket with a refusal as the reason.
pub(crate) async fn close_with(mut socket: WebSocket, refusal: &Refusal) {
    tracing::warn!(code = refusal.code, detail = %refusal.detail, "refusing runner connection");
    let reason = truncate_reason(format!("{}#{}", refusal.code, refusal.detail));
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CLOSE_ERROR,
            reason: reason.into(),
        })))
        .await;
}

/// Cuts a close reason to the 123 bytes a close frame can carry.
pub(crate) fn truncate_reason(mut reason: String) -> String {
    if reason.len() > MAX_CLOSE_REASON {
        let mut cut = MAX_CLOSE_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_what_rivetkit_sends() {
        let p = parse_connect(&q(&[
            ("protocol_version", "8"),
            ("namespace", "default"),
            ("envoy_key", "171682c3-ce9c-4a7e-9d1e-2b5f0a000000"),
            ("version", "1"),
            ("pool_name", "default"),
        ]))
        .unwrap();
        assert_eq!(p.pool_name, "default");
        assert_eq!(p.version, 1);
    }

    #[test]
    fn refuses_other_protocol_versions_clearly() {
        for v in ["7", "9", "x"] {
            let err =
                parse_connect(&q(&[("protocol_version", v), ("envoy_key", "abc")])).unwrap_err();
            assert_eq!(err.code, "ws.invalid_request");
            assert!(err.detail.contains(v), "{}", err.detail);
        }
        let err = parse_connect(&q(&[("envoy_key", "abc")])).unwrap_err();
        assert!(err.detail.contains("protocol_version"));
    }

    #[test]
    fn refuses_bad_keys() {
        for key in ["a", "bad key", &"k".repeat(129)] {
            assert!(parse_connect(&q(&[("protocol_version", "8"), ("envoy_key", key)])).is_err());
        }
    }
}
