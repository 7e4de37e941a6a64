//! A deadline around every store call. A backend that hangs (a stalled disk, a throttled
//! or unreachable DynamoDB) turns into `StoreError::Unavailable` after the configured time,
//! so callers answer with a clear, retryable error instead of hanging with them.
//!
//! Every store method is one atomic step, so a call cut off by the deadline has either
//! applied fully or not at all; the error says the outcome is unknown, and the fences
//! (generation, head txid, revision) make a retry safe either way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::metrics::Metrics;

/// Wraps a store so that no call takes longer than `limit`.
pub struct DeadlineStore {
    inner: Arc<dyn Store>,
    limit: Duration,
    metrics: Arc<Metrics>,
}

impl DeadlineStore {
    /// Wraps `inner`; every call is counted and timed in `metrics` by its method name.
    pub fn new(inner: Arc<dyn Store>, limit: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            limit,
            metrics,
        }
    }

    async fn guard<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let (result, outcome) = match tokio::time::timeout(self.limit, call).await {
            Ok(Ok(value)) => (Ok(value), "ok"),
            Ok(Err(err)) => (Err(err), "error"),
            Err(_) => (
                Err(StoreError::Unavailable(format!(
                    "{what} did not finish within {} ms; its outcome is unknown",
                    self.limit.as_millis()
                ))),
                "timeout",
            ),
        };
        self.metrics
            .store_seconds
            .with_label_values(&[what])
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .store_calls
            .with_label_values(&[what, outcome])
            .inc();
        result
    }
}

