//! The thin layer between the store logic and the AWS SDK: attribute encoding, error
//! classification, conditional writes that hand back the item they failed on, transactions
//! with bounded retries on transaction conflicts, and paginated queries and batches.
//!
//! Throttling, 5xx answers and timeouts are retried by the SDK itself (standard retry mode,
//! bounded exponential backoff, set up in `DynamoStore::from_client`'s callers); what is left
//! when it gives up becomes `StoreError::Unavailable`. Transaction conflicts (another
//! transaction held one of the items) are not retried by the SDK, so they are retried here.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, KeysAndAttributes, Put, PutRequest,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;

use super::super::{StoreError, StoreResult};

/// One item: attribute name to value.
pub(super) type Item = HashMap<String, AttributeValue>;

/// Most actions in one `TransactWriteItems`.
pub(super) const TX_MAX_ITEMS: usize = 100;
/// Most bytes we put in one `TransactWriteItems` (the service limit is 4 MB; this leaves
/// room for keys and attribute names).
pub(super) const TX_MAX_BYTES: usize = 3_500_000;
/// Largest value we store in one item (the service limit is 400 KB for the whole item).
pub(super) const ITEM_MAX_VALUE_BYTES: usize = 380_000;
/// Attempts of a transaction that keeps colliding with other transactions.
const CONFLICT_ATTEMPTS: u32 = 8;
/// Attempts of a batch whose items keep coming back unprocessed.
const BATCH_ATTEMPTS: u32 = 10;

// === attributes ===

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn b(v: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(v.into()))
}

/// The primary key of an item.
pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// An item: its key plus `attrs`.
pub(super) fn item(
    pk: impl Into<String>,
    sk: impl Into<String>,
    attrs: impl IntoIterator<Item = (&'static str, AttributeValue)>,
) -> Item {
    let mut it = key(pk, sk);
    it.extend(attrs.into_iter().map(|(k, v)| (k.to_owned(), v)));
    it
}

fn corrupt(name: &str, want: &str) -> StoreError {
    StoreError::Corrupt(format!("attribute {name} is missing or not {want}"))
}

pub(super) fn opt_s<'a>(it: &'a Item, name: &str) -> StoreResult<Option<&'a str>> {
    match it.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(corrupt(name, "a string")),
    }
}

pub(super) fn get_s<'a>(it: &'a Item, name: &str) -> StoreResult<&'a str> {
    opt_s(it, name)?.ok_or_else(|| corrupt(name, "a string"))
}

pub(super) fn opt_n<T: std::str::FromStr>(it: &Item, name: &str) -> StoreResult<Option<T>> {
    match it.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| corrupt(name, "a number in range")),
        Some(_) => Err(corrupt(name, "a number")),
    }
}

pub(super) fn get_n<T: std::str::FromStr>(it: &Item, name: &str) -> StoreResult<T> {
    opt_n(it, name)?.ok_or_else(|| corrupt(name, "a number"))
}

pub(super) fn opt_b<'a>(it: &'a Item, name: &str) -> StoreResult<Option<&'a [u8]>> {
    match it.get(name) {
        None => Ok(None),
        Some(AttributeValue::B(v)) => Ok(Some(v.as_ref())),
        Some(_) => Err(corrupt(name, "binary")),
    }
}

pub(super) fn get_b<'a>(it: &'a Item, name: &str) -> StoreResult<&'a [u8]> {
    opt_b(it, name)?.ok_or_else(|| corrupt(name, "binary"))
}

pub(super) fn opt_bool(it: &Item, name: &str) -> StoreResult<Option<bool>> {
    match it.get(name) {
        None => Ok(None),
        Some(AttributeValue::Bool(v)) => Ok(Some(*v)),
        Some(_) => Err(corrupt(name, "a boolean")),
    }
}

/// The sort key of an item.
pub(super) fn sk_of(it: &Item) -> StoreResult<&str> {
    get_s(it, "sk")
}

