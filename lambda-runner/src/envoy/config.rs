//! How an envoy connects: the gateway endpoint, identity (namespace, pool, key, version), what
//! it announces, and every timeout and bound. [`EnvoyConfig::new`] gives the defaults; fields
//! are public so callers override them with struct update syntax.

use std::time::Duration;

use super::error::EnvoyError;

/// Configuration of an [`EnvoyClient`](super::EnvoyClient).
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// `http(s)://host:port[/prefix]` of the gateway; `ws(s)://` is accepted too.
    pub endpoint: String,
    /// Admin token, sent as the `rivet_token.{token}` WebSocket subprotocol.
    pub token: Option<String>,
    /// Namespace name.
    pub namespace: String,
    /// Pool (runner config) the envoy serves.
    pub pool_name: String,
    /// Stable identity across reconnects: 3 to 128 characters of `[A-Za-z0-9-_.]`. The
    /// gateway keeps this envoy's actors while it reconnects under the same key.
    pub envoy_key: String,
    /// This process, random per [`EnvoyConfig::new`]: a gateway that sees the key again with
    /// another instance knows the actors it had under that key are gone (see the gateway's
    /// `envoy::registry`), instead of waiting on them.
    pub instance: String,
    /// Application version, used by the gateway to prefer newer runners.
    pub version: u32,
    /// Actor names this envoy can run, with their metadata (shown by `GET /actors/names`).
    pub actor_names: Vec<(String, serde_json::Value)>,
    /// Envoy metadata shown by `GET /envoys`.
    pub metadata: serde_json::Value,
    /// How long [`EnvoyClient::connect`](super::EnvoyClient::connect) keeps trying before it
    /// gives up.
    pub connect_timeout: Duration,
    /// One attempt's budget: TCP, WebSocket upgrade and the gateway's init frame.
    pub handshake_timeout: Duration,
    /// First reconnect delay; it doubles per failed attempt, with jitter.
    pub reconnect_initial: Duration,
    /// Largest reconnect delay. Keep it well under the gateway's lost threshold (15 s), or
    /// the gateway gives up on this envoy's actors before it is back.
    pub reconnect_max: Duration,
    /// A connection on which nothing arrives for this long is dead (the gateway pings every
    /// 3 s), and is replaced.
    pub silence_timeout: Duration,
    /// Deadline of one KV request, from the call until its answer, across reconnects.
    pub kv_timeout: Duration,
    /// KV requests awaiting an answer; beyond it calls fail at once with `Overloaded`.
    pub max_in_flight_kv: usize,
    /// Outgoing tunnel messages queued (also while disconnected); beyond it
    /// [`tunnel_send`](super::EnvoyClient::tunnel_send) fails with `Overloaded`.
    pub max_queued_tunnel_messages: usize,
    /// Incoming tunnel messages waiting for the handler; beyond it the envoy answers them
    /// itself (503 for a request, close 1011 for a WebSocket).
    pub max_pending_tunnel_messages: usize,
    /// How long [`shutdown`](super::EnvoyClient::shutdown) waits for the actors to stop.
    pub shutdown_timeout: Duration,
}

impl EnvoyConfig {
    /// Defaults for an endpoint: namespace and pool `default`, a random key, version 1.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            token: None,
            namespace: "default".to_string(),
            pool_name: "default".to_string(),
            envoy_key: random_key(),
            instance: random_key(),
            version: 1,
            actor_names: Vec::new(),
            metadata: serde_json::json!({
                "rivulet": {"runner": "lambda-runner", "version": env!("CARGO_PKG_VERSION")}
            }),
            connect_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(5),
            silence_timeout: Duration::from_secs(15),
            kv_timeout: Duration::from_secs(30),
            max_in_flight_kv: 128,
            max_queued_tunnel_messages: 1024,
            max_pending_tunnel_messages: 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    /// Checks the identity and bounds; the gateway would refuse what this refuses.
    pub(crate) fn validate(&self) -> Result<(), EnvoyError> {
        let bad = |what: &str| Err(EnvoyError::Config(what.to_string()));
        if !(3..=128).contains(&self.envoy_key.len())
            || !self
                .envoy_key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad("envoy_key must be 3 to 128 characters of [A-Za-z0-9-_.]");
        }
        if self.pool_name.is_empty() || self.pool_name.len() > 128 {
            return bad("pool_name must be 1 to 128 characters");
        }
        if self.namespace.is_empty() {
            return bad("namespace must not be empty");
        }
        if self.max_in_flight_kv == 0
            || self.max_queued_tunnel_messages == 0
            || self.max_pending_tunnel_messages == 0
        {
            return bad("queue bounds must be at least 1");
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return bad("reconnect_initial must be non-zero and at most reconnect_max");
        }
        self.connect_url().map(|_| ())
    }

    /// `ws(s)://…/envoys/connect?protocol_version=8&namespace=…&envoy_key=…&version=…&pool_name=…`,
    /// parameters in the order RivetKit sends them, then `instance`.
    pub(crate) fn connect_url(&self) -> Result<String, EnvoyError> {
        let endpoint = self.endpoint.trim().trim_end_matches('/');
        let base = if let Some(rest) = endpoint.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = endpoint.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if endpoint.starts_with("ws://") || endpoint.starts_with("wss://") {
            endpoint.to_string()
        } else {
            return Err(EnvoyError::Config(format!(
                "endpoint {:?} must start with http://, https://, ws:// or wss://",
                self.endpoint
            )));
        };
        Ok(format!(
            "{base}/envoys/connect?protocol_version={}&namespace={}&envoy_key={}&version={}&pool_name={}&instance={}",
            rivulet_wire::ENVOY_PROTOCOL_VERSION,
            encode(&self.namespace),
            encode(&self.envoy_key),
            self.version,
            encode(&self.pool_name),
            encode(&self.instance),
        ))
    }

    /// The `Sec-WebSocket-Protocol` value: `rivet`, plus the token if there is one.
    pub(crate) fn subprotocols(&self) -> String {
        match &self.token {
            Some(token) => format!("rivet, rivet_token.{token}"),
            None => "rivet".to_string(),
        }
    }
}

/// A random UUID-v4-shaped key, as RivetKit uses.
fn random_key() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        8 | (b[8] & 0x3),
        &hex[17..20],
        &hex[20..32]
    )
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
