#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn ok(body: Value) -> (PoolConfig, Value) {
    parse(&body, Allow { process: true }).unwrap()
}

fn err(body: Value) -> ApiError {
    parse(&body, Allow { process: true }).unwrap_err()
}

fn invoked(pool: &PoolConfig) -> &Invoked {
    match &pool.kind {
        PoolKind::Invoked(i) => i,
        PoolKind::Normal => panic!("not invoked"),
    }
}

#[test]
fn what_rivetkit_sends_is_accepted_with_a_valid_drain_grace() {
    // configurePool's body, without a drain grace: the engine's 1,800 s default would be
    // longer than the lifespan; ours is a tenth of it.
    let (pool, stored) = ok(json!({"datacenters": {"default": {"serverless": {
        "url": "https://app.example.com/api/rivet/",
        "headers": {"x-rivet-token": "t"},
        "request_lifespan": 300,
        "metadata_poll_interval": 1000,
        "max_runners": 100000, "min_runners": 0, "runners_margin": 0, "slots_per_runner": 1,
    }}}, "metadata": {"provider": "x"}, "drain_on_version_upgrade": true}));
    let inv = invoked(&pool);
    assert_eq!(inv.lifespan, Duration::from_secs(300));
    assert_eq!(inv.drain_grace, Duration::from_secs(30));
    assert_eq!(inv.max_actors, 100_000);
    let Target::Http {
        url,
        headers,
        platform,
        metadata_poll,
    } = &inv.target
    else {
        panic!()
    };
    assert_eq!(url, "https://app.example.com/api/rivet");
    assert_eq!(headers["x-rivet-token"], "t");
    assert_eq!(*platform, Platform::Generic);
    // The engine's floor for the poll interval.
    assert_eq!(*metadata_poll, Duration::from_secs(5));
    assert_eq!(pool.metadata, Some(json!({"provider": "x"})));
    let s = &stored["datacenters"]["default"]["serverless"];
    assert_eq!(s["drain_grace_period"], 30);
    assert_eq!(s["platform"], "generic");
    assert_eq!(s["slots_per_runner"], 1, "unknown engine fields are kept");
    assert_eq!(stored["drain_on_version_upgrade"], true);
    // What is stored parses to the same pool.
    assert_eq!(from_stored(&stored).unwrap(), pool);
}

#[test]
fn platforms_are_inferred_from_the_url_and_set_their_defaults() {
    let (pool, _) = ok(json!({"serverless": {"url": "https://my-app.vercel.app/api/rivet"}}));
    let inv = invoked(&pool);
    assert_eq!(inv.lifespan, Duration::from_secs(295));
    assert_eq!(inv.drain_grace, Duration::from_secs(29));
    assert!(matches!(
        inv.target,
        Target::Http {
            platform: Platform::Vercel,
            ..
        }
    ));
    let (pool, _) = ok(json!({"serverless": {"url": "https://svc-abc-uc.a.run.app"}}));
    assert!(matches!(
        invoked(&pool).target,
        Target::Http {
            platform: Platform::CloudRun,
            ..
        }
    ));
    // A generic URL must say how long a request lives.
    let e = err(json!({"serverless": {"url": "https://example.com"}}));
    assert!(e.message.contains("request_lifespan"), "{}", e.message);
}

#[test]
fn a_drain_grace_not_shorter_than_the_lifespan_is_refused_with_both_values() {
    for grace in [300, 301, 0] {
        let e = err(json!({"datacenters": {"default": {"serverless": {
            "url": "https://x.example", "request_lifespan": 300, "drain_grace_period": grace,
        }}}}));
        assert_eq!((e.group, e.code), ("runner_config", "invalid"));
        assert!(
            e.message
                .contains("datacenters.default.serverless.drain_grace_period"),
            "{}",
            e.message
        );
        assert!(e.message.contains("300 s"), "{}", e.message);
    }
    // The default is valid for any lifespan, down to the shortest.
    for lifespan in [2, 3, 10, 295, 900, 3600] {
        let grace = default_drain_grace_s(lifespan);
        assert!(grace >= 1 && grace < lifespan, "{lifespan}: {grace}");
    }
}