/// Expression attribute names for every `#name` token in `exprs` (each maps to `name`), so
/// expressions never trip over DynamoDB's reserved words.
pub(super) fn names(exprs: &[&str]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for e in exprs {
        let mut rest = *e;
        while let Some(at) = rest.find('#') {
            let tail = &rest[at + 1..];
            let len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..len];
            if !name.is_empty() {
                out.insert(format!("#{name}"), name.to_owned());
            }
            rest = &tail[len..];
        }
    }
    out
}

/// Expression attribute values from `(":name", value)` pairs.
pub(super) fn values(vals: Vec<(&str, AttributeValue)>) -> Option<HashMap<String, AttributeValue>> {
    if vals.is_empty() {
        None
    } else {
        Some(vals.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

// === errors ===

/// Error codes that mean "try again later", beside throttling (which the SDK retried).
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

/// Classifies an SDK failure: transport trouble, timeouts, throttling and 5xx are
/// `Unavailable` (retryable); everything else is `Backend`.
pub(super) fn sdk_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            se.raw().status().as_u16() >= 500 || TRANSIENT_CODES.contains(&code)
        }
        _ => false,
    };
    let msg = format!("dynamodb {what}: {}", DisplayErrorContext(&err));
    if retryable {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Backend(msg)
    }
}

