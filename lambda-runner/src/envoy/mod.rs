//! The runner side of envoy protocol v8: one WebSocket to the gateway that carries actor
//! commands and events, KV requests and tunnelled client traffic, kept alive across
//! reconnects and gateway restarts.
//!
//! # API
//!
//! ```text
//! EnvoyConfig::new(endpoint) -> EnvoyConfig            // pub fields; defaults in config.rs
//! EnvoyClient::connect(config, Arc<dyn EnvoyHandler>, CancellationToken)
//!     -> Result<EnvoyClient, EnvoyError>                // returns once the gateway sent init
//! trait EnvoyHandler {                                  // the runtime's side
//!     async fn start_actor(&self, EnvoyClient, ActorStart);
//!     async fn stop_actor(&self, EnvoyClient, actor_id: String, generation: u32, StopActorReason);
//!     async fn tunnel(&self, EnvoyClient, ToEnvoyTunnelMessage);
//! }
//! // events (never block; Err(ActorNotRunning) for a generation not running here)
//! client.actor_running(actor_id, generation) -> Result<(), EnvoyError>
//! client.actor_stopped(actor_id, generation, error: Option<String>) -> Result<(), EnvoyError>
//! client.set_alarm(actor_id, generation, at_ms: Option<i64>) -> Result<(), EnvoyError>
//! client.intent_sleep(actor_id, generation) / intent_stop(..) -> Result<(), EnvoyError>
//! // KV (generation: Some(g) fences the call to a generation running here)
//! client.kv_get(actor_id, generation, keys) -> Result<Vec<KvEntry>, EnvoyError>
//! client.kv_list(actor_id, generation, ListQuery, reverse, limit) -> Result<Vec<KvEntry>, _>
//! client.kv_put(actor_id, generation, Vec<(key, value)>) -> Result<(), _>
//! client.kv_delete(actor_id, generation, keys) / kv_delete_range(.., start, end) / kv_drop(..)
//! // tunnel, status, shutdown
//! client.tunnel_send(ToRivetTunnelMessage) -> Result<(), EnvoyError>
//! client.inject_commands(Vec<CommandWrapper>)          // a serverless request's start command
//! client.envoy_key() -> &str; client.is_connected() -> bool;
//! client.ended().await -> EnvoyError                  // the client ended by itself (evicted)
//! client.protocol_metadata() -> Option<ProtocolMetadata>
//! client.shutdown().await
//! ```
//!
//! # Semantics
//!
//! - **Connect**: `ws(s)://{endpoint}/envoys/connect?protocol_version=8&namespace=…&envoy_key=…&version=…&pool_name=…`
//!   with subprotocols `rivet` and `rivet_token.{token}`. `ToRivetMetadata` (actor names,
//!   metadata) goes out right after the upgrade, before init. `connect` retries until
//!   `connect_timeout`, except when the gateway refuses (close reason `code#detail`, e.g.
//!   `ws.unauthorized`) or the endpoint cannot work: those return at once.
//! - **Reconnect**: a lost connection is re-established with the same key, with backoff
//!   from `reconnect_initial` doubling to `reconnect_max` (±20 % jitter), starting over
//!   after every connection that reached init (`ws.going_away` included). The gateway
//!   keeps (or, after its restart, adopts) this envoy's actors, so they keep running.
//!   `ws.eviction` (another process took the key) ends the client: its actors get a
//!   `Lost` stop and calls fail with `Evicted`. Disconnected past the gateway's lost
//!   threshold (from init, 15 s), the envoy stops its actors with
//!   `StopActorReason::Lost`, since the gateway has given up on them.
//! - **Events** are numbered from 0 per (actor, generation), kept until the gateway
//!   acknowledges them and replayed at the start of every connection (the gateway drops
//!   duplicates). Histories of stopped generations are kept for the last 1024 generations,
//!   so a gateway restarted before storing a stop still learns of it.
//! - **Commands** are acknowledged after each batch with the highest index per (actor,
//!   generation). Replays after a reconnect are recognised by index and only acknowledged.
//!   The handler sees `start_actor` and at most one `stop_actor` per generation, in order.
//! - **Pings** are answered with a pong echoing `ts` ahead of other queued frames. Nothing
//!   received for `silence_timeout` means the connection is dead; it is replaced.
//! - **KV**: requests are matched to answers by id; at most `max_in_flight_kv` await an
//!   answer (more fail at once with `Overloaded`), each within `kv_timeout`. Requests made
//!   while disconnected wait for the next connection. Requests in flight when a connection
//!   drops are **re-sent** on the next connection, in their original order and with their
//!   ids: every KV operation is idempotent (put of the same values, delete, get, list).
//!   A request fenced to a generation that stopped or was lost meanwhile fails with
//!   `ActorNotRunning` instead. Past the lost threshold all fail with `Lost`.
//! - **Tunnel**: incoming messages go to `EnvoyHandler::tunnel` in order through a queue of
//!   `max_pending_tunnel_messages`; when it is full, or the message starts a request for an
//!   actor not running here, the envoy answers itself (HTTP 503 with a JSON error, or
//!   WebSocket close 1011). Outgoing messages queue (across reconnects) up to
//!   `max_queued_tunnel_messages`; beyond it `tunnel_send` fails with `Overloaded` and the
//!   message is not sent. Payloads over the gateway's `maxResponsePayloadSize` fail with
//!   `TooLarge`. Callers number their messages as RivetKit does: a WebSocket open is 0 and data messages count from 1 per
//!   request, an ack carries the acknowledged index, a close carries 0.
//! - **Shutdown**: `shutdown` sends `ToRivetStopping`; the gateway stops each actor
//!   (`GoingAway`) through the handler. It waits up to `shutdown_timeout` for all of them to
//!   report stopped (past it, the rest get a local `GoingAway` stop and a short grace),
//!   flushes what is queued, closes with 1000 `envoy.shutdown` and ends every task. The
//!   cancel token given to `connect` ends everything at once instead (no goodbye; the
//!   gateway counts the envoy lost after its threshold). Dropping the client does neither.
//!
//! # Layout
//! - `config`: [`EnvoyConfig`], URL and subprotocols.
//! - `handler`: [`EnvoyHandler`], [`ActorStart`].
//! - `state`: what the envoy remembers (events, checkpoints, KV table, outbox), no I/O.
//! - `conn`: the connection loop: handshake, reader, writer, reconnects.
//! - `kv`: KV types ([`KvEntry`], [`ListQuery`]).
//! - `error`: [`EnvoyError`].

