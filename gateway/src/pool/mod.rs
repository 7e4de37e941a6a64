//! Runner pools as the gateway uses them: the body of `PUT /runner-configs/{pool}` parsed once
//! into a typed [`PoolConfig`], checked, and completed with defaults.
//!
//! The body has the Rivet engine's shape, `{"datacenters": {"default": {KIND: {...}}},
//! "metadata": ...}`, so RivetKit's own pool configuration and scripts written for the engine
//! work unchanged. KIND is one of:
//!
//! - `normal`: runners connect by themselves (`rivulet-runner serve`, `registry.start()`).
//! - `serverless`: the engine's HTTP serverless pool, `POST {url}/start` per actor. Rivulet adds
//!   an optional `platform` (`generic`, `vercel`, `cloud_run`), inferred from the URL's host
//!   when absent, which sets defaults and limits the platform needs.
//! - `lambda` (Rivulet): the Rust runner's Lambda entry, invoked with `aws-sdk-lambda`.
//! - `process` (Rivulet): a command started once per actor request, killed at the end of
//!   its lifespan; for `rivulet dev` and tests, and only when the gateway allows it.
//!
//! What is stored and listed is the body with every default written in, so `GET
//! /runner-configs` shows the values the gateway acts on.

pub mod declared;
pub mod metadata;
pub mod poller;
pub mod runtime;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::state::DATACENTER_NAME;

/// Headers a pool may set on each request (the engine's limits).
const MAX_HEADERS: usize = 16;
const MAX_HEADER_NAME: usize = 128;
const MAX_HEADER_VALUE: usize = 4096;
/// Shortest lifespan: one second to serve and one to hand over.
const MIN_LIFESPAN_S: u64 = 2;
/// AWS Lambda's longest timeout.
pub const LAMBDA_MAX_LIFESPAN_S: u64 = 900;
/// How often a URL pool's `/metadata` is polled by default, and at least (the engine's).
const DEFAULT_METADATA_POLL_MS: u64 = 10_000;
const MIN_METADATA_POLL_MS: u64 = 5_000;
/// Concurrent actors per pool by default (the engine's default `max_runners`).
const DEFAULT_MAX_ACTORS: u64 = 1_000;
/// A Vercel request or response body is capped at 4.5 MB.
pub const VERCEL_MAX_BODY_BYTES: usize = 4_500_000;

/// A pool, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// How its runners come to be.
    pub kind: PoolKind,
    /// The caller's own metadata, kept as given.
    pub metadata: Option<Value>,
}

/// How a pool's runners come to be.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolKind {
    /// Runners connect by themselves.
    Normal,
    /// The gateway invokes one request per actor.
    Invoked(Invoked),
}

/// A pool the gateway invokes, one request per actor.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoked {
    /// Where and how requests are made.
    pub target: Target,
    /// How long one request may live.
    pub lifespan: Duration,
    /// How long before the end of a request its actor starts moving to a fresh one.
    pub drain_grace: Duration,
    /// Actors running at once; more wait in the pool's queue.
    pub max_actors: u64,
}

impl Invoked {
    /// How long before a move the next request is started as a standby (or the endpoint
    /// warmed): long enough for a cold start, short next to the request's life so the
    /// overlap costs little. At most 2 s, the drain grace, or a quarter of the time a
    /// request serves.
    pub fn warm_lead(&self) -> Duration {
        let serving = self.lifespan.saturating_sub(self.drain_grace);
        Duration::from_secs(2)
            .min(self.drain_grace)
            .min(serving / 4)
    }
}

/// What a pool invokes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `POST {url}/start` (RivetKit's `registry.handler`, the Rust runner's HTTP entry).
    Http {
        /// Base URL, no trailing `/`.
        url: String,
        /// Sent with every request to the URL.
        headers: BTreeMap<String, String>,
        /// Platform behind the URL.
        platform: Platform,
        /// How often `/metadata` is polled.
        metadata_poll: Duration,
    },
    /// An AWS Lambda function running the Rust runner's Lambda entry.
    Lambda {
        /// Function name or ARN.
        function: String,
        /// Version or alias.
        qualifier: Option<String>,
        /// Region; the SDK's default chain when absent.
        region: Option<String>,
    },
    /// A local command, one process per actor request.
    Process {
        /// Run with `sh -c`.
        command: String,
        /// Added to the process's environment.
        env: BTreeMap<String, String>,
    },
}

