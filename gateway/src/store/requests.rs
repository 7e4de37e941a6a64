//! Requests a store backend sent, counted by kind: for DynamoDB each kind is an API operation
//! (`GetItem`, `TransactWriteItems`, …) and each attempt counts, retries included, since each is
//! billed; for the embedded store the kinds are `read` and `write` transactions. `/metrics`
//! exports them, and the benchmark reads them to report store requests per operation.

use std::collections::BTreeMap;

use parking_lot::Mutex;

/// Counters by request kind; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct RequestCounts {
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl RequestCounts {
    /// Counts one request of `kind`.
    pub fn count(&self, kind: &'static str) {
        *self.by_kind.lock().entry(kind).or_insert(0) += 1;
    }

    /// Every kind seen so far with its count, ordered by kind.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.by_kind.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// The sum over all kinds.
    pub fn total(&self) -> u64 {
        self.by_kind.lock().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_in_total() {
        let c = RequestCounts::default();
        c.count("GetItem");
        c.count("Query");
        c.count("GetItem");
        assert_eq!(c.snapshot(), vec![("GetItem", 2), ("Query", 1)]);
        assert_eq!(c.total(), 3);
    }
}
