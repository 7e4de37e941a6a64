//! The one place where failures become wire errors, in three forms:
//!
//! - to clients over HTTP: JSON `{group, code, message, metadata}` with the HTTP status the
//!   Rivet engine uses (400 for a refused request, 401/403 for auth, 404 for an unknown route,
//!   500 for internal errors, whose detail is logged, never sent) — [`ApiError`];
//! - to clients over WebSocket: a close frame whose reason is `group.code#message` —
//!   [`ApiError::to_close`];
//! - to runners, for their KV and SQLite requests: a `depot` code and message —
//!   [`to_depot`].
//!
//! No backend detail (SDK errors, file paths, table names) leaves the gateway in any of them;
//! it goes to the log. The table tests below cover every variant.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::store::StoreError;

/// An error as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Error group, e.g. `actor`.
    pub group: &'static str,
    /// Error code within the group, e.g. `not_found`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Structured detail for programs.
    pub metadata: Option<Value>,
}

impl ApiError {
    /// A new error with status 400.
    pub fn new(group: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            group,
            code,
            message: message.into(),
            metadata: None,
        }
    }

    /// Replaces the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Attaches metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// `group.code`, the form used in WebSocket close reasons.
    pub fn reason(&self) -> String {
        format!("{}.{}", self.group, self.code)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "group": self.group,
            "code": self.code,
            "message": self.message,
        });
        if let Some(meta) = &self.metadata {
            body["metadata"] = meta.clone();
        }
        body
    }

    // === the errors the API and gateway return ===

    /// No route matches.
    pub fn route_not_found() -> Self {
        Self::new("api", "not_found", "The requested resource was not found")
            .with_status(StatusCode::NOT_FOUND)
    }

    /// A wrong token on actor traffic (`@token`, `rvt-token`).
    pub fn forbidden_token() -> Self {
        Self::new(
            "api",
            "forbidden",
            "The token given for this gateway is not valid.",
        )
        .with_status(StatusCode::FORBIDDEN)
    }

    /// Missing or wrong token.
    pub fn unauthorized() -> Self {
        Self::new(
            "api",
            "unauthorized",
            "Authentication required or token invalid.",
        )
        .with_status(StatusCode::UNAUTHORIZED)
    }

    /// The request cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("api", "bad_request", message)
    }

    /// Unknown namespace.
    pub fn namespace_not_found() -> Self {
        Self::new("namespace", "not_found", "The namespace does not exist.")
    }

    /// A request that fails validation (the engine's `validation.invalid_input`).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new("validation", "invalid_input", message.clone())
            .with_metadata(serde_json::json!({ "message": message }))
    }

    /// Unknown or destroyed actor.
    pub fn actor_not_found() -> Self {
        Self::new(
            "actor",
            "not_found",
            "The actor does not exist or was destroyed.",
        )
        .with_status(StatusCode::NOT_FOUND)
    }

    /// A live actor holds the key.
    pub fn duplicate_key(key: &str, existing_actor_id: &str) -> Self {
        Self::new(
            "actor",
            "duplicate_key",
            format!("Actor key '{key}' already in use for actor '{existing_actor_id}'"),
        )
        .with_metadata(json!({"key": key, "existing_actor_id": existing_actor_id}))
    }

    /// A key over the size limit.
    pub fn key_too_large(key: &str) -> Self {
        let max = rivulet_wire::key::MAX_KEY_BYTES;
        let preview: String = key.chars().take(64).collect();
        Self::new(
            "actor",
            "key_too_large",
            format!("Key label too large (max {max} bytes): {preview}"),
        )
        .with_metadata(json!({"key_preview": preview, "max_size": max}))
    }

    /// Maps a key that cannot be used to the engine's error.
    pub fn invalid_key(key: &str, err: &rivulet_wire::key::KeyError) -> Self {
        match err {
            rivulet_wire::key::KeyError::TooLong { .. }
            | rivulet_wire::key::KeyError::PartTooLong { .. } => Self::key_too_large(key),
            rivulet_wire::key::KeyError::Malformed(_) => {
                Self::new("actor", "invalid_key", err.to_string())
            }
        }
    }

    /// A create for an actor name that no runner in the namespace registered.
    pub fn name_not_registered(namespace: &str, name: &str, registered: &[String]) -> Self {
        Self::new(
            "actor",
            "name_not_registered",
            format!(
                "No runner in namespace `{namespace}` serves actors named `{name}`; registered names: {}.",
                registered.join(", ")
            ),
        )
        .with_metadata(serde_json::json!({ "name": name, "registered": registered }))
    }

    /// The actor's serverless pool could not run it (`code` is `serverless.{what}`).
    pub fn serverless_failed(code: &str, message: String) -> Self {
        let what = code.strip_prefix("serverless.").unwrap_or(code);
        let what: &'static str = match what {
            "unreachable" => "unreachable",
            "http_error" => "http_error",
            "throttled" => "throttled",
            "invalid_response" => "invalid_response",
            "payload_too_large" => "payload_too_large",
            "spawn_failed" => "spawn_failed",
            "ended_early" => "ended_early",
            "pool_full" => "pool_full",
            "function_error" => "function_error",
            "auth_failed" => "auth_failed",
            _ => "failed",
        };
        Self::new("serverless", what, message).with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// Unknown runner config.
    pub fn runner_config_not_found(name: &str) -> Self {
        Self::new(
            "runner_config",
            "not_found",
            format!("No runner config named {name} in this namespace."),
        )
        .with_status(StatusCode::NOT_FOUND)
    }

    /// The actor did not become ready in time.
    pub fn actor_ready_timeout() -> Self {
        Self::new(
            "guard",
            "actor_ready_timeout",
            "Timed out waiting for actor to become ready. Ensure that the pool selector is accurate and there are runners available in the pool.",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// The runner went away while the request was in flight.
    pub fn runner_lost() -> Self {
        Self::new(
            "guard",
            "service_unavailable",
            "The actor's runner disconnected while handling the request.",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// The gateway stopped before the actor answered.
    pub fn shutting_down() -> Self {
        Self::new(
            "guard",
            "shutting_down",
            "The gateway is shutting down; retry against another gateway or after it restarts.",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// The gateway is saturated for this actor or runner.
    pub fn overloaded(what: &str) -> Self {
        Self::new(
            "guard",
            "overloaded",
            format!("Too many requests queued for this {what}; retry later."),
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// A body over the limit.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            "message",
            "incoming_too_long",
            format!("Request body is larger than {limit} bytes."),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    }

    /// The store did not answer; what was being done did not happen.
    pub fn store_unavailable(doing: &str) -> Self {
        Self::new(
            "store",
            "unavailable",
            format!("The state store did not answer{doing}; nothing was changed. Retry later."),
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// The node serving the actor did not answer a forwarded request.
    pub fn forward_failed(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "forward to the owner node failed");
        Self::new(
            "guard",
            "forward_failed",
            "The gateway node serving this actor did not answer; retry.",
        )
        .with_status(StatusCode::BAD_GATEWAY)
    }

    /// A client WebSocket message over the limit.
    pub fn ws_message_too_large(limit: usize) -> Self {
        Self::new(
            "message",
            "incoming_too_long",
            format!("WebSocket message is larger than {limit} bytes."),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    }

    /// A client stopped reading its WebSocket: its messages would pile up in the gateway.
    pub fn client_not_reading() -> Self {
        Self::new(
            "guard",
            "client_not_reading",
            "The client did not read the messages sent to it in time; the socket is closed.",
        )
        .with_status(StatusCode::REQUEST_TIMEOUT)
    }

    /// This node holds as many client WebSockets as it may.
    pub fn too_many_sockets(max: usize) -> Self {
        Self::new(
            "guard",
            "too_many_sockets",
            format!("This gateway node holds its maximum of {max} client WebSockets; retry shortly or against another node."),
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// Client request bodies fill the gateway's buffer budget.
    pub fn bodies_over_budget() -> Self {
        Self::new(
            "guard",
            "overloaded",
            "The gateway is holding too many request bodies; retry shortly.",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// The WebSocket close frame for this error: `group.code#message`, with 1009 (message
    /// too big) for a payload over a limit and 1011 otherwise.
    pub fn to_close(&self) -> (u16, String) {
        let code = match self.status {
            StatusCode::PAYLOAD_TOO_LARGE => 1009,
            // Policy violation: the client, not the server, failed.
            StatusCode::REQUEST_TIMEOUT => 1008,
            _ => 1011,
        };
        (code, format!("{}#{}", self.reason(), self.message))
    }

    /// Something failed inside the gateway; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new("core", "internal_error", "An internal error occurred.")
            .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                Self::store_unavailable(" in time")
            }
            StoreError::Conflict { what } => Self::new(
                "store",
                "conflict",
                format!("Concurrent update of {what}; retry."),
            )
            .with_status(StatusCode::CONFLICT),
            StoreError::KeyTaken { existing_actor_id } => {
                Self::duplicate_key("", &existing_actor_id)
            }
            StoreError::NotFound { what } => {
                Self::new("api", "not_found", format!("{what} not found"))
                    .with_status(StatusCode::NOT_FOUND)
            }
            other @ (StoreError::AlreadyExists { .. }
            | StoreError::StaleGeneration { .. }
            | StoreError::HeadMismatch { .. }
            | StoreError::StageRejected(_)
            | StoreError::Corrupt(_)
            | StoreError::Backend(_)) => Self::internal(other),
        }
    }
}

/// Marks a response as carrying an error, for `/metrics` to count by code (a response
/// extension: the body is already serialized by then).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode {
    /// Error group.
    pub group: &'static str,
    /// Code within the group.
    pub code: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let code = ErrorCode {
            group: self.group,
            code: self.code,
        };
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        resp.extensions_mut().insert(code);
        if retry {
            // Every 503 here is temporary (overload, shutdown, a runner away).
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

/// Result type of HTTP handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// A store failure as a runner sees it in a KV or SQLite response: a `depot` code and a
/// message. Fences and limits say what happened (the runner acts on them); backend failures
/// say only that the store failed, and their detail is logged here.
pub fn to_depot(err: &StoreError) -> (&'static str, String) {
    match err {
        StoreError::StaleGeneration { .. } => ("generation_mismatch", err.to_string()),
        StoreError::HeadMismatch { .. } => ("head_txid_mismatch", err.to_string()),
        StoreError::StageRejected(_) => ("stage_rejected", err.to_string()),
        StoreError::NotFound { .. } => ("actor_not_found", err.to_string()),
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "store unavailable for a runner request");
            (
                "store_unavailable",
                "the state store did not answer in time; nothing was changed, retry".to_owned(),
            )
        }
        StoreError::Conflict { .. } => (
            "conflict",
            "a concurrent update won; nothing was changed, retry".to_owned(),
        ),
        StoreError::AlreadyExists { .. }
        | StoreError::KeyTaken { .. }
        | StoreError::Corrupt(_)
        | StoreError::Backend(_) => {
            tracing::error!(error = %err, "store failure on a runner request");
            (
                "internal_error",
                "the state store failed; see the gateway's log".to_owned(),
            )
        }
    }
}

/// A store failure as the text of a KV error response (`code: message`).
pub fn kv_message(err: StoreError) -> String {
    let (code, message) = to_depot(&err);
    format!("{code}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error the gateway can return, with the status and `group.code` a client sees.
    #[test]
    fn rescue_table() {
        let table: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::route_not_found(), 404, "api.not_found"),
            (ApiError::unauthorized(), 401, "api.unauthorized"),
            (ApiError::bad_request("x"), 400, "api.bad_request"),
            (ApiError::namespace_not_found(), 400, "namespace.not_found"),
            (
                ApiError::invalid_input("x"),
                400,
                "validation.invalid_input",
            ),
            (ApiError::key_too_large("k"), 400, "actor.key_too_large"),
            (ApiError::actor_not_found(), 404, "actor.not_found"),
            (
                ApiError::duplicate_key("k", "a"),
                400,
                "actor.duplicate_key",
            ),
            (
                ApiError::actor_ready_timeout(),
                503,
                "guard.actor_ready_timeout",
            ),
            (ApiError::overloaded("actor"), 503, "guard.overloaded"),
            (
                ApiError::body_too_large(1),
                413,
                "message.incoming_too_long",
            ),
            (ApiError::internal("boom"), 500, "core.internal_error"),
            (ApiError::store_unavailable(""), 503, "store.unavailable"),
            (ApiError::forward_failed("x"), 502, "guard.forward_failed"),
            (ApiError::runner_lost(), 503, "guard.service_unavailable"),
            (ApiError::shutting_down(), 503, "guard.shutting_down"),
            (
                StoreError::Unavailable("timeout".into()).into(),
                503,
                "store.unavailable",
            ),
            (
                StoreError::Backend("disk on fire".into()).into(),
                500,
                "core.internal_error",
            ),
        ];
        for (err, status, reason) in table {
            assert_eq!(err.status.as_u16(), status, "{reason}");
            assert_eq!(err.reason(), reason);
        }
    }

    /// Every store failure, as a runner sees it: the code it acts on, and no backend detail.
    #[test]
    fn depot_table() {
        let secret = "arn:aws:dynamodb:secret-table /var/lib/x";
        let table: Vec<(StoreError, &str)> = vec![
            (
                StoreError::StaleGeneration {
                    given: 1,
                    current: 2,
                },
                "generation_mismatch",
            ),
            (
                StoreError::HeadMismatch {
                    expected: 1,
                    current: 2,
                },
                "head_txid_mismatch",
            ),
            (StoreError::StageRejected("gap".into()), "stage_rejected"),
            (
                StoreError::NotFound {
                    what: "actor".into(),
                },
                "actor_not_found",
            ),
            (StoreError::Unavailable(secret.into()), "store_unavailable"),
            (
                StoreError::Conflict {
                    what: secret.into(),
                },
                "conflict",
            ),
            (
                StoreError::AlreadyExists {
                    what: secret.into(),
                },
                "internal_error",
            ),
            (
                StoreError::KeyTaken {
                    existing_actor_id: secret.into(),
                },
                "internal_error",
            ),
            (StoreError::Corrupt(secret.into()), "internal_error"),
            (StoreError::Backend(secret.into()), "internal_error"),
        ];
        for (err, code) in table {
            let (got, message) = to_depot(&err);
            assert_eq!(got, code, "{err}");
            assert!(!message.contains("secret"), "{code}: {message}");
            assert!(!kv_message(err).contains("secret"));
        }
    }

    #[test]
    fn websocket_close_carries_group_code_and_message() {
        let (code, reason) = ApiError::actor_not_found().to_close();
        assert_eq!(code, 1011);
        assert!(reason.starts_with("actor.not_found#"), "{reason}");
        assert_eq!(
            ApiError::forward_failed("connection refused to 10.0.0.5")
                .to_close()
                .1,
            "guard.forward_failed#The gateway node serving this actor did not answer; retry."
        );
    }

    #[test]
    fn internal_detail_is_not_sent() {
        let err: ApiError = StoreError::Backend("secret path /var/x".into()).into();
        assert!(!err.body().to_string().contains("secret"));
    }
}
