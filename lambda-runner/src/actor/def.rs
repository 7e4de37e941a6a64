//! The actor definition: [`ActorDef`], a builder that collects an actor type's state, hooks,
//! actions and options, the way a RivetKit `actor({...})` object does.
//!
//! Everything the builder takes is a closure. Asynchronous ones receive an owned, cheap
//! [`Ctx`] (and owned arguments) and return a `Send` future, so an action reads like
//! `|c, (n,): (i64,)| async move { ... }`. The runtime calls them one at a time per actor.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ciborium::Value;
use futures_util::future::{self, BoxFuture, FutureExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::args::FromArgs;
use super::conn::{Conn, RawSocket};
use super::context::Ctx;
use super::error::ActorError;
use super::host::{HttpRequest, HttpResponse};
use crate::protocol::Frame;

// === bounds ===

/// What persistent state must be: serde-serializable and sendable. Implemented for every such
/// type.
pub trait ActorState: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> ActorState for T {}

/// What connection params must be: decodable from the client's JSON params, cloneable and
/// shareable. Implemented for every such type.
pub trait ConnParams: DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: DeserializeOwned + Clone + Send + Sync + 'static> ConnParams for T {}

/// What per-connection state must be: a serde type, as it is saved with a hibernatable
/// connection. Implemented for every such type.
pub trait ConnState: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> ConnState for T {}

/// What ephemeral vars must be. Implemented for every `Send + 'static` type.
pub trait ActorVars: Send + 'static {}
impl<T: Send + 'static> ActorVars for T {}

// === ActorInfo ===

/// Who an actor is; what `create_state` gets instead of a full context (the state does not
/// exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    pub(crate) actor_id: String,
    pub(crate) name: String,
    pub(crate) key: Option<String>,
    pub(crate) generation: u32,
}

impl ActorInfo {
    /// Actor id.
    pub fn actor_id(&self) -> &str {
        &self.actor_id
    }

    /// Actor type name, as registered.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Canonical key string, if the actor has a key.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Generation this instance runs as.
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

// === ActorOptions ===

/// Tunables of an actor type. Defaults are RivetKit 2.3.19's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorOptions {
    /// Least time between two automatic state saves (`stateSaveInterval`, 1 s).
    pub state_save_interval: Duration,
    /// Longest an action may run before the caller gets `actor.action_timed_out` (60 s).
    pub action_timeout: Duration,
    /// Idle time before the actor asks to sleep (`sleepTimeout`, 30 s).
    pub sleep_timeout: Duration,
    /// Never ask to sleep when idle.
    pub no_sleep: bool,
    /// Budget of a stop for `on_sleep`/`on_destroy` and disconnect hooks together (15 s);
    /// the final save runs after it regardless.
    pub sleep_grace_period: Duration,
    /// Budget of each connection hook and of `create_vars` (5 s, like RivetKit's
    /// `onBeforeConnectTimeout` and friends).
    pub hook_timeout: Duration,
    /// Requests and socket messages that may wait for the actor; more are refused at once.
    pub queue_capacity: usize,
    /// Pending scheduled actions an actor may hold (`maxSchedules`, 1000).
    pub max_schedules: usize,
}

impl Default for ActorOptions {
    fn default() -> Self {
        Self {
            state_save_interval: Duration::from_secs(1),
            action_timeout: Duration::from_secs(60),
            sleep_timeout: Duration::from_secs(30),
            no_sleep: false,
            sleep_grace_period: Duration::from_secs(15),
            hook_timeout: Duration::from_secs(5),
            queue_capacity: 1024,
            max_schedules: 1000,
        }
    }
}

// === closure types ===

type Fut<T> = BoxFuture<'static, Result<T, ActorError>>;

pub(crate) type CreateStateFn<S> = Box<dyn Fn(ActorInfo, Option<Vec<u8>>) -> Fut<S> + Send + Sync>;
pub(crate) type InputHookFn<C> = Box<dyn Fn(C, Option<Vec<u8>>) -> Fut<()> + Send + Sync>;
pub(crate) type HookFn<C> = Box<dyn Fn(C) -> Fut<()> + Send + Sync>;
pub(crate) type VarsFn<C, V> = Box<dyn Fn(C) -> Fut<V> + Send + Sync>;
pub(crate) type StateChangeFn<C, S> = Box<dyn Fn(&C, &S) + Send + Sync>;
pub(crate) type ParamsHookFn<C, CP> = Box<dyn Fn(C, Option<CP>) -> Fut<()> + Send + Sync>;
pub(crate) type ConnStateFn<C, CP, CS> = Box<dyn Fn(C, Option<CP>) -> Fut<CS> + Send + Sync>;
pub(crate) type ConnHookFn<C, K> = Box<dyn Fn(C, K) -> Fut<()> + Send + Sync>;
pub(crate) type RequestFn<C> = Box<dyn Fn(C, HttpRequest) -> Fut<HttpResponse> + Send + Sync>;
pub(crate) type RawOpenFn<C> = Box<dyn Fn(C, RawSocket, HttpRequest) -> Fut<()> + Send + Sync>;
pub(crate) type RawMessageFn<C> = Box<dyn Fn(C, RawSocket, Frame) -> Fut<()> + Send + Sync>;
pub(crate) type RawCloseFn<C> = Box<dyn Fn(C, RawSocket) -> Fut<()> + Send + Sync>;
pub(crate) type ActionFn<C> = Box<dyn Fn(C, Vec<Value>) -> Fut<Value> + Send + Sync>;

