//! Platform adapters: how the gateway starts one serverless request per actor, one module per
//! platform behind one trait.
//!
//! An adapter is handed an [`InvokeRequest`]: the actor's start command, already encoded as
//! the body of a serverless start, and where the runner must connect back. It starts the
//! request and reports what happens to it as [`InvocationEvent`]s: accepted by the platform,
//! then exactly one end, which says whether the runner finished cleanly (its actor stopped)
//! or the request ended early (a crash, a cut stream, a killed process). Errors are
//! classified ([`ErrorKind`]) so the gateway can name them to clients and decide whether to
//! try again. The runner's own traffic (events, KV, client requests) does not pass through
//! here: it arrives over the runner's envoy connection like any runner's.

pub mod gcp;
pub mod http;
pub mod lambda;
pub mod process;
mod sse;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One actor's serverless start, or a standby request for it.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The start command as a versioned envoy frame (`u16le` version, then `ToEnvoyCommands`
    /// holding one `CommandStartActor`); empty for a standby request.
    pub payload: Vec<u8>,
    /// A standby request (see [`Platform::standby`]): the runner connects under this envoy
    /// key with no actor and waits for the gateway to send it the start command.
    pub standby: Option<String>,
    /// Gateway URL the runner connects back to.
    pub endpoint: String,
    /// Namespace name.
    pub namespace: String,
    /// Pool name.
    pub pool: String,
    /// Token the runner presents, if the gateway requires one.
    pub token: Option<String>,
    /// The actor, for logs and error messages.
    pub actor_id: String,
    /// Its generation.
    pub generation: u32,
    /// How long the request may live; the adapter ends it after that.
    pub lifespan: Duration,
}

/// What happened to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum InvocationEvent {
    /// The platform took the request and the runner is starting.
    Accepted,
    /// The request ended after its actor stopped (the runner said so).
    Finished,
    /// The request ended without its runner saying its actor stopped.
    EndedEarly(String),
    /// The request could not be made or was refused.
    Failed(AdapterError),
}

impl InvocationEvent {
    /// Whether this is the last event.
    pub fn is_end(&self) -> bool {
        !matches!(self, InvocationEvent::Accepted)
    }
}

/// A request in flight: its events, ending with exactly one end event. Dropping it (or
/// cancelling the token given to `invoke`) ends the request.
pub struct Invocation {
    /// Events, `Accepted` first if the platform took it, then one end.
    pub events: mpsc::Receiver<InvocationEvent>,
    /// Ends the request when dropped.
    _guard: tokio_util::sync::DropGuard,
}

impl Invocation {
    /// A request whose events arrive on `events` and which `cancel` ends.
    pub fn new(events: mpsc::Receiver<InvocationEvent>, cancel: CancellationToken) -> Self {
        Self {
            events,
            _guard: cancel.drop_guard(),
        }
    }

    /// Waits for the end.
    pub async fn ended(mut self) -> InvocationEvent {
        while let Some(event) = self.events.recv().await {
            if event.is_end() {
                return event;
            }
        }
        InvocationEvent::EndedEarly("the adapter stopped reporting".to_owned())
    }
}

/// What kind of failure, so the gateway can name it and decide whether to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing answered: DNS, connection refused, TLS, timeout before an answer.
    Unreachable,
    /// The platform answered with an error status.
    Status(u16),
    /// The platform refused for now (HTTP 429, Lambda throttling); nothing ran.
    Throttled {
        /// How long the platform asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// An answer that is not a runner's (wrong content type, not an event stream).
    Protocol,
    /// The start is larger than the platform takes.
    TooLarge,
    /// A local command could not be started.
    Spawn,
    /// The function itself failed (Lambda's `X-Amz-Function-Error`).
    FunctionError,
    /// No credentials for the platform (a Cloud Run ID token could not be minted).
    Auth,
}

/// A failed invocation, with what the platform said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdapterError {
    /// What kind.
    pub kind: ErrorKind,
    /// For operators and clients: what failed and where.
    pub message: String,
}

impl AdapterError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The error code clients and the pool status see (`serverless.{code}`).
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Status(_) => "http_error",
            ErrorKind::Throttled { .. } => "throttled",
            ErrorKind::Protocol => "invalid_response",
            ErrorKind::TooLarge => "payload_too_large",
            ErrorKind::Spawn => "spawn_failed",
            ErrorKind::FunctionError => "function_error",
            ErrorKind::Auth => "auth_failed",
        }
    }

    /// Whether trying again later may succeed with nothing changed.
    pub fn retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Unreachable | ErrorKind::Throttled { .. } | ErrorKind::Auth => true,
            ErrorKind::Status(s) => s >= 500,
            ErrorKind::Protocol
            | ErrorKind::TooLarge
            | ErrorKind::Spawn
            | ErrorKind::FunctionError => false,
        }
    }
}

/// A platform the gateway can start runner requests on.
pub trait Platform: Send + Sync + 'static {
    /// Short name for logs and metrics (`http`, `lambda`, `process`).
    fn name(&self) -> &'static str;
    /// Starts a request; its events arrive on the returned handle. Returns at once: the
    /// request itself runs in a task that `cancel` (or dropping the handle) ends.
    fn invoke(&self, req: InvokeRequest, cancel: CancellationToken) -> Invocation;
    /// Whether the runners this platform starts take standby requests: started with no
    /// actor under an envoy key the gateway chose, then sent the start over their
    /// connection. The gateway starts one shortly before an actor moves, so the new
    /// request's cold start is paid while the old instance still serves. Rivulet's own
    /// runner (`rivulet-runner once`, its Lambda entry) does; RivetKit's handler does not.
    fn standby(&self) -> bool {
        false
    }
    /// Warms the endpoint ahead of a move on platforms without standby requests (a cheap
    /// request, so the next start lands on a warm instance). Returns at once.
    fn warm(&self) {}
}

/// Extra headers and their values, ordered for stable requests.
pub type Headers = BTreeMap<String, String>;

/// An HTTP client error with every cause it wraps (`a: b: c`), the form messages name a
/// failure in; callers add what a timeout means for them.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Shortens text quoted from a platform to `max` bytes on a character boundary.
pub(crate) fn quote(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Unreachable => f.write_str("unreachable"),
            ErrorKind::Status(s) => write!(f, "HTTP {s}"),
            ErrorKind::Throttled { .. } => f.write_str("throttled"),
            ErrorKind::Protocol => f.write_str("protocol"),
            ErrorKind::TooLarge => f.write_str("too large"),
            ErrorKind::Spawn => f.write_str("spawn"),
            ErrorKind::FunctionError => f.write_str("function error"),
            ErrorKind::Auth => f.write_str("auth"),
        }
    }
}
