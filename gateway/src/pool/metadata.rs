//! A URL pool's `GET {url}/metadata`: fetched before the pool is accepted and then polled,
//! so a wrong, unreachable or incompatible endpoint is named at once instead of surfacing as
//! actors that never start.
//!
//! The checks are the engine's: the answer is JSON from a RivetKit-compatible runner
//! (`runtime: "rivetkit"`, a version), and speaks our envoy protocol version. Rivulet speaks
//! exactly one version, so an older runner is refused too, with both versions named.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// How long a metadata fetch may take (the engine's).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of an error answer quoted back.
const QUOTED_BYTES: usize = 512;

/// What a runner endpoint says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Actor names it serves, with their metadata as JSON text.
    pub actor_names: Vec<(String, String)>,
    /// Its envoy protocol version.
    pub protocol_version: u16,
    /// Its runtime version.
    pub version: String,
}

/// Why an endpoint was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    /// No answer: connection refused, DNS, TLS or timeout.
    #[error("{url} could not be reached: {detail}")]
    Unreachable {
        /// What was fetched.
        url: String,
        /// Why.
        detail: String,
    },
    /// An answer that is not a success.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// What was fetched.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// A success that is not a runner's metadata.
    #[error("{url} is not a RivetKit runner endpoint: {detail}")]
    NotARunner {
        /// What was fetched.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// A runner that speaks another envoy protocol version.
    #[error("{url} speaks envoy protocol version {got}; this gateway speaks {want}. Use a runner built for envoy protocol {want} (rivetkit 2.3.x)")]
    ProtocolMismatch {
        /// What was fetched.
        url: String,
        /// The runner's version.
        got: u64,
        /// Ours.
        want: u16,
    },
}

impl MetadataError {
    /// The error code the API and the pool status use.
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::Unreachable { .. } => "endpoint_unreachable",
            MetadataError::Status { .. } => "endpoint_error",
            MetadataError::NotARunner { .. } => "invalid_metadata",
            MetadataError::ProtocolMismatch { .. } => "protocol_mismatch",
        }
    }
}

/// Fetches and checks `{base}/metadata` with the pool's headers (and, for a Cloud Run
/// service, an ID token for it).
pub async fn fetch(
    client: &reqwest::Client,
    base: &str,
    headers: &BTreeMap<String, String>,
    platform: super::Platform,
) -> Result<Metadata, MetadataError> {
    let url = format!("{}/metadata", base.trim_end_matches('/'));
    let mut req = client.get(&url).timeout(FETCH_TIMEOUT);
    if platform == super::Platform::CloudRun {
        let audience = rivulet_adapters::gcp::audience_of(base);
        let token = rivulet_adapters::gcp::IdTokens::shared()
            .token(&audience)
            .await
            .map_err(|err| MetadataError::Unreachable {
                url: url.clone(),
                detail: err.message,
            })?;
        req = req.bearer_auth(token);
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| MetadataError::Unreachable {
        url: url.clone(),
        detail: describe(&e),
    })?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| MetadataError::Unreachable {
        url: url.clone(),
        detail: describe(&e),
    })?;
    if !(200..300).contains(&status) {
        let end = bytes.len().min(QUOTED_BYTES);
        return Err(MetadataError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&bytes[..end]).into_owned(),
        });
    }
    check(&url, &bytes)
}

/// Checks a metadata answer's body.
pub fn check(url: &str, body: &[u8]) -> Result<Metadata, MetadataError> {
    let not_a_runner = |detail: &str| MetadataError::NotARunner {
        url: url.to_owned(),
        detail: detail.to_owned(),
    };
    let v: Value =
        serde_json::from_slice(body).map_err(|_| not_a_runner("the answer is not JSON"))?;
    if v.get("runtime").and_then(Value::as_str) != Some("rivetkit") {
        return Err(not_a_runner("`runtime` is not \"rivetkit\""));
    }
    let version = v
        .get("version")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| not_a_runner("`version` is missing"))?
        .to_owned();
    let want = rivulet_wire::ENVOY_PROTOCOL_VERSION;
    let got = v
        .get("envoyProtocolVersion")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            not_a_runner("`envoyProtocolVersion` is missing (a runner before envoy protocol 8)")
        })?;
    if got != u64::from(want) {
        return Err(MetadataError::ProtocolMismatch {
            url: url.to_owned(),
            got,
            want,
        });
    }
    let actor_names = v
        .get("actorNames")
        .and_then(Value::as_object)
        .map(|names| {
            names
                .iter()
                .map(|(name, meta)| {
                    let meta = meta.get("metadata").cloned().unwrap_or(Value::Null);
                    let meta = if meta.is_null() {
                        serde_json::json!({})
                    } else {
                        meta
                    };
                    (name.clone(), meta.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Metadata {
        actor_names,
        protocol_version: want,
        version,
    })
}

fn describe(err: &reqwest::Error) -> String {
    let mut out = rivulet_adapters::error_chain(err);
    if err.is_timeout() {
        out.push_str(&format!(
            " (no answer within {} s)",
            FETCH_TIMEOUT.as_secs()
        ));
    }
    out
}
