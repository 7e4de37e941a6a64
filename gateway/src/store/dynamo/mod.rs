//! The DynamoDB backend: every record in one table with string keys `pk`/`sk`, one partition
//! per actor for its record, state, KV entries and SQLite pages (docs/DYNAMODB.md is the key
//! map and the reasoning behind it).
//!
//! Atomicity comes from three tools. A single conditional write decides anything that fits
//! one item (namespace creation, a stage's bookkeeping, moving the SQLite head). A
//! `TransactWriteItems` covers what spans a few items: actor creation with its key
//! reservation and indexes, and every KV or page write, which carries a `ConditionCheck` on
//! the actor's state item so the generation fence and the write are one step. What is larger
//! than a transaction is made atomic by publishing it with one conditional write: SQLite
//! commits are versioned page items that become visible only when the head moves (MVCC, see
//! `sqlite`), and large KV writes are an intent recorded on the state item that anybody who
//! finds it rolls forward (see `kv`). A call cut off at any point (a crash, or the store
//! deadline dropping the future) therefore leaves either nothing visible or the whole change.

mod actors;
mod count;
mod keys;
mod kv;
mod leases;
mod preflight;
mod sqlite;
mod sqlite_fast;
mod table;
mod views;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use tokio::sync::Semaphore;

use super::{
    ActorRecord, KvEntry, KvQuery, Lease, LeaseClaim, Namespace, NodeLease, RunnerConfigRecord,
    SqliteCommit, SqliteFinalize, SqliteRead, SqliteSegment, Store, StoreError, StoreResult,
};
pub use preflight::TableProblem;
use table::{names, sdk_error, values, Cond, Item};

/// Background clean-ups of old page versions allowed at once; past it they are skipped
/// (the next commit of the same pages collects what was left).
const GC_TASKS: usize = 16;
/// How long `create_table_if_missing` waits for the table to become active.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// The [`Store`] on one DynamoDB table.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    /// Permits for background garbage collection of superseded page versions.
    gc: Arc<Semaphore>,
    /// Every request attempt sent, by operation.
    requests: Arc<super::RequestCounts>,
    /// What this store last saw of each actor's SQLite state (see `sqlite_fast`).
    sq_views: Arc<views::SqViews>,
    /// What this store knows of actors' KV (see `views::KvKnown`).
    kv_clean: Arc<views::KvKnown>,
    /// Records this process last wrote or read (see `actors::RecordViews`).
    records: Arc<actors::RecordViews>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// The `CreateTable` input the store expects, as JSON (without `TableName`, which each
/// deployment chooses). `rivulet schema` and the Terraform module must match it.
pub fn table_schema_json() -> serde_json::Value {
    serde_json::json!({
        "AttributeDefinitions": [
            { "AttributeName": "pk", "AttributeType": "S" },
            { "AttributeName": "sk", "AttributeType": "S" },
        ],
        "KeySchema": [
            { "AttributeName": "pk", "KeyType": "HASH" },
            { "AttributeName": "sk", "KeyType": "RANGE" },
        ],
        "BillingMode": "PAY_PER_REQUEST",
    })
}

/// Retries for throttling, 5xx and timeouts: standard mode, bounded exponential backoff.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(2))
}

/// Time limits per attempt, so a stuck connection turns into a retry.
fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .build()
}

// === impl DynamoStore ===

impl DynamoStore {
    /// Connects with the standard AWS configuration chain (environment, profile, instance
    /// role); `AWS_ENDPOINT_URL_DYNAMODB` points it at a local server.
    pub async fn connect(table: &str) -> Result<Self, StoreError> {
        let conf = aws_config::defaults(BehaviorVersion::latest()).load().await;
        if conf.region().is_none() {
            return Err(StoreError::Backend(
                "no AWS region configured (set AWS_REGION) for the DynamoDB store".to_owned(),
            ));
        }
        Ok(Self::from_client(Self::client_for(&conf), table))
    }

