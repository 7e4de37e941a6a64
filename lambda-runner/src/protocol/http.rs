//! HTTP actions (`POST /action/{name}`), their error bodies, and what a client says about
//! itself in headers and WebSocket subprotocols.
//!
//! Bodies, per encoding (RivetKit `client/actor-handle.ts` and `client/utils.ts`, rivetkit-core
//! `registry/http.rs`): JSON `{"args": [...]}` / `{"output": v}`; CBOR the same objects;
//! BARE `u16le` version + `HttpActionRequest{args: data}` / `HttpActionResponse{output: data}`.
//! Errors are `{group, code, message, metadata?, actor?}` in the request's encoding (BARE:
//! `HttpResponseError`), served with `content_type`, which the client reads to pick a decoder.

use ciborium::Value;

use super::bare;
use super::cbor;
use super::error::ProtocolError;
use super::json;
use super::messages::{
    actor_from_tree, normalize_args, present, read_bare_actor, read_bare_metadata, text,
    write_bare_actor, write_bare_metadata, write_cbor_actor, write_json_actor,
};
use super::types::{Encoding, ErrorBody};
use super::value::{get, revive};

/// `HttpActionRequest` and `HttpActionResponse` are unchanged since v1.
const HTTP_ACTION_VERSIONS: &[u16] = &[1, 2, 3, 4];
const HTTP_ERROR_VERSIONS: &[u16] = &[bare::VERSION];

/// Header naming the encoding of an HTTP request and its response.
pub const HEADER_ENCODING: &str = "x-rivet-encoding";
/// Header carrying connection parameters as JSON text.
pub const HEADER_CONN_PARAMS: &str = "x-rivet-conn-params";
/// Response header: id of the actor that answered.
pub const HEADER_ACTOR: &str = "x-rivet-actor";
/// Response header: generation of the actor that answered.
pub const HEADER_ACTOR_GENERATION: &str = "x-rivet-actor-generation";
/// Response header: key of the actor that answered, if any.
pub const HEADER_ACTOR_KEY: &str = "x-rivet-actor-key";

/// Subprotocol every RivetKit connection offers; a server must select it.
pub const WS_PROTOCOL_STANDARD: &str = "rivet";
/// Subprotocol prefix naming the connection's encoding.
pub const WS_PROTOCOL_ENCODING: &str = "rivet_encoding.";
/// Subprotocol prefix carrying `encodeURIComponent(JSON.stringify(params))`.
pub const WS_PROTOCOL_CONN_PARAMS: &str = "rivet_conn_params.";

fn encoding_from_name(name: &str) -> Result<Encoding, ProtocolError> {
    match name {
        "json" => Ok(Encoding::Json),
        "cbor" => Ok(Encoding::Cbor),
        "bare" => Ok(Encoding::Bare),
        other => Err(ProtocolError::UnsupportedEncoding(other.to_owned())),
    }
}

/// The encoding named by `x-rivet-encoding`; JSON when the header is absent or empty.
pub fn parse_encoding(header: Option<&str>) -> Result<Encoding, ProtocolError> {
    match header {
        None | Some("") => Ok(Encoding::Json),
        Some(name) => encoding_from_name(name),
    }
}

/// The name of an encoding as headers and subprotocols spell it.
pub fn encoding_name(enc: Encoding) -> &'static str {
    match enc {
        Encoding::Json => "json",
        Encoding::Cbor => "cbor",
        Encoding::Bare => "bare",
    }
}

/// The `content-type` of bodies in this encoding.
pub fn content_type(enc: Encoding) -> &'static str {
    match enc {
        Encoding::Json => "application/json",
        Encoding::Cbor | Encoding::Bare => "application/octet-stream",
    }
}

fn check_incoming(size: usize, limit: usize) -> Result<(), ProtocolError> {
    if size > limit {
        return Err(ProtocolError::IncomingTooLong { size, limit });
    }
    Ok(())
}

fn check_outgoing(size: usize, limit: usize) -> Result<(), ProtocolError> {
    if size > limit {
        return Err(ProtocolError::OutgoingTooLong { size, limit });
    }
    Ok(())
}

