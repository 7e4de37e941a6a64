//! [`Ctx`], what actor code holds: the actor's identity, its state, vars, connections, events,
//! schedule, KV and lifecycle requests. Also the per-actor data behind it.
//!
//! State is reached through closures (`c.state(|s| ..)`, `c.update(|s| ..)`) rather than
//! guards: nothing can hold the state across an `.await`, and a nested `update` inside
//! `state` on the same thread is a clean panic (caught and answered as an internal error)
//! instead of a deadlock. Other tasks wait for the lock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ciborium::Value;
use futures_util::future::{BoxFuture, FutureExt};
use parking_lot::{Mutex, ReentrantMutex};

use super::args::IntoArgs;
use super::conn::{Conn, ConnOwner, RawSocket};
use super::def::{ActorInfo, ActorState, ActorVars, ConnParams, ConnState, DefInner};
use super::dispatch;
use super::error::{ActorError, SaveError};
use super::hibernate::{conn_key, ConnRecord, MAX_RECORD_BYTES};
use super::host::{Host, SocketId};
use super::persist::{ExtraWrite, Saver, USER_KV_TAG};
use super::runtime::Control;
use super::schedule::{ScheduleStore, ScheduledEvent};

// === Shared ===

/// Everything one running actor instance holds; `Ctx`, `Conn` and the actor task share it.
pub(crate) struct Shared<S, CP, CS, V> {
    pub(crate) info: ActorInfo,
    pub(crate) host: Arc<dyn Host>,
    pub(crate) def: Arc<DefInner<S, CP, CS, V>>,
    pub(crate) state: ReentrantMutex<StateSlot<S>>,
    pub(crate) vars: ReentrantMutex<RefCell<Option<V>>>,
    pub(crate) conns: Mutex<ConnTable<CP, CS>>,
    pub(crate) schedule: ScheduleStore,
    pub(crate) saver: Saver,
    pub(crate) control: Arc<Control>,
    pub(crate) sleep_requested: AtomicBool,
    /// Hibernatable connections whose records changed since last written: what a save
    /// looks at, rather than every connection.
    pub(crate) changed_conns: Mutex<std::collections::HashSet<String>>,
    pub(crate) destroy_requested: AtomicBool,
    pub(crate) weak: Weak<Self>,
}

pub(crate) struct StateSlot<S> {
    pub(crate) value: RefCell<S>,
    /// Set while `on_state_change` runs, when mutating the state is refused.
    pub(crate) in_hook: Cell<bool>,
}

/// The actor's live connections and sockets.
pub(crate) struct ConnTable<CP, CS> {
    pub(crate) by_id: HashMap<String, Conn<CP, CS>>,
    pub(crate) sockets: HashMap<SocketId, SocketEntry<CP, CS>>,
}

impl<CP, CS> Default for ConnTable<CP, CS> {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            sockets: HashMap::new(),
        }
    }
}

pub(crate) enum SocketEntry<CP, CS> {
    /// A `/connect` socket and its connection.
    Connect(Conn<CP, CS>),
    /// A raw `/websocket/...` socket.
    Raw(RawSocket),
}

