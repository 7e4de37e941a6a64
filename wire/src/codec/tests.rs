#![allow(clippy::unwrap_used)]

use super::*;
use crate::envoy::{ProtocolMetadata, ToEnvoyInit, ToRivetPong};

fn init() -> ToEnvoy {
    ToEnvoy::ToEnvoyInit(ToEnvoyInit {
        metadata: ProtocolMetadata {
            envoy_lost_threshold: 15_000,
            actor_stop_threshold: 1_800_000,
            max_response_payload_size: 20 * 1024 * 1024,
        },
    })
}

#[test]
fn init_frame_matches_engine_bytes() {
    // The engine's first frame as recorded on the wire (RIVET-PROTOCOL appendix).
    let expected = "00983a00000000000040771b00000000000000400100000000";
    let hex: String = encode_to_envoy(&init())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, expected);
}

#[test]
fn roundtrip_to_rivet() {
    let msg = ToRivet::ToRivetPong(ToRivetPong { ts: 42 });
    let bytes = encode_to_rivet(&msg);
    assert_eq!(decode_to_rivet(bytes).unwrap(), msg);
}

#[test]
fn truncated_is_not_invalid() {
    let mut bytes = encode_to_envoy(&init());
    bytes.pop();
    assert!(matches!(
        decode_to_envoy(bytes),
        Err(CodecError::Truncated(_))
    ));
}

#[test]
fn unknown_tag_is_invalid() {
    assert!(matches!(
        decode_to_rivet(vec![0xff, 0x01]),
        Err(CodecError::Invalid(_))
    ));
    let mut bytes = encode_to_rivet(&ToRivet::ToRivetStopping);
    bytes.push(0);
    assert!(matches!(
        decode_to_rivet(bytes),
        Err(CodecError::Invalid(_))
    ));
}

#[test]
fn versioned_payload() {
    let payload = encode_to_envoy_versioned(&init());
    assert_eq!(&payload[..2], &[8, 0]);
    assert_eq!(decode_to_envoy_versioned(&payload).unwrap(), init());
    let mut wrong = payload.clone();
    wrong[0] = 7;
    assert!(matches!(
        decode_to_envoy_versioned(&wrong),
        Err(CodecError::UnsupportedVersion {
            got: 7,
            supported: 8
        })
    ));
}
