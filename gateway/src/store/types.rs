//! Records kept by a [`Store`](super::Store). They serialize to JSON inside the backends so a
//! new optional field never breaks an existing data directory or table.

use serde::{Deserialize, Serialize};

/// A namespace isolates actors, keys and runner configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Opaque id (the engine's id format); what actors and configs refer to.
    pub namespace_id: String,
    /// Unique, user-chosen name (`default` exists from the start).
    pub name: String,
    /// Human-readable name shown in tools.
    pub display_name: String,
    /// Creation time, ms since the epoch.
    pub create_ts: i64,
}

/// A runner config (pool) as the public API stores it: the JSON body of
/// `PUT /runner-configs/{name}`, kept verbatim so unknown fields survive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerConfigRecord {
    /// Namespace the pool belongs to.
    pub namespace_id: String,
    /// Pool name, the `runner_name_selector` actors are created with.
    pub name: String,
    /// The request body, one entry per datacenter.
    pub config: serde_json::Value,
    /// Last change, ms since the epoch.
    pub update_ts: i64,
}

/// What the gateway does with an actor whose runner failed (seeds/000 crash matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CrashPolicy {
    /// Start it again.
    Restart,
    /// Let it sleep until something wakes it (the default).
    #[default]
    Sleep,
    /// Destroy it.
    Destroy,
}

/// One actor, live or destroyed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorRecord {
    /// Opaque id, unique forever.
    pub actor_id: String,
    /// Namespace id.
    pub namespace_id: String,
    /// Actor type name (`counter`, `chat`, …).
    pub name: String,
    /// Serialized key (see `rivulet_wire::key`), unique per (namespace, name) among live actors.
    pub key: Option<String>,
    /// Pool the actor runs on.
    pub runner_name_selector: String,
    /// What to do after a crash.
    pub crash_policy: CrashPolicy,
    /// Input given at creation, as CBOR bytes; delivered with every start.
    pub input: Option<Vec<u8>>,
    /// Creation time, ms since the epoch.
    pub create_ts: i64,
    /// Last time a runner reported it running.
    pub start_ts: Option<i64>,
    /// Since when it waits for a runner, if it does.
    pub pending_allocation_ts: Option<i64>,
    /// Since when it accepts traffic, if it does.
    pub connectable_ts: Option<i64>,
    /// Since when it sleeps, if it does.
    pub sleep_ts: Option<i64>,
    /// Set while it is being rescheduled after a crash.
    pub reschedule_ts: Option<i64>,
    /// When it was destroyed; the key is free again from then on.
    pub destroy_ts: Option<i64>,
    /// Why it last stopped with an error, as the API reports it.
    pub error: Option<serde_json::Value>,
    /// Incremented by every start; fences writes from older runners.
    pub generation: u32,
    /// Runner (envoy key) the current generation was started on, while it runs. A gateway
    /// that restarts uses it to adopt the running actor instead of starting a second copy.
    #[serde(default)]
    pub envoy_key: Option<String>,
    /// The runner process (its `instance`) the current generation was started on, if it
    /// named one: a gateway that restarts adopts the actor only from that same process, not
    /// from a new one that reconnected under the same key.
    #[serde(default)]
    pub envoy_instance: Option<String>,
    /// Durable alarm: when the actor must be woken, ms since the epoch.
    pub alarm_ts: Option<i64>,
    /// Optimistic-concurrency counter, bumped by every `update_actor`.
    pub revision: u64,
}

impl ActorRecord {
    /// Whether the actor has been destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.destroy_ts.is_some()
    }
}

/// Metadata the envoy protocol returns beside each KV value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key bytes.
    pub key: Vec<u8>,
    /// The value bytes.
    pub value: Vec<u8>,
    /// Opaque version of the value (the generation that wrote it, big-endian).
    pub version: Vec<u8>,
    /// When it was written, ms since the epoch.
    pub update_ts: i64,
}

/// Which keys a KV list covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvQuery {
    /// Every key.
    All,
    /// Keys from `start` to `end`; `end` itself only when not `exclusive`.
    Range {
        /// First key.
        start: Vec<u8>,
        /// Last key.
        end: Vec<u8>,
        /// Whether `end` is left out.
        exclusive: bool,
    },
    /// Keys starting with the prefix.
    Prefix(Vec<u8>),
}

/// Pages read from an actor's SQLite store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteRead {
    /// One entry per requested page number, in request order.
    pub pages: Vec<(u32, Option<Vec<u8>>)>,
    /// The head txid the pages belong to (0 before the first commit).
    pub head_txid: u64,
}

/// One single-shot commit of dirty pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteCommit {
    /// Actor whose database it is.
    pub actor_id: String,
    /// Generation of the runner writing.
    pub generation: u32,
    /// Head the writer last saw; the commit applies only if it still is the head.
    pub expected_head: u64,
    /// Pages to write.
    pub pages: Vec<(u32, Vec<u8>)>,
    /// Database size after the commit, in pages.
    pub db_size_pages: u32,
    /// Writer's clock, kept for diagnostics.
    pub now_ms: i64,
}

/// One segment of a staged commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSegment {
    /// Actor whose database it is.
    pub actor_id: String,
    /// Generation of the runner writing.
    pub generation: u32,
    /// The txid `sqlite_stage_begin` returned.
    pub txid: u64,
    /// Identifies the segment; strictly ascending within a stage.
    pub first_pgno: u32,
    /// Pages of the segment.
    pub pages: Vec<(u32, Vec<u8>)>,
}

/// The publication of a staged commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteFinalize {
    /// Actor whose database it is.
    pub actor_id: String,
    /// Generation of the runner writing.
    pub generation: u32,
    /// The txid `sqlite_stage_begin` returned.
    pub txid: u64,
    /// Database size after the commit, in pages.
    pub db_size_pages: u32,
    /// Writer's clock, kept for diagnostics.
    pub now_ms: i64,
    /// The segments the writer believes it staged.
    pub segment_first_pgnos: Vec<u32>,
}

/// One gateway process's claim to its node id: a heartbeat the process renews, and an
/// incarnation that grows with every registration. Actor leases refer to it, so keeping every
/// awake actor owned costs one write per node per renewal, not one per actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLease {
    /// Stable id of the node (`--node-id`).
    pub node_id: String,
    /// Where other nodes forward requests to.
    pub node_url: String,
    /// Grows with every registration: a restarted process fences its previous incarnation.
    pub incarnation: u64,
    /// Unix ms after which the node counts as dead and its actors may be taken over.
    pub expires_ms: i64,
}

impl NodeLease {
    /// Whether the node is alive at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_ms > now_ms
    }
}

/// Which gateway node serves an awake actor: only the holder of a live lease starts, stops or
/// runs the actor; a request landing on another node is forwarded to it. A lease binds other
/// nodes while it is not released and the incarnation of the node it names is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The actor.
    pub actor_id: String,
    /// Stable id of the holding node (`--node-id`).
    pub node_id: String,
    /// Where other nodes forward the actor's requests to.
    pub node_url: String,
    /// Increases with every acquisition, so a holder that lost the lease can never release it.
    pub epoch: u64,
    /// The holder's incarnation when it took the lease.
    pub node_incarnation: u64,
    /// Unix ms after which any node may take the actor over: the holder's heartbeat expiry
    /// while that incarnation is registered and the lease is held, else 0. Derived when read.
    pub expires_ms: i64,
}

impl Lease {
    /// Whether it still binds other nodes at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_ms > now_ms
    }
}

/// Outcome of trying to take a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseClaim {
    /// The caller holds it now.
    Acquired(Lease),
    /// Another node holds a live lease.
    HeldBy(Lease),
}