#[test]
fn lambda_and_process_pools() {
    let (pool, stored) = ok(json!({"lambda": {"function": "rivulet-runner"}}));
    let inv = invoked(&pool);
    assert_eq!(inv.lifespan, Duration::from_secs(900));
    assert_eq!(inv.drain_grace, Duration::from_secs(60));
    assert_eq!(
        stored["datacenters"]["default"]["lambda"]["request_lifespan"],
        900
    );
    let e = err(json!({"lambda": {"function": "f", "request_lifespan": 901}}));
    assert!(e.message.contains("901 s"), "{}", e.message);
    assert!(err(json!({"lambda": {}})).message.contains("function"));

    let (pool, _) = ok(
        json!({"process": {"command": "./runner", "request_lifespan": 3,
        "env": {"A": "1"}}}),
    );
    let inv = invoked(&pool);
    assert_eq!(inv.drain_grace, Duration::from_secs(1));
    assert!(
        matches!(&inv.target, Target::Process { command, env } if command == "./runner" && env["A"] == "1")
    );
    let refused = parse(
        &json!({"process": {"command": "./runner"}}),
        Allow { process: false },
    )
    .unwrap_err();
    assert_eq!(refused.code, "process_not_allowed");
}

#[test]
fn malformed_bodies_name_the_field() {
    let cases = [
        (json!([]), "body"),
        (json!({"datacenters": {"default": {}}}), "needs one of"),
        (
            json!({"datacenters": {"default": {"normal": {}, "serverless": {}}}}),
            "several kinds",
        ),
        (
            json!({"serverless": {"url": "ftp://x", "request_lifespan": 10}}),
            "serverless.url",
        ),
        (json!({"serverless": {"url": 5}}), "serverless.url"),
        (
            json!({"serverless": {"url": "http://x", "request_lifespan": "10"}}),
            "request_lifespan",
        ),
        (
            json!({"serverless": {"url": "http://x", "request_lifespan": 10, "headers": {"a b": "1"}}}),
            "headers.a b",
        ),
        (
            json!({"serverless": {"url": "http://x", "request_lifespan": 10, "platform": "heroku"}}),
            "heroku",
        ),
        (
            json!({"serverless": {"url": "http://x", "request_lifespan": 1}}),
            "at least 2 s",
        ),
    ];
    for (body, want) in cases {
        let e = err(body.clone());
        assert!(e.message.contains(want), "{body}: {}", e.message);
    }
    let e = err(json!({"datacenters": {"eu": {"normal": {}}}}));
    assert_eq!((e.group, e.code), ("datacenter", "not_found"));
    // The serverful pool RivetKit registers.
    let (pool, _) =
        ok(json!({"datacenters": {"default": {"drain_on_version_upgrade": true, "normal": {}}}}));
    assert_eq!(pool.kind, PoolKind::Normal);
}

#[test]
fn metadata_answers_are_checked_like_the_engine_does() {
    let good = br#"{"actorNames":{"counter":{"metadata":{}}},"envoy":{"kind":{"serverless":{}},"version":1},"envoyProtocolVersion":8,"runtime":"rivetkit","version":"2.3.19"}"#;
    let meta = metadata::check("u", good).unwrap();
    assert_eq!(
        meta.actor_names,
        vec![("counter".to_owned(), "{}".to_owned())]
    );
    assert_eq!(meta.version, "2.3.19");
    let cases: [(&[u8], &str); 5] = [
        (b"<html>", "invalid_metadata"),
        (br#"{"runtime":"node","version":"1"}"#, "invalid_metadata"),
        (
            br#"{"runtime":"rivetkit","version":"2.0.0"}"#,
            "invalid_metadata",
        ),
        (
            br#"{"runtime":"rivetkit","version":"9","envoyProtocolVersion":9}"#,
            "protocol_mismatch",
        ),
        (
            br#"{"runtime":"rivetkit","version":"2.2","envoyProtocolVersion":7}"#,
            "protocol_mismatch",
        ),
    ];
    for (body, code) in cases {
        let e = metadata::check("u", body).unwrap_err();
        assert_eq!(e.code(), code, "{}", String::from_utf8_lossy(body));
    }
    let e = metadata::check(
        "u",
        br#"{"runtime":"rivetkit","version":"9","envoyProtocolVersion":9}"#,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("version 9") && e.to_string().contains("speaks 8"),
        "{e}"
    );
}
