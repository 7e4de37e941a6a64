//! One running actor: [`ActorRuntime`], the handle the glue drives, and the task behind it.
//!
//! Each actor runs one task that handles its work one item at a time, so actions, hooks and
//! handlers of one actor never run concurrently (RivetKit's single-threaded model). Work
//! reaches the task two ways:
//!
//! - **The queue** (bounded, `ActorOptions::queue_capacity`, default 1024): HTTP requests,
//!   WebSocket opens and messages. When it is full the caller is refused at once instead of
//!   waiting: an HTTP request gets `actor.overloaded` (503), a WebSocket open gets
//!   [`RuntimeError::Overloaded`] (the glue closes the socket), and a WebSocket message is
//!   dropped and its socket closed with `1011 actor.overloaded` (the client reconnects).
//! - **The control block**, which never refuses: stop, alarm and socket-closed notices. It
//!   holds one stop, one alarm counter and at most one close notice per open socket, so it is
//!   bounded by the number of open sockets. The task looks at it before taking the next queued
//!   item, so a stop overtakes queued work; queued requests are then answered
//!   `actor.stopping` (503) and the gateway retries them on the next instance.
//!
//! The state is saved by a second task (see `persist::Saver`); both stop with the actor.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, ReentrantMutex};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::{Ctx, Shared, StateSlot};
use super::def::{unit_as, ActorInfo, ActorState, ActorVars, ConnParams, ConnState, DefInner};
use super::dispatch;
use super::error::{ActorError, RuntimeError, SaveError, StartError};
use super::hibernate::CONN_TAG;
use super::host::{Host, HttpRequest, HttpResponse, SocketId, StartInfo, StopReason};
use super::persist::{self, Saver};
use super::schedule::ScheduleStore;
use crate::protocol::{ActorSpecifier, Frame};

// === Control ===

/// Signals for the actor task that must never be refused (see the module docs).
pub(crate) struct Control {
    notify: Notify,
    state: Mutex<ControlState>,
    alarm_done: watch::Sender<u64>,
    stop_done: watch::Sender<Option<Result<(), RuntimeError>>>,
}

#[derive(Default)]
struct ControlState {
    stop: Option<StopReason>,
    stopping: bool,
    closes: VecDeque<SocketId>,
    open_sockets: HashSet<SocketId>,
    alarm_requested: u64,
}

impl Control {
    fn new() -> Self {
        Self {
            notify: Notify::new(),
            state: Mutex::new(ControlState::default()),
            alarm_done: watch::channel(0).0,
            stop_done: watch::channel(None).0,
        }
    }

    /// Makes the task look at the control block and its timers again.
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    fn is_stopping(&self) -> bool {
        self.state.lock().stopping
    }

    /// Records a socket the glue offered (or one restored); `false` once the actor is
    /// stopping.
    pub(crate) fn offer_socket(&self, socket: SocketId) -> bool {
        let mut state = self.state.lock();
        if state.stopping {
            return false;
        }
        state.open_sockets.insert(socket);
        true
    }

    /// Whether the glue has not reported the socket closed (and the actor has not closed it).
    pub(crate) fn socket_open(&self, socket: SocketId) -> bool {
        self.state.lock().open_sockets.contains(&socket)
    }

    /// The actor closes a socket itself: it will ignore the glue's notice about it.
    pub(crate) fn forget_socket(&self, socket: SocketId) {
        self.state.lock().open_sockets.remove(&socket);
    }

    /// Queues the close handling of a socket (once; later reports are ignored).
    pub(crate) fn report_closed(&self, socket: SocketId) {
        let mut state = self.state.lock();
        if state.open_sockets.remove(&socket) {
            state.closes.push_back(socket);
            drop(state);
            self.wake();
        }
    }

    fn take_closes(&self) -> Vec<SocketId> {
        self.state.lock().closes.drain(..).collect()
    }

    fn request_alarm(&self) -> u64 {
        let mut state = self.state.lock();
        state.alarm_requested += 1;
        let seq = state.alarm_requested;
        drop(state);
        self.wake();
        seq
    }

