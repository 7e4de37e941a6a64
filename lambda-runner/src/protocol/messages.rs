//! The `/connect` WebSocket messages (`ToClient`, `ToServer`) in each encoding.
//!
//! BARE: `u16le` version + the v4 union (`schemas/v4.bare`), values as compat CBOR `data`.
//! CBOR and JSON: `{"body": {"tag": "...", "val": {...}}}` with the keys in the order of
//! RivetKit's zod schemas (`common/client-protocol-zod.ts`), ids as bigints (CBOR `1b` +
//! 8 bytes, JSON `["$BigInt", "n"]`), values in compat form. The client revives the whole
//! message in both, so decoders here revive it too.

use ciborium::Value;

use super::bare;
use super::cbor;
use super::error::ProtocolError;
use super::json;
use super::types::{ActorSpecifier, Encoding, ErrorBody, Frame, ToClient, ToServer};
use super::value::{get, revive};

/// Versions of `ToServer` with the v4 layout (v1-v4 changed only server-to-client types).
const TO_SERVER_VERSIONS: &[u16] = &[1, 2, 3, 4];
const TO_CLIENT_VERSIONS: &[u16] = &[bare::VERSION];

// === frames ===

/// The bytes of a frame, refusing text frames for the binary encodings.
pub(super) fn frame_bytes(enc: Encoding, frame: &Frame) -> Result<&[u8], ProtocolError> {
    match (enc, frame) {
        (_, Frame::Binary(b)) => Ok(b),
        (Encoding::Json, Frame::Text(t)) => Ok(t.as_bytes()),
        (Encoding::Bare | Encoding::Cbor, Frame::Text(_)) => {
            Err(ProtocolError::WrongFrameType { expected: "binary" })
        }
    }
}

/// The size limits count bytes on the wire, whatever the frame type.
pub(super) fn frame_len(frame: &Frame) -> usize {
    match frame {
        Frame::Text(t) => t.len(),
        Frame::Binary(b) => b.len(),
    }
}

// === ToClient ===

pub(super) fn encode_to_client(enc: Encoding, msg: &ToClient) -> Result<Frame, ProtocolError> {
    Ok(match enc {
        Encoding::Bare => Frame::Binary(to_client_bare(msg)?),
        Encoding::Cbor => Frame::Binary(to_client_cbor(msg)?),
        Encoding::Json => Frame::Text(to_client_json(msg)?),
    })
}

fn to_client_bare(msg: &ToClient) -> Result<Vec<u8>, ProtocolError> {
    let mut w = bare::Writer::versioned();
    match msg {
        ToClient::Init {
            actor_id,
            connection_id,
        } => {
            w.u8(0);
            w.string(actor_id);
            w.string(connection_id);
        }
        ToClient::Error(e) => {
            w.u8(1);
            w.string(&e.group);
            w.string(&e.code);
            w.string(&e.message);
            write_bare_metadata(&mut w, e.metadata.as_ref())?;
            w.bool(e.action_id.is_some());
            if let Some(id) = e.action_id {
                w.uint(id);
            }
            write_bare_actor(&mut w, e.actor.as_ref());
        }
        ToClient::ActionResponse { id, output } => {
            w.u8(2);
            w.uint(*id);
            w.data(&cbor::encode_value(output)?);
        }
        ToClient::Event { name, args } => {
            w.u8(3);
            w.string(name);
            w.data(&cbor::encode_value(args)?);
        }
    }
    Ok(w.finish())
}

pub(super) fn write_bare_metadata(
    w: &mut bare::Writer,
    metadata: Option<&Value>,
) -> Result<(), ProtocolError> {
    w.bool(metadata.is_some());
    if let Some(m) = metadata {
        w.data(&cbor::encode_value(m)?);
    }
    Ok(())
}

pub(super) fn write_bare_actor(w: &mut bare::Writer, actor: Option<&ActorSpecifier>) {
    w.bool(actor.is_some());
    if let Some(a) = actor {
        w.string(&a.actor_id);
        w.uint(a.generation);
        w.bool(a.key.is_some());
        if let Some(k) = &a.key {
            w.string(k);
        }
    }
}

