//! One target per decoder Rivulet exposes to the network, each seeded with real messages:
//! the envoy frames and client-protocol messages recorded from RivetKit 2.3.19 (the golden
//! files the codec tests use) and the URLs the stock client builds.
//!
//! Besides "no panic, no hang", targets that can check a property do: a decoded message
//! re-encodes to bytes that decode back to the same message.

use rivulet_lambda_runner::protocol::{self, Encoding, Frame};
use rivulet_wire::codec;

use crate::engine::Target;

/// Every target, in the order a full run takes them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "envoy-to-rivet",
        about: "frames a runner sends the gateway (envoy protocol v8, BARE)",
        seeds: || golden_envoy("to_rivet"),
        run: envoy_to_rivet,
    },
    Target {
        name: "envoy-to-envoy",
        about: "frames and serverless start payloads the gateway sends a runner",
        seeds: || golden_envoy("to_envoy"),
        run: envoy_to_envoy,
    },
    Target {
        name: "client-message",
        about: "client WebSocket messages to an actor (first byte picks BARE, CBOR or JSON)",
        seeds: || golden_client("to_server"),
        run: client_message,
    },
    Target {
        name: "http-action",
        about: "HTTP action request bodies (first byte picks BARE, CBOR or JSON)",
        seeds: || golden_client("http_request"),
        run: http_action,
    },
    Target {
        name: "connect-headers",
        about: "Sec-WebSocket-Protocol and x-rivet-conn-params of a client connect",
        seeds: connect_seeds,
        run: connect_headers,
    },
    Target {
        name: "gateway-path",
        about: "/gateway/{actor}[@token]/path?rvt-* request targets",
        seeds: path_seeds,
        run: gateway_path,
    },
    Target {
        name: "actor-key",
        about: "serialized actor keys (rvt-key, the HTTP API's key field)",
        seeds: key_seeds,
        run: actor_key,
    },
];

/// Targets with a planted bug, selectable by name but never run by default: the fuzzer's own
/// tests use them to prove it reports a panic and a hang.
pub const PLANTED: &[Target] = &[
    Target {
        name: "planted-panic",
        about: "panics on any input holding three 0xff bytes in a row",
        seeds: || vec![b"hello".to_vec()],
        run: |input| {
            assert!(
                !input.windows(3).any(|w| w == [0xff, 0xff, 0xff]),
                "planted panic"
            );
            true
        },
    },
    Target {
        name: "planted-hang",
        about: "never returns on an input starting with `h`",
        seeds: || vec![b"hello".to_vec()],
        run: |input| {
            while input.first() == Some(&b'h') {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            true
        },
    },
];

const ENVOY_GOLDEN: &str = include_str!("../../tests/golden/envoy-v8.json");
const CLIENT_GOLDEN: &str = include_str!("../../lambda-runner/tests/golden/client-v4.json");

fn golden_envoy(direction: &str) -> Vec<Vec<u8>> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(ENVOY_GOLDEN).unwrap_or_default();
    entries
        .iter()
        .filter(|e| e["direction"] == direction)
        .filter_map(|e| unhex(e["hex"].as_str()?))
        .collect()
}

fn golden_client(kind: &str) -> Vec<Vec<u8>> {
    let file: serde_json::Value = serde_json::from_str(CLIENT_GOLDEN).unwrap_or_default();
    let entries = file["entries"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| {
            let (tag, body) = match e["encoding"].as_str()? {
                "bare" => (0u8, unhex(e["hex"].as_str()?)?),
                "cbor" => (1u8, unhex(e["hex"].as_str()?)?),
                _ => (2u8, e["text"].as_str()?.as_bytes().to_vec()),
            };
            let mut input = vec![tag];
            input.extend_from_slice(&body);
            Some(input)
        })
        .collect()
}