impl<S, CP, CS, V> Shared<S, CP, CS, V>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    /// Encodes the state for a save.
    pub(crate) fn snapshot(&self) -> Result<Vec<u8>, SaveError> {
        let slot = self.state.lock();
        let value = slot.value.borrow();
        let mut bytes = Vec::new();
        ciborium::into_writer(&*value, &mut bytes)
            .map_err(|error| SaveError::Encode(error.to_string()))?;
        Ok(bytes)
    }

    /// Saves the state now if it changed; durable when this returns.
    pub(crate) async fn save_now(&self) -> Result<(), SaveError> {
        self.save_through(self.saver.version()).await
    }

    /// Returns once change version `need` is saved (see [`Saver::save_through`]).
    pub(crate) async fn save_through(&self, need: u64) -> Result<(), SaveError> {
        self.saver
            .save_through(
                &*self.host,
                &|| self.snapshot(),
                &|b| self.restore(b),
                &|| self.conn_writes(),
                need,
            )
            .await
    }

    /// Whether a hibernatable connection's record changed since it was last written.
    pub(crate) fn conn_records_pending(&self) -> bool {
        let table = self.conns.lock();
        let changed = self.changed_conns.lock();
        changed
            .iter()
            .filter_map(|id| table.by_id.get(id))
            .any(|conn| conn.transport().is_some() && conn.record().needs_write())
    }

    /// The records of hibernatable connections changed since they were last written, to go in
    /// the next save's put. Bounded per save (the put's key and size limits); the rest go
    /// with the next one. (Messages are acknowledged once applied, in `dispatch`.)
    pub(crate) fn conn_writes(&self) -> ExtraWrite {
        const MAX_RECORDS: usize = 100;
        const MAX_BYTES: usize = 512 * 1024;
        let conns: Vec<Conn<CP, CS>> = {
            let table = self.conns.lock();
            let mut changed = self.changed_conns.lock();
            // Connections gone since (disconnected, or handed on at a stop) need nothing.
            changed.retain(|id| table.by_id.contains_key(id));
            changed
                .iter()
                .filter_map(|id| table.by_id.get(id).cloned())
                .collect()
        };
        let mut entries = Vec::new();
        let mut written = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for conn in conns {
            let (version, last_in) = {
                let record = conn.record();
                if !record.needs_write() {
                    continue;
                }
                (record.version, record.last_in)
            };
            if entries.len() == MAX_RECORDS || bytes >= MAX_BYTES {
                more = true;
                break;
            }
            let Some(transport) = conn.transport() else {
                continue;
            };
            let state = conn.state(|state| {
                let mut out = Vec::new();
                ciborium::into_writer(state, &mut out).map(|()| out)
            });
            let encoded = state.map_err(|e| e.to_string()).and_then(|state| {
                ConnRecord::new(
                    conn.id().to_owned(),
                    transport.socket,
                    transport.encoding,
                    conn.params_json().map(str::to_owned),
                    state,
                    conn.subscriptions(),
                    last_in,
                )
                .encode()
            });
            match encoded {
                Ok(record) if record.len() <= MAX_RECORD_BYTES => {
                    bytes += record.len();
                    entries.push((conn_key(conn.id()), record));
                    written.push((conn, version));
                }
                Ok(record) => {
                    tracing::error!(conn_id = %conn.id(), bytes = record.len(), limit = MAX_RECORD_BYTES, "connection state too large to keep; the connection will be closed at the next stop");
                    conn.record().unstorable = true;
                }
                Err(error) => {
                    tracing::error!(conn_id = %conn.id(), %error, "connection state not serializable; the connection will be closed at the next stop");
                    conn.record().unstorable = true;
                }
            }
        }
        if more {
            self.saver.mark_dirty();
        }
        if written.is_empty() {
            return ExtraWrite::default();
        }
        let shared = self.weak.clone();
        ExtraWrite {
            entries,
            written: Some(Box::new(move || {
                let shared = shared.upgrade();
                for (conn, version) in written {
                    let mut record = conn.record();
                    record.written = record.written.max(version);
                    let clean = record.written == record.version;
                    drop(record);
                    if let (true, Some(shared)) = (clean, &shared) {
                        shared.changed_conns.lock().remove(conn.id());
                    }
                }
            })),
        }
    }

    /// Puts an encoded state back (a rollback); returns the change version it stands at.
    pub(crate) fn restore(&self, encoded: &[u8]) -> Result<u64, SaveError> {
        let state: S = ciborium::from_reader(encoded)
            .map_err(|error| SaveError::Encode(format!("saved state does not decode: {error}")))?;
        let slot = self.state.lock();
        *slot.value.borrow_mut() = state;
        Ok(self.saver.version())
    }

    /// Whether any client keeps the actor awake: a raw socket, or a `/connect` socket that
    /// is not hibernatable. Hibernatable ones do not; the gateway holds them while it sleeps.
    pub(crate) fn has_sockets(&self) -> bool {
        self.conns.lock().sockets.values().any(|entry| match entry {
            SocketEntry::Connect(conn) => !conn.is_hibernatable(),
            SocketEntry::Raw(_) => true,
        })
    }
}

