//! A counter: `increment(n)` adds `n`, broadcasts `newCount` and returns the new count; `get`
//! returns it.

use serde::{Deserialize, Serialize};

use crate::actor::{ActorDef, UserError};

/// The counter's persistent state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterState {
    /// Current count.
    pub count: i64,
}

/// The counter actor type.
pub fn counter() -> ActorDef<CounterState> {
    ActorDef::new()
        .state(CounterState { count: 0 })
        .action("increment", |c, (n,): (i64,)| async move {
            // A sum past i64 is refused, not wrapped to a negative count.
            let count = c
                .update(|s| {
                    s.count = s.count.checked_add(n)?;
                    Some(s.count)
                })
                .ok_or_else(|| {
                    UserError::new(format!(
                        "the count cannot go past {} or {}",
                        i64::MIN,
                        i64::MAX
                    ))
                    .with_code("count_overflow")
                })?;
            c.broadcast("newCount", (count,));
            Ok(count)
        })
        .action("get", |c, ()| async move { Ok(c.state(|s| s.count)) })
}
