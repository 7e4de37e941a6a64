//! HTTP serverless: `POST {url}/start` as the Rivet engine sends it, answered with a
//! server-sent event stream. RivetKit's `registry.handler` (Vercel, Cloud Run, any host) and
//! the Rust runner's HTTP entry both answer it.
//!
//! The request carries the start command as its body and where to connect back in
//! `x-rivet-endpoint`, `x-rivet-namespace-name`, `x-rivet-pool-name` and `x-rivet-token`,
//! plus the pool's own headers. A success is `200` with `content-type: text/event-stream`;
//! the runner then sends `ping` every second and `stopping` once its actor has stopped.
//! Anything else is classified: an error status (quoting the first 512 bytes), 429 as
//! throttling with its `retry-after`, a wrong content type, a stream that ends or falls
//! silent before `stopping`. Platforms that cut a request at their time limit may do so with
//! a clean-looking end, so only `stopping` counts as a clean finish.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sse::SseReader;
use crate::{
    quote, AdapterError, ErrorKind, Headers, Invocation, InvocationEvent, InvokeRequest, Platform,
};

/// Bytes of an error answer quoted back (the engine's).
const QUOTED_BYTES: usize = 512;
/// A stream silent this long is dead: runners ping every second.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Time allowed past the lifespan before the request is dropped: the runner's own deadline
/// ends it first.
const LIFESPAN_SLACK: Duration = Duration::from_secs(5);

/// A serverless URL.
pub struct HttpPlatform {
    client: reqwest::Client,
    url: String,
    headers: Headers,
    max_body: Option<usize>,
    id_tokens: Option<&'static crate::gcp::IdTokens>,
}

impl HttpPlatform {
    /// Starts requests at `{url}/start` with `headers`; a start body over `max_body` bytes
    /// (Vercel: 4.5 MB) is refused before sending.
    pub fn new(url: &str, headers: Headers, max_body: Option<usize>) -> Self {
        Self {
            client: client(),
            url: url.trim_end_matches('/').to_owned(),
            headers,
            max_body,
            id_tokens: None,
        }
    }

    /// Sends an ID token for the service URL with every start (Cloud Run's IAM-authenticated
    /// invocation).
    pub fn with_id_tokens(mut self, tokens: &'static crate::gcp::IdTokens) -> Self {
        self.id_tokens = Some(tokens);
        self
    }
}

/// A client for long event streams: no overall timeout (a request lives for its lifespan),
/// a connect timeout, keepalive below what NATs and load balancers drop, and a read timeout
/// that notices a runner that stopped pinging.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(SILENCE_LIMIT)
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "custom HTTP client failed; using defaults");
            reqwest::Client::new()
        })
}

impl Platform for HttpPlatform {
    fn name(&self) -> &'static str {
        "http"
    }

    fn invoke(&self, req: InvokeRequest, cancel: CancellationToken) -> Invocation {
        let (tx, rx) = mpsc::channel(4);
        let run = Run {
            client: self.client.clone(),
            url: format!("{}/start", self.url),
            headers: self.headers.clone(),
            max_body: self.max_body,
            id_tokens: self.id_tokens,
        };
        let token = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                end = run.run(req, &tx) => { let _ = tx.send(end).await; }
                _ = token.cancelled() => {}
            }
        });
        Invocation::new(rx, cancel)
    }

    /// A `GET {url}/metadata`, answered by any runner endpoint without starting anything:
    /// on platforms that scale to zero it brings an instance up (or keeps one warm) for the
    /// start that follows. Its outcome is only logged.
    fn warm(&self) {
        let url = format!("{}/metadata", self.url);
        let mut http = self.client.get(&url).timeout(Duration::from_secs(10));
        for (k, v) in &self.headers {
            http = http.header(k, v);
        }
        let id_tokens = self.id_tokens;
        let audience = crate::gcp::audience_of(&self.url);
        tokio::spawn(async move {
            if let Some(tokens) = id_tokens {
                match tokens.token(&audience).await {
                    Ok(id) => http = http.bearer_auth(id),
                    Err(err) => {
                        tracing::debug!(error = %err, "not warming: no ID token");
                        return;
                    }
                }
            }
            match http.send().await {
                Ok(resp) => tracing::debug!(%url, status = resp.status().as_u16(), "warmed"),
                Err(err) => tracing::debug!(%url, error = %describe(&err), "warming failed"),
            }
        });
    }
}

