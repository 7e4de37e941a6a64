//! Errors at the actor boundary: what actor code returns ([`ActorError`], [`UserError`]), what
//! the glue's [`Host`](super::Host) reports ([`HostError`]), and what the runtime reports to the
//! glue ([`StartError`], [`RuntimeError`]).
//!
//! Clients only ever see an [`ErrorBody`]. [`ActorError::to_error_body`] is the one place that
//! decides what of an error a client may see: a [`UserError`] and the runtime's own public
//! errors keep their group, code, message and metadata; everything else is masked as
//! `core.internal_error` ("An internal error occurred", no metadata), which is what RivetKit
//! 2.3.19's core answers for an error it does not classify as public. The real error goes to
//! the log instead.

use std::fmt;

use ciborium::Value;
use serde::Serialize;

use crate::protocol::{ActorSpecifier, ErrorBody};

/// Code a [`UserError`] carries when the actor gives none (RivetKit's `user_error`).
pub const USER_ERROR_CODE: &str = "user_error";

/// Group, code and message of every masked error.
const INTERNAL_GROUP: &str = "core";
const INTERNAL_CODE: &str = "internal_error";
const INTERNAL_MESSAGE: &str = "An internal error occurred";

// === impl UserError ===

/// An error actor code raises on purpose: the client sees it as group `user` with this code,
/// message and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct UserError {
    code: String,
    message: String,
    metadata: Option<Value>,
}

impl UserError {
    /// A user error with the default code `user_error`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            code: USER_ERROR_CODE.to_owned(),
            message: message.into(),
            metadata: None,
        }
    }

    /// Sets the machine-readable code the client can match on.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = code.into();
        self
    }

    /// Attaches structured metadata. A value that cannot be serialized is dropped with a
    /// warning rather than turning the user's error into an internal one.
    pub fn with_metadata<T: Serialize + ?Sized>(mut self, metadata: &T) -> Self {
        match Value::serialized(metadata) {
            Ok(value) => self.metadata = Some(value),
            Err(error) => {
                tracing::warn!(%error, "user error metadata is not serializable; dropped");
            }
        }
        self
    }

    /// The error code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The metadata, if any.
    pub fn metadata(&self) -> Option<&Value> {
        self.metadata.as_ref()
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user.{}: {}", self.code, self.message)
    }
}

// === impl ActorError ===

/// What actor code returns on failure: a [`UserError`] the client may see, or any other error,
/// which the client sees only as an internal error.
///
/// Any `std::error::Error` converts with `?`; use [`ActorError::internal`] for other values.
/// Like `anyhow::Error`, this type does not itself implement `std::error::Error`, which is what
/// lets both conversions exist.
pub struct ActorError(Repr);

