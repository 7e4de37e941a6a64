//! The process's limit on open files, which bounds how many client sockets a node holds.
//!
//! Every client socket, runner connection and store connection is a file descriptor. Many
//! systems start a process with a soft limit of 1,024 and a much higher hard limit, so the
//! gateway raises its soft limit to the hard one when it starts, as servers that hold many
//! connections do. When even the hard limit is below `gateway.max_client_sockets`, the cap is
//! lowered to fit under it with room for everything else: a client past the cap then gets the
//! gateway's own refusal (503 `guard.too_many_sockets`, `retry-after`) instead of a connection
//! the system could not accept, and the runners' connections still find descriptors.

/// Where the limit stands after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit the process started with (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now.
    pub limit: Option<u64>,
}

/// Raises the soft open-files limit as far as the hard limit allows. A system that refuses
/// leaves the limit as it was; the caller reads what it got.
pub fn raise() -> OpenFiles {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let start = getrlimit(Resource::Nofile);
    let before = start.current;
    if start.current != start.maximum {
        let raised = Rlimit {
            current: start.maximum,
            maximum: start.maximum,
        };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %err, "open-files limit not raised");
        }
    }
    OpenFiles {
        before,
        limit: getrlimit(Resource::Nofile).current,
    }
}

/// Descriptors kept for all but client sockets: runner connections, the store's and the
/// platforms' connections, plain HTTP requests, the store file, logs.
pub fn reserve(limit: u64) -> u64 {
    (limit / 8).clamp(64, 4_096)
}

/// The client-socket cap that fits under `limit` open files: `configured`, or less.
pub fn socket_cap(configured: usize, limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return configured;
    };
    let room = limit.saturating_sub(reserve(limit));
    usize::try_from(room).map_or(configured, |room| configured.min(room))
}

/// Raises the limit and fits `max_client_sockets` under it, saying what it did.
pub fn apply(max_client_sockets: &mut usize) {
    let files = raise();
    if files.before != files.limit {
        tracing::info!(
            from = ?files.before,
            to = ?files.limit,
            "open-files limit raised to the hard limit"
        );
    }
    let cap = socket_cap(*max_client_sockets, files.limit);
    if cap < *max_client_sockets {
        tracing::warn!(
            open_files = ?files.limit,
            configured = *max_client_sockets,
            cap,
            "gateway.max_client_sockets lowered to fit the open-files limit; raise the hard \
             limit (ulimit -Hn, LimitNOFILE=, the container's nofile ulimit) to hold more"
        );
        *max_client_sockets = cap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_everything_else() {
        assert_eq!(socket_cap(200_000, None), 200_000);
        assert_eq!(socket_cap(200_000, Some(1_048_576)), 200_000);
        assert_eq!(socket_cap(200_000, Some(20_000)), 20_000 - 2_500);
        assert_eq!(socket_cap(100, Some(20_000)), 100);
        assert_eq!(socket_cap(200_000, Some(1_024)), 1_024 - 128);
        assert_eq!(socket_cap(200_000, Some(256)), 256 - 64);
        assert_eq!(socket_cap(200_000, Some(10)), 0);
    }
}
