//! Parsing of gateway URLs into the actor they address and the path the actor sees.

use axum::http::Uri;
use base64::Engine as _;

use crate::error::ApiError;
use crate::store::CrashPolicy;

/// How the actor is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// By id.
    Direct {
        /// The actor id.
        actor_id: String,
    },
    /// By name and key; must exist.
    Get {
        /// Namespace name.
        namespace: String,
        /// Actor name.
        name: String,
        /// Serialized key.
        key: String,
    },
    /// By name and key; created on first use.
    GetOrCreate {
        /// Namespace name.
        namespace: String,
        /// Actor name.
        name: String,
        /// Serialized key.
        key: String,
        /// Pool to create it on.
        pool: String,
        /// CBOR input for creation.
        input: Option<Vec<u8>>,
        /// Crash policy for creation.
        crash_policy: CrashPolicy,
    },
}

/// A parsed gateway request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Which actor.
    pub method: Method,
    /// Path (and query without `rvt-*`) the actor sees, starting with `/`.
    pub actor_path: String,
    /// Token given in the URL, if any.
    pub token: Option<String>,
}

/// Parses `/gateway/{segment}{rest}?{query}`.
pub fn parse(uri: &Uri) -> Result<Target, ApiError> {
    let path = uri.path();
    let after = path
        .strip_prefix("/gateway/")
        .ok_or_else(ApiError::route_not_found)?;
    let (segment, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let segment = percent_decode(segment)?;
    if segment.is_empty() {
        return Err(ApiError::bad_request("missing actor in gateway path"));
    }
    let rest = if rest.is_empty() { "/" } else { rest };

    let mut rvt: Vec<(String, String)> = Vec::new();
    let mut passthrough: Vec<&str> = Vec::new();
    if let Some(query) = uri.query() {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k)?;
            if let Some(name) = k.strip_prefix("rvt-") {
                if rvt.iter().any(|(n, _)| n == name) {
                    return Err(ApiError::bad_request(format!(
                        "duplicate query parameter rvt-{name}"
                    )));
                }
                rvt.push((name.to_string(), percent_decode(&v.replace('+', " "))?));
            } else {
                passthrough.push(pair);
            }
        }
    }
    let actor_path = if passthrough.is_empty() {
        rest.to_string()
    } else {
        format!("{rest}?{}", passthrough.join("&"))
    };

    if rvt.is_empty() {
        let (actor_id, token) = match segment.split_once('@') {
            Some((id, token)) => (id.to_string(), Some(token.to_string())),
            None => (segment, None),
        };
        if actor_id.is_empty() {
            return Err(ApiError::bad_request("missing actor id in gateway path"));
        }
        return Ok(Target {
            method: Method::Direct { actor_id },
            actor_path,
            token,
        });
    }

    if segment.contains('@') {
        return Err(ApiError::bad_request(
            "the @token form cannot be combined with rvt- query parameters",
        ));
    }
    let take = |name: &str| rvt.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    const KNOWN: &[&str] = &[
        "namespace",
        "method",
        "key",
        "runner",
        "pool",
        "input",
        "crash-policy",
        "token",
        "skip-ready-wait",
        "region",
    ];
    if let Some((unknown, _)) = rvt.iter().find(|(n, _)| !KNOWN.contains(&n.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter rvt-{unknown}"
        )));
    }
    let namespace = take("namespace").unwrap_or_else(|| crate::state::DEFAULT_NAMESPACE.into());
    let key_parts = rivulet_wire::key::from_query(&take("key").unwrap_or_default());
    let key = rivulet_wire::key::serialize(&key_parts)
        .map_err(|e| ApiError::invalid_key(&key_parts.join(","), &e))?;
    let name = segment;
    let method = match take("method").as_deref() {
        Some("get") => {
            for forbidden in ["input", "crash-policy", "pool", "runner", "region"] {
                if take(forbidden).is_some() {
                    return Err(ApiError::bad_request(format!(
                        "rvt-{forbidden} is not allowed with rvt-method=get"
                    )));
                }
            }
            Method::Get {
                namespace,
                name,
                key,
            }
        }
        Some("getOrCreate") => {
            let pool = take("pool").or_else(|| take("runner")).ok_or_else(|| {
                ApiError::bad_request("rvt-method=getOrCreate needs rvt-pool (or rvt-runner)")
            })?;
            let input = match take("input") {
                Some(b64) => Some(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(b64.trim_end_matches('='))
                        .map_err(|_| ApiError::bad_request("rvt-input is not base64url"))?,
                ),
                None => None,
            };
            let crash_policy = match take("crash-policy").as_deref() {
                None | Some("sleep") => CrashPolicy::Sleep,
                Some("restart") => CrashPolicy::Restart,
                Some("destroy") => CrashPolicy::Destroy,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "unknown crash policy {other}"
                    )))
                }
            };
            Method::GetOrCreate {
                namespace,
                name,
                key,
                pool,
                input,
                crash_policy,
            }
        }
        Some(other) => return Err(ApiError::bad_request(format!("unknown rvt-method {other}"))),
        None => return Err(ApiError::bad_request("rvt-method is required")),
    };
    Ok(Target {
        method,
        actor_path,
        token: take("token"),
    })
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::bad_request("malformed percent-encoding in URL"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("URL is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(s: &str) -> Result<Target, ApiError> {
        parse(&s.parse::<Uri>().unwrap())
    }

    #[test]
    fn direct_with_token() {
        let t = p("/gateway/abc123@dev/action/increment").unwrap();
        assert_eq!(
            t.method,
            Method::Direct {
                actor_id: "abc123".into()
            }
        );
        assert_eq!(t.actor_path, "/action/increment");
        assert_eq!(t.token.as_deref(), Some("dev"));
    }

    #[test]
    fn query_form_as_the_stock_client_sends_it() {
        let t = p("/gateway/counter/action/increment?rvt-namespace=default&rvt-method=getOrCreate&rvt-runner=default&rvt-key=a%2Cb&rvt-crash-policy=sleep&x=1").unwrap();
        assert_eq!(
            t.method,
            Method::GetOrCreate {
                namespace: "default".into(),
                name: "counter".into(),
                key: "a/b".into(),
                pool: "default".into(),
                input: None,
                crash_policy: CrashPolicy::Sleep,
            }
        );
        assert_eq!(t.actor_path, "/action/increment?x=1");
    }

    #[test]
    fn refuses_bad_queries() {
        assert!(p("/gateway/counter/x?rvt-method=get&rvt-method=get").is_err());
        assert!(p("/gateway/counter/x?rvt-method=get&rvt-bogus=1").is_err());
        assert!(p("/gateway/counter/x?rvt-method=getOrCreate").is_err());
        assert!(p("/gateway/counter/x?rvt-method=get&rvt-input=AA").is_err());
        assert!(p("/gateway/c@t/x?rvt-method=get").is_err());
        assert!(p("/gateway//x").is_err());
        assert!(p("/gateway/%zz/x").is_err());
    }
}