mod config;
mod conn;
mod error;
mod handler;
mod kv;
mod state;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rivulet_wire::envoy::{
    ActorIntent, ActorState, ActorStateStopped, Event, EventActorIntent, EventActorSetAlarm,
    EventActorStateUpdate, KvRequestData, KvResponseData, ProtocolMetadata, StopActorReason,
    StopCode, ToEnvoyTunnelMessage, ToRivetTunnelMessage, ToRivetTunnelMessageKind,
};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use config::EnvoyConfig;
pub use error::EnvoyError;
pub use handler::{ActorStart, EnvoyHandler, StartConfig};
pub use kv::{KvEntry, ListQuery};

use state::{Limits, State};

/// After `shutdown_timeout`, how long stragglers get to stop after a local stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Bound on flushing queued frames and closing during shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// Shared by the client handles and the envoy's tasks.
pub(crate) struct Inner {
    config: EnvoyConfig,
    url: String,
    handler: Arc<dyn EnvoyHandler>,
    state: Mutex<State>,
    /// Wakes the writer: something was queued.
    wake: Notify,
    /// The writer emptied the outbox.
    flushed: Notify,
    /// Ends every task at once.
    cancel: CancellationToken,
    /// A graceful close was asked for: the writer says goodbye, no reconnects follow.
    closing: CancellationToken,
    /// Fired when the connection loop has ended.
    conn_done: CancellationToken,
    tasks: TaskTracker,
    tunnel_tx: mpsc::Sender<ToEnvoyTunnelMessage>,
    connected: AtomicBool,
    conn_seq: AtomicU64,
    lost_threshold_ms: AtomicI64,
    protocol: Mutex<Option<ProtocolMetadata>>,
    /// Generations started and not stopped.
    live: watch::Sender<usize>,
}

impl Inner {
    fn live_changed(&self) {
        let count = self.state.lock().live_count();
        self.live.send_if_modified(|cur| {
            let changed = *cur != count;
            *cur = count;
            changed
        });
    }
}

