//! Durable state of the gateway behind one trait, so the embedded store (local disk) and the
//! DynamoDB store are interchangeable and pass the same conformance suite
//! (`store::conformance`).
//!
//! Everything a runner writes through the gateway (actor KV, SQLite pages) carries the
//! generation it was started with; every backend checks it against the actor record in the
//! same atomic step as the write, so a zombie runner of an older generation can never
//! overwrite the state of a newer one.
//!
//! # Layout
//! - `types`: the records (namespaces, runner configs, actors, KV entries, pages).
//! - `error`: what a backend can fail with, and whether the caller may retry.
//! - `embedded`: the redb backend used by `rivulet dev` and most tests.
//! - `dynamo`: the DynamoDB backend (one table, MVCC SQLite pages; docs/DYNAMODB.md).
//! - `deadline`: a time limit around every call of any backend.
//! - `conformance`: the behaviour every backend must show, as reusable async test cases.

pub mod conformance;
pub mod deadline;
pub mod dynamo;
pub mod embedded;
mod error;
mod requests;
mod types;

pub use error::StoreError;
pub use requests::RequestCounts;
pub use types::*;

use async_trait::async_trait;

/// Result of every store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Durable storage of everything that must outlive one gateway process.
///
/// Backends are cheap to share (`Arc<dyn Store>`); each method is one atomic step: it either
/// applies fully or not at all, also when the process dies in the middle.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The requests this backend sent so far, by kind (see `requests`).
    fn request_counts(&self) -> std::sync::Arc<RequestCounts>;

    /// The gateway no longer holds this actor in memory (it sleeps and its supervisor
    /// unloaded): whatever the backend remembers of it to save requests can go. Required,
    /// so a wrapper cannot silently drop it.
    fn forget_actor(&self, actor_id: &str);

    // === namespaces ===

    /// Inserts a namespace; fails with `AlreadyExists` if the name is taken.
    async fn create_namespace(&self, ns: Namespace) -> StoreResult<()>;
    /// Looks a namespace up by its name.
    async fn get_namespace(&self, name: &str) -> StoreResult<Option<Namespace>>;
    /// Lists all namespaces, ordered by name.
    async fn list_namespaces(&self) -> StoreResult<Vec<Namespace>>;

    // === runner configs (pools) ===

    /// Creates or replaces the runner config `name` of a namespace.
    async fn put_runner_config(&self, cfg: RunnerConfigRecord) -> StoreResult<()>;
    /// Reads one runner config.
    async fn get_runner_config(
        &self,
        namespace_id: &str,
        name: &str,
    ) -> StoreResult<Option<RunnerConfigRecord>>;
    /// Lists the runner configs of a namespace, ordered by name.
    async fn list_runner_configs(&self, namespace_id: &str)
        -> StoreResult<Vec<RunnerConfigRecord>>;
    /// Deletes a runner config; returns whether it existed.
    async fn delete_runner_config(&self, namespace_id: &str, name: &str) -> StoreResult<bool>;

    // === actor names ===

    /// Records the actor names (with their metadata JSON) a runner announced.
    async fn put_actor_names(
        &self,
        namespace_id: &str,
        names: Vec<(String, String)>,
    ) -> StoreResult<()>;
    /// Lists actor names with their metadata JSON, ordered by name.
    async fn list_actor_names(&self, namespace_id: &str) -> StoreResult<Vec<(String, String)>>;

    // === actors ===

    /// Inserts a new actor and, if it has a key, reserves (namespace, name, key) for it in the
    /// same step. Fails with `KeyTaken { existing_actor_id }` if a live actor holds the key.
    async fn create_actor(&self, actor: ActorRecord) -> StoreResult<()>;
    /// Reads an actor (destroyed actors included).
    async fn get_actor(&self, actor_id: &str) -> StoreResult<Option<ActorRecord>>;
    /// Finds the live actor holding (namespace, name, key).
    async fn get_actor_by_key(
        &self,
        namespace_id: &str,
        name: &str,
        key: &str,
    ) -> StoreResult<Option<ActorRecord>>;
    /// Lists a namespace's actors, optionally of one name, ordered by create time then id.
    async fn list_actors(
        &self,
        namespace_id: &str,
        name: Option<&str>,
        include_destroyed: bool,
        limit: usize,
    ) -> StoreResult<Vec<ActorRecord>>;
    /// Replaces an actor record if its stored `revision` equals `expected_revision`; the stored
    /// revision becomes `expected_revision + 1`. Fails with `Conflict` otherwise. Releasing the
    /// key when `destroy_ts` becomes set happens in the same step.
    async fn update_actor(&self, actor: ActorRecord, expected_revision: u64) -> StoreResult<()>;
    /// Actors whose alarm is due at or before `now_ms`, soonest first, at most `limit`.
    async fn due_alarms(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<ActorRecord>>;
    /// Removes every KV entry and SQLite page of an actor (after destroy).
    async fn clear_actor_data(&self, actor_id: &str) -> StoreResult<()>;

    // === actor KV (fenced by generation) ===

    /// Reads the given keys; missing keys are left out.
    async fn kv_get(&self, actor_id: &str, keys: &[Vec<u8>]) -> StoreResult<Vec<KvEntry>>;
    /// Lists entries in key order (or reverse), at most `limit`.
    async fn kv_list(
        &self,
        actor_id: &str,
        query: KvQuery,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Vec<KvEntry>>;
    /// Writes entries if the actor's generation equals `generation`.
    async fn kv_put(
        &self,
        actor_id: &str,
        generation: u32,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Deletes keys if the actor's generation equals `generation`.
    async fn kv_delete(&self, actor_id: &str, generation: u32, keys: &[Vec<u8>])
        -> StoreResult<()>;
    /// Deletes keys in `[start, end)` if the actor's generation equals `generation`.
    async fn kv_delete_range(
        &self,
        actor_id: &str,
        generation: u32,
        start: &[u8],
        end: &[u8],
    ) -> StoreResult<()>;
    /// Deletes every KV entry if the actor's generation equals `generation`.
    async fn kv_drop(&self, actor_id: &str, generation: u32) -> StoreResult<()>;

    // === SQLite page store (fenced by generation and head txid) ===

    /// Reads pages; a page never written, or past the database size, comes back as `None`.
    async fn sqlite_get_pages(&self, actor_id: &str, pgnos: &[u32]) -> StoreResult<SqliteRead>;
    /// Applies one commit atomically: checks generation and `head_txid == expected_head`, writes
    /// the pages, sets the size (dropping pages past it) and returns the new head
    /// (`expected_head + 1`).
    async fn sqlite_commit(&self, commit: SqliteCommit) -> StoreResult<u64>;
    /// Opens a staged commit: checks generation and head, discards any earlier unfinished stage
    /// and returns the txid the stage will publish as (`head + 1`).
    async fn sqlite_stage_begin(
        &self,
        actor_id: &str,
        generation: u32,
        expected_head: u64,
    ) -> StoreResult<u64>;
    /// Adds one segment to the open stage; segments must come in strictly ascending
    /// `first_pgno`. Returns the bytes staged so far. Nothing staged is readable before
    /// finalize.
    async fn sqlite_stage_segment(&self, segment: SqliteSegment) -> StoreResult<u64>;
    /// Publishes the open stage atomically if `txid == head + 1` and exactly the listed
    /// segments were staged; returns the new head.
    async fn sqlite_stage_finalize(&self, finalize: SqliteFinalize) -> StoreResult<u64>;

    // === leases (several gateway nodes on one store) ===

    /// Registers a process as node `node_id`: a new incarnation (one above the last), alive
    /// until `now_ms + ttl_ms`. A previous incarnation of the same id counts as dead from here.
    async fn register_node(
        &self,
        node_id: &str,
        node_url: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<NodeLease>;
    /// Extends the heartbeat of the caller's incarnation to `now_ms + ttl_ms`; `None` if
    /// another process registered the node id since.
    async fn renew_node(
        &self,
        node: &NodeLease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<Option<NodeLease>>;
    /// Reads a node's registration.
    async fn get_node(&self, node_id: &str) -> StoreResult<Option<NodeLease>>;
    /// Takes an actor's lease for `node` unless another node holds it and is alive at
    /// `now_ms`; a lease of the same node id (an earlier incarnation) is taken back at once.
    /// Every acquisition increases the epoch.
    async fn acquire_lease(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim>;
    /// Gives a held lease up (the epoch stays); returns whether the caller still held it.
    async fn release_lease(&self, lease: &Lease) -> StoreResult<bool>;
    /// Reads an actor's lease, live or expired.
    async fn get_lease(&self, actor_id: &str) -> StoreResult<Option<Lease>>;
}