/// The platform behind an HTTP pool: what it needs that the URL alone does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Any URL.
    Generic,
    /// Vercel Functions: 4.5 MB bodies, deployment protection bypass header.
    Vercel,
    /// Google Cloud Run: IAM-authenticated invocation with an ID token.
    CloudRun,
}

impl Platform {
    fn name(self) -> &'static str {
        match self {
            Platform::Generic => "generic",
            Platform::Vercel => "vercel",
            Platform::CloudRun => "cloud_run",
        }
    }

    fn from_url(url: &str) -> Self {
        let host = url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split(['/', ':', '?'])
            .next()
            .unwrap_or("");
        if host.ends_with(".vercel.app") {
            Platform::Vercel
        } else if host.ends_with(".run.app") {
            Platform::CloudRun
        } else {
            Platform::Generic
        }
    }

    /// The lifespan used when a pool gives none: Rivet's Vercel profile (295 s), Cloud Run's
    /// default request timeout (300 s). A generic URL must say.
    fn default_lifespan_s(self) -> Option<u64> {
        match self {
            Platform::Generic => None,
            Platform::Vercel => Some(295),
            Platform::CloudRun => Some(300),
        }
    }
}

/// The default drain grace for a lifespan: a tenth of it, between 1 and 60 s, and never more
/// than half of it, so a default is valid for every platform (the engine's 1,800 s default
/// is longer than most platforms' whole lifespan).
pub fn default_drain_grace_s(lifespan_s: u64) -> u64 {
    (lifespan_s / 10).clamp(1, 60).min(lifespan_s / 2)
}

/// Why a body was refused: the field and what is wrong with it.
fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        "runner_config",
        "invalid",
        format!("Invalid runner config: {field}: {message}"),
    )
    .with_metadata(json!({ "field": field }))
}

/// What the gateway allows in a pool body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allow {
    /// `process` pools run a command on the gateway's host; only `rivulet dev` and operators
    /// who opt in allow them.
    pub process: bool,
}

/// Parses and checks a `PUT /runner-configs/{pool}` body; returns the pool and the body to
/// store (defaults written in).
pub fn parse(body: &Value, allow: Allow) -> Result<(PoolConfig, Value), ApiError> {
    let root = body
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    let (config, dc_field) = match root.get("datacenters") {
        Some(Value::Object(dcs)) => {
            for name in dcs.keys() {
                if name != DATACENTER_NAME {
                    return Err(ApiError::new(
                        "datacenter",
                        "not_found",
                        format!(
                            "No datacenter named `{name}`; this gateway has `{DATACENTER_NAME}`."
                        ),
                    ));
                }
            }
            let config = dcs
                .get(DATACENTER_NAME)
                .ok_or_else(|| invalid("datacenters", format!("needs `{DATACENTER_NAME}`")))?;
            (config, format!("datacenters.{DATACENTER_NAME}"))
        }
        Some(_) => return Err(invalid("datacenters", "must be an object")),
        // A single-datacenter body without the wrapper, as the CLI and hand-written scripts
        // send it.
        None => (body, String::new()),
    };
    let config = config
        .as_object()
        .ok_or_else(|| invalid(&dc_field, "must be an object"))?;
    let kinds: Vec<&str> = ["normal", "serverless", "lambda", "process"]
        .into_iter()
        .filter(|k| config.contains_key(*k))
        .collect();
    let kind = match kinds.as_slice() {
        [one] => *one,
        [] => {
            return Err(invalid(
                &dc_field,
                "needs one of `normal`, `serverless`, `lambda` or `process`",
            ))
        }
        _ => return Err(invalid(&dc_field, format!("has several kinds: {kinds:?}"))),
    };
    let field = |name: &str| {
        if dc_field.is_empty() {
            format!("{kind}.{name}")
        } else {
            format!("{dc_field}.{kind}.{name}")
        }
    };
    let spec = config[kind]
        .as_object()
        .ok_or_else(|| invalid(&field(""), "must be an object"))?;
    let mut normalized = spec.clone();
    let pool_kind = match kind {
        "normal" => PoolKind::Normal,
        "serverless" => PoolKind::Invoked(parse_http(spec, &field, &mut normalized)?),
        "lambda" => PoolKind::Invoked(parse_lambda(spec, &field, &mut normalized)?),
        _ => {
            if !allow.process {
                return Err(ApiError::new(
                    "runner_config",
                    "process_not_allowed",
                    "`process` pools run commands on the gateway's host; start the gateway with --allow-process-pools (rivulet dev does) to use them.",
                ));
            }
            PoolKind::Invoked(parse_process(spec, &field, &mut normalized)?)
        }
    };
    let metadata = root.get("metadata").cloned().filter(|m| !m.is_null());
    let mut dc = config.clone();
    if dc_field.is_empty() {
        dc.remove("metadata");
    }
    dc.insert(kind.to_owned(), Value::Object(normalized));
    let mut stored = root.clone();
    stored.insert(
        "datacenters".to_owned(),
        json!({ DATACENTER_NAME: Value::Object(dc) }),
    );
    for k in ["normal", "serverless", "lambda", "process"] {
        stored.remove(k);
    }
    Ok((
        PoolConfig {
            kind: pool_kind,
            metadata,
        },
        Value::Object(stored),
    ))
}

