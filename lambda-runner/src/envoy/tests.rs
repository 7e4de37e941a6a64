//! Pure helpers of the envoy client: URL, subprotocols, validation, backoff, close reasons.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::config::encode;
use super::conn::{backoff, parse_close_reason};
use super::{EnvoyConfig, EnvoyError};

fn config(endpoint: &str) -> EnvoyConfig {
    EnvoyConfig {
        envoy_key: "171682c3-ce9c-4a7e-9d1e-2b5f0a000000".into(),
        instance: "p1".into(),
        ..EnvoyConfig::new(endpoint)
    }
}

/// RivetKit's parameters in its order, then the process instance (which the engine ignores).
#[test]
fn url_is_the_one_rivetkit_opens() {
    let url = config("http://127.0.0.1:6420/").connect_url().unwrap();
    assert_eq!(
        url,
        "ws://127.0.0.1:6420/envoys/connect?protocol_version=8&namespace=default&envoy_key=171682c3-ce9c-4a7e-9d1e-2b5f0a000000&version=1&pool_name=default&instance=p1"
    );
    let url = config("https://gw.example.com/prefix")
        .connect_url()
        .unwrap();
    assert!(
        url.starts_with("wss://gw.example.com/prefix/envoys/connect?"),
        "{url}"
    );
    assert!(config("ftp://x").connect_url().is_err());
}

#[test]
fn query_values_are_encoded() {
    assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    let mut c = config("http://h:1");
    c.namespace = "my ns".into();
    assert!(c.connect_url().unwrap().contains("namespace=my%20ns&"));
}

#[test]
fn token_rides_in_a_subprotocol() {
    let mut c = config("http://h:1");
    assert_eq!(c.subprotocols(), "rivet");
    c.token = Some("dev".into());
    assert_eq!(c.subprotocols(), "rivet, rivet_token.dev");
}

#[test]
fn validation_refuses_what_the_gateway_refuses() {
    assert!(config("http://h:1").validate().is_ok());
    for key in ["ab", "bad key", &"k".repeat(129)] {
        let c = EnvoyConfig {
            envoy_key: key.to_string(),
            ..config("http://h:1")
        };
        assert!(matches!(c.validate(), Err(EnvoyError::Config(_))), "{key}");
    }
    let c = EnvoyConfig {
        pool_name: String::new(),
        ..config("http://h:1")
    };
    assert!(c.validate().is_err());
    let c = EnvoyConfig {
        max_in_flight_kv: 0,
        ..config("http://h:1")
    };
    assert!(c.validate().is_err());
}

#[test]
fn default_keys_are_random_and_valid() {
    let a = EnvoyConfig::new("http://h:1");
    let b = EnvoyConfig::new("http://h:1");
    assert_ne!(a.envoy_key, b.envoy_key);
    assert_eq!(a.envoy_key.len(), 36);
    a.validate().unwrap();
}

#[test]
fn backoff_doubles_and_stays_bounded() {
    let initial = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    for _ in 0..50 {
        let first = backoff(0, initial, max);
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
        let third = backoff(2, initial, max);
        assert!(third >= Duration::from_millis(320) && third <= Duration::from_millis(480));
        assert!(backoff(40, initial, max) <= max);
        assert!(backoff(u32::MAX, initial, max) <= max);
    }
}

#[test]
fn close_reasons_split_code_and_detail() {
    assert_eq!(
        parse_close_reason("ws.unauthorized#missing or wrong rivet_token"),
        (
            "ws.unauthorized".into(),
            "missing or wrong rivet_token".into()
        )
    );
    assert_eq!(
        parse_close_reason("ws.going_away"),
        ("ws.going_away".into(), String::new())
    );
}

#[test]
fn retryable_errors_are_the_transient_ones() {
    assert!(EnvoyError::Timeout("x").is_retryable());
    assert!(EnvoyError::Overloaded("x").is_retryable());
    assert!(!EnvoyError::Shutdown.is_retryable());
    assert!(!EnvoyError::Kv("x".into()).is_retryable());
}