/// A handle to the envoy connection; cheap to clone. See the module doc for the contract.
#[derive(Clone)]
pub struct EnvoyClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EnvoyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvoyClient")
            .field("envoy_key", &self.inner.config.envoy_key)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl EnvoyClient {
    /// Connects and returns once the gateway has sent init; the connection is then kept up
    /// in the background until [`Self::shutdown`] or `cancel`.
    pub async fn connect(
        config: EnvoyConfig,
        handler: Arc<dyn EnvoyHandler>,
        cancel: CancellationToken,
    ) -> Result<EnvoyClient, EnvoyError> {
        config.validate()?;
        let url = config.connect_url()?;
        let (tunnel_tx, tunnel_rx) = mpsc::channel(config.max_pending_tunnel_messages);
        let limits = Limits {
            in_flight_kv: config.max_in_flight_kv,
            queued_tunnel: config.max_queued_tunnel_messages,
        };
        let span = tracing::info_span!("envoy", envoy_key = %config.envoy_key);
        let connect_timeout = config.connect_timeout;
        let inner = Arc::new(Inner {
            config,
            url,
            handler,
            state: Mutex::new(State::new(limits)),
            wake: Notify::new(),
            flushed: Notify::new(),
            cancel: cancel.child_token(),
            closing: CancellationToken::new(),
            conn_done: CancellationToken::new(),
            tasks: TaskTracker::new(),
            tunnel_tx,
            connected: AtomicBool::new(false),
            conn_seq: AtomicU64::new(1),
            lost_threshold_ms: AtomicI64::new(15_000),
            protocol: Mutex::new(None),
            live: watch::channel(0).0,
        });
        let client = EnvoyClient {
            inner: inner.clone(),
        };
        inner
            .tasks
            .spawn(dispatch_tunnel(client.clone(), tunnel_rx).instrument(span.clone()));
        let (ready_tx, ready_rx) = oneshot::channel();
        inner
            .tasks
            .spawn(conn::run(inner.clone(), ready_tx).instrument(span));
        let outcome = match tokio::time::timeout(connect_timeout, ready_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EnvoyError::Shutdown),
            Err(_) => Err(EnvoyError::Timeout("connecting to the gateway")),
        };
        match outcome {
            Ok(()) => Ok(client),
            Err(err) => {
                inner.cancel.cancel();
                inner.state.lock().close(EnvoyError::Shutdown);
                inner.tasks.close();
                Err(err)
            }
        }
    }

    /// Resolves when the client ended by itself, with the reason: another process connected
    /// with this key (`Evicted`). Pending while it is connected or reconnecting.
    pub async fn ended(&self) -> EnvoyError {
        self.inner.conn_done.cancelled().await;
        self.inner
            .state
            .lock()
            .closed()
            .cloned()
            .unwrap_or(EnvoyError::Shutdown)
    }

    /// The key this envoy connects with.
    pub fn envoy_key(&self) -> &str {
        &self.inner.config.envoy_key
    }

    /// Whether a connection is up and initialised now.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// What the gateway announced in its last init (thresholds, payload limit).
    pub fn protocol_metadata(&self) -> Option<ProtocolMetadata> {
        self.inner.protocol.lock().clone()
    }

    // === events ===

    fn event(&self, actor_id: &str, generation: u32, event: Event) -> Result<(), EnvoyError> {
        let result = self
            .inner
            .state
            .lock()
            .record_event(actor_id, generation, event);
        if result.is_ok() {
            self.inner.live_changed();
            self.inner.wake.notify_one();
        }
        result
    }

    /// Reports the generation running: the gateway starts sending it traffic.
    pub fn actor_running(&self, actor_id: &str, generation: u32) -> Result<(), EnvoyError> {
        self.event(
            actor_id,
            generation,
            Event::EventActorStateUpdate(EventActorStateUpdate {
                state: ActorState::ActorStateRunning,
            }),
        )
    }

    /// Reports the generation stopped, cleanly or with an error; it ends here.
    pub fn actor_stopped(
        &self,
        actor_id: &str,
        generation: u32,
        error: Option<String>,
    ) -> Result<(), EnvoyError> {
        let stopped = ActorStateStopped {
            code: if error.is_some() {
                StopCode::Error
            } else {
                StopCode::Ok
            },
            message: error.map(Into::into),
        };
        self.event(
            actor_id,
            generation,
            Event::EventActorStateUpdate(EventActorStateUpdate {
                state: ActorState::ActorStateStopped(stopped),
            }),
        )
    }

    /// Sets (or with `None` clears) the alarm that wakes the actor while it sleeps, in ms
    /// since the epoch.
    pub fn set_alarm(
        &self,
        actor_id: &str,
        generation: u32,
        at_ms: Option<i64>,
    ) -> Result<(), EnvoyError> {
        self.event(
            actor_id,
            generation,
            Event::EventActorSetAlarm(EventActorSetAlarm { alarm_ts: at_ms }),
        )
    }

    /// Asks the gateway to put the actor to sleep (it answers with a stop command).
    pub fn intent_sleep(&self, actor_id: &str, generation: u32) -> Result<(), EnvoyError> {
        self.event(
            actor_id,
            generation,
            Event::EventActorIntent(EventActorIntent {
                intent: ActorIntent::ActorIntentSleep,
            }),
        )
    }

    /// Asks the gateway to stop the actor for good (it answers with a stop command).
    pub fn intent_stop(&self, actor_id: &str, generation: u32) -> Result<(), EnvoyError> {
        self.event(
            actor_id,
            generation,
            Event::EventActorIntent(EventActorIntent {
                intent: ActorIntent::ActorIntentStop,
            }),
        )
    }

    // === KV ===

    async fn kv(
        &self,
        actor_id: &str,
        generation: Option<u32>,
        data: KvRequestData,
    ) -> Result<KvResponseData, EnvoyError> {
        let (tx, rx) = oneshot::channel();
        let id = self
            .inner
            .state
            .lock()
            .kv_insert(actor_id, generation, data, tx)?;
        self.inner.wake.notify_one();
        // Forgets the request however this future ends (answer, timeout, drop).
        struct Forget<'a>(&'a Inner, u32);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.state.lock().kv_forget(self.1);
            }
        }
        let _forget = Forget(&self.inner, id);
        tokio::select! {
            r = rx => r.unwrap_or(Err(EnvoyError::Shutdown)),
            _ = tokio::time::sleep(self.inner.config.kv_timeout) => Err(EnvoyError::Timeout("kv request")),
            _ = self.inner.cancel.cancelled() => Err(EnvoyError::Shutdown),
        }
    }

    /// The entries of those `keys` that exist.
    pub async fn kv_get(
        &self,
        actor_id: &str,
        generation: Option<u32>,
        keys: Vec<Bytes>,
    ) -> Result<Vec<KvEntry>, EnvoyError> {
        kv::entries(self.kv(actor_id, generation, kv::get(keys)).await?)
    }

    /// Entries matching `query`, in key order (descending if `reverse`), at most `limit`
    /// (the gateway's default 16,384 if `None`).
    pub async fn kv_list(
        &self,
        actor_id: &str,
        generation: Option<u32>,
        query: ListQuery,
        reverse: bool,
        limit: Option<u64>,
    ) -> Result<Vec<KvEntry>, EnvoyError> {
        kv::entries(
            self.kv(actor_id, generation, kv::list(query, reverse, limit))
                .await?,
        )
    }

    /// Writes `(key, value)` pairs atomically.
    pub async fn kv_put(
        &self,
        actor_id: &str,
        generation: Option<u32>,
        entries: Vec<(Bytes, Bytes)>,
    ) -> Result<(), EnvoyError> {
        kv::done(
            self.kv(actor_id, generation, kv::put(entries)).await?,
            kv::Expect::Put,
        )
    }

    /// Deletes keys.
    pub async fn kv_delete(
        &self,
        actor_id: &str,
        generation: Option<u32>,
        keys: Vec<Bytes>,
    ) -> Result<(), EnvoyError> {
        kv::done(
            self.kv(actor_id, generation, kv::delete(keys)).await?,
            kv::Expect::Delete,
        )
    }

    /// Deletes the keys from `start` (included) to `end` (excluded).
    pub async fn kv_delete_range(
        &self,
        actor_id: &str,
        generation: Option<u32>,
        start: Bytes,
        end: Bytes,
    ) -> Result<(), EnvoyError> {
        kv::done(
            self.kv(actor_id, generation, kv::delete_range(start, end))
                .await?,
            kv::Expect::Delete,
        )
    }

    /// Deletes every key of the actor.
    pub async fn kv_drop(&self, actor_id: &str, generation: Option<u32>) -> Result<(), EnvoyError> {
        kv::done(
            self.kv(actor_id, generation, KvRequestData::KvDropRequest)
                .await?,
            kv::Expect::Drop,
        )
    }

    /// Handles commands that reached this runner some other way than the connection: the
    /// start command a serverless request carries. They are acknowledged to the gateway like
    /// any other, and the same command arriving over the connection too is recognised as a
    /// duplicate by its checkpoint.
    pub fn inject_commands(&self, commands: Vec<rivulet_wire::envoy::CommandWrapper>) {
        conn::apply_commands(&self.inner, commands);
    }

    // === tunnel ===

    /// Queues a tunnel message for the gateway without waiting; see the module doc for
    /// the bounds.
    pub fn tunnel_send(&self, msg: ToRivetTunnelMessage) -> Result<(), EnvoyError> {
        let size = match &msg.message_kind {
            ToRivetTunnelMessageKind::ToRivetResponseStart(s) => {
                s.body.as_ref().map_or(0, Bytes::len)
            }
            ToRivetTunnelMessageKind::ToRivetResponseChunk(c) => c.body.len(),
            ToRivetTunnelMessageKind::ToRivetWebSocketMessage(m) => m.data.len(),
            ToRivetTunnelMessageKind::ToRivetResponseAbort(_)
            | ToRivetTunnelMessageKind::ToRivetRequestBodyWindowUpdate(_)
            | ToRivetTunnelMessageKind::ToRivetRequestBodyCancel
            | ToRivetTunnelMessageKind::ToRivetWebSocketOpen(_)
            | ToRivetTunnelMessageKind::ToRivetWebSocketMessageAck(_)
            | ToRivetTunnelMessageKind::ToRivetWebSocketClose(_) => 0,
        };
        if let Some(limit) = self
            .protocol_metadata()
            .map(|m| m.max_response_payload_size)
        {
            if u64::try_from(size).unwrap_or(u64::MAX) > limit {
                return Err(EnvoyError::TooLarge { size, limit });
            }
        }
        self.inner.state.lock().push_tunnel(msg)?;
        self.inner.wake.notify_one();
        Ok(())
    }

    // === shutdown ===

    /// Stops gracefully (see the module doc); bounded by `shutdown_timeout` plus a few
    /// seconds. Later calls on the client fail with [`EnvoyError::Shutdown`].
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.state.lock().closed().is_some() {
            // Already finished (evicted, or shut down before): only the tasks are left.
            inner.cancel.cancel();
            inner.tasks.close();
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, inner.tasks.wait()).await;
            return;
        }
        tracing::info!(envoy_key = %inner.config.envoy_key, "envoy shutting down");
        inner.state.lock().begin_shutdown();
        inner.wake.notify_one();
        let mut live = inner.live.subscribe();
        if !all_stopped(&mut live, inner.config.shutdown_timeout).await {
            tracing::warn!(
                remaining = inner.state.lock().live_count(),
                "actors did not stop in time; stopping them here"
            );
            inner.state.lock().stop_all(StopActorReason::GoingAway);
            all_stopped(&mut live, SHUTDOWN_GRACE).await;
        }
        // Their last events (the stops) must leave before the goodbye.
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, async {
            loop {
                let flushed = inner.flushed.notified();
                tokio::pin!(flushed);
                flushed.as_mut().enable();
                {
                    let state = inner.state.lock();
                    if state.is_flushed() || !state.is_connected() {
                        return;
                    }
                }
                inner.wake.notify_one();
                flushed.await;
            }
        })
        .await;
        inner.closing.cancel();
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, inner.conn_done.cancelled()).await;
        inner.state.lock().close(EnvoyError::Shutdown);
        inner.cancel.cancel();
        inner.tasks.close();
        if tokio::time::timeout(SHUTDOWN_FLUSH, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("envoy tasks did not end in time");
        }
        tracing::info!("envoy shut down");
    }
}

/// Waits until no generation runs here; false if `within` passed first.
async fn all_stopped(live: &mut watch::Receiver<usize>, within: Duration) -> bool {
    tokio::time::timeout(within, live.wait_for(|n| *n == 0))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Feeds incoming tunnel messages to the handler, one at a time, in arrival order.
async fn dispatch_tunnel(client: EnvoyClient, mut rx: mpsc::Receiver<ToEnvoyTunnelMessage>) {
    let cancel = client.inner.cancel.clone();
    let handler = client.inner.handler.clone();
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return,
            msg = rx.recv() => match msg {
                Some(msg) => msg,
                None => return,
            },
        };
        tokio::select! {
            // Messages still queued are dropped with the process.
            _ = cancel.cancelled() => return,
            () = handler.tunnel(client.clone(), msg) => {}
        }
    }
}

#[cfg(test)]
mod tests;