/// Reads a stored body back (it was checked when it was put).
pub fn from_stored(body: &Value) -> Result<PoolConfig, ApiError> {
    parse(body, Allow { process: true }).map(|(pool, _)| pool)
}

fn u64_field(
    spec: &Map<String, Value>,
    name: &str,
    field: &dyn Fn(&str) -> String,
) -> Result<Option<u64>, ApiError> {
    match spec.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(&field(name), "must be a non-negative integer")),
    }
}

fn str_field(
    spec: &Map<String, Value>,
    name: &str,
    field: &dyn Fn(&str) -> String,
) -> Result<Option<String>, ApiError> {
    match spec.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(invalid(&field(name), "must be a non-empty string")),
    }
}

fn string_map(
    spec: &Map<String, Value>,
    name: &str,
    field: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(v) = spec.get(name).filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let map = v
        .as_object()
        .ok_or_else(|| invalid(&field(name), "must be an object of strings"))?;
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(invalid(&field(&format!("{name}.{k}")), "must be a string")),
        })
        .collect()
}

/// Lifespan, drain grace and concurrency, shared by every invoked kind; writes the
/// effective values into `normalized`.
fn timing(
    spec: &Map<String, Value>,
    field: &dyn Fn(&str) -> String,
    default_lifespan_s: Option<u64>,
    max_lifespan_s: Option<u64>,
    normalized: &mut Map<String, Value>,
) -> Result<(Duration, Duration, u64), ApiError> {
    let lifespan_s = u64_field(spec, "request_lifespan", field)?
        .or(default_lifespan_s)
        .ok_or_else(|| invalid(&field("request_lifespan"), "is required (seconds)"))?;
    if lifespan_s < MIN_LIFESPAN_S {
        return Err(invalid(
            &field("request_lifespan"),
            format!("must be at least {MIN_LIFESPAN_S} s"),
        ));
    }
    if let Some(max) = max_lifespan_s {
        if lifespan_s > max {
            return Err(invalid(
                &field("request_lifespan"),
                format!("{lifespan_s} s is longer than the platform allows ({max} s)"),
            ));
        }
    }
    let grace_s = u64_field(spec, "drain_grace_period", field)?
        .unwrap_or_else(|| default_drain_grace_s(lifespan_s));
    if grace_s == 0 || grace_s >= lifespan_s {
        return Err(invalid(
            &field("drain_grace_period"),
            format!(
                "{grace_s} s must be at least 1 s and shorter than request_lifespan ({lifespan_s} s): the actor moves to a fresh request {grace_s} s before the old one ends"
            ),
        ));
    }
    let max_actors = u64_field(spec, "max_concurrent_actors", field)?
        .or(u64_field(spec, "max_runners", field)?)
        .unwrap_or(DEFAULT_MAX_ACTORS);
    if max_actors == 0 {
        return Err(invalid(
            &field("max_concurrent_actors"),
            "must be at least 1",
        ));
    }
    normalized.insert("request_lifespan".into(), json!(lifespan_s));
    normalized.insert("drain_grace_period".into(), json!(grace_s));
    normalized.insert("max_concurrent_actors".into(), json!(max_actors));
    Ok((
        Duration::from_secs(lifespan_s),
        Duration::from_secs(grace_s),
        max_actors,
    ))
}