    fn alarm_requested(&self) -> u64 {
        self.state.lock().alarm_requested
    }

    /// Records a stop; only the first counts.
    fn request_stop(&self, reason: StopReason) {
        let mut state = self.state.lock();
        if !state.stopping {
            state.stopping = true;
            state.stop = Some(reason);
            drop(state);
            self.wake();
        }
    }

    fn take_stop(&self) -> Option<StopReason> {
        self.state.lock().stop.take()
    }

    fn finish(&self, result: Result<(), RuntimeError>) {
        let mut state = self.state.lock();
        state.stopping = true;
        state.open_sockets.clear();
        drop(state);
        self.stop_done.send_replace(Some(result));
    }
}

// === Command ===

pub(crate) enum Command {
    Http {
        request: HttpRequest,
        reply: oneshot::Sender<HttpResponse>,
    },
    WsOpen {
        socket: SocketId,
        path: String,
        headers: HashMap<String, String>,
        reply: oneshot::Sender<()>,
    },
    WsMessage {
        socket: SocketId,
        index: u16,
        frame: Frame,
    },
}

// === ActorRuntime ===

/// A running actor generation, driven by the glue. Cheap to clone.
///
/// The glue forwards every tunnelled request and socket event for this actor here and stops it
/// with [`stop`](Self::stop); everything the actor does in return goes through its
/// [`Host`].
#[derive(Clone)]
pub struct ActorRuntime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    tx: mpsc::Sender<Command>,
    control: Arc<Control>,
    actor: ActorSpecifier,
    host: Arc<dyn Host>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for ActorRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorRuntime")
            .field("actor_id", &self.inner.actor.actor_id)
            .field("generation", &self.inner.actor.generation)
            .finish_non_exhaustive()
    }
}

impl ActorRuntime {
    /// Actor id.
    pub fn actor_id(&self) -> &str {
        &self.inner.actor.actor_id
    }

    /// Whether a stop was requested (or the actor ended).
    pub fn is_stopping(&self) -> bool {
        self.inner.control.is_stopping()
    }

    /// Answers one HTTP request: actions (`POST /action/{name}`), raw requests
    /// (`/request/...`), `/health`, `/metadata`. Never fails: errors are answered as RivetKit
    /// answers them, in the request's encoding.
    pub async fn handle_http(&self, request: HttpRequest) -> HttpResponse {
        if let Some(response) = dispatch::answer_without_actor(&self.inner.actor, &request) {
            return response;
        }
        if self.inner.control.is_stopping() {
            return dispatch::refusal(&self.inner.actor, &request, RuntimeError::Stopped);
        }
        let (reply, answer) = oneshot::channel();
        let command = Command::Http {
            request: request.clone(),
            reply,
        };
        if let Err(error) = self.inner.tx.try_send(command) {
            let refused = match error {
                mpsc::error::TrySendError::Full(_) => RuntimeError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => RuntimeError::Stopped,
            };
            return dispatch::refusal(&self.inner.actor, &request, refused);
        }
        match answer.await {
            Ok(response) => response,
            Err(_) => dispatch::refusal(&self.inner.actor, &request, RuntimeError::Stopped),
        }
    }

    /// Offers a WebSocket the gateway opened (`/connect` or `/websocket/...`); `headers` are the
    /// upgrade request's (the subprotocols carry the encoding and params). Returns once the
    /// actor accepted it (`Host::ws_accept`, then `Init` on `/connect`) or refused it
    /// (`Host::ws_close`, after an error frame when a connect hook rejected the client). On
    /// `Err` the actor did neither, and the glue closes the socket itself.
    pub async fn ws_open(
        &self,
        socket: SocketId,
        path: String,
        headers: HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        if !self.inner.control.offer_socket(socket) {
            return Err(RuntimeError::Stopped);
        }
        let (reply, done) = oneshot::channel();
        let command = Command::WsOpen {
            socket,
            path,
            headers,
            reply,
        };
        if let Err(error) = self.inner.tx.try_send(command) {
            self.inner.control.forget_socket(socket);
            return Err(match error {
                mpsc::error::TrySendError::Full(_) => RuntimeError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => RuntimeError::Stopped,
            });
        }
        done.await.map_err(|_| RuntimeError::Stopped)
    }