pub(super) fn read_bare_metadata(r: &mut bare::Reader) -> Result<Option<Value>, ProtocolError> {
    r.optional("Error.metadata", |r| {
        cbor::decode_value(r.data("Error.metadata")?)
    })
}

pub(super) fn read_bare_actor(
    r: &mut bare::Reader,
) -> Result<Option<ActorSpecifier>, ProtocolError> {
    r.optional("Error.actor", |r| {
        Ok(ActorSpecifier {
            actor_id: r.string("ActorSpecifier.actorId")?,
            generation: r.uint("ActorSpecifier.generation")?,
            key: r.optional("ActorSpecifier.key", |r| r.string("ActorSpecifier.key"))?,
        })
    })
}

/// `{"body": {"tag": tag, "val": {` — the caller writes the fields and `}}}`.
fn cbor_envelope(w: &mut cbor::Writer, tag: &str, fields: usize) {
    w.object_header(1);
    w.text("body");
    w.object_header(2);
    w.text("tag");
    w.text(tag);
    w.text("val");
    w.object_header(fields);
}

fn to_client_cbor(msg: &ToClient) -> Result<Vec<u8>, ProtocolError> {
    let mut w = cbor::Writer::new();
    match msg {
        ToClient::Init {
            actor_id,
            connection_id,
        } => {
            cbor_envelope(&mut w, "Init", 2);
            w.text("actorId");
            w.text(actor_id);
            w.text("connectionId");
            w.text(connection_id);
        }
        ToClient::Error(e) => {
            let fields = 4 + usize::from(e.metadata.is_some()) + usize::from(e.actor.is_some());
            cbor_envelope(&mut w, "Error", fields);
            w.text("group");
            w.text(&e.group);
            w.text("code");
            w.text(&e.code);
            w.text("message");
            w.text(&e.message);
            if let Some(m) = &e.metadata {
                w.text("metadata");
                w.value(m)?;
            }
            w.text("actionId");
            match e.action_id {
                Some(id) => w.bigint_u64(id),
                None => w.null(),
            }
            if let Some(a) = &e.actor {
                w.text("actor");
                write_cbor_actor(&mut w, a);
            }
        }
        ToClient::ActionResponse { id, output } => {
            cbor_envelope(&mut w, "ActionResponse", 2);
            w.text("id");
            w.bigint_u64(*id);
            w.text("output");
            w.value(output)?;
        }
        ToClient::Event { name, args } => {
            cbor_envelope(&mut w, "Event", 2);
            w.text("name");
            w.text(name);
            w.text("args");
            w.value(args)?;
        }
    }
    Ok(w.finish())
}

/// The generation is a plain JS number in CBOR and JSON (the client takes `Number(...)` of it).
pub(super) fn write_cbor_actor(w: &mut cbor::Writer, a: &ActorSpecifier) {
    w.object_header(2 + usize::from(a.key.is_some()));
    w.text("actorId");
    w.text(&a.actor_id);
    w.text("generation");
    w.number(a.generation as f64);
    if let Some(k) = &a.key {
        w.text("key");
        w.text(k);
    }
}

pub(super) fn write_json_actor(w: &mut json::Writer, a: &ActorSpecifier) {
    w.raw("{");
    w.key("actorId");
    w.string(&a.actor_id);
    w.raw(",");
    w.key("generation");
    w.number(a.generation as f64);
    if let Some(k) = &a.key {
        w.raw(",");
        w.key("key");
        w.string(k);
    }
    w.raw("}");
}

fn json_envelope(w: &mut json::Writer, tag: &str) {
    w.raw("{\"body\":{\"tag\":");
    w.string(tag);
    w.raw(",\"val\":{");
}

