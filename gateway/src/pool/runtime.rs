//! The pools this node invokes, as live objects: each stored config parsed once into a
//! platform adapter, a bound on the actors it runs at once, and what went wrong last.
//!
//! Placement asks [`Pools::invoked`] for an actor's pool on every wake. The answer is cached
//! for [`CONFIG_TTL`], so a wake costs no store read while a pool is in use, and a changed
//! config reaches every node within that time (at once on the node that stored it). A pool
//! keeps its slots across config changes to the same platform, so actors running under the
//! old config still count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rivulet_adapters::http::HttpPlatform;
use rivulet_adapters::lambda::LambdaPlatform;
use rivulet_adapters::process::ProcessPlatform;
use rivulet_adapters::{AdapterError, Platform};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Invoked, Platform as PlatformKind, PoolKind, Target, VERCEL_MAX_BODY_BYTES};
use crate::store::{Store, StoreResult};
use crate::util::now_ms;

/// How long a pool's config is trusted before it is read again.
pub const CONFIG_TTL: Duration = Duration::from_secs(5);
/// First and longest wait after a failed invocation before the pool is tried again.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A pool the gateway invokes.
pub struct InvokedPool {
    /// Pool name.
    pub name: String,
    /// Its namespace's name, as runners are told it.
    pub namespace: String,
    /// Lifespan, drain grace, concurrency and target.
    pub config: Invoked,
    /// The adapter.
    pub platform: Arc<dyn Platform>,
    slots: Arc<Semaphore>,
    state: Mutex<Health>,
    /// Invocations started, for metrics and tests.
    pub invocations: AtomicU64,
    /// Milliseconds requests were open, summed as each ends (what a per-second platform
    /// bills, as the gateway sees it).
    pub request_ms: AtomicU64,
    /// Actors waiting for a slot, in no order (each retries placement); at most
    /// `max_actors` of them, so the queue is bounded by the pool's own size. The count is
    /// of the actor's live [`QueueSpot`]s: a retry's new spot replaces the old one.
    waiting: Mutex<HashMap<String, usize>>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// An actor's place in its pool's queue; leaving (drop) frees it.
pub struct QueueSpot {
    pool: Arc<InvokedPool>,
    actor_id: String,
}

impl Drop for QueueSpot {
    fn drop(&mut self) {
        let mut waiting = self.pool.waiting.lock();
        if let Some(spots) = waiting.get_mut(&self.actor_id) {
            *spots -= 1;
            if *spots == 0 {
                waiting.remove(&self.actor_id);
            }
        }
    }
}

/// What the pool's last invocations said.
#[derive(Default)]
struct Health {
    /// The last failure: its code, message and when (ms since the epoch).
    last_error: Option<(String, String, i64)>,
    /// Failures in a row since the last success.
    failures: u32,
    /// No invocation before this.
    retry_at: Option<Instant>,
    /// When `/metadata` is next polled (URL pools).
    next_poll: Option<Instant>,
    /// The last metadata poll failed.
    metadata_failing: bool,
}

/// Why a pool cannot take an actor now.
pub enum Busy {
    /// Every slot is taken: the actor waits for one, in the pool's queue.
    Full(QueueSpot),
    /// Every slot is taken and the queue is as long as the pool is large.
    QueueFull {
        /// Slots, and places in the queue.
        max_actors: u64,
    },
    /// The last invocation failed; the pool is tried again after a backoff. The failure's
    /// code and message, to name to waiting clients.
    BackingOff {
        /// `serverless.{code}`.
        code: String,
        /// What failed.
        message: String,
    },
}

impl InvokedPool {
    /// Takes a slot for one invocation of `actor_id`, unless the pool is full (the actor
    /// joins the queue, or is refused if the queue is full too) or backing off.
    pub fn try_acquire(self: &Arc<Self>, actor_id: &str) -> Result<OwnedSemaphorePermit, Busy> {
        {
            let health = self.state.lock();
            if let Some(at) = health.retry_at {
                if Instant::now() < at {
                    let (code, message, _) = health.last_error.clone().unwrap_or_default();
                    return Err(Busy::BackingOff { code, message });
                }
            }
        }
        let mut waiting = self.waiting.lock();
        // Actors already waiting go first: a newcomer takes a free slot only when nobody
        // waits for one.
        let may_take = waiting.is_empty() || waiting.contains_key(actor_id);
        let permit = if may_take {
            self.slots.clone().try_acquire_owned().ok()
        } else {
            None
        };
        match permit {
            Some(permit) => {
                waiting.remove(actor_id);
                Ok(permit)
            }
            None => {
                let max = usize::try_from(self.config.max_actors).unwrap_or(usize::MAX);
                if !waiting.contains_key(actor_id) && waiting.len() >= max {
                    return Err(Busy::QueueFull {
                        max_actors: self.config.max_actors,
                    });
                }
                *waiting.entry(actor_id.to_owned()).or_insert(0) += 1;
                Err(Busy::Full(QueueSpot {
                    pool: self.clone(),
                    actor_id: actor_id.to_owned(),
                }))
            }
        }
    }