    /// Delivers one client frame; `index` is its message index on the socket (numbered by
    /// the carrier, kept across a hibernation), by which a message resent after a restore is
    /// recognised. Does not wait; see the module docs for a full queue.
    pub fn ws_message(&self, socket: SocketId, index: u16, frame: Frame) {
        if !self.inner.control.socket_open(socket) {
            return;
        }
        match self.inner.tx.try_send(Command::WsMessage {
            socket,
            index,
            frame,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                drop(command);
                tracing::warn!(actor_id = %self.inner.actor.actor_id, "actor queue full; closing socket");
                self.inner.control.report_closed(socket);
                // The actor handles the close notice (running on_disconnect) like any other.
                self.inner
                    .host
                    .ws_close(socket, 1011, "actor.overloaded".to_owned());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Reports that a socket is gone (the client or the gateway closed it). Sockets the actor
    /// closed itself are ignored.
    pub fn ws_closed(&self, socket: SocketId) {
        self.inner.control.report_closed(socket);
    }

    /// Runs the scheduled actions that are due now; returns once they ran. The actor also does
    /// this by itself on start and when its own timer fires.
    pub async fn alarm(&self) -> Result<(), RuntimeError> {
        let seq = self.inner.control.request_alarm();
        let mut done = self.inner.control.alarm_done.subscribe();
        let mut stopped = self.inner.control.stop_done.subscribe();
        loop {
            if *done.borrow_and_update() >= seq {
                return Ok(());
            }
            if stopped.borrow_and_update().is_some() {
                return Err(RuntimeError::Stopped);
            }
            tokio::select! {
                changed = done.changed() => if changed.is_err() { return Err(RuntimeError::Stopped) },
                changed = stopped.changed() => if changed.is_err() { return Err(RuntimeError::Stopped) },
            }
        }
    }

    /// Stops the actor: runs `on_sleep` (sleep, going away) or `on_destroy`, disconnects every
    /// connection (running `on_disconnect`) and closes its sockets, all within
    /// `sleep_grace_period`, then saves the state and returns once it is durable. Work still
    /// queued is answered `actor.stopping`. An action already running finishes first. Later
    /// calls wait for the same outcome.
    pub async fn stop(&self, reason: StopReason) -> Result<(), RuntimeError> {
        self.inner.control.request_stop(reason);
        let mut done = self.inner.control.stop_done.subscribe();
        loop {
            if let Some(result) = done.borrow_and_update().clone() {
                return result;
            }
            if done.changed().await.is_err() {
                return Err(RuntimeError::Stopped);
            }
        }
    }

    /// Ends the actor at once without hooks or a final save (the runner lost it).
    pub fn abort(&self) {
        self.inner.cancel.cancel();
    }
}

// === start ===

pub(crate) async fn start_actor<S, CP, CS, V>(
    def: Arc<DefInner<S, CP, CS, V>>,
    name: String,
    info: StartInfo,
    host: Arc<dyn Host>,
    cancel: CancellationToken,
) -> Result<ActorRuntime, StartError>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let span = tracing::info_span!(
        "actor",
        actor_id = %info.actor_id,
        name = %name,
        key = ?info.key,
        generation = info.generation,
    );
    start_in_span(def, name, info, host, cancel, span.clone())
        .instrument(span)
        .await
}

fn hook_error(hook: &'static str) -> impl FnOnce(ActorError) -> StartError {
    move |error| {
        tracing::error!(hook, %error, "lifecycle hook failed; actor not started");
        StartError::Hook {
            hook,
            message: error.to_string(),
        }
    }
}

fn save_error(error: SaveError) -> StartError {
    match error {
        SaveError::Host(error) => StartError::Storage(error),
        other => StartError::Save(other),
    }
}

async fn start_in_span<S, CP, CS, V>(
    def: Arc<DefInner<S, CP, CS, V>>,
    name: String,
    info: StartInfo,
    host: Arc<dyn Host>,
    cancel: CancellationToken,
    span: tracing::Span,
) -> Result<ActorRuntime, StartError>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let options = def.options.clone();
    let actor_info = ActorInfo {
        actor_id: info.actor_id.clone(),
        name,
        key: info.key.clone(),
        generation: info.generation,
    };

    let (state, chunks, is_new, encoded) = match persist::load_state(&*host).await? {
        Some((bytes, chunks)) => {
            let state = ciborium::from_reader::<S, _>(bytes.as_slice())
                .map_err(|error| StartError::Corrupt(format!("state does not decode: {error}")))?;
            (state, chunks, false, bytes)
        }
        None => {
            let state = match &def.create_state {
                Some(create) => dispatch::guarded(
                    create(actor_info.clone(), info.input.clone()),
                    options.action_timeout,
                    || {
                        ActorError::callback_timed_out(
                            "create_state",
                            options.action_timeout.as_millis(),
                        )
                    },
                    "create_state",
                )
                .await
                .map_err(hook_error("create_state"))?,
                None => unit_as::<S>().ok_or_else(|| StartError::Hook {
                    hook: "create_state",
                    message:
                        "the actor declares a state type but neither `state` nor `create_state`"
                            .to_owned(),
                })?,
            };
            // What a rollback before the first save goes back to.
            let mut encoded = Vec::new();
            ciborium::into_writer(&state, &mut encoded).map_err(|error| StartError::Hook {
                hook: "create_state",
                message: format!("the state is not serializable: {error}"),
            })?;
            (state, 0, true, encoded)
        }
    };
    let schedule = ScheduleStore::load(&*host).await?;
    let conn_records = host.kv_list_prefix(vec![CONN_TAG]).await?;

    let control = Arc::new(Control::new());
    let shared = Arc::new_cyclic(|weak| Shared {
        info: actor_info,
        host: Arc::clone(&host),
        def: Arc::clone(&def),
        state: ReentrantMutex::new(StateSlot {
            value: std::cell::RefCell::new(state),
            in_hook: std::cell::Cell::new(false),
        }),
        vars: ReentrantMutex::new(std::cell::RefCell::new(None)),
        conns: Mutex::new(Default::default()),
        schedule,
        saver: Saver::new(options.state_save_interval, chunks, is_new, encoded),
        control: Arc::clone(&control),
        sleep_requested: false.into(),
        changed_conns: Default::default(),
        destroy_requested: false.into(),
        weak: weak.clone(),
    });
    let ctx = Ctx::new(Arc::clone(&shared), None);

    if is_new {
        if let Some(on_create) = &def.on_create {
            dispatch::guarded(
                on_create(ctx.clone(), info.input.clone()),
                options.action_timeout,
                || ActorError::callback_timed_out("on_create", options.action_timeout.as_millis()),
                "on_create",
            )
            .await
            .map_err(hook_error("on_create"))?;
        }
        // A new actor exists once its first state is durable; a failed create leaves nothing.
        shared.save_now().await.map_err(save_error)?;
        tracing::debug!("actor created");
    }

    let vars = match &def.create_vars {
        Some(create) => dispatch::guarded(
            create(ctx.clone()),
            options.hook_timeout,
            || ActorError::callback_timed_out("create_vars", options.hook_timeout.as_millis()),
            "create_vars",
        )
        .await
        .map_err(hook_error("create_vars"))?,
        None => unit_as::<V>().ok_or_else(|| StartError::Hook {
            hook: "create_vars",
            message: "the actor declares a vars type but no `vars` closure".to_owned(),
        })?,
    };
    *shared.vars.lock().borrow_mut() = Some(vars);
    let gone = dispatch::restore_conns(&shared, conn_records, &info.hibernating).await;

    if let Some(on_wake) = &def.on_wake {
        dispatch::guarded(
            on_wake(ctx.clone()),
            options.action_timeout,
            || ActorError::callback_timed_out("on_wake", options.action_timeout.as_millis()),
            "on_wake",
        )
        .await
        .map_err(hook_error("on_wake"))?;
    }
    dispatch::disconnect_gone(&shared, gone).await;
    // Like RivetKit, push the alarm on every start: the gateway's copy may be stale.
    shared.schedule.push_alarm(&*host, true);

    let token = cancel.child_token();
    let saver_token = token.child_token();
    {
        let shared = Arc::clone(&shared);
        let saver_token = saver_token.clone();
        tokio::spawn(
            async move {
                let snapshot = || shared.snapshot();
                let restore = |b: &[u8]| shared.restore(b);
                let extra = || shared.conn_writes();
                shared
                    .saver
                    .run(&*shared.host, &snapshot, &restore, &extra, saver_token)
                    .await;
            }
            .instrument(span.clone()),
        );
    }

    let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
    tokio::spawn(
        run_task(Arc::clone(&shared), rx, token.clone(), saver_token).instrument(span.clone()),
    );
    tracing::info!(new = is_new, "actor started");

    Ok(ActorRuntime {
        inner: Arc::new(RuntimeInner {
            tx,
            control,
            actor: dispatch::specifier(&shared.info),
            host,
            cancel: token,
        }),
    })
}

// === task ===

fn until(host: &dyn Host, at_ms: i64) -> Duration {
    let wait_ms = at_ms.saturating_sub(host.now_ms()).max(0);
    Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))
}