/// A small, growing pause between attempts of our own retry loops.
pub(super) async fn backoff(attempt: u32) {
    let base = 10u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % base.max(1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

// === transactions ===

/// Why a transaction was cancelled, per action: the failure code and, for a failed condition,
/// the item as it was.
#[derive(Debug)]
pub(super) struct Cancelled {
    pub reasons: Vec<(String, Option<Item>)>,
}

impl Cancelled {
    /// Whether action `i` failed its condition; returns the item it saw.
    pub(super) fn failed(&self, i: usize) -> Option<Option<&Item>> {
        match self.reasons.get(i) {
            Some((code, it)) if code == "ConditionalCheckFailed" => Some(it.as_ref()),
            Some(_) | None => None,
        }
    }
}

pub(super) fn tx_put(table: &str, it: Item) -> StoreResult<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(it))
        .build()
        .map_err(|e| StoreError::Backend(format!("build put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A put that only applies if `cond` holds.
pub(super) fn tx_put_if(
    table: &str,
    it: Item,
    cond: &str,
    vals: Vec<(&str, AttributeValue)>,
) -> StoreResult<TransactWriteItem> {
    let n = names(&[cond]);
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(it))
        .condition_expression(cond)
        .set_expression_attribute_names((!n.is_empty()).then_some(n))
        .set_expression_attribute_values(values(vals))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| StoreError::Backend(format!("build put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

pub(super) fn tx_delete(table: &str, k: Item) -> StoreResult<TransactWriteItem> {
    let del = Delete::builder()
        .table_name(table)
        .set_key(Some(k))
        .build()
        .map_err(|e| StoreError::Backend(format!("build delete: {e}")))?;
    Ok(TransactWriteItem::builder().delete(del).build())
}

pub(super) fn tx_delete_if(
    table: &str,
    k: Item,
    cond: &str,
    vals: Vec<(&str, AttributeValue)>,
) -> StoreResult<TransactWriteItem> {
    let n = names(&[cond]);
    let del = Delete::builder()
        .table_name(table)
        .set_key(Some(k))
        .condition_expression(cond)
        .set_expression_attribute_names((!n.is_empty()).then_some(n))
        .set_expression_attribute_values(values(vals))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| StoreError::Backend(format!("build delete: {e}")))?;
    Ok(TransactWriteItem::builder().delete(del).build())
}

pub(super) fn tx_check(
    table: &str,
    k: Item,
    cond: &str,
    vals: Vec<(&str, AttributeValue)>,
) -> StoreResult<TransactWriteItem> {
    let n = names(&[cond]);
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(k))
        .condition_expression(cond)
        .set_expression_attribute_names((!n.is_empty()).then_some(n))
        .set_expression_attribute_values(values(vals))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| StoreError::Backend(format!("build condition check: {e}")))?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

pub(super) fn tx_update(
    table: &str,
    k: Item,
    update: &str,
    cond: &str,
    vals: Vec<(&str, AttributeValue)>,
) -> StoreResult<TransactWriteItem> {
    let n = names(&[update, cond]);
    let upd = Update::builder()
        .table_name(table)
        .set_key(Some(k))
        .update_expression(update)
        .set_condition_expression((!cond.is_empty()).then(|| cond.to_owned()))
        .set_expression_attribute_names((!n.is_empty()).then_some(n))
        .set_expression_attribute_values(values(vals))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| StoreError::Backend(format!("build update: {e}")))?;
    Ok(TransactWriteItem::builder().update(upd).build())
}

/// Runs one transaction. `Ok(Err(_))` means it was cancelled by a failed condition (nothing
/// was written); conflicts with other transactions are retried a few times first.
pub(super) async fn transact(
    client: &Client,
    what: &str,
    actions: Vec<TransactWriteItem>,
) -> StoreResult<Result<(), Cancelled>> {
    let mut attempt = 0;
    loop {
        let res = client
            .transact_write_items()
            .set_transact_items(Some(actions.clone()))
            .send()
            .await;
        let err = match res {
            Ok(_) => return Ok(Ok(())),
            Err(err) => err,
        };
        let cancelled = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => Some(Cancelled {
                reasons: e
                    .cancellation_reasons()
                    .iter()
                    .map(|r| (r.code().unwrap_or("None").to_owned(), r.item().cloned()))
                    .collect(),
            }),
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => None,
            Some(e) if e.code() == Some("TransactionConflictException") => None,
            Some(_) | None => return Err(sdk_error(what, err)),
        };
        match cancelled {
            Some(c)
                if c.reasons
                    .iter()
                    .any(|(code, _)| code == "ConditionalCheckFailed") =>
            {
                return Ok(Err(c))
            }
            Some(c)
                if !c
                    .reasons
                    .iter()
                    .all(|(code, _)| code == "None" || code == "TransactionConflict") =>
            {
                let codes: Vec<&str> = c.reasons.iter().map(|(code, _)| code.as_str()).collect();
                // Throttling inside a transaction shows up as a cancellation reason.
                let msg = format!("dynamodb {what}: transaction cancelled: {codes:?}");
                return Err(
                    if codes
                        .iter()
                        .any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded"))
                    {
                        StoreError::Unavailable(msg)
                    } else {
                        StoreError::Backend(msg)
                    },
                );
            }
            Some(_) | None => {}
        }
        attempt += 1;
        if attempt >= CONFLICT_ATTEMPTS {
            return Err(StoreError::Unavailable(format!(
                "dynamodb {what}: transaction kept conflicting with others"
            )));
        }
        backoff(attempt).await;
    }
}

// === conditional single-item writes ===

/// Result of a conditional write: what it returned, or the item (if any) it failed on.
pub(super) enum Cond<T> {
    /// Applied.
    Applied(T),
    /// The condition failed; the item as it was (`None`: it did not exist).
    Failed(Option<Item>),
}

// === queries ===

/// The sort-key part of a query.
#[derive(Debug, Clone)]
pub(super) enum Range {
    /// The whole partition.
    All,
    /// Sort keys starting with a prefix.
    Prefix(String),
    /// Sort keys from the first to the second, both included.
    Between(String, String),
    /// Sort keys strictly below a bound.
    Below(String),
}

/// One query over one partition.
#[derive(Debug, Clone)]
pub(super) struct Query {
    pub pk: String,
    pub range: Range,
    pub forward: bool,
    pub consistent: bool,
    /// Attributes to return (all when `None`).
    pub projection: Option<&'static str>,
    /// Items per page asked of the service.
    pub page_size: Option<i32>,
}

impl Query {
    pub(super) fn new(pk: impl Into<String>, range: Range) -> Self {
        Self {
            pk: pk.into(),
            range,
            forward: true,
            consistent: true,
            projection: None,
            page_size: None,
        }
    }
}

/// One page of a query and where the next starts (`None`: that was the last).
pub(super) async fn query_page(
    client: &Client,
    table: &str,
    q: &Query,
    start: Option<Item>,
) -> StoreResult<(Vec<Item>, Option<Item>)> {
    let (cond, mut vals) = match &q.range {
        Range::All => ("#pk = :pk", vec![]),
        Range::Prefix(p) => (
            "#pk = :pk AND begins_with(#sk, :a)",
            vec![(":a", s(p.clone()))],
        ),
        Range::Between(a, z) => (
            "#pk = :pk AND #sk BETWEEN :a AND :z",
            vec![(":a", s(a.clone())), (":z", s(z.clone()))],
        ),
        Range::Below(z) => ("#pk = :pk AND #sk < :z", vec![(":z", s(z.clone()))]),
    };
    vals.push((":pk", s(q.pk.clone())));
    let mut exprs = vec![cond];
    if let Some(p) = q.projection {
        exprs.push(p);
    }
    let out = client
        .query()
        .table_name(table)
        .key_condition_expression(cond)
        .set_projection_expression(q.projection.map(str::to_owned))
        .set_expression_attribute_names(Some(names(&exprs)))
        .set_expression_attribute_values(values(vals))
        .scan_index_forward(q.forward)
        .consistent_read(q.consistent)
        .set_limit(q.page_size)
        .set_exclusive_start_key(start)
        .send()
        .await
        .map_err(|e| sdk_error("query", e))?;
    Ok((out.items().to_vec(), out.last_evaluated_key().cloned()))
}

/// Every item a query matches, across all pages.
pub(super) async fn query_all(client: &Client, table: &str, q: &Query) -> StoreResult<Vec<Item>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let (items, next) = query_page(client, table, q, start).await?;
        out.extend(items);
        match next {
            Some(n) => start = Some(n),
            None => return Ok(out),
        }
    }
}