    /// Actors waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().len()
    }

    /// A slot for a standby request, only if one is free now with nobody waiting and the
    /// platform not backing off: a standby is an optimisation and never delays a start.
    pub fn try_acquire_spare(&self) -> Option<OwnedSemaphorePermit> {
        if self
            .state
            .lock()
            .retry_at
            .is_some_and(|at| Instant::now() < at)
        {
            return None;
        }
        let waiting = self.waiting.lock();
        if !waiting.is_empty() {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Records that the platform took an invocation.
    pub fn succeeded(&self) {
        let mut health = self.state.lock();
        health.failures = 0;
        health.retry_at = None;
    }

    /// Records a failed invocation and backs off (doubling, jittered, capped; at least what
    /// the platform asked for).
    pub fn failed(&self, err: &AdapterError) {
        let mut health = self.state.lock();
        health.failures = health.failures.saturating_add(1);
        let exp = health.failures.saturating_sub(1).min(16);
        let base = BACKOFF_MIN.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.2);
        let mut wait = base + jitter;
        if let rivulet_adapters::ErrorKind::Throttled {
            retry_after: Some(asked),
        } = err.kind
        {
            wait = wait.max(asked);
        }
        health.retry_at = Some(Instant::now() + wait);
        health.last_error = Some((err.code().to_owned(), err.message.clone(), now_ms()));
    }

    /// The last failure, for `GET /runner-configs`: code, message and time.
    pub fn last_error(&self) -> Option<(String, String, i64)> {
        self.state.lock().last_error.clone()
    }

    /// If the pool's `/metadata` is due for a poll, marks it polled and returns its base URL.
    pub fn take_metadata_poll(&self) -> Option<String> {
        let Target::Http {
            url, metadata_poll, ..
        } = &self.config.target
        else {
            return None;
        };
        let mut health = self.state.lock();
        let now = Instant::now();
        if health.next_poll.is_some_and(|at| now < at) {
            return None;
        }
        health.next_poll = Some(now + *metadata_poll);
        Some(url.clone())
    }

    /// Records a good metadata answer; returns whether it failed before.
    pub fn metadata_ok(&self) -> bool {
        std::mem::take(&mut self.state.lock().metadata_failing)
    }

    /// Records a failed metadata poll as the pool's last error; returns whether it is new
    /// (so it is logged once, not at every poll).
    pub fn metadata_failed(&self, code: &str, message: &str) -> bool {
        let mut health = self.state.lock();
        let new = !health.metadata_failing;
        health.metadata_failing = true;
        health.last_error = Some((format!("metadata_{code}"), message.to_owned(), now_ms()));
        new
    }

    /// Actors running or starting on the pool now.
    pub fn in_use(&self) -> u64 {
        self.config
            .max_actors
            .saturating_sub(self.slots.available_permits() as u64)
    }
}

/// Every invoked pool this node has looked at.
pub struct Pools {
    entries: Mutex<HashMap<(String, String), Entry>>,
    namespaces: Mutex<HashMap<String, String>>,
    metrics: Arc<crate::metrics::Metrics>,
}

struct Entry {
    read_at: Instant,
    pool: Option<Arc<InvokedPool>>,
}

impl Pools {
    /// No pool looked at yet; invocations are counted in `metrics`.
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            entries: Mutex::default(),
            namespaces: Mutex::default(),
            metrics,
        }
    }

    /// The pool `name` of the namespace if the gateway invokes it, `None` if its runners
    /// connect by themselves (a `normal` pool, or no config at all).
    pub async fn invoked(
        &self,
        store: &dyn Store,
        namespace_id: &str,
        name: &str,
    ) -> StoreResult<Option<Arc<InvokedPool>>> {
        let key = (namespace_id.to_owned(), name.to_owned());
        if let Some(entry) = self.entries.lock().get(&key) {
            if entry.read_at.elapsed() < CONFIG_TTL {
                return Ok(entry.pool.clone());
            }
        }
        let stored = store.get_runner_config(namespace_id, name).await?;
        let namespace = self.namespace_name(store, namespace_id).await?;
        let config = stored.and_then(|record| match super::from_stored(&record.config) {
            Ok(config) => Some(config),
            Err(err) => {
                tracing::warn!(pool = name, error = %err.message, "stored runner config does not parse; treating it as normal");
                None
            }
        });
        let previous = self.entries.lock().get(&key).and_then(|e| e.pool.clone());
        let pool = match config.map(|c| c.kind) {
            Some(PoolKind::Invoked(invoked)) => Some(match previous {
                // Unchanged: keep the live object, its slots and its health.
                Some(prev) if prev.config == invoked => prev,
                _ => Arc::new(build(name, &namespace, invoked, self.metrics.clone())),
            }),
            _ => None,
        };
        self.entries.lock().insert(
            key,
            Entry {
                read_at: Instant::now(),
                pool: pool.clone(),
            },
        );
        Ok(pool)
    }

    /// Forgets what is cached about a pool (its config was just changed on this node).
    pub fn forget(&self, namespace_id: &str, name: &str) {
        self.entries
            .lock()
            .remove(&(namespace_id.to_owned(), name.to_owned()));
    }

    /// The live pools and their namespaces, for the metadata poller.
    pub fn live_with_namespace(&self) -> Vec<(String, Arc<InvokedPool>)> {
        self.entries
            .lock()
            .iter()
            .filter_map(|((ns, _), e)| e.pool.clone().map(|p| (ns.clone(), p)))
            .collect()
    }

    /// The live pool this node holds for `name`, if it invoked it lately (status only: no
    /// store read).
    pub fn cached(&self, namespace_id: &str, name: &str) -> Option<Arc<InvokedPool>> {
        self.entries
            .lock()
            .get(&(namespace_id.to_owned(), name.to_owned()))
            .and_then(|e| e.pool.clone())
    }

    /// What `GET /runner-configs` shows of a pool this node invokes: actors it runs now,
    /// requests started, and the last failure.
    pub fn status(&self, namespace_id: &str, name: &str) -> Option<serde_json::Value> {
        let pool = self.cached(namespace_id, name)?;
        let last_error = pool.last_error().map(|(code, message, ts)| {
            serde_json::json!({ "code": format!("serverless.{code}"), "message": message, "ts": ts })
        });
        Some(serde_json::json!({
            "actors_running": pool.in_use(),
            "actors_waiting": pool.waiting(),
            "invocations": pool.invocations.load(Ordering::Relaxed),
            "request_seconds": pool.request_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            "last_error": last_error,
        }))
    }

    async fn namespace_name(&self, store: &dyn Store, namespace_id: &str) -> StoreResult<String> {
        if let Some(name) = self.namespaces.lock().get(namespace_id) {
            return Ok(name.clone());
        }
        let all = store.list_namespaces().await?;
        let mut map = self.namespaces.lock();
        for ns in all {
            map.insert(ns.namespace_id.clone(), ns.name.clone());
        }
        Ok(map
            .get(namespace_id)
            .cloned()
            .unwrap_or_else(|| namespace_id.to_owned()))
    }
}