    /// A DynamoDB client from an SDK config, with the store's retry and timeout settings.
    pub fn client_for(conf: &aws_config::SdkConfig) -> Client {
        let dconf = aws_sdk_dynamodb::config::Builder::from(conf)
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .build();
        Client::from_conf(dconf)
    }

    /// Like [`DynamoStore::connect`], but each failure a person must fix before the gateway can
    /// start (no region, no credentials, endpoint down, table missing or keyed otherwise) is a
    /// [`TableProblem`]. With `create`, a missing table is created instead (`rivulet dev`).
    pub async fn connect_checked(table: &str, create: bool) -> Result<Self, TableProblem> {
        let conf = aws_config::defaults(BehaviorVersion::latest()).load().await;
        if conf.region().is_none() {
            return Err(TableProblem::NoRegion);
        }
        let store = Self::from_client(Self::client_for(&conf), table);
        preflight::check_credentials(&conf).await?;
        match preflight::check_table(&store.client, table).await {
            Err(TableProblem::Missing(_)) if create => store
                .create_table_if_missing()
                .await
                .map_err(|e| TableProblem::Other(e.to_string()))?,
            other => other?,
        }
        Ok(store)
    }

    /// Uses an existing client (tests build theirs against a local server).
    pub fn from_client(client: Client, table: &str) -> Self {
        let requests = Arc::new(super::RequestCounts::default());
        let conf = client
            .config()
            .to_builder()
            .interceptor(count::CountRequests(requests.clone()))
            .build();
        Self {
            client: Client::from_conf(conf),
            table: Arc::from(table),
            gc: Arc::new(Semaphore::new(GC_TASKS)),
            requests,
            sq_views: Arc::default(),
            kv_clean: Arc::default(),
            records: Arc::default(),
        }
    }

