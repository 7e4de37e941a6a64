//! The one place where failures become wire errors: JSON `{group, code, message, metadata}`
//! with the HTTP status the Rivet engine uses (400 for a refused request, 401/403 for auth,
//! 404 for an unknown route, 500 for internal errors, whose detail is logged, never sent).
//! WebSocket rejections reuse the same `group.code` as the close reason.

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
                Self::new(
                    "store",
                    "unavailable",
                    "The state store did not answer in time; nothing was changed. Retry later.",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Result type of HTTP handlers.
pub type ApiResult<T> = Result<T, ApiError>;

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

    #[test]
    fn internal_detail_is_not_sent() {
        let err: ApiError = StoreError::Backend("secret path /var/x".into()).into();
        assert!(!err.body().to_string().contains("secret"));
    }
}