async fn run_task<S, CP, CS, V>(
    shared: Arc<Shared<S, CP, CS, V>>,
    mut rx: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    saver_token: CancellationToken,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let control = Arc::clone(&shared.control);
    let options = shared.def.options.clone();
    let mut last_activity = Instant::now();
    let outcome = loop {
        if let Some(reason) = control.take_stop() {
            tracing::info!(?reason, "actor stopping");
            // Refuse what is queued now rather than after the hooks: dropping a command drops
            // its reply channel, which its caller answers with `actor.stopping`.
            rx.close();
            while let Ok(command) = rx.try_recv() {
                drop(command);
            }
            let result = dispatch::stop(&shared, reason).await;
            break result;
        }
        let closes = control.take_closes();
        if !closes.is_empty() {
            last_activity = Instant::now();
        }
        for socket in closes {
            dispatch::socket_closed(&shared, socket).await;
        }
        let alarm = control.alarm_requested();
        dispatch::fire_due(&shared).await;
        control.alarm_done.send_if_modified(|done| {
            let advanced = *done < alarm;
            *done = (*done).max(alarm);
            advanced
        });

        let next_due = shared.schedule.next_at().map(|at| until(&*shared.host, at));
        let idle = !options.no_sleep
            && !shared.sleep_requested.load(Ordering::SeqCst)
            && !shared.has_sockets();
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                tracing::warn!("actor aborted without stopping");
                break Err(RuntimeError::Stopped);
            }
            () = control.notify.notified() => {}
            command = rx.recv() => match command {
                Some(command) => {
                    dispatch::command(&shared, command).await;
                    last_activity = Instant::now();
                }
                None => {
                    // Every handle is gone: nobody can stop us properly, so just save.
                    tracing::warn!("actor handles dropped without a stop; saving and exiting");
                    break shared.save_now().await.map_err(RuntimeError::Save);
                }
            },
            () = tokio::time::sleep(next_due.unwrap_or(Duration::ZERO)), if next_due.is_some() => {}
            () = tokio::time::sleep_until(last_activity + options.sleep_timeout), if idle => {
                tracing::debug!("actor idle; asking to sleep");
                shared.sleep_requested.store(true, Ordering::SeqCst);
                shared.host.request_sleep();
            }
        }
    };
    saver_token.cancel();
    cancel.cancel();
    if let Err(error) = &outcome {
        tracing::warn!(%error, "actor ended with an error");
    } else {
        tracing::info!("actor stopped");
    }
    control.finish(outcome);
}