    /// The table this store uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand billing) unless it exists, and waits until it is active.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let exists = match self
            .client
            .describe_table()
            .table_name(&*self.table)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) => match e.as_service_error() {
                Some(DescribeTableError::ResourceNotFoundException(_)) => false,
                Some(_) | None => return Err(sdk_error("describe table", e)),
            },
        };
        if !exists {
            let attr = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| StoreError::Backend(format!("build table schema: {e}")))
            };
            let key = |name: &str, kind: KeyType| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .map_err(|e| StoreError::Backend(format!("build table schema: {e}")))
            };
            let res = self
                .client
                .create_table()
                .table_name(&*self.table)
                .attribute_definitions(attr("pk")?)
                .attribute_definitions(attr("sk")?)
                .key_schema(key("pk", KeyType::Hash)?)
                .key_schema(key("sk", KeyType::Range)?)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await;
            if let Err(e) = res {
                match e.as_service_error() {
                    // Another gateway created it at the same moment.
                    Some(CreateTableError::ResourceInUseException(_)) => {}
                    Some(_) | None => return Err(sdk_error("create table", e)),
                }
            }
        }
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_WAIT;
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(&*self.table)
                .send()
                .await
                .map_err(|e| sdk_error("describe table", e))?;
            let status = out.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "table {} is not active after {} s (status {status:?})",
                    self.table,
                    TABLE_ACTIVE_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // === single-item helpers ===

    /// Reads one item, strongly consistent.
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(table::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("get item", e))?;
        Ok(out.item().cloned())
    }

    /// Puts an item if `cond` holds (empty: always).
    async fn put_if(
        &self,
        it: Item,
        cond: &str,
        vals: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) -> StoreResult<Cond<()>> {
        let n = names(&[cond]);
        let res = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(it))
            .set_condition_expression((!cond.is_empty()).then(|| cond.to_owned()))
            .set_expression_attribute_names((!n.is_empty()).then_some(n))
            .set_expression_attribute_values(values(vals))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(Cond::Applied(())),
            Err(e) => match e.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                        c,
                    ),
                ) => Ok(Cond::Failed(c.item().cloned())),
                Some(_) | None => Err(sdk_error("put item", e)),
            },
        }
    }

    /// Updates an item if `cond` holds (empty: always); returns the attributes `ret` asks for.
    async fn update_if(
        &self,
        pk: &str,
        sk: &str,
        update: &str,
        cond: &str,
        vals: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
        ret: ReturnValue,
    ) -> StoreResult<Cond<Item>> {
        let n = names(&[update, cond]);
        let res = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(table::key(pk, sk)))
            .update_expression(update)
            .set_condition_expression((!cond.is_empty()).then(|| cond.to_owned()))
            .set_expression_attribute_names((!n.is_empty()).then_some(n))
            .set_expression_attribute_values(values(vals))
            .return_values(ret)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Cond::Applied(out.attributes().cloned().unwrap_or_default())),
            Err(e) => match e.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                        c,
                    ),
                ) => Ok(Cond::Failed(c.item().cloned())),
                Some(_) | None => Err(sdk_error("update item", e)),
            },
        }
    }

    /// Deletes one item; returns whether it existed.
    async fn delete(&self, pk: &str, sk: &str) -> StoreResult<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(table::key(pk, sk)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("delete item", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}

// === impl Store ===

#[async_trait]
impl Store for DynamoStore {
    fn request_counts(&self) -> Arc<super::RequestCounts> {
        self.requests.clone()
    }
    fn forget_actor(&self, actor_id: &str) {
        // The next start moves the generation, which would drop these anyway.
        self.kv_clean.unmark(actor_id);
        self.drop_sq_view(actor_id);
        self.records.forget(actor_id);
    }
    async fn create_namespace(&self, ns: Namespace) -> StoreResult<()> {
        self.create_namespace_impl(ns).await
    }

    async fn get_namespace(&self, name: &str) -> StoreResult<Option<Namespace>> {
        self.get_namespace_impl(name).await
    }

    async fn list_namespaces(&self) -> StoreResult<Vec<Namespace>> {
        self.list_namespaces_impl().await
    }

    async fn put_runner_config(&self, cfg: RunnerConfigRecord) -> StoreResult<()> {
        self.put_runner_config_impl(cfg).await
    }

    async fn get_runner_config(
        &self,
        namespace_id: &str,
        name: &str,
    ) -> StoreResult<Option<RunnerConfigRecord>> {
        self.get_runner_config_impl(namespace_id, name).await
    }

    async fn list_runner_configs(
        &self,
        namespace_id: &str,
    ) -> StoreResult<Vec<RunnerConfigRecord>> {
        self.list_runner_configs_impl(namespace_id).await
    }

    async fn delete_runner_config(&self, namespace_id: &str, name: &str) -> StoreResult<bool> {
        self.delete_runner_config_impl(namespace_id, name).await
    }

    async fn put_actor_names(
        &self,
        namespace_id: &str,
        names: Vec<(String, String)>,
    ) -> StoreResult<()> {
        self.put_actor_names_impl(namespace_id, names).await
    }

    async fn list_actor_names(&self, namespace_id: &str) -> StoreResult<Vec<(String, String)>> {
        self.list_actor_names_impl(namespace_id).await
    }

    async fn create_actor(&self, actor: ActorRecord) -> StoreResult<()> {
        self.create_actor_impl(actor).await
    }

    async fn get_actor(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>> {
        self.get_actor_impl(actor_id).await
    }

    async fn get_actor_by_key(
        &self,
        namespace_id: &str,
        name: &str,
        key: &str,
    ) -> StoreResult<Option<ActorRecord>> {
        self.get_actor_by_key_impl(namespace_id, name, key).await
    }

    async fn list_actors(
        &self,
        namespace_id: &str,
        name: Option<&str>,
        include_destroyed: bool,
        limit: usize,
    ) -> StoreResult<Vec<ActorRecord>> {
        self.list_actors_impl(namespace_id, name, include_destroyed, limit)
            .await
    }

    async fn update_actor(&self, actor: ActorRecord, expected_revision: u64) -> StoreResult<()> {
        self.update_actor_impl(actor, expected_revision).await
    }

    async fn due_alarms(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ActorRecord>> {
        self.due_alarms_impl(now_ms, limit).await
    }

    async fn clear_actor_data(&self, actor_id: &str) -> StoreResult<()> {
        self.clear_actor_data_impl(actor_id).await
    }

    async fn kv_get(&self, actor_id: &str, keys: &[Vec<u8>]) -> StoreResult<Vec<KvEntry>> {
        self.kv_get_impl(actor_id, keys).await
    }

    async fn kv_list(
        &self,
        actor_id: &str,
        query: KvQuery,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Vec<KvEntry>> {
        self.kv_list_impl(actor_id, query, reverse, limit).await
    }

    async fn kv_put(
        &self,
        actor_id: &str,
        generation: u32,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.kv_write(
            actor_id,
            kv::KvWrite::Put { entries, now_ms },
            Some(generation),
        )
        .await
    }

    async fn kv_delete(
        &self,
        actor_id: &str,
        generation: u32,
        keys: &[Vec<u8>],
    ) -> StoreResult<()> {
        self.kv_write(
            actor_id,
            kv::KvWrite::Delete(keys.to_vec()),
            Some(generation),
        )
        .await
    }

    async fn kv_delete_range(
        &self,
        actor_id: &str,
        generation: u32,
        start: &[u8],
        end: &[u8],
    ) -> StoreResult<()> {
        let op = kv::KvWrite::DeleteRange {
            start: start.to_vec(),
            end: Some(end.to_vec()),
        };
        self.kv_write(actor_id, op, Some(generation)).await
    }

    async fn kv_drop(&self, actor_id: &str, generation: u32) -> StoreResult<()> {
        let op = kv::KvWrite::DeleteRange {
            start: Vec::new(),
            end: None,
        };
        self.kv_write(actor_id, op, Some(generation)).await
    }

    async fn sqlite_get_pages(&self, actor_id: &str, pgnos: &[u32]) -> StoreResult<SqliteRead> {
        self.sqlite_get_pages_impl(actor_id, pgnos).await
    }

    async fn sqlite_commit(&self, commit: SqliteCommit) -> StoreResult<u64> {
        self.sqlite_commit_impl(commit).await
    }

    async fn sqlite_stage_begin(
        &self,
        actor_id: &str,
        generation: u32,
        expected_head: u64,
    ) -> StoreResult<u64> {
        self.sqlite_stage_begin_impl(actor_id, generation, expected_head)
            .await
    }

    async fn sqlite_stage_segment(&self, segment: SqliteSegment) -> StoreResult<u64> {
        self.sqlite_stage_segment_impl(segment).await
    }

    async fn sqlite_stage_finalize(&self, finalize: SqliteFinalize) -> StoreResult<u64> {
        self.sqlite_stage_finalize_impl(finalize).await
    }

    async fn register_node(
        &self,
        node_id: &str,
        node_url: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<NodeLease> {
        self.register_node_impl(node_id, node_url, now_ms, ttl_ms)
            .await
    }

    async fn renew_node(
        &self,
        node: &NodeLease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<Option<NodeLease>> {
        self.renew_node_impl(node, now_ms, ttl_ms).await
    }

    async fn get_node(&self, node_id: &str) -> StoreResult<Option<NodeLease>> {
        self.get_node_impl(node_id).await
    }

    async fn acquire_lease(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim> {
        self.acquire_lease_impl(actor_id, node, now_ms).await
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<bool> {
        self.release_lease_impl(lease).await
    }

    async fn get_lease(&self, actor_id: &str) -> StoreResult<Option<Lease>> {
        self.get_lease_impl(actor_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_json_names_the_key_the_code_uses() {
        let v = table_schema_json();
        assert_eq!(v["KeySchema"][0]["AttributeName"], "pk");
        assert_eq!(v["KeySchema"][1]["AttributeName"], "sk");
        assert_eq!(v["BillingMode"], "PAY_PER_REQUEST");
    }
}
