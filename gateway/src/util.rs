//! Small helpers used across modules.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in ms since the Unix epoch, as the protocols carry it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Sleeps until `at`, or forever when there is no `at` (a disabled `select!` timer).
pub async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An error's text without Rust's "(os error N)" suffix, for messages people read.
pub fn without_os_error(text: &str) -> &str {
    match text.find(" (os error") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Compares two secrets in time that depends only on their lengths, so a caller cannot find
/// a token byte by byte from how fast it is refused.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
