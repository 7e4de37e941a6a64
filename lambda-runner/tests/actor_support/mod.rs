//! Test support for the actor runtime: an in-memory [`Host`] (a map for KV, a log of socket
//! calls, a manual clock) and helpers that speak the client protocol to a runtime the way the
//! stock client does.

// Each test file uses a different part of this module; outcomes mirror the protocol's
// `Result<_, ErrorBody>` shape so assertions read plainly.
#![allow(dead_code, clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ciborium::Value;
use parking_lot::Mutex;
use rivulet_lambda_runner::actor::{
    ActorRuntime, Host, HostError, HttpRequest, HttpResponse, Registry, SocketId, StartInfo,
};
use rivulet_lambda_runner::protocol::{self, Encoding, ErrorBody, Frame, ToClient, ToServer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// An actor's KV, shared by the hosts of its successive generations.
pub type Store = Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>;

/// What the runtime did with a socket, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketEvent {
    /// Accepted; `true` when as hibernatable.
    Accept(bool),
    Send(Frame),
    Close(u16, String),
    /// Kept for the next instance (the client's socket stays open).
    Hibernate,
}

/// An in-memory host for one actor generation.
pub struct MemHost {
    pub store: Store,
    pub clock: Arc<AtomicI64>,
    pub alarms: Mutex<Vec<Option<i64>>>,
    pub sleep_requests: AtomicUsize,
    pub destroy_requests: AtomicUsize,
    pub puts: AtomicUsize,
    pub sockets: Mutex<HashMap<SocketId, Vec<SocketEvent>>>,
    /// The last acknowledged client message index per socket.
    pub acks: Mutex<HashMap<SocketId, u16>>,
    changed: Notify,
}