struct Run {
    client: reqwest::Client,
    url: String,
    headers: Headers,
    max_body: Option<usize>,
    id_tokens: Option<&'static crate::gcp::IdTokens>,
}

impl Run {
    async fn run(self, req: InvokeRequest, tx: &mpsc::Sender<InvocationEvent>) -> InvocationEvent {
        let fail =
            |kind, message: String| InvocationEvent::Failed(AdapterError::new(kind, message));
        if let Some(max) = self.max_body {
            if req.payload.len() > max {
                return fail(
                    ErrorKind::TooLarge,
                    format!(
                        "the start of actor {} is {} bytes; {} takes at most {max}",
                        req.actor_id,
                        req.payload.len(),
                        self.url
                    ),
                );
            }
        }
        let mut http = self
            .client
            .post(&self.url)
            .header("content-type", "application/octet-stream")
            .header("x-rivet-endpoint", &req.endpoint)
            .header("x-rivet-namespace-name", &req.namespace)
            .header("x-rivet-pool-name", &req.pool)
            .header(
                "x-rivulet-deadline-ms",
                req.lifespan.as_millis().to_string(),
            );
        for (k, v) in &self.headers {
            http = http.header(k, v);
        }
        if let Some(token) = &req.token {
            http = http.header("x-rivet-token", token);
        }
        if let Some(tokens) = self.id_tokens {
            match tokens.token(&crate::gcp::audience_of(&self.url)).await {
                Ok(id) => http = http.bearer_auth(id),
                Err(err) => return InvocationEvent::Failed(err),
            }
        }
        let mut resp = match http.body(req.payload).send().await {
            Ok(resp) => resp,
            Err(err) => {
                return fail(
                    ErrorKind::Unreachable,
                    format!("{} could not be reached: {}", self.url, describe(&err)),
                )
            }
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = resp.text().await.unwrap_or_default();
            let kind = if status == 429 {
                ErrorKind::Throttled { retry_after }
            } else {
                ErrorKind::Status(status)
            };
            return fail(
                kind,
                format!(
                    "{} answered {status}: {}",
                    self.url,
                    quote(&body, QUOTED_BYTES)
                ),
            );
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            return fail(
                ErrorKind::Protocol,
                format!(
                    "{} answered {status} with content type `{content_type}`, not an event stream: is it a RivetKit serverless handler?",
                    self.url
                ),
            );
        }
        let _ = tx.send(InvocationEvent::Accepted).await;
        let deadline = tokio::time::Instant::now() + req.lifespan + LIFESPAN_SLACK;
        let mut sse = SseReader::default();
        loop {
            let chunk = tokio::select! {
                chunk = resp.chunk() => chunk,
                _ = tokio::time::sleep_until(deadline) => {
                    return InvocationEvent::EndedEarly(format!(
                        "the request outlived its {} s lifespan and was dropped",
                        req.lifespan.as_secs()
                    ));
                }
            };
            match chunk {
                Ok(Some(bytes)) => match sse.push(&bytes) {
                    Ok(names) => {
                        if names.iter().any(|n| n == "stopping") {
                            return InvocationEvent::Finished;
                        }
                    }
                    Err(()) => {
                        return InvocationEvent::EndedEarly(
                            "the event stream is not a runner's (an event over 64 KiB)".into(),
                        )
                    }
                },
                Ok(None) => {
                    return InvocationEvent::EndedEarly(
                        "the event stream ended without `stopping`".into(),
                    )
                }
                Err(err) => {
                    return InvocationEvent::EndedEarly(format!(
                        "the event stream failed: {}",
                        describe(&err)
                    ))
                }
            }
        }
    }
}

fn describe(err: &reqwest::Error) -> String {
    let mut out = crate::error_chain(err);
    if err.is_timeout() {
        out.push_str(&format!(" (silent for {} s)", SILENCE_LIMIT.as_secs()));
    }
    out
}