#[async_trait]
impl Store for DeadlineStore {
    fn request_counts(&self) -> std::sync::Arc<crate::store::RequestCounts> {
        self.inner.request_counts()
    }
    fn forget_actor(&self, actor_id: &str) {
        self.inner.forget_actor(actor_id);
    }
    async fn create_namespace(&self, ns: Namespace) -> StoreResult<()> {
        self.guard("create_namespace", self.inner.create_namespace(ns))
            .await
    }
    async fn get_namespace(&self, name: &str) -> StoreResult<Option<Namespace>> {
        self.guard("get_namespace", self.inner.get_namespace(name))
            .await
    }
    async fn list_namespaces(&self) -> StoreResult<Vec<Namespace>> {
        self.guard("list_namespaces", self.inner.list_namespaces())
            .await
    }
    async fn put_runner_config(&self, cfg: RunnerConfigRecord) -> StoreResult<()> {
        self.guard("put_runner_config", self.inner.put_runner_config(cfg))
            .await
    }
    async fn get_runner_config(
        &self,
        namespace_id: &str,
        name: &str,
    ) -> StoreResult<Option<RunnerConfigRecord>> {
        self.guard(
            "get_runner_config",
            self.inner.get_runner_config(namespace_id, name),
        )
        .await
    }
    async fn list_runner_configs(
        &self,
        namespace_id: &str,
    ) -> StoreResult<Vec<RunnerConfigRecord>> {
        self.guard(
            "list_runner_configs",
            self.inner.list_runner_configs(namespace_id),
        )
        .await
    }
    async fn delete_runner_config(&self, namespace_id: &str, name: &str) -> StoreResult<bool> {
        self.guard(
            "delete_runner_config",
            self.inner.delete_runner_config(namespace_id, name),
        )
        .await
    }
    async fn put_actor_names(
        &self,
        namespace_id: &str,
        names: Vec<(String, String)>,
    ) -> StoreResult<()> {
        self.guard(
            "put_actor_names",
            self.inner.put_actor_names(namespace_id, names),
        )
        .await
    }
    async fn list_actor_names(&self, namespace_id: &str) -> StoreResult<Vec<(String, String)>> {
        self.guard(
            "list_actor_names",
            self.inner.list_actor_names(namespace_id),
        )
        .await
    }
    async fn create_actor(&self, actor: ActorRecord) -> StoreResult<()> {
        self.guard("create_actor", self.inner.create_actor(actor))
            .await
    }
    async fn get_actor(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>> {
        self.guard("get_actor", self.inner.get_actor(actor_id))
            .await
    }
    async fn get_actor_by_key(
        &self,
        namespace_id: &str,
        name: &str,
        key: &str,
    ) -> StoreResult<Option<ActorRecord>> {
        self.guard(
            "get_actor_by_key",
            self.inner.get_actor_by_key(namespace_id, name, key),
        )
        .await
    }
    async fn list_actors(
        &self,
        namespace_id: &str,
        name: Option<&str>,
        include_destroyed: bool,
        limit: usize,
    ) -> StoreResult<Vec<ActorRecord>> {
        self.guard(
            "list_actors",
            self.inner
                .list_actors(namespace_id, name, include_destroyed, limit),
        )
        .await
    }
    async fn update_actor(&self, actor: ActorRecord, expected_revision: u64) -> StoreResult<()> {
        self.guard(
            "update_actor",
            self.inner.update_actor(actor, expected_revision),
        )
        .await
    }
    async fn due_alarms(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ActorRecord>> {
        self.guard("due_alarms", self.inner.due_alarms(now_ms, limit))
            .await
    }
    async fn clear_actor_data(&self, actor_id: &str) -> StoreResult<()> {
        self.guard("clear_actor_data", self.inner.clear_actor_data(actor_id))
            .await
    }
    async fn kv_get(&self, actor_id: &str, keys: &[Vec<u8>]) -> StoreResult<Vec<KvEntry>> {
        self.guard("kv_get", self.inner.kv_get(actor_id, keys))
            .await
    }
    async fn kv_list(
        &self,
        actor_id: &str,
        query: KvQuery,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Vec<KvEntry>> {
        self.guard(
            "kv_list",
            self.inner.kv_list(actor_id, query, reverse, limit),
        )
        .await
    }
    async fn kv_put(
        &self,
        actor_id: &str,
        generation: u32,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.guard(
            "kv_put",
            self.inner.kv_put(actor_id, generation, entries, now_ms),
        )
        .await
    }
    async fn kv_delete(
        &self,
        actor_id: &str,
        generation: u32,
        keys: &[Vec<u8>],
    ) -> StoreResult<()> {
        self.guard(
            "kv_delete",
            self.inner.kv_delete(actor_id, generation, keys),
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
        self.guard(
            "kv_delete_range",
            self.inner.kv_delete_range(actor_id, generation, start, end),
        )
        .await
    }
    async fn kv_drop(&self, actor_id: &str, generation: u32) -> StoreResult<()> {
        self.guard("kv_drop", self.inner.kv_drop(actor_id, generation))
            .await
    }
    async fn sqlite_get_pages(&self, actor_id: &str, pgnos: &[u32]) -> StoreResult<SqliteRead> {
        self.guard(
            "sqlite_get_pages",
            self.inner.sqlite_get_pages(actor_id, pgnos),
        )
        .await
    }
    async fn sqlite_commit(&self, commit: SqliteCommit) -> StoreResult<u64> {
        self.guard("sqlite_commit", self.inner.sqlite_commit(commit))
            .await
    }
    async fn sqlite_stage_begin(
        &self,
        actor_id: &str,
        generation: u32,
        expected_head: u64,
    ) -> StoreResult<u64> {
        self.guard(
            "sqlite_stage_begin",
            self.inner
                .sqlite_stage_begin(actor_id, generation, expected_head),
        )
        .await
    }
    async fn sqlite_stage_segment(&self, segment: SqliteSegment) -> StoreResult<u64> {
        self.guard(
            "sqlite_stage_segment",
            self.inner.sqlite_stage_segment(segment),
        )
        .await
    }
    async fn sqlite_stage_finalize(&self, finalize: SqliteFinalize) -> StoreResult<u64> {
        self.guard(
            "sqlite_stage_finalize",
            self.inner.sqlite_stage_finalize(finalize),
        )
        .await
    }
    async fn register_node(
        &self,
        node_id: &str,
        node_url: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<NodeLease> {
        self.guard(
            "register_node",
            self.inner.register_node(node_id, node_url, now_ms, ttl_ms),
        )
        .await
    }
    async fn renew_node(
        &self,
        node: &NodeLease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<Option<NodeLease>> {
        self.guard("renew_node", self.inner.renew_node(node, now_ms, ttl_ms))
            .await
    }
    async fn get_node(&self, node_id: &str) -> StoreResult<Option<NodeLease>> {
        self.guard("get_node", self.inner.get_node(node_id)).await
    }
    async fn acquire_lease(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim> {
        self.guard(
            "acquire_lease",
            self.inner.acquire_lease(actor_id, node, now_ms),
        )
        .await
    }
    async fn release_lease(&self, lease: &Lease) -> StoreResult<bool> {
        self.guard("release_lease", self.inner.release_lease(lease))
            .await
    }
    async fn get_lease(&self, actor_id: &str) -> StoreResult<Option<Lease>> {
        self.guard("get_lease", self.inner.get_lease(actor_id))
            .await
    }
}