fn to_client_json(msg: &ToClient) -> Result<String, ProtocolError> {
    let mut w = json::Writer::new();
    match msg {
        ToClient::Init {
            actor_id,
            connection_id,
        } => {
            json_envelope(&mut w, "Init");
            w.key("actorId");
            w.string(actor_id);
            w.raw(",");
            w.key("connectionId");
            w.string(connection_id);
        }
        ToClient::Error(e) => {
            json_envelope(&mut w, "Error");
            w.key("group");
            w.string(&e.group);
            w.raw(",");
            w.key("code");
            w.string(&e.code);
            w.raw(",");
            w.key("message");
            w.string(&e.message);
            if let Some(m) = &e.metadata {
                w.raw(",");
                w.key("metadata");
                w.value(m)?;
            }
            w.raw(",");
            w.key("actionId");
            match e.action_id {
                Some(id) => w.bigint(id),
                None => w.raw("null"),
            }
            if let Some(a) = &e.actor {
                w.raw(",");
                w.key("actor");
                write_json_actor(&mut w, a);
            }
        }
        ToClient::ActionResponse { id, output } => {
            json_envelope(&mut w, "ActionResponse");
            w.key("id");
            w.bigint(*id);
            w.raw(",");
            w.key("output");
            w.value(output)?;
        }
        ToClient::Event { name, args } => {
            json_envelope(&mut w, "Event");
            w.key("name");
            w.string(name);
            w.raw(",");
            w.key("args");
            w.value(args)?;
        }
    }
    w.raw("}}}");
    Ok(w.finish())
}

pub(super) fn decode_to_client(enc: Encoding, frame: &Frame) -> Result<ToClient, ProtocolError> {
    let bytes = frame_bytes(enc, frame)?;
    match enc {
        Encoding::Bare => to_client_from_bare(bytes),
        Encoding::Cbor => to_client_from_tree(revive(cbor::decode(bytes)?)?),
        Encoding::Json => to_client_from_tree(revive(json::parse(bytes)?)?),
    }
}

fn to_client_from_bare(bytes: &[u8]) -> Result<ToClient, ProtocolError> {
    let mut r = bare::Reader::versioned(bytes, TO_CLIENT_VERSIONS)?;
    let msg = match r.u8("ToClient tag")? {
        0 => ToClient::Init {
            actor_id: r.string("Init.actorId")?,
            connection_id: r.string("Init.connectionId")?,
        },
        1 => ToClient::Error(ErrorBody {
            group: r.string("Error.group")?,
            code: r.string("Error.code")?,
            message: r.string("Error.message")?,
            metadata: read_bare_metadata(&mut r)?,
            action_id: r.optional("Error.actionId", |r| r.uint("Error.actionId"))?,
            actor: read_bare_actor(&mut r)?,
        }),
        2 => ToClient::ActionResponse {
            id: r.uint("ActionResponse.id")?,
            output: cbor::decode_value(r.data("ActionResponse.output")?)?,
        },
        3 => ToClient::Event {
            name: r.string("Event.name")?,
            args: cbor::decode_value(r.data("Event.args")?)?,
        },
        t => return Err(ProtocolError::Invalid(format!("unknown ToClient tag {t}"))),
    };
    r.finish()?;
    Ok(msg)
}

fn to_client_from_tree(v: Value) -> Result<ToClient, ProtocolError> {
    let (tag, val) = envelope(&v)?;
    Ok(match tag {
        "Init" => ToClient::Init {
            actor_id: text(val, "actorId")?,
            connection_id: text(val, "connectionId")?,
        },
        "Error" => ToClient::Error(ErrorBody {
            group: text(val, "group")?,
            code: text(val, "code")?,
            message: text(val, "message")?,
            // `null` metadata is kept apart from none: the client sees the difference.
            metadata: get(val, "metadata").cloned(),
            action_id: present(val, "actionId")
                .map(|v| uint(v, "actionId"))
                .transpose()?,
            actor: present(val, "actor").map(actor_from_tree).transpose()?,
        }),
        "ActionResponse" => ToClient::ActionResponse {
            id: uint(required(val, "id")?, "id")?,
            output: present(val, "output").cloned().unwrap_or(Value::Null),
        },
        "Event" => ToClient::Event {
            name: text(val, "name")?,
            args: present(val, "args").cloned().unwrap_or(Value::Null),
        },
        other => {
            return Err(ProtocolError::Invalid(format!(
                "unknown ToClient tag `{other}`"
            )))
        }
    })
}