type ConnStateOf<S, CP, CS, V> = ConnStateFn<Ctx<S, CP, CS, V>, CP, CS>;
pub(crate) type CanHibernateFn<CP> = Box<dyn Fn(Option<&CP>) -> bool + Send + Sync>;
type ConnHookOf<S, CP, CS, V> = ConnHookFn<Ctx<S, CP, CS, V>, Conn<CP, CS>>;

// === ActorDef ===

/// An actor type: its state, hooks, actions and options. Register it with
/// [`Registry::register`](super::Registry::register).
///
/// Type parameters: `S` persistent state, `CP` connection params (decoded from the client's
/// JSON params), `CS` per-connection state, `V` ephemeral vars. Name them when they are not
/// the defaults, e.g. `ActorDef::<ChatState, ChatParams, ChatConn>::new()`.
pub struct ActorDef<S, CP = serde_json::Value, CS = (), V = ()> {
    pub(crate) inner: DefInner<S, CP, CS, V>,
}

/// The parts of a definition, shared by every running instance of the type.
pub(crate) struct DefInner<S, CP, CS, V> {
    pub(crate) create_state: Option<CreateStateFn<S>>,
    pub(crate) on_create: Option<InputHookFn<Ctx<S, CP, CS, V>>>,
    pub(crate) create_vars: Option<VarsFn<Ctx<S, CP, CS, V>, V>>,
    pub(crate) on_wake: Option<HookFn<Ctx<S, CP, CS, V>>>,
    pub(crate) on_sleep: Option<HookFn<Ctx<S, CP, CS, V>>>,
    pub(crate) on_destroy: Option<HookFn<Ctx<S, CP, CS, V>>>,
    pub(crate) on_state_change: Option<StateChangeFn<Ctx<S, CP, CS, V>, S>>,
    pub(crate) on_before_connect: Option<ParamsHookFn<Ctx<S, CP, CS, V>, CP>>,
    pub(crate) create_conn_state: Option<ConnStateOf<S, CP, CS, V>>,
    pub(crate) on_connect: Option<ConnHookOf<S, CP, CS, V>>,
    pub(crate) can_hibernate: Option<CanHibernateFn<CP>>,
    pub(crate) on_disconnect: Option<ConnHookOf<S, CP, CS, V>>,
    pub(crate) on_request: Option<RequestFn<Ctx<S, CP, CS, V>>>,
    pub(crate) on_websocket: Option<RawOpenFn<Ctx<S, CP, CS, V>>>,
    pub(crate) on_websocket_message: Option<RawMessageFn<Ctx<S, CP, CS, V>>>,
    pub(crate) on_websocket_close: Option<RawCloseFn<Ctx<S, CP, CS, V>>>,
    pub(crate) actions: HashMap<String, ActionFn<Ctx<S, CP, CS, V>>>,
    /// Actions declared with [`ActorDef::action_unsaved`]: they reply before their state
    /// change is saved.
    pub(crate) unsaved_actions: HashSet<String>,
    pub(crate) options: ActorOptions,
}

/// `Some(())` as a `T` when `T` is `()`: how an actor that declares no state, conn state or
/// vars gets one without a closure.
pub(crate) fn unit_as<T: 'static>() -> Option<T> {
    let unit: Box<dyn Any> = Box::new(());
    unit.downcast::<T>().ok().map(|boxed| *boxed)
}

fn decode_input<I: DeserializeOwned>(input: Option<Vec<u8>>) -> Result<Option<I>, ActorError> {
    match input {
        None => Ok(None),
        Some(bytes) => ciborium::from_reader::<I, _>(bytes.as_slice())
            .map(Some)
            .map_err(|error| ActorError::validation("input", error.to_string())),
    }
}

