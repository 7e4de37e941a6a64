//! The WebSocket handshake of client sockets (RFC 6455 over HTTP/1.1, RFC 8441 over HTTP/2),
//! done here rather than by axum's extractor so that the socket owns its raw connection and
//! can put its codec down while idle (see `ws_io`).

use axum::http::header::{self, HeaderName};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// An accepted handshake: the answer to send, and the connection once it is upgraded.
pub struct Handshake {
    /// `Sec-WebSocket-Key` (HTTP/1.1); HTTP/2 has none.
    key: Option<HeaderValue>,
    /// The sub-protocol chosen among the client's, if any.
    protocol: Option<HeaderValue>,
    /// Resolves to the raw connection once the answer is sent.
    pub on_upgrade: hyper::upgrade::OnUpgrade,
}

/// Checks a WebSocket request and takes its pending upgrade out of `parts`. `supported` is
/// the sub-protocols the gateway chooses from, the first the client offers being chosen.
pub fn accept(parts: &mut Parts, supported: &[&str]) -> Result<Handshake, ApiError> {
    let key = if parts.version <= Version::HTTP_11 {
        if parts.method != Method::GET {
            return Err(bad("a WebSocket upgrade must be a GET"));
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(bad("missing `Connection: upgrade`"));
        }
        if !header_is(&parts.headers, header::UPGRADE, "websocket") {
            return Err(bad("missing `Upgrade: websocket`"));
        }
        Some(
            parts
                .headers
                .get(header::SEC_WEBSOCKET_KEY)
                .ok_or_else(|| bad("missing `Sec-WebSocket-Key`"))?
                .clone(),
        )
    } else {
        let websocket = parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str() == "websocket");
        if parts.method != Method::CONNECT || !websocket {
            return Err(bad(
                "an HTTP/2 WebSocket must be an extended CONNECT with `:protocol websocket`",
            ));
        }
        None
    };
    if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
        return Err(bad("`Sec-WebSocket-Version` must be 13"));
    }
    let on_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| bad("this connection cannot be upgraded"))?;
    let protocol = parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .find(|p| supported.iter().any(|s| s.as_bytes() == *p))
        .and_then(|p| HeaderValue::from_bytes(p).ok());
    Ok(Handshake {
        key,
        protocol,
        on_upgrade,
    })
}

impl Handshake {
    /// The answer that completes the handshake: 101 (HTTP/1.1) or 200 (HTTP/2).
    pub fn response(&self) -> Response {
        let mut resp = match &self.key {
            Some(key) => {
                let accept =
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
                let h = resp.headers_mut();
                h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                if let Ok(accept) = HeaderValue::from_str(&accept) {
                    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
                }
                resp
            }
            None => StatusCode::OK.into_response(),
        };
        if let Some(protocol) = &self.protocol {
            resp.headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol.clone());
        }
        resp
    }
}

fn bad(why: &str) -> ApiError {
    ApiError::new(
        "guard",
        "websocket_handshake_invalid",
        format!("Invalid WebSocket handshake: {why}."),
    )
}

fn header_is(headers: &HeaderMap, name: HeaderName, want: &str) -> bool {
    headers
        .get(&name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(want.as_bytes()))
}

fn header_has_token(headers: &HeaderMap, name: HeaderName, want: &str) -> bool {
    headers.get_all(&name).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(want.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parts(
        build: impl FnOnce(axum::http::request::Builder) -> axum::http::request::Builder,
    ) -> Parts {
        let (parts, ()) = build(axum::http::Request::builder())
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn bad_handshakes_are_named() {
        let mut p = parts(|b| b.method("POST"));
        let err = accept(&mut p, &["rivet"]).err().unwrap();
        assert_eq!(err.code, "websocket_handshake_invalid");
        assert!(err.message.contains("GET"), "{}", err.message);
        let mut p = parts(|b| {
            b.header("connection", "keep-alive, Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
        });
        let err = accept(&mut p, &["rivet"]).err().unwrap();
        assert!(err.message.contains("Sec-WebSocket-Key"), "{}", err.message);
        let mut p = parts(|b| {
            b.header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("sec-websocket-version", "8")
        });
        let err = accept(&mut p, &["rivet"]).err().unwrap();
        assert!(err.message.contains("13"), "{}", err.message);
    }
}