/// The body of an object-shaped HTTP body (JSON or CBOR), revived.
fn object_body(enc: Encoding, body: &[u8]) -> Result<Vec<(Value, Value)>, ProtocolError> {
    let tree = match enc {
        Encoding::Json => json::parse(body)?,
        Encoding::Cbor | Encoding::Bare => cbor::decode(body)?,
    };
    match revive(tree)? {
        Value::Map(m) => Ok(m),
        _ => Err(ProtocolError::Invalid("body is not an object".to_owned())),
    }
}

/// Action arguments from an HTTP action request body, with a size limit.
pub fn decode_http_action_args_with_limit(
    enc: Encoding,
    body: &[u8],
    limit: usize,
) -> Result<Vec<Value>, ProtocolError> {
    check_incoming(body.len(), limit)?;
    let args = match enc {
        Encoding::Bare => {
            let mut r = bare::Reader::versioned(body, HTTP_ACTION_VERSIONS)?;
            let args = cbor::decode_value(r.data("HttpActionRequest.args")?)?;
            r.finish()?;
            args
        }
        Encoding::Cbor | Encoding::Json => {
            let m = object_body(enc, body)?;
            get(&m, "args").cloned().unwrap_or(Value::Null)
        }
    };
    Ok(normalize_args(args))
}

/// Encodes HTTP action arguments as the RivetKit client does.
pub fn encode_http_action_args(enc: Encoding, args: &[Value]) -> Result<Vec<u8>, ProtocolError> {
    let list = Value::Array(args.to_vec());
    Ok(match enc {
        Encoding::Bare => {
            let mut w = bare::Writer::versioned();
            w.data(&cbor::encode_value(&list)?);
            w.finish()
        }
        Encoding::Cbor => {
            let mut w = cbor::Writer::new();
            w.object_header(1);
            w.text("args");
            w.value(&list)?;
            w.finish()
        }
        Encoding::Json => {
            let mut w = json::Writer::new();
            w.raw("{");
            w.key("args");
            w.value(&list)?;
            w.raw("}");
            w.finish().into_bytes()
        }
    })
}

/// Encodes what an action returned as an HTTP response body, with a size limit.
pub fn encode_http_action_output_with_limit(
    enc: Encoding,
    output: &Value,
    limit: usize,
) -> Result<Vec<u8>, ProtocolError> {
    let body = match enc {
        Encoding::Bare => {
            let mut w = bare::Writer::versioned();
            w.data(&cbor::encode_value(output)?);
            w.finish()
        }
        Encoding::Cbor => {
            let mut w = cbor::Writer::new();
            w.object_header(1);
            w.text("output");
            w.value(output)?;
            w.finish()
        }
        Encoding::Json => {
            let mut w = json::Writer::new();
            w.raw("{");
            w.key("output");
            w.value(output)?;
            w.raw("}");
            w.finish().into_bytes()
        }
    };
    check_outgoing(body.len(), limit)?;
    Ok(body)
}

/// Decodes an HTTP action response body, as the RivetKit client does.
pub fn decode_http_action_output(enc: Encoding, body: &[u8]) -> Result<Value, ProtocolError> {
    match enc {
        Encoding::Bare => {
            let mut r = bare::Reader::versioned(body, HTTP_ACTION_VERSIONS)?;
            let output = cbor::decode_value(r.data("HttpActionResponse.output")?)?;
            r.finish()?;
            Ok(output)
        }
        Encoding::Cbor | Encoding::Json => {
            let m = object_body(enc, body)?;
            Ok(get(&m, "output").cloned().unwrap_or(Value::Null))
        }
    }
}

/// Encodes an error as an HTTP error body (`action_id` is not part of it).
pub fn encode_http_error(enc: Encoding, err: &ErrorBody) -> Result<Vec<u8>, ProtocolError> {
    Ok(match enc {
        Encoding::Bare => {
            let mut w = bare::Writer::versioned();
            w.string(&err.group);
            w.string(&err.code);
            w.string(&err.message);
            write_bare_metadata(&mut w, err.metadata.as_ref())?;
            write_bare_actor(&mut w, err.actor.as_ref());
            w.finish()
        }
        Encoding::Cbor => {
            let mut w = cbor::Writer::new();
            w.object_header(
                3 + usize::from(err.metadata.is_some()) + usize::from(err.actor.is_some()),
            );
            w.text("group");
            w.text(&err.group);
            w.text("code");
            w.text(&err.code);
            w.text("message");
            w.text(&err.message);
            if let Some(m) = &err.metadata {
                w.text("metadata");
                w.value(m)?;
            }
            if let Some(a) = &err.actor {
                w.text("actor");
                write_cbor_actor(&mut w, a);
            }
            w.finish()
        }
        Encoding::Json => {
            let mut w = json::Writer::new();
            w.raw("{");
            w.key("group");
            w.string(&err.group);
            w.raw(",");
            w.key("code");
            w.string(&err.code);
            w.raw(",");
            w.key("message");
            w.string(&err.message);
            if let Some(m) = &err.metadata {
                w.raw(",");
                w.key("metadata");
                w.value(m)?;
            }
            if let Some(a) = &err.actor {
                w.raw(",");
                w.key("actor");
                write_json_actor(&mut w, a);
            }
            w.raw("}");
            w.finish().into_bytes()
        }
    })
}