impl<S, CP, CS, V> ConnOwner for Shared<S, CP, CS, V>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    fn disconnect_conn(&self, conn_id: String, reason: String) -> BoxFuture<'static, ()> {
        let weak = self.weak.clone();
        async move {
            if let Some(shared) = weak.upgrade() {
                dispatch::disconnect_by_id(&shared, &conn_id, &reason).await;
            }
        }
        .boxed()
    }

    fn conn_changed(&self, conn_id: &str, save: bool) {
        self.changed_conns.lock().insert(conn_id.to_owned());
        if save {
            self.saver.mark_dirty();
        }
    }
}

// === Ctx ===

/// The context actor code runs with. Cheap to clone; clones may be moved into spawned tasks.
pub struct Ctx<S, CP = serde_json::Value, CS = (), V = ()> {
    pub(crate) shared: Arc<Shared<S, CP, CS, V>>,
    pub(crate) conn: Option<Conn<CP, CS>>,
}

impl<S, CP, CS, V> Clone for Ctx<S, CP, CS, V> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            conn: self.conn.clone(),
        }
    }
}

impl<S, CP, CS, V> std::fmt::Debug for Ctx<S, CP, CS, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("actor_id", &self.shared.info.actor_id)
            .finish_non_exhaustive()
    }
}

/// Resets the `on_state_change` flag even if the hook panics.
struct HookFlag<'a>(&'a Cell<bool>);

impl Drop for HookFlag<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<S, CP, CS, V> Ctx<S, CP, CS, V>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    pub(crate) fn new(shared: Arc<Shared<S, CP, CS, V>>, conn: Option<Conn<CP, CS>>) -> Self {
        Self { shared, conn }
    }

    /// Actor id.
    pub fn actor_id(&self) -> &str {
        &self.shared.info.actor_id
    }

    /// Actor type name.
    pub fn name(&self) -> &str {
        &self.shared.info.name
    }

    /// Canonical key string, if the actor has a key.
    pub fn key(&self) -> Option<&str> {
        self.shared.info.key.as_deref()
    }

    /// Generation this instance runs as.
    pub fn generation(&self) -> u32 {
        self.shared.info.generation
    }

    /// Identity of the actor.
    pub fn info(&self) -> &ActorInfo {
        &self.shared.info
    }

    /// Reads the state.
    pub fn state<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        let slot = self.shared.state.lock();
        let value = slot.value.borrow();
        f(&value)
    }

    /// Changes the state. It is saved automatically (throttled by
    /// `ActorOptions::state_save_interval`), and `on_state_change` runs afterwards.
    ///
    /// # Panics
    /// Inside `on_state_change`, or nested in `state`/`update` on the same thread.
    pub fn update<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        let slot = self.shared.state.lock();
        assert!(
            !slot.in_hook.get(),
            "state mutations are not allowed inside on_state_change"
        );
        let result = {
            let mut value = slot.value.borrow_mut();
            f(&mut value)
        };
        self.shared.saver.mark_dirty();
        if let Some(hook) = &self.shared.def.on_state_change {
            slot.in_hook.set(true);
            let _flag = HookFlag(&slot.in_hook);
            let value = slot.value.borrow();
            hook(self, &value);
        }
        result
    }

    /// Uses the ephemeral vars (not persisted; built by `create_vars` on every start).
    ///
    /// # Panics
    /// Before the vars exist (in `create_state`/`on_create`), or if the actor declares vars
    /// but no `vars` closure.
    pub fn vars<R>(&self, f: impl FnOnce(&mut V) -> R) -> R {
        let guard = self.shared.vars.lock();
        let mut vars = guard.borrow_mut();
        match vars.as_mut() {
            Some(vars) => f(vars),
            None => panic!("actor vars are not available yet; they are created after on_create"),
        }
    }

    /// The connection that called the current action or hook, if any (none in lifecycle
    /// hooks and scheduled actions).
    pub fn conn(&self) -> Option<&Conn<CP, CS>> {
        self.conn.as_ref()
    }

    /// Every live connection, including those of in-flight HTTP actions.
    pub fn conns(&self) -> Vec<Conn<CP, CS>> {
        self.shared.conns.lock().by_id.values().cloned().collect()
    }

    /// Sends an event to every connection that subscribed to it.
    pub fn broadcast(&self, name: &str, args: impl IntoArgs) {
        let args = match args.into_args() {
            Ok(args) => Value::Array(args),
            Err(error) => {
                tracing::error!(event = name, %error, "event arguments are not serializable");
                return;
            }
        };
        for conn in self.conns() {
            if conn.is_subscribed(name) {
                conn.send_event(name, args.clone());
            }
        }
    }

    /// Schedules actions on this actor.
    pub fn schedule(&self) -> Schedule<'_> {
        Schedule {
            host: &*self.shared.host,
            store: &self.shared.schedule,
            control: &self.shared.control,
            max: self.shared.def.options.max_schedules,
        }
    }

    /// Saves the state now; durable when this returns `Ok`.
    pub async fn save_state(&self) -> Result<(), ActorError> {
        self.shared.save_now().await.map_err(ActorError::from)
    }

    /// Asks to go to sleep; the actor stops (running `on_sleep`) shortly after.
    pub fn sleep(&self) {
        if !self.shared.sleep_requested.swap(true, Ordering::SeqCst) {
            self.shared.host.request_sleep();
        }
    }

    /// Asks to be destroyed; the actor stops (running `on_destroy`) and its data is deleted.
    pub fn destroy(&self) {
        if !self.shared.destroy_requested.swap(true, Ordering::SeqCst) {
            self.shared.host.request_destroy();
        }
    }

    /// The actor's own key-value store.
    pub fn kv(&self) -> Kv<'_> {
        Kv {
            host: &*self.shared.host,
        }
    }

    /// Wall-clock time in ms since the epoch, as the host sees it.
    pub fn now_ms(&self) -> i64 {
        self.shared.host.now_ms()
    }
}