fn build(
    name: &str,
    namespace: &str,
    config: Invoked,
    metrics: Arc<crate::metrics::Metrics>,
) -> InvokedPool {
    let platform: Arc<dyn Platform> = match &config.target {
        Target::Http {
            url,
            headers,
            platform,
            ..
        } => {
            let max_body = (*platform == PlatformKind::Vercel).then_some(VERCEL_MAX_BODY_BYTES);
            let http = HttpPlatform::new(url, headers.clone(), max_body);
            Arc::new(match platform {
                PlatformKind::CloudRun => {
                    http.with_id_tokens(rivulet_adapters::gcp::IdTokens::shared())
                }
                _ => http,
            })
        }
        Target::Process { command, env } => Arc::new(ProcessPlatform::new(command, env.clone())),
        Target::Lambda {
            function,
            qualifier,
            region,
        } => Arc::new(LambdaPlatform::new(
            function,
            qualifier.clone(),
            region.clone(),
        )),
    };
    let slots = usize::try_from(config.max_actors)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    InvokedPool {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        config,
        platform,
        slots: Arc::new(Semaphore::new(slots)),
        state: Mutex::new(Health::default()),
        invocations: AtomicU64::new(0),
        request_ms: AtomicU64::new(0),
        waiting: Mutex::new(HashMap::new()),
        metrics,
    }
}

impl InvokedPool {
    /// Counts an invocation.
    pub fn count_invocation(&self) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the end of one request: how it ended (`finished`, `ended_early`, `unused`, or
    /// the failure's code) and how long it was open.
    pub fn count_request_end(&self, outcome: &str, open: std::time::Duration) {
        let ms = u64::try_from(open.as_millis()).unwrap_or(u64::MAX);
        self.request_ms.fetch_add(ms, Ordering::Relaxed);
        self.metrics
            .invocations
            .with_label_values(&[&self.name, outcome])
            .inc();
        self.metrics
            .request_seconds
            .with_label_values(&[&self.name])
            .inc_by(open.as_secs_f64());
    }
}