enum Repr {
    User(UserError),
    /// An error of the runtime itself that the client is meant to see (unknown action, bad
    /// arguments, timeouts, limits).
    Public {
        group: &'static str,
        code: &'static str,
        message: String,
        metadata: Option<Value>,
    },
    Internal(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl ActorError {
    /// An internal error from any displayable value; the client sees only "internal error".
    pub fn internal(message: impl fmt::Display) -> Self {
        Self(Repr::Internal(message.to_string().into()))
    }

    /// Whether this is a [`UserError`].
    pub fn is_user(&self) -> bool {
        matches!(self.0, Repr::User(_))
    }

    /// The user error inside, if this is one.
    pub fn as_user(&self) -> Option<&UserError> {
        match &self.0 {
            Repr::User(error) => Some(error),
            Repr::Public { .. } | Repr::Internal(_) => None,
        }
    }

    pub(crate) fn public(group: &'static str, code: &'static str, message: String) -> Self {
        Self(Repr::Public {
            group,
            code,
            message,
            metadata: None,
        })
    }

    pub(crate) fn public_with_metadata(
        group: &'static str,
        code: &'static str,
        message: String,
        metadata: Value,
    ) -> Self {
        Self(Repr::Public {
            group,
            code,
            message,
            metadata: Some(metadata),
        })
    }

    /// The action has no handler (RivetKit's `actor.action_not_found`, HTTP 404).
    pub(crate) fn action_not_found(name: &str) -> Self {
        Self::public(
            "actor",
            "action_not_found",
            format!("Action `{name}` was not found."),
        )
    }

    /// Arguments or connection params that do not decode into the declared type.
    pub(crate) fn validation(target: &str, issue: String) -> Self {
        let metadata = Value::Map(vec![(
            Value::Text("issues".to_owned()),
            Value::Array(vec![Value::Text(issue)]),
        )]);
        Self::public_with_metadata(
            "actor",
            "validation_error",
            format!("Invalid {target}"),
            metadata,
        )
    }

    /// An action whose state change could not be saved, so its reply cannot say it happened.
    pub(crate) fn state_not_saved(error: SaveError) -> Self {
        match error {
            SaveError::TooLarge { bytes, limit } => Self::public(
                "state",
                "too_large",
                format!(
                    "The action's changes would make the state {bytes} bytes; at most {limit} can be saved. They were undone."
                ),
            ),
            SaveError::Encode(detail) => Self::public(
                "state",
                "not_serializable",
                format!("The action's changes cannot be saved ({detail}). They were undone."),
            ),
            SaveError::Host(detail) => Self::public(
                "state",
                "save_failed",
                format!(
                    "The action ran but saving its changes failed ({detail}); they are retried in the background and are not durable yet."
                ),
            ),
        }
    }

    pub(crate) fn action_timed_out() -> Self {
        Self::public("actor", "action_timed_out", "Action timed out".to_owned())
    }

    pub(crate) fn callback_timed_out(callback: &str, after_ms: u128) -> Self {
        Self::public(
            "actor",
            "callback_timed_out",
            format!("{callback} timed out after {after_ms} ms"),
        )
    }

    /// The group, code and message a client would see, without logging.
    pub fn client_view(&self) -> (String, String, String) {
        let body = self.body_without_log(None, None);
        (body.group, body.code, body.message)
    }

    /// Converts to what the client sees, masking internal errors; the real error of a masked
    /// one is logged here, in the actor's span.
    pub fn to_error_body(
        &self,
        actor: Option<ActorSpecifier>,
        action_id: Option<u64>,
    ) -> ErrorBody {
        if let Repr::Internal(error) = &self.0 {
            tracing::error!(error = %error, "actor code failed; client sees an internal error");
        }
        self.body_without_log(actor, action_id)
    }

    fn body_without_log(&self, actor: Option<ActorSpecifier>, action_id: Option<u64>) -> ErrorBody {
        let (group, code, message, metadata) = match &self.0 {
            Repr::User(error) => (
                "user".to_owned(),
                error.code.clone(),
                error.message.clone(),
                error.metadata.clone(),
            ),
            Repr::Public {
                group,
                code,
                message,
                metadata,
            } => (
                (*group).to_owned(),
                (*code).to_owned(),
                message.clone(),
                metadata.clone(),
            ),
            Repr::Internal(_) => (
                INTERNAL_GROUP.to_owned(),
                INTERNAL_CODE.to_owned(),
                INTERNAL_MESSAGE.to_owned(),
                None,
            ),
        };
        ErrorBody {
            group,
            code,
            message,
            metadata,
            action_id,
            actor,
        }
    }
}

impl fmt::Debug for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::User(error) => f.debug_tuple("User").field(error).finish(),
            Repr::Public {
                group,
                code,
                message,
                ..
            } => f
                .debug_struct("Public")
                .field("group", group)
                .field("code", code)
                .field("message", message)
                .finish(),
            Repr::Internal(error) => f.debug_tuple("Internal").field(error).finish(),
        }
    }
}

impl fmt::Display for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::User(error) => error.fmt(f),
            Repr::Public {
                group,
                code,
                message,
                ..
            } => write!(f, "{group}.{code}: {message}"),
            Repr::Internal(error) => error.fmt(f),
        }
    }
}

impl From<UserError> for ActorError {
    fn from(error: UserError) -> Self {
        Self(Repr::User(error))
    }
}

impl<E> From<E> for ActorError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        Self(Repr::Internal(Box::new(error)))
    }
}

// === impl HostError ===

/// A failure of the [`Host`](super::Host): the glue's storage or transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The store refused the request (a limit, a fenced generation); retrying will not help.
    #[error("storage rejected the request: {0}")]
    Rejected(String),
    /// The store or the gateway is unreachable for now; a retry may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// This actor generation no longer runs on the host.
    #[error("the actor is no longer running on this host")]
    Closed,
}

impl HostError {
    /// Whether retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

// === impl StartError ===

/// Why [`Registry::start`](super::Registry::start) could not start an actor.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No actor type of this name is registered.
    #[error("no actor type named {0:?} is registered")]
    UnknownActor(String),
    /// Reading or writing the actor's KV failed.
    #[error("actor storage failed: {0}")]
    Storage(#[from] HostError),
    /// Persisted data could not be decoded.
    #[error("persisted actor data is invalid: {0}")]
    Corrupt(String),
    /// The first save after creation failed for a reason other than storage.
    #[error("saving the initial state failed: {0}")]
    Save(SaveError),
    /// A lifecycle hook (or the input it was given) failed.
    #[error("{hook} failed: {message}")]
    Hook {
        /// Which hook.
        hook: &'static str,
        /// What it returned.
        message: String,
    },
}

// === impl SaveError ===

/// Why persisting the state failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    /// The host could not write it.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The encoded state exceeds what one atomic KV write can carry.
    #[error("encoded state is {bytes} bytes; the limit is {limit}")]
    TooLarge {
        /// Size of the encoded state.
        bytes: usize,
        /// Largest state that can be saved.
        limit: usize,
    },
    /// The state could not be serialized.
    #[error("state is not serializable: {0}")]
    Encode(String),
}

// === impl RuntimeError ===

/// Why a call on an [`ActorRuntime`](super::ActorRuntime) was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The actor's queue is full; the caller should shed the work (see `ActorRuntime`).
    #[error("actor is overloaded")]
    Overloaded,
    /// The actor is stopping or stopped.
    #[error("actor is stopping")]
    Stopped,
    /// The final save of a stop failed; the last changes may be lost.
    #[error("final state save failed: {0}")]
    Save(SaveError),
}
