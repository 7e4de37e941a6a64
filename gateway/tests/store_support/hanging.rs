//! A store whose chosen calls hang, for tests of what the gateway does when its store stops
//! answering.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use rivulet_gateway::store::embedded::EmbeddedStore;
use rivulet_gateway::store::*;

/// The embedded store, except that actor creation hangs while `hang` is set and record
/// updates hang while `hang_updates` is set (a stalled disk, an unreachable DynamoDB).
pub struct Hanging {
    pub inner: EmbeddedStore,
    pub hang: AtomicBool,
    pub hang_updates: AtomicBool,
}

impl Hanging {
    pub fn new(inner: EmbeddedStore) -> Self {
        Self {
            inner,
            hang: AtomicBool::new(false),
            hang_updates: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl Store for Hanging {
    fn request_counts(&self) -> std::sync::Arc<rivulet_gateway::store::RequestCounts> {
        self.inner.request_counts()
    }
    fn forget_actor(&self, actor_id: &str) {
        self.inner.forget_actor(actor_id);
    }
    async fn create_actor(&self, actor: ActorRecord) -> StoreResult<()> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.create_actor(actor).await
    }
    async fn create_namespace(&self, ns: Namespace) -> StoreResult<()> {
        self.inner.create_namespace(ns).await
    }
    async fn get_namespace(&self, name: &str) -> StoreResult<Option<Namespace>> {
        self.inner.get_namespace(name).await
    }
    async fn list_namespaces(&self) -> StoreResult<Vec<Namespace>> {
        self.inner.list_namespaces().await
    }
    async fn put_runner_config(&self, cfg: RunnerConfigRecord) -> StoreResult<()> {
        self.inner.put_runner_config(cfg).await
    }
    async fn get_runner_config(
        &self,
        namespace_id: &str,
        name: &str,
    ) -> StoreResult<Option<RunnerConfigRecord>> {
        self.inner.get_runner_config(namespace_id, name).await
    }
    async fn list_runner_configs(
        &self,
        namespace_id: &str,
    ) -> StoreResult<Vec<RunnerConfigRecord>> {
        self.inner.list_runner_configs(namespace_id).await
    }
    async fn delete_runner_config(&self, namespace_id: &str, name: &str) -> StoreResult<bool> {
        self.inner.delete_runner_config(namespace_id, name).await
    }
    async fn put_actor_names(
        &self,
        namespace_id: &str,
        names: Vec<(String, String)>,
    ) -> StoreResult<()> {
        self.inner.put_actor_names(namespace_id, names).await
    }
    async fn list_actor_names(&self, namespace_id: &str) -> StoreResult<Vec<(String, String)>> {
        self.inner.list_actor_names(namespace_id).await
    }
    async fn get_actor(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>> {
        self.inner.get_actor(actor_id).await
    }
    async fn get_actor_by_key(
        &self,
        namespace_id: &str,
        name: &str,
        key: &str,
    ) -> StoreResult<Option<ActorRecord>> {
        self.inner.get_actor_by_key(namespace_id, name, key).await
    }
    async fn list_actors(
        &self,
        namespace_id: &str,
        name: Option<&str>,
        include_destroyed: bool,
        limit: usize,
    ) -> StoreResult<Vec<ActorRecord>> {
        self.inner
            .list_actors(namespace_id, name, include_destroyed, limit)
            .await
    }
    async fn update_actor(&self, actor: ActorRecord, expected_revision: u64) -> StoreResult<()> {
        if self.hang_updates.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.update_actor(actor, expected_revision).await
    }
    async fn due_alarms(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ActorRecord>> {
        self.inner.due_alarms(now_ms, limit).await
    }
    async fn clear_actor_data(&self, actor_id: &str) -> StoreResult<()> {
        self.inner.clear_actor_data(actor_id).await
    }
    async fn kv_get(&self, actor_id: &str, keys: &[Vec<u8>]) -> StoreResult<Vec<KvEntry>> {
        self.inner.kv_get(actor_id, keys).await
    }
    async fn kv_list(
        &self,
        actor_id: &str,
        query: KvQuery,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Vec<KvEntry>> {
        self.inner.kv_list(actor_id, query, reverse, limit).await
    }
    async fn kv_put(
        &self,
        actor_id: &str,
        generation: u32,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.inner
            .kv_put(actor_id, generation, entries, now_ms)
            .await
    }
    async fn kv_delete(
        &self,
        actor_id: &str,
        generation: u32,
        keys: &[Vec<u8>],
    ) -> StoreResult<()> {
        self.inner.kv_delete(actor_id, generation, keys).await
    }
    async fn kv_delete_range(
        &self,
        actor_id: &str,
        generation: u32,
        start: &[u8],
        end: &[u8],
    ) -> StoreResult<()> {
        self.inner
            .kv_delete_range(actor_id, generation, start, end)
            .await
    }
    async fn kv_drop(&self, actor_id: &str, generation: u32) -> StoreResult<()> {
        self.inner.kv_drop(actor_id, generation).await
    }
    async fn sqlite_get_pages(&self, actor_id: &str, pgnos: &[u32]) -> StoreResult<SqliteRead> {
        self.inner.sqlite_get_pages(actor_id, pgnos).await
    }
    async fn sqlite_commit(&self, commit: SqliteCommit) -> StoreResult<u64> {
        self.inner.sqlite_commit(commit).await
    }
    async fn sqlite_stage_begin(
        &self,
        actor_id: &str,
        generation: u32,
        expected_head: u64,
    ) -> StoreResult<u64> {
        self.inner
            .sqlite_stage_begin(actor_id, generation, expected_head)
            .await
    }
    async fn sqlite_stage_segment(&self, segment: SqliteSegment) -> StoreResult<u64> {
        self.inner.sqlite_stage_segment(segment).await
    }
    async fn sqlite_stage_finalize(&self, finalize: SqliteFinalize) -> StoreResult<u64> {
        self.inner.sqlite_stage_finalize(finalize).await
    }
    async fn register_node(
        &self,
        node_id: &str,
        node_url: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<NodeLease> {
        self.inner
            .register_node(node_id, node_url, now_ms, ttl_ms)
            .await
    }
    async fn renew_node(
        &self,
        node: &NodeLease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<Option<NodeLease>> {
        self.inner.renew_node(node, now_ms, ttl_ms).await
    }
    async fn get_node(&self, node_id: &str) -> StoreResult<Option<NodeLease>> {
        self.inner.get_node(node_id).await
    }
    async fn acquire_lease(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim> {
        self.inner.acquire_lease(actor_id, node, now_ms).await
    }
    async fn release_lease(&self, lease: &Lease) -> StoreResult<bool> {
        self.inner.release_lease(lease).await
    }
    async fn get_lease(&self, actor_id: &str) -> StoreResult<Option<Lease>> {
        self.inner.get_lease(actor_id).await
    }
}