/// Decodes an HTTP error body, as the RivetKit client does.
pub fn decode_http_error(enc: Encoding, body: &[u8]) -> Result<ErrorBody, ProtocolError> {
    match enc {
        Encoding::Bare => {
            let mut r = bare::Reader::versioned(body, HTTP_ERROR_VERSIONS)?;
            let err = ErrorBody {
                group: r.string("HttpResponseError.group")?,
                code: r.string("HttpResponseError.code")?,
                message: r.string("HttpResponseError.message")?,
                metadata: read_bare_metadata(&mut r)?,
                action_id: None,
                actor: read_bare_actor(&mut r)?,
            };
            r.finish()?;
            Ok(err)
        }
        Encoding::Cbor | Encoding::Json => {
            let m = object_body(enc, body)?;
            Ok(ErrorBody {
                group: text(&m, "group")?,
                code: text(&m, "code")?,
                message: text(&m, "message")?,
                metadata: get(&m, "metadata").cloned(),
                action_id: None,
                actor: present(&m, "actor").map(actor_from_tree).transpose()?,
            })
        }
    }
}

/// What a client asked for when opening `/connect`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    /// Encoding of every message on the connection.
    pub encoding: Encoding,
    /// Connection parameters, if the client gave any.
    pub conn_params: Option<serde_json::Value>,
}

fn protocols(header: Option<&str>) -> impl Iterator<Item = &str> {
    header
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// Reads the encoding and connection parameters from `Sec-WebSocket-Protocol`. Without a
/// `rivet_encoding.*` entry the encoding is JSON, as RivetKit's server assumes.
pub fn parse_connect_protocols(
    sec_websocket_protocol: Option<&str>,
) -> Result<ConnectRequest, ProtocolError> {
    let mut encoding = None;
    let mut conn_params = None;
    for p in protocols(sec_websocket_protocol) {
        if let Some(name) = p.strip_prefix(WS_PROTOCOL_ENCODING) {
            if encoding.is_none() {
                encoding = Some(encoding_from_name(name)?);
            }
        } else if let Some(raw) = p.strip_prefix(WS_PROTOCOL_CONN_PARAMS) {
            if conn_params.is_none() {
                let text = percent_decode(raw)?;
                conn_params = Some(parse_params_json(&text)?);
            }
        }
    }
    Ok(ConnectRequest {
        encoding: encoding.unwrap_or(Encoding::Json),
        conn_params,
    })
}

/// The subprotocol the server must echo in its handshake answer (browsers fail a handshake
/// that offered subprotocols and got none back), if the client offered it.
pub fn selected_subprotocol(sec_websocket_protocol: Option<&str>) -> Option<&'static str> {
    protocols(sec_websocket_protocol)
        .any(|p| p == WS_PROTOCOL_STANDARD)
        .then_some(WS_PROTOCOL_STANDARD)
}

/// Parses `x-rivet-conn-params` (JSON text); `None` when the header is absent.
pub fn parse_conn_params_header(
    value: Option<&str>,
) -> Result<Option<serde_json::Value>, ProtocolError> {
    value.map(parse_params_json).transpose()
}

fn parse_params_json(text: &str) -> Result<serde_json::Value, ProtocolError> {
    serde_json::from_str(text).map_err(|e| ProtocolError::InvalidConnParams(e.to_string()))
}

/// `decodeURIComponent`: `%XX` sequences must form UTF-8; `+` stays a plus.
fn percent_decode(s: &str) -> Result<String, ProtocolError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ProtocolError::InvalidConnParams("malformed percent-encoding".to_owned())
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ProtocolError::InvalidConnParams("percent-encoding is not UTF-8".to_owned()))
}