fn parse_http(
    spec: &Map<String, Value>,
    field: &dyn Fn(&str) -> String,
    normalized: &mut Map<String, Value>,
) -> Result<Invoked, ApiError> {
    let url =
        str_field(spec, "url", field)?.ok_or_else(|| invalid(&field("url"), "is required"))?;
    let parsed = reqwest::Url::parse(&url).map_err(|e| invalid(&field("url"), e))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(&field("url"), "must be an http:// or https:// URL"));
    }
    let url = url.trim_end_matches('/').to_owned();
    let platform = match str_field(spec, "platform", field)?.as_deref() {
        None => Platform::from_url(&url),
        Some("generic") => Platform::Generic,
        Some("vercel") => Platform::Vercel,
        Some("cloud_run") => Platform::CloudRun,
        Some(other) => {
            return Err(invalid(
                &field("platform"),
                format!("`{other}` is not one of generic, vercel, cloud_run"),
            ))
        }
    };
    let headers = string_map(spec, "headers", field)?;
    if headers.len() > MAX_HEADERS {
        return Err(invalid(
            &field("headers"),
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    for (name, value) in &headers {
        if name.len() > MAX_HEADER_NAME
            || value.len() > MAX_HEADER_VALUE
            || http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            return Err(invalid(
                &field(&format!("headers.{name}")),
                format!("must be a valid header, name ≤ {MAX_HEADER_NAME} and value ≤ {MAX_HEADER_VALUE} bytes"),
            ));
        }
    }
    let poll_ms = u64_field(spec, "metadata_poll_interval", field)?
        .unwrap_or(DEFAULT_METADATA_POLL_MS)
        .max(MIN_METADATA_POLL_MS);
    let (lifespan, drain_grace, max_actors) =
        timing(spec, field, platform.default_lifespan_s(), None, normalized)?;
    normalized.insert("url".into(), json!(url));
    normalized.insert("platform".into(), json!(platform.name()));
    normalized.insert("metadata_poll_interval".into(), json!(poll_ms));
    Ok(Invoked {
        target: Target::Http {
            url,
            headers,
            platform,
            metadata_poll: Duration::from_millis(poll_ms),
        },
        lifespan,
        drain_grace,
        max_actors,
    })
}

fn parse_lambda(
    spec: &Map<String, Value>,
    field: &dyn Fn(&str) -> String,
    normalized: &mut Map<String, Value>,
) -> Result<Invoked, ApiError> {
    let function = str_field(spec, "function", field)?
        .ok_or_else(|| invalid(&field("function"), "is required (a function name or ARN)"))?;
    let qualifier = str_field(spec, "qualifier", field)?;
    let region = str_field(spec, "region", field)?;
    let (lifespan, drain_grace, max_actors) = timing(
        spec,
        field,
        Some(LAMBDA_MAX_LIFESPAN_S),
        Some(LAMBDA_MAX_LIFESPAN_S),
        normalized,
    )?;
    Ok(Invoked {
        target: Target::Lambda {
            function,
            qualifier,
            region,
        },
        lifespan,
        drain_grace,
        max_actors,
    })
}

fn parse_process(
    spec: &Map<String, Value>,
    field: &dyn Fn(&str) -> String,
    normalized: &mut Map<String, Value>,
) -> Result<Invoked, ApiError> {
    let command = str_field(spec, "command", field)?
        .ok_or_else(|| invalid(&field("command"), "is required (run with sh -c)"))?;
    let env = string_map(spec, "env", field)?;
    let (lifespan, drain_grace, max_actors) = timing(spec, field, Some(300), None, normalized)?;
    Ok(Invoked {
        target: Target::Process { command, env },
        lifespan,
        drain_grace,
        max_actors,
    })
}

#[cfg(test)]
mod tests;