impl MemHost {
    pub fn new(store: Store, clock: Arc<AtomicI64>) -> Arc<Self> {
        Arc::new(Self {
            store,
            clock,
            alarms: Mutex::new(Vec::new()),
            sleep_requests: AtomicUsize::new(0),
            destroy_requests: AtomicUsize::new(0),
            puts: AtomicUsize::new(0),
            sockets: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
    }

    /// A host on a fresh store, with the clock at a fixed time.
    pub fn fresh() -> Arc<Self> {
        Self::new(
            Store::default(),
            Arc::new(AtomicI64::new(1_700_000_000_000)),
        )
    }

    /// A host for the next generation of the same actor (same KV, same clock).
    pub fn next_generation(&self) -> Arc<Self> {
        Self::new(Arc::clone(&self.store), Arc::clone(&self.clock))
    }

    pub fn last_alarm(&self) -> Option<Option<i64>> {
        self.alarms.lock().last().copied()
    }

    pub fn events(&self, socket: SocketId) -> Vec<SocketEvent> {
        self.sockets
            .lock()
            .get(&socket)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (bounded) until `check` holds for the host; panics with `what` otherwise.
    pub async fn wait_until(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.changed.notified();
                if check(self) {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting for {what}");
    }

    fn record(&self, socket: SocketId, event: SocketEvent) {
        self.sockets.lock().entry(socket).or_default().push(event);
        self.changed.notify_waiters();
    }
}

#[async_trait]
impl Host for MemHost {
    async fn kv_get(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>, HostError> {
        let store = self.store.lock();
        Ok(keys.iter().map(|key| store.get(key).cloned()).collect())
    }

    async fn kv_put(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), HostError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.store.lock().extend(entries);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn kv_delete(&self, keys: Vec<Vec<u8>>) -> Result<(), HostError> {
        let mut store = self.store.lock();
        for key in keys {
            store.remove(&key);
        }
        Ok(())
    }

    async fn kv_list_prefix(&self, prefix: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, HostError> {
        Ok(self
            .store
            .lock()
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn set_alarm(&self, at_ms: Option<i64>) {
        self.alarms.lock().push(at_ms);
        self.changed.notify_waiters();
    }

    fn request_sleep(&self) {
        self.sleep_requests.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn request_destroy(&self) {
        self.destroy_requests.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn ws_accept(&self, socket: SocketId, hibernatable: bool) {
        self.record(socket, SocketEvent::Accept(hibernatable));
    }

    fn ws_ack(&self, socket: SocketId, index: u16) {
        self.acks.lock().insert(socket, index);
        self.changed.notify_waiters();
    }

    fn ws_hibernate(&self, socket: SocketId) {
        self.record(socket, SocketEvent::Hibernate);
    }

    fn ws_send(&self, socket: SocketId, frame: Frame) {
        self.record(socket, SocketEvent::Send(frame));
    }

    fn ws_close(&self, socket: SocketId, code: u16, reason: String) {
        self.record(socket, SocketEvent::Close(code, reason));
    }

    fn now_ms(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }
}

pub const ACTOR_ID: &str = "actor-1";

pub fn start_info(generation: u32, input: Option<Vec<u8>>) -> StartInfo {
    StartInfo {
        actor_id: ACTOR_ID.to_owned(),
        key: Some("room-1".to_owned()),
        generation,
        input,
        create_ts: 1_700_000_000_000,
        hibernating: Vec::new(),
    }
}

/// Starts `name` as generation `generation` on `host`.
pub async fn start(
    registry: &Registry,
    name: &str,
    host: &Arc<MemHost>,
    generation: u32,
) -> ActorRuntime {
    let host: Arc<dyn Host> = Arc::clone(host) as Arc<dyn Host>;
    registry
        .start(
            name,
            start_info(generation, None),
            host,
            CancellationToken::new(),
        )
        .await
        .expect("actor starts")
}

/// The next instance of `name` after a stop: generation `generation` on the same KV as
/// `host`, told the gateway still holds the sockets `hibernating`. Returns it and its host.
pub async fn restart_holding(
    registry: &Registry,
    name: &str,
    host: &Arc<MemHost>,
    generation: u32,
    hibernating: Vec<SocketId>,
) -> (ActorRuntime, Arc<MemHost>) {
    let next = host.next_generation();
    let mut info = start_info(generation, None);
    info.hibernating = hibernating;
    let runtime = registry
        .start(
            name,
            info,
            Arc::clone(&next) as Arc<dyn Host>,
            CancellationToken::new(),
        )
        .await
        .expect("restarts");
    (runtime, next)
}

// === HTTP ===

pub fn encoding_name(encoding: Encoding) -> &'static str {
    protocol::encoding_name(encoding)
}

/// `POST /action/{name}` as the stock client sends it.
pub fn action_request(
    encoding: Encoding,
    name: &str,
    args: &[Value],
    params: Option<&str>,
) -> HttpRequest {
    let mut headers = HashMap::from([
        (
            "x-rivet-encoding".to_owned(),
            encoding_name(encoding).to_owned(),
        ),
        (
            "content-type".to_owned(),
            protocol::content_type(encoding).to_owned(),
        ),
    ]);
    if let Some(params) = params {
        headers.insert("x-rivet-conn-params".to_owned(), params.to_owned());
    }
    HttpRequest {
        method: "POST".to_owned(),
        path: format!("/action/{name}"),
        headers,
        body: protocol::encode_http_action_args(encoding, args).expect("args encode"),
    }
}

/// The outcome of an HTTP action: its output, or the error the client would see.
pub fn action_outcome(encoding: Encoding, response: &HttpResponse) -> Result<Value, ErrorBody> {
    if response.status == 200 {
        Ok(protocol::decode_http_action_output(encoding, &response.body).expect("output decodes"))
    } else {
        Err(protocol::decode_http_error(encoding, &response.body).expect("error decodes"))
    }
}

/// Calls an action over HTTP; returns the status and the outcome.
pub async fn call(
    runtime: &ActorRuntime,
    encoding: Encoding,
    name: &str,
    args: &[Value],
    params: Option<&str>,
) -> (u16, Result<Value, ErrorBody>) {
    let response = runtime
        .handle_http(action_request(encoding, name, args, params))
        .await;
    let outcome = action_outcome(encoding, &response);
    (response.status, outcome)
}

/// Calls an action over JSON HTTP and expects success.
pub async fn call_ok(runtime: &ActorRuntime, name: &str, args: &[Value]) -> Value {
    let (status, outcome) = call(runtime, Encoding::Json, name, args, None).await;
    match outcome {
        Ok(value) => {
            assert_eq!(status, 200);
            value
        }
        Err(error) => panic!("action {name} failed with {status}: {error:?}"),
    }
}

pub fn int(n: i64) -> Value {
    Value::Integer(n.into())
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// The field of a CBOR map with a text key.
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(key, _)| matches!(key, Value::Text(key) if key == name))
            .map(|(_, value)| value),
        _ => None,
    }
}

// === WebSocket ===

/// `encodeURIComponent` for the params subprotocol.
fn uri_component(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The upgrade headers the stock client sends to `/connect`.
pub fn connect_headers(encoding: Encoding, params: Option<&str>) -> HashMap<String, String> {
    let mut protocols = vec![
        "rivet".to_owned(),
        format!("rivet_encoding.{}", encoding_name(encoding)),
    ];
    if let Some(params) = params {
        protocols.push(format!("rivet_conn_params.{}", uri_component(params)));
    }
    HashMap::from([("sec-websocket-protocol".to_owned(), protocols.join(", "))])
}

/// A client socket on a runtime, reading what the host recorded for it.
pub struct Client {
    pub socket: SocketId,
    pub encoding: Encoding,
    pub runtime: ActorRuntime,
    pub host: Arc<MemHost>,
    /// Index of the last client message sent (the open is 0), as the gateway numbers them.
    pub sent: Arc<std::sync::atomic::AtomicU16>,
}

impl Client {
    pub async fn connect(
        runtime: &ActorRuntime,
        host: &Arc<MemHost>,
        socket: u64,
        encoding: Encoding,
        params: Option<&str>,
    ) -> Self {
        let socket = SocketId(socket);
        runtime
            .ws_open(
                socket,
                "/connect".to_owned(),
                connect_headers(encoding, params),
            )
            .await
            .expect("socket offered");
        Self {
            socket,
            encoding,
            runtime: runtime.clone(),
            host: Arc::clone(host),
            sent: Arc::default(),
        }
    }

    /// The same client socket, as the next instance restored it (its messages keep their
    /// numbering).
    pub fn restored(&self, runtime: &ActorRuntime, host: &Arc<MemHost>) -> Self {
        Self {
            socket: self.socket,
            encoding: self.encoding,
            runtime: runtime.clone(),
            host: Arc::clone(host),
            sent: Arc::clone(&self.sent),
        }
    }

    /// Sends one frame with an explicit message index (a resend after a restore).
    pub fn send_frame_at(&self, index: u16, message: &ToServer) {
        let frame = protocol::encode_to_server(self.encoding, message).expect("message encodes");
        self.runtime.ws_message(self.socket, index, frame);
    }

    pub fn send(&self, message: &ToServer) {
        let frame = protocol::encode_to_server(self.encoding, message).expect("message encodes");
        let index = self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.runtime.ws_message(self.socket, index, frame);
    }

    pub fn action(&self, id: u64, name: &str, args: Vec<Value>) {
        self.send(&ToServer::ActionRequest {
            id,
            name: name.to_owned(),
            args: Value::Array(args),
        });
    }

    pub fn subscribe(&self, event: &str, subscribe: bool) {
        self.send(&ToServer::SubscriptionRequest {
            event_name: event.to_owned(),
            subscribe,
        });
    }

    /// Every message the actor sent on this socket, decoded.
    pub fn received(&self) -> Vec<ToClient> {
        self.host
            .events(self.socket)
            .into_iter()
            .filter_map(|event| match event {
                SocketEvent::Send(frame) => {
                    Some(protocol::decode_to_client(self.encoding, &frame).expect("frame decodes"))
                }
                SocketEvent::Accept(_) | SocketEvent::Close(..) | SocketEvent::Hibernate => None,
            })
            .collect()
    }

    pub fn closed(&self) -> Option<(u16, String)> {
        self.host
            .events(self.socket)
            .into_iter()
            .find_map(|event| match event {
                SocketEvent::Close(code, reason) => Some((code, reason)),
                SocketEvent::Accept(_) | SocketEvent::Send(_) | SocketEvent::Hibernate => None,
            })
    }

    /// Waits for the answer to action `id`.
    pub async fn answer(&self, id: u64) -> ToClient {
        let is_answer = |message: &ToClient| match message {
            ToClient::ActionResponse { id: got, .. } => *got == id,
            ToClient::Error(body) => body.action_id == Some(id),
            ToClient::Init { .. } | ToClient::Event { .. } => false,
        };
        let socket = self.socket;
        let encoding = self.encoding;
        self.host
            .wait_until("an action answer", |host| {
                host.events(socket).into_iter().any(|event| match event {
                    SocketEvent::Send(frame) => protocol::decode_to_client(encoding, &frame)
                        .map(|message| is_answer(&message))
                        .unwrap_or(false),
                    SocketEvent::Accept(_) | SocketEvent::Close(..) | SocketEvent::Hibernate => {
                        false
                    }
                })
            })
            .await;
        self.received()
            .into_iter()
            .find(is_answer)
            .expect("answer present")
    }

    /// Calls an action over the socket and returns its output.
    pub async fn call_ok(&self, id: u64, name: &str, args: Vec<Value>) -> Value {
        self.action(id, name, args);
        match self.answer(id).await {
            ToClient::ActionResponse { output, .. } => output,
            other => panic!("action {name} failed: {other:?}"),
        }
    }

    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter_map(|message| match message {
                ToClient::Event { name: got, args } if got == name => Some(args),
                _ => None,
            })
            .collect()
    }
}
