//! Store failures, classified so callers can decide without parsing strings: a fence or
//! conflict is final for that request, `Unavailable` may be retried, `Corrupt` never.

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing to create exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What was being created.
        what: String,
    },
    /// A live actor holds the (namespace, name, key) already.
    #[error("key is held by actor {existing_actor_id}")]
    KeyTaken {
        /// The actor holding the key.
        existing_actor_id: String,
    },
    /// The record the call refers to does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A write came from a runner generation that is not the actor's current one.
    #[error("stale generation {given}, the actor is at generation {current}")]
    StaleGeneration {
        /// Generation the writer claimed.
        given: u32,
        /// Generation of the actor record.
        current: u32,
    },
    /// The SQLite head moved since the writer last saw it.
    #[error("sqlite head txid is {current}, the writer expected {expected}")]
    HeadMismatch {
        /// Head the writer expected.
        expected: u64,
        /// Actual head.
        current: u64,
    },
    /// A staged commit request does not match the open stage.
    #[error("staged commit rejected: {0}")]
    StageRejected(String),
    /// An optimistic update lost a race with another writer.
    #[error("concurrent update of {what}")]
    Conflict {
        /// What was being updated.
        what: String,
    },
    /// The backend did not answer in time or refused for now; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes could not be read back.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// Any other backend failure.
    #[error("store failure: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether repeating the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::Conflict { .. } => true,
            StoreError::AlreadyExists { .. }
            | StoreError::KeyTaken { .. }
            | StoreError::NotFound { .. }
            | StoreError::StaleGeneration { .. }
            | StoreError::HeadMismatch { .. }
            | StoreError::StageRejected(_)
            | StoreError::Corrupt(_)
            | StoreError::Backend(_) => false,
        }
    }
}