pub(super) fn actor_from_tree(v: &Value) -> Result<ActorSpecifier, ProtocolError> {
    let Value::Map(m) = v else {
        return Err(ProtocolError::Invalid(
            "`actor` is not an object".to_owned(),
        ));
    };
    Ok(ActorSpecifier {
        actor_id: text(m, "actorId")?,
        generation: uint(required(m, "generation")?, "generation")?,
        key: present(m, "key")
            .map(|k| match k {
                Value::Text(s) => Ok(s.clone()),
                _ => Err(ProtocolError::Invalid("`key` is not a string".to_owned())),
            })
            .transpose()?,
    })
}

// === ToServer ===

pub(super) fn encode_to_server(enc: Encoding, msg: &ToServer) -> Result<Frame, ProtocolError> {
    Ok(match enc {
        Encoding::Bare => {
            let mut w = bare::Writer::versioned();
            match msg {
                ToServer::ActionRequest { id, name, args } => {
                    w.u8(0);
                    w.uint(*id);
                    w.string(name);
                    w.data(&cbor::encode_value(args)?);
                }
                ToServer::SubscriptionRequest {
                    event_name,
                    subscribe,
                } => {
                    w.u8(1);
                    w.string(event_name);
                    w.bool(*subscribe);
                }
            }
            Frame::Binary(w.finish())
        }
        Encoding::Cbor => {
            let mut w = cbor::Writer::new();
            match msg {
                ToServer::ActionRequest { id, name, args } => {
                    cbor_envelope(&mut w, "ActionRequest", 3);
                    w.text("id");
                    w.bigint_u64(*id);
                    w.text("name");
                    w.text(name);
                    w.text("args");
                    w.value(args)?;
                }
                ToServer::SubscriptionRequest {
                    event_name,
                    subscribe,
                } => {
                    cbor_envelope(&mut w, "SubscriptionRequest", 2);
                    w.text("eventName");
                    w.text(event_name);
                    w.text("subscribe");
                    w.bool(*subscribe);
                }
            }
            Frame::Binary(w.finish())
        }
        Encoding::Json => {
            let mut w = json::Writer::new();
            match msg {
                ToServer::ActionRequest { id, name, args } => {
                    json_envelope(&mut w, "ActionRequest");
                    w.key("id");
                    w.bigint(*id);
                    w.raw(",");
                    w.key("name");
                    w.string(name);
                    w.raw(",");
                    w.key("args");
                    w.value(args)?;
                }
                ToServer::SubscriptionRequest {
                    event_name,
                    subscribe,
                } => {
                    json_envelope(&mut w, "SubscriptionRequest");
                    w.key("eventName");
                    w.string(event_name);
                    w.raw(",");
                    w.key("subscribe");
                    w.raw(if *subscribe { "true" } else { "false" });
                }
            }
            w.raw("}}}");
            Frame::Text(w.finish())
        }
    })
}

pub(super) fn decode_to_server(enc: Encoding, frame: &Frame) -> Result<ToServer, ProtocolError> {
    let bytes = frame_bytes(enc, frame)?;
    let msg = match enc {
        Encoding::Bare => to_server_from_bare(bytes)?,
        Encoding::Cbor => to_server_from_tree(revive(cbor::decode(bytes)?)?)?,
        Encoding::Json => to_server_from_tree(revive(json::parse(bytes)?)?)?,
    };
    Ok(match msg {
        ToServer::ActionRequest { id, name, args } => ToServer::ActionRequest {
            id,
            name,
            args: Value::Array(normalize_args(args)),
        },
        other @ ToServer::SubscriptionRequest { .. } => other,
    })
}