impl<S, CP, CS, V> Default for ActorDef<S, CP, CS, V>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<S, CP, CS, V> ActorDef<S, CP, CS, V>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    /// An empty definition: no state (unless `S` is `()`), no actions, default options.
    pub fn new() -> Self {
        Self {
            inner: DefInner {
                create_state: None,
                on_create: None,
                create_vars: None,
                on_wake: None,
                on_sleep: None,
                on_destroy: None,
                on_state_change: None,
                on_before_connect: None,
                create_conn_state: None,
                on_connect: None,
                can_hibernate: None,
                on_disconnect: None,
                on_request: None,
                on_websocket: None,
                on_websocket_message: None,
                on_websocket_close: None,
                actions: HashMap::new(),
                unsaved_actions: HashSet::new(),
                options: ActorOptions::default(),
            },
        }
    }

    /// Initial state: each new actor starts with a clone of `initial` (RivetKit's `state`).
    pub fn state(mut self, initial: S) -> Self
    where
        S: Clone + Sync,
    {
        let initial = Arc::new(initial);
        self.inner.create_state = Some(Box::new(move |_info, _input| {
            future::ready(Ok(S::clone(&initial))).boxed()
        }));
        self
    }

    /// Builds the state of a new actor from its input (RivetKit's `createState`); runs once in
    /// the actor's life. Input that does not decode as `I` fails the start.
    pub fn create_state<I, F, Fu>(mut self, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        F: Fn(ActorInfo, Option<I>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<S, ActorError>> + Send + 'static,
    {
        self.inner.create_state = Some(Box::new(move |info, input| {
            match decode_input::<I>(input) {
                Ok(input) => f(info, input).boxed(),
                Err(error) => future::ready(Err(error)).boxed(),
            }
        }));
        self
    }

    /// Runs once after the state of a new actor exists, with the input (RivetKit's
    /// `onCreate`).
    pub fn on_create<I, F, Fu>(mut self, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        F: Fn(Ctx<S, CP, CS, V>, Option<I>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_create = Some(Box::new(move |ctx, input| match decode_input::<I>(input) {
            Ok(input) => f(ctx, input).boxed(),
            Err(error) => future::ready(Err(error)).boxed(),
        }));
        self
    }

    /// Builds the ephemeral vars on every start, before `on_wake` (RivetKit's `createVars`).
    pub fn vars<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<V, ActorError>> + Send + 'static,
    {
        self.inner.create_vars = Some(Box::new(move |ctx| f(ctx).boxed()));
        self
    }

    /// Runs on every start, the first included, before any request is served.
    pub fn on_wake<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_wake = Some(Box::new(move |ctx| f(ctx).boxed()));
        self
    }

    /// Runs when the actor stops to sleep (or its runner goes away); best effort.
    pub fn on_sleep<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_sleep = Some(Box::new(move |ctx| f(ctx).boxed()));
        self
    }

    /// Runs when the actor is destroyed.
    pub fn on_destroy<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_destroy = Some(Box::new(move |ctx| f(ctx).boxed()));
        self
    }

    /// Runs after every `ctx.update` with the new state; typically broadcasts it. Mutating the
    /// state inside it panics (RivetKit rejects it too).
    pub fn on_state_change<F>(mut self, f: F) -> Self
    where
        F: Fn(&Ctx<S, CP, CS, V>, &S) + Send + Sync + 'static,
    {
        self.inner.on_state_change = Some(Box::new(f));
        self
    }

    /// Validates a connecting client from its params (`None` when it sent none); an error
    /// rejects the connection and the client sees it.
    pub fn on_before_connect<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>, Option<CP>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_before_connect = Some(Box::new(move |ctx, params| f(ctx, params).boxed()));
        self
    }

    /// Builds a connection's state from its params (RivetKit's `createConnState`); required
    /// unless `CS` is `()`.
    pub fn conn_state<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>, Option<CP>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<CS, ActorError>> + Send + 'static,
    {
        self.inner.create_conn_state = Some(Box::new(move |ctx, params| f(ctx, params).boxed()));
        self
    }

    /// Decides per connection, from its params, whether its `/connect` socket is
    /// hibernatable (RivetKit's `canHibernateWebSocket`). By default every one is: the
    /// connection (params, state, subscriptions) is saved with the actor, the gateway holds
    /// the client's socket while the actor sleeps or moves, and the actor may sleep while
    /// such clients stay connected. A connection that is not hibernatable keeps the actor
    /// awake and is closed when the actor stops.
    pub fn can_hibernate<F>(mut self, f: F) -> Self
    where
        F: Fn(Option<&CP>) -> bool + Send + Sync + 'static,
    {
        self.inner.can_hibernate = Some(Box::new(f));
        self
    }

    /// Runs after a connection is established; an error disconnects it.
    pub fn on_connect<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>, Conn<CP, CS>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_connect = Some(Box::new(move |ctx, conn| f(ctx, conn).boxed()));
        self
    }

    /// Runs after a connection is gone.
    pub fn on_disconnect<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>, Conn<CP, CS>) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_disconnect = Some(Box::new(move |ctx, conn| f(ctx, conn).boxed()));
        self
    }

    /// Handles raw HTTP under `/request/...`; the request's path has `/request` removed.
    pub fn on_request<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>, HttpRequest) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<HttpResponse, ActorError>> + Send + 'static,
    {
        self.inner.on_request = Some(Box::new(move |ctx, request| f(ctx, request).boxed()));
        self
    }

    /// Accepts a raw WebSocket under `/websocket/...` (the request carries its path and
    /// headers); an error closes it. Connection hooks do not run for raw sockets.
    pub fn on_websocket<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>, RawSocket, HttpRequest) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_websocket = Some(Box::new(move |ctx, socket, request| {
            f(ctx, socket, request).boxed()
        }));
        self
    }

    /// Handles one message on a raw WebSocket; an error closes it.
    pub fn on_websocket_message<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>, RawSocket, Frame) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_websocket_message = Some(Box::new(move |ctx, socket, frame| {
            f(ctx, socket, frame).boxed()
        }));
        self
    }

    /// Runs after a raw WebSocket closed (by either side).
    pub fn on_websocket_close<F, Fu>(mut self, f: F) -> Self
    where
        F: Fn(Ctx<S, CP, CS, V>, RawSocket) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<(), ActorError>> + Send + 'static,
    {
        self.inner.on_websocket_close = Some(Box::new(move |ctx, socket| f(ctx, socket).boxed()));
        self
    }

    /// Adds an action. Its arguments decode from the client's argument array into `A`
    /// (usually a tuple, see [`FromArgs`]); arguments that do not fit give the client
    /// `actor.validation_error`. Its output is serialized for the client.
    ///
    /// **Its reply means its effects are durable**: if it changed the state, the reply waits
    /// until the state is saved (actions finishing meanwhile share one save). A change that
    /// makes the state too large to save is undone and the action fails with
    /// `state.too_large`; a save the store refused fails it with `state.save_failed`.
    pub fn action<A, O, F, Fu>(self, name: &str, f: F) -> Self
    where
        A: FromArgs,
        O: Serialize + Send + 'static,
        F: Fn(Ctx<S, CP, CS, V>, A) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<O, ActorError>> + Send + 'static,
    {
        let mut def = self.add_action(name, f);
        def.inner.unsaved_actions.remove(name);
        def
    }

    /// Adds an action that **replies before its state change is saved**: the save follows
    /// within `state_save_interval` (RivetKit's behaviour for every action). A crash of the
    /// runner in between loses the change although the caller saw success. For changes a
    /// caller can afford to lose (presence, counters of views), where the extra store write
    /// per action is not worth it.
    pub fn action_unsaved<A, O, F, Fu>(self, name: &str, f: F) -> Self
    where
        A: FromArgs,
        O: Serialize + Send + 'static,
        F: Fn(Ctx<S, CP, CS, V>, A) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<O, ActorError>> + Send + 'static,
    {
        let mut def = self.add_action(name, f);
        def.inner.unsaved_actions.insert(name.to_owned());
        def
    }

    fn add_action<A, O, F, Fu>(mut self, name: &str, f: F) -> Self
    where
        A: FromArgs,
        O: Serialize + Send + 'static,
        F: Fn(Ctx<S, CP, CS, V>, A) -> Fu + Send + Sync + 'static,
        Fu: Future<Output = Result<O, ActorError>> + Send + 'static,
    {
        let target = format!("action `{name}` arguments");
        self.inner.actions.insert(
            name.to_owned(),
            Box::new(move |ctx, args| match A::from_args(args) {
                Err(issue) => future::ready(Err(ActorError::validation(&target, issue))).boxed(),
                Ok(args) => {
                    let output = f(ctx, args);
                    async move {
                        let output = output.await?;
                        Value::serialized(&output).map_err(|error| {
                            ActorError::internal(format!(
                                "action output is not serializable: {error}"
                            ))
                        })
                    }
                    .boxed()
                }
            }),
        );
        self
    }

    /// Replaces the options.
    pub fn options(mut self, options: ActorOptions) -> Self {
        self.inner.options = options;
        self
    }

    /// Names of the actions, sorted.
    pub fn action_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inner.actions.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