fn connect_seeds() -> Vec<Vec<u8>> {
    let file: serde_json::Value = serde_json::from_str(CLIENT_GOLDEN).unwrap_or_default();
    let entries = file["entries"].as_array().cloned().unwrap_or_default();
    let mut seeds: Vec<Vec<u8>> = entries
        .iter()
        .filter(|e| e["kind"] == "connect")
        .filter_map(|e| Some(e["protocols"].as_str()?.as_bytes().to_vec()))
        .collect();
    seeds.push(br#"{"user":"ada","n":1}"#.to_vec());
    seeds
}

fn path_seeds() -> Vec<Vec<u8>> {
    [
        "/gateway/abc123/action/increment",
        "/gateway/abc123@dev/connect",
        "/gateway/abc123@tok%2Fen/request/x?a=1&b=2",
        "/gateway/counter/action/increment?rvt-namespace=default&rvt-method=getOrCreate&rvt-runner=default&rvt-key=a%2Cb&rvt-crash-policy=sleep&x=1",
        "/gateway/counter/connect?rvt-namespace=default&rvt-method=get&rvt-key=room%2F1",
        "/gateway/chat/action/post?rvt-method=getOrCreate&rvt-pool=default&rvt-key=&rvt-input=oWF4AQ&rvt-token=dev",
        "/gateway/x/?rvt-method=get&rvt-key=%5C%2C",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn key_seeds() -> Vec<Vec<u8>> {
    ["", "a", "a/b", "room\\/1/x", "\\,", "a/b/c/d", "\\\\/"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn envoy_to_rivet(input: &[u8]) -> bool {
    let Ok(msg) = codec::decode_to_rivet(input.to_vec()) else {
        return false;
    };
    let again = codec::decode_to_rivet(codec::encode_to_rivet(&msg));
    assert!(
        matches!(&again, Ok(m) if *m == msg),
        "re-encoded to-rivet frame decodes differently: {again:?}"
    );
    true
}

fn envoy_to_envoy(input: &[u8]) -> bool {
    let versioned = codec::decode_to_envoy_versioned(input).is_ok();
    let Ok(msg) = codec::decode_to_envoy(input.to_vec()) else {
        return versioned;
    };
    let again = codec::decode_to_envoy_versioned(&codec::encode_to_envoy_versioned(&msg));
    assert!(
        matches!(&again, Ok(m) if *m == msg),
        "re-encoded to-envoy frame decodes differently: {again:?}"
    );
    true
}

/// The first byte picks the encoding, the rest is the message.
fn split_encoding(input: &[u8]) -> Option<(Encoding, &[u8])> {
    let (tag, body) = input.split_first()?;
    let enc = match tag % 3 {
        0 => Encoding::Bare,
        1 => Encoding::Cbor,
        _ => Encoding::Json,
    };
    Some((enc, body))
}

fn client_message(input: &[u8]) -> bool {
    let Some((enc, body)) = split_encoding(input) else {
        return false;
    };
    let frame = match (enc, std::str::from_utf8(body)) {
        (Encoding::Json, Ok(text)) => Frame::Text(text.to_owned()),
        _ => Frame::Binary(body.to_vec()),
    };
    let Ok(msg) = protocol::decode_to_server(enc, &frame) else {
        return false;
    };
    // Compared as bytes: a float NaN is not equal to itself as a value.
    if let Ok(first) = protocol::encode_to_server(enc, &msg) {
        let back = protocol::decode_to_server_with_limit(enc, &first, usize::MAX);
        let second = back
            .as_ref()
            .ok()
            .map(|m| protocol::encode_to_server(enc, m));
        assert!(
            matches!(&second, Some(Ok(f)) if *f == first),
            "re-encoded client message decodes differently: {back:?}"
        );
    }
    true
}

fn http_action(input: &[u8]) -> bool {
    let Some((enc, body)) = split_encoding(input) else {
        return false;
    };
    let Ok(args) = protocol::decode_http_action_args(enc, body) else {
        return false;
    };
    if let Ok(first) = protocol::encode_http_action_args(enc, &args) {
        let back = protocol::decode_http_action_args_with_limit(enc, &first, usize::MAX);
        let second = back
            .as_ref()
            .ok()
            .map(|a| protocol::encode_http_action_args(enc, a));
        assert!(
            matches!(&second, Some(Ok(f)) if *f == first),
            "re-encoded action arguments decode differently: {back:?}"
        );
    }
    true
}

fn connect_headers(input: &[u8]) -> bool {
    let text = String::from_utf8_lossy(input);
    let protocols = protocol::parse_connect_protocols(Some(&text)).is_ok();
    let _ = protocol::selected_subprotocol(Some(&text));
    let params = protocol::parse_conn_params_header(Some(&text)).is_ok();
    protocols || params
}

fn gateway_path(input: &[u8]) -> bool {
    let Ok(uri) = http::Uri::try_from(input) else {
        return false;
    };
    rivulet_gateway::routing::target::parse(&uri).is_ok()
}

fn actor_key(input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    let Ok(parts) = rivulet_wire::key::deserialize(text) else {
        return false;
    };
    if let Ok(again) = rivulet_wire::key::serialize(&parts) {
        let back = rivulet_wire::key::deserialize(&again);
        assert!(
            back.as_ref() == Ok(&parts),
            "key {text:?} re-serialized as {again:?} reads back as {back:?}"
        );
    }
    true
}