fn to_server_from_bare(bytes: &[u8]) -> Result<ToServer, ProtocolError> {
    let mut r = bare::Reader::versioned(bytes, TO_SERVER_VERSIONS)?;
    let msg = match r.u8("ToServer tag")? {
        0 => ToServer::ActionRequest {
            id: r.uint("ActionRequest.id")?,
            name: r.string("ActionRequest.name")?,
            args: cbor::decode_value(r.data("ActionRequest.args")?)?,
        },
        1 => ToServer::SubscriptionRequest {
            event_name: r.string("SubscriptionRequest.eventName")?,
            subscribe: r.bool("SubscriptionRequest.subscribe")?,
        },
        t => return Err(ProtocolError::Invalid(format!("unknown ToServer tag {t}"))),
    };
    r.finish()?;
    Ok(msg)
}

fn to_server_from_tree(v: Value) -> Result<ToServer, ProtocolError> {
    let (tag, val) = envelope(&v)?;
    match tag {
        "ActionRequest" => Ok(ToServer::ActionRequest {
            id: uint(required(val, "id")?, "id")?,
            name: text(val, "name")?,
            args: present(val, "args").cloned().unwrap_or(Value::Null),
        }),
        "SubscriptionRequest" => Ok(ToServer::SubscriptionRequest {
            event_name: text(val, "eventName")?,
            subscribe: match required(val, "subscribe")? {
                Value::Bool(b) => *b,
                _ => {
                    return Err(ProtocolError::Invalid(
                        "`subscribe` is not a boolean".to_owned(),
                    ))
                }
            },
        }),
        other => Err(ProtocolError::Invalid(format!(
            "unknown ToServer tag `{other}`"
        ))),
    }
}

/// Action arguments as a list, as rivetkit-core takes them: an array is the list, null or a
/// missing value is no arguments, and anything else is the single argument.
pub(super) fn normalize_args(args: Value) -> Vec<Value> {
    match args {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

// === field access on decoded CBOR/JSON ===

/// The entries of a decoded object.
type Fields = [(Value, Value)];

/// `body.tag` and `body.val` of a message.
fn envelope(v: &Value) -> Result<(&str, &Fields), ProtocolError> {
    let Value::Map(top) = v else {
        return Err(ProtocolError::Invalid(
            "message is not an object".to_owned(),
        ));
    };
    let Some(Value::Map(body)) = get(top, "body") else {
        return Err(ProtocolError::Invalid("`body` is not an object".to_owned()));
    };
    let Some(Value::Text(tag)) = get(body, "tag") else {
        return Err(ProtocolError::Invalid(
            "`body.tag` is not a string".to_owned(),
        ));
    };
    let Some(Value::Map(val)) = get(body, "val") else {
        return Err(ProtocolError::Invalid(
            "`body.val` is not an object".to_owned(),
        ));
    };
    Ok((tag, val))
}

/// A field that is present and not null (zod's `.optional()` / `.nullable()`).
pub(super) fn present<'a>(m: &'a Fields, key: &str) -> Option<&'a Value> {
    get(m, key).filter(|v| !matches!(v, Value::Null))
}

pub(super) fn required<'a>(m: &'a [(Value, Value)], key: &str) -> Result<&'a Value, ProtocolError> {
    present(m, key).ok_or_else(|| ProtocolError::Invalid(format!("`{key}` is missing")))
}

pub(super) fn text(m: &[(Value, Value)], key: &str) -> Result<String, ProtocolError> {
    match required(m, key)? {
        Value::Text(s) => Ok(s.clone()),
        _ => Err(ProtocolError::Invalid(format!("`{key}` is not a string"))),
    }
}

/// An id or generation: a non-negative integer (a bigint from RivetKit, a number from others).
pub(super) fn uint(v: &Value, key: &str) -> Result<u64, ProtocolError> {
    match v {
        Value::Integer(i) => u64::try_from(i128::from(*i))
            .map_err(|_| ProtocolError::Invalid(format!("`{key}` is out of range"))),
        // A plain number past 2^53 (not what RivetKit sends, but what a JSON client might).
        Value::Float(f) if f.trunc() == *f && (0.0..18_446_744_073_709_551_616.0).contains(f) => {
            Ok(*f as u64)
        }
        _ => Err(ProtocolError::Invalid(format!(
            "`{key}` is not an unsigned integer"
        ))),
    }
}
