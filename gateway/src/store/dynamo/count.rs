//! An SDK interceptor that counts every DynamoDB request attempt by operation name, so the
//! gateway can say how many billed requests each of its own operations costs.

use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use crate::store::RequestCounts;

/// Counts each attempt just before it is sent (retries are billed too).
#[derive(Debug)]
pub(super) struct CountRequests(pub Arc<RequestCounts>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "rivulet.count_requests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let kind = cfg
            .load::<Metadata>()
            .map(|m| operation_kind(m.name()))
            .unwrap_or("Unknown");
        self.0.count(kind);
        Ok(())
    }
}

/// The operation names the store uses, as `'static` labels; anything else is `Other`.
fn operation_kind(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "BatchGetItem",
        "BatchWriteItem",
        "CreateTable",
        "DeleteItem",
        "DescribeTable",
        "GetItem",
        "PutItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "TransactWriteItems",
        "UpdateItem",
    ];
    KNOWN
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("Other")
}