// === Schedule ===

/// Schedules actions of this actor to run later, durably (see `ctx.schedule()`).
pub struct Schedule<'a> {
    host: &'a dyn Host,
    store: &'a ScheduleStore,
    control: &'a Control,
    max: usize,
}

impl Schedule<'_> {
    /// Runs `action` with `args` after `delay`; returns the schedule id.
    pub async fn after(
        &self,
        delay: Duration,
        action: &str,
        args: impl IntoArgs,
    ) -> Result<String, ActorError> {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let at_ms = self.host.now_ms().saturating_add(delay_ms);
        self.at(at_ms, action, args).await
    }

    /// Runs `action` with `args` at `at_ms` (ms since the epoch); returns the schedule id.
    pub async fn at(
        &self,
        at_ms: i64,
        action: &str,
        args: impl IntoArgs,
    ) -> Result<String, ActorError> {
        let args = args.into_args().map_err(|error| {
            ActorError::internal(format!("scheduled action arguments: {error}"))
        })?;
        let id = self
            .store
            .add(self.host, at_ms, action, args, self.max)
            .await?;
        // The actor task sleeps until the earliest due time it knew of; let it look again.
        self.control.wake();
        Ok(id)
    }

    /// Cancels a pending action; `false` if none has this id.
    pub async fn cancel(&self, id: &str) -> Result<bool, ActorError> {
        let cancelled = self.store.cancel(self.host, id).await?;
        self.control.wake();
        Ok(cancelled)
    }

    /// The pending actions, earliest first.
    pub fn list(&self) -> Vec<ScheduledEvent> {
        self.store.list()
    }
}

// === Kv ===

/// The actor's own key-value store, kept apart from the runtime's keys. Durable once a call
/// returns `Ok`.
pub struct Kv<'a> {
    host: &'a dyn Host,
}

fn user_key(key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(key.len() + 1);
    full.push(USER_KV_TAG);
    full.extend_from_slice(key);
    full
}

impl Kv<'_> {
    /// Reads one key.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ActorError> {
        let values = self.host.kv_get(vec![user_key(key)]).await?;
        Ok(values.into_iter().next().flatten())
    }

    /// Writes one key.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), ActorError> {
        self.host
            .kv_put(vec![(user_key(key), value.to_vec())])
            .await?;
        Ok(())
    }

    /// Deletes one key.
    pub async fn delete(&self, key: &[u8]) -> Result<(), ActorError> {
        self.host.kv_delete(vec![user_key(key)]).await?;
        Ok(())
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub async fn list_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ActorError> {
        let entries = self.host.kv_list_prefix(user_key(prefix)).await?;
        Ok(entries
            .into_iter()
            .map(|(mut key, value)| {
                key.remove(0);
                (key, value)
            })
            .collect())
    }
}