// === batches ===

/// Reads items by key (consistently), 100 per request, retrying unprocessed keys. Missing
/// items are left out; order is not kept.
pub(super) async fn batch_get(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
) -> StoreResult<Vec<Item>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Backend(format!("build batch get: {e}")))?;
            let res = client
                .batch_get_item()
                .request_items(table, ka)
                .send()
                .await
                .map_err(|e| sdk_error("batch get", e))?;
            if let Some(items) = res.responses().and_then(|r| r.get(table)) {
                out.extend(items.iter().cloned());
            }
            pending = res
                .unprocessed_keys()
                .and_then(|u| u.get(table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable(
                        "dynamodb batch get: keys stayed unprocessed".to_owned(),
                    ));
                }
                backoff(attempt).await;
            }
        }
    }
    Ok(out)
}

/// One unconditional write of a batch.
pub(super) enum BatchOp {
    Put(Item),
    Delete(Item),
}

/// Applies unconditional puts and deletes, 25 per request, retrying unprocessed ones. Not
/// atomic: used only where any subset of the writes is harmless (invisible data, garbage).
pub(super) async fn batch_write(
    client: &Client,
    table: &str,
    ops: Vec<BatchOp>,
) -> StoreResult<()> {
    let mut reqs = Vec::with_capacity(ops.len());
    for op in ops {
        reqs.push(match op {
            BatchOp::Put(it) => WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(it))
                        .build()
                        .map_err(|e| StoreError::Backend(format!("build batch put: {e}")))?,
                )
                .build(),
            BatchOp::Delete(k) => WriteRequest::builder()
                .delete_request(
                    DeleteRequest::builder()
                        .set_key(Some(k))
                        .build()
                        .map_err(|e| StoreError::Backend(format!("build batch delete: {e}")))?,
                )
                .build(),
        });
    }
    // A batch also may not exceed 16 MB; with items below 400 KB, 25 always fit.
    for chunk in reqs.chunks(25) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            let res = client
                .batch_write_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(|e| sdk_error("batch write", e))?;
            pending = res
                .unprocessed_items()
                .and_then(|u| u.get(table))
                .cloned()
                .unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable(
                        "dynamodb batch write: items stayed unprocessed".to_owned(),
                    ));
                }
                backoff(attempt).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_finds_every_placeholder() {
        let n = names(&["#a = :x AND size(#p_segs) = :n", "SET #b = #a + :one"]);
        let mut got: Vec<_> = n.into_iter().collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("#a".to_owned(), "a".to_owned()),
                ("#b".to_owned(), "b".to_owned()),
                ("#p_segs".to_owned(), "p_segs".to_owned()),
            ]
        );
    }
}
