//! Shared support for the real-socket tests: a gateway started on `127.0.0.1:0` with its own
//! temporary embedded store and shutdown token ([`TestGateway`], built with
//! [`GatewayBuilder`]), and a fake runner that speaks envoy protocol v8 over a real WebSocket
//! ([`FakeRunner`], built with [`RunnerBuilder`]). Every gateway is private to one test, so
//! tests never share a port, a store or a server.
//!
//! The fake runner reads its socket on a background task, answers pings there (unless told
//! not to) and hands every other frame to the test, so a test that is busy awaiting an HTTP
//! response still looks alive to the gateway. Every wait is bounded by [`WAIT`] and fails the
//! test with what was expected, rather than hanging.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a different subset

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rivulet_gateway::config::Config;
use rivulet_gateway::store::embedded::EmbeddedStore;
use rivulet_gateway::store::Store;
use rivulet_wire::codec::{decode_to_envoy, encode_to_rivet};
use rivulet_wire::envoy::{
    ActorCheckpoint, ActorIntent, ActorName, ActorState, ActorStateStopped, Command,
    CommandStartActor, CommandWrapper, Event, EventActorIntent, EventActorStateUpdate,
    EventWrapper, KvGetRequest, KvRequestData, KvResponseData, MessageId,
    SqliteCommitFinalizeRequest, SqliteCommitFinalizeResponse, SqliteCommitRequest,
    SqliteCommitResponse, SqliteCommitStageBeginRequest, SqliteCommitStageBeginResponse,
    SqliteCommitStageSegmentRequest, SqliteCommitStageSegmentResponse, SqliteGetPagesRequest,
    SqliteGetPagesResponse, StopActorReason, StopCode, ToEnvoy, ToEnvoyInit, ToEnvoyRequestStart,
    ToEnvoyTunnelMessage, ToRivet, ToRivetAckCommands, ToRivetKvRequest, ToRivetMetadata,
    ToRivetPong, ToRivetResponseStart, ToRivetSqliteCommitFinalizeRequest,
    ToRivetSqliteCommitRequest, ToRivetSqliteCommitStageBeginRequest,
    ToRivetSqliteCommitStageSegmentRequest, ToRivetSqliteGetPagesRequest, ToRivetTunnelMessage,
    ToRivetTunnelMessageKind,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Upper bound of every wait on an event. Generous because CI machines are slow; a test that
/// needs it is failing anyway, and the bound only turns a hang into a clear failure.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`TestGateway::wait_actor`] re-reads the API. Only the poll cadence: the wait
/// itself ends on the observed state, bounded by [`WAIT`].
const POLL: Duration = Duration::from_millis(10);

/// Installs a test log writer once, so `RUST_LOG=rivulet_gateway=debug` shows the gateway's
/// side of a failing test.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// === impl GatewayBuilder ===

/// Configures a gateway for one test. Defaults are the production ones (`Config::for_tests`);
/// tests shorten only the timings they exercise.
pub struct GatewayBuilder {
    config: Config,
    dir: tempfile::TempDir,
    store: Option<Arc<dyn Store>>,
}

impl GatewayBuilder {
    /// How often the gateway pings runners.
    pub fn ping_interval_ms(mut self, ms: u64) -> Self {
        self.config.envoy.ping_interval_ms = ms;
        self
    }

    /// How long a runner may go without answering pings.
    pub fn ping_timeout_ms(mut self, ms: u64) -> Self {
        self.config.envoy.ping_timeout_ms = ms;
        self
    }

    /// How long after a disconnect the gateway treats a runner as lost.
    pub fn lost_threshold_ms(mut self, ms: i64) -> Self {
        self.config.envoy.lost_threshold_ms = ms;
        self
    }

    /// The admin token runners and API callers must present.
    pub fn auth_token(mut self, token: &str) -> Self {
        self.config.auth_token = Some(token.to_string());
        self
    }

    /// Largest client request body.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.gateway.max_body_bytes = bytes;
        self
    }

    /// Serves from this store instead of a fresh embedded one (the test keeps a handle).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Any other change to the configuration.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Binds `127.0.0.1:0`, opens the store and serves until the returned gateway is dropped.
    pub async fn start(self) -> TestGateway {
        init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store: Arc<dyn Store> = match self.store {
            Some(store) => store,
            None => Arc::new(EmbeddedStore::open(&self.dir.path().join("store.redb")).unwrap()),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(rivulet_gateway::run(
            listener,
            self.config.clone(),
            store,
            shutdown.clone(),
        ));
        TestGateway {
            addr,
            config: self.config,
            http: reqwest::Client::new(),
            shutdown,
            task,
            _dir: self.dir,
        }
    }
}

// === impl TestGateway ===

/// A gateway serving one test. Dropping it fires the shutdown token.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The configuration it runs with.
    pub config: Config,
    /// Client for the public API and the `/gateway` routes.
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestGateway {
    /// A builder with production defaults and a fresh temporary data directory.
    pub fn builder() -> GatewayBuilder {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_tests(PathBuf::from(dir.path()));
        GatewayBuilder {
            config,
            dir,
            store: None,
        }
    }

    /// A gateway with production defaults.
    pub async fn start() -> TestGateway {
        Self::builder().start().await
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://{addr}{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// A runner connection to this gateway, to be configured and connected.
    pub fn runner(&self) -> RunnerBuilder {
        RunnerBuilder {
            addr: self.addr,
            envoy_key: format!("test-envoy-{:08x}", rand::random::<u32>()),
            protocol_version: Some("8".to_string()),
            namespace: "default".to_string(),
            pool_name: "default".to_string(),
            token: self.config.auth_token.clone(),
            send_metadata: true,
            answer_pings: true,
        }
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.auth_token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// `GET` on the public API; returns status and JSON body.
    pub async fn api_get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .authed(self.http.get(self.url(path)))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// `POST` of a JSON body on the public API; returns status and JSON body.
    pub async fn api_post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .authed(self.http.post(self.url(path)))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Creates an actor in the default namespace and pool with crash policy `sleep`; returns
    /// its id.
    pub async fn create_actor(&self, name: &str, key: &str) -> String {
        let (status, body) = self
            .api_post(
                "/actors?namespace=default",
                json!({
                    "name": name,
                    "key": key,
                    "runner_name_selector": "default",
                    "crash_policy": "sleep",
                }),
            )
            .await;
        assert_eq!(status, 200, "create actor: {body}");
        body["actor"]["actor_id"].as_str().unwrap().to_string()
    }

    /// The API's view of one actor.
    pub async fn actor(&self, actor_id: &str) -> Value {
        let (status, body) = self
            .api_get(&format!("/actors?namespace=default&actor_ids={actor_id}"))
            .await;
        assert_eq!(status, 200, "get actor: {body}");
        let actors = body["actors"].as_array().unwrap();
        assert_eq!(actors.len(), 1, "get actor {actor_id}: {body}");
        actors[0].clone()
    }

    /// Re-reads the actor until `done` holds, bounded by [`WAIT`]. The gateway applies runner
    /// events asynchronously, so the API is the only place a test can see them land.
    pub async fn wait_actor(
        &self,
        actor_id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let actor = self.actor(actor_id).await;
            if done(&actor) {
                return actor;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "actor never became {what}; last seen: {actor}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Re-reads `GET /envoys` until `done` holds, bounded by [`WAIT`]; the registry changes
    /// when the gateway notices a connection end, which no frame announces.
    pub async fn wait_envoys(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let envoys = self.envoys().await;
            if done(&envoys) {
                return envoys;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "envoys never became {what}; last seen: {envoys:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Asks the gateway to wake an actor (`POST /actors/{id}/reschedule`).
    pub async fn wake(&self, actor_id: &str) {
        let (status, body) = self
            .api_post(
                &format!("/actors/{actor_id}/reschedule?namespace=default"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "reschedule: {body}");
    }

    /// The envoys `GET /envoys?namespace=default` lists.
    pub async fn envoys(&self) -> Vec<Value> {
        let (status, body) = self.api_get("/envoys?namespace=default").await;
        assert_eq!(status, 200, "list envoys: {body}");
        body["envoys"].as_array().unwrap().clone()
    }

    /// Starts a client HTTP request through `/gateway/...` on its own task, so the test can
    /// play the runner while the request is in flight.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> JoinHandle<HttpReply> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = self
            .http
            .request(method, self.url(path))
            .body(body.to_vec());
        tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            let body = resp.bytes().await.unwrap().to_vec();
            HttpReply {
                status,
                headers,
                body,
            }
        })
    }

    /// Fires the shutdown token without waiting (for tests of shutdown itself).
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Fires the shutdown token and waits for `run` to return, failing the test if that takes
    /// longer than `within`.
    pub async fn stop_within(&mut self, within: Duration) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match tokio::time::timeout(within, &mut self.task).await {
            Ok(joined) => joined.unwrap(),
            Err(_) => panic!("the gateway did not stop within {within:?} of the shutdown signal"),
        }
    }
}

/// What a client got back from `/gateway/...`.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: HashMap<String, String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as JSON (for gateway errors).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Awaits an in-flight client request, bounded by [`WAIT`].
pub async fn reply(handle: JoinHandle<HttpReply>) -> HttpReply {
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("client request did not finish in time")
        .unwrap()
}

// === impl RunnerBuilder ===

/// How a fake runner connects.
pub struct RunnerBuilder {
    addr: SocketAddr,
    envoy_key: String,
    protocol_version: Option<String>,
    namespace: String,
    pool_name: String,
    token: Option<String>,
    send_metadata: bool,
    answer_pings: bool,
}

impl RunnerBuilder {
    /// The runner's stable key (reuse it to reconnect as the same runner).
    pub fn envoy_key(mut self, key: &str) -> Self {
        self.envoy_key = key.to_string();
        self
    }

    /// The `protocol_version` query value; `None` leaves it out.
    pub fn protocol_version(mut self, version: Option<&str>) -> Self {
        self.protocol_version = version.map(str::to_string);
        self
    }

    /// The namespace to serve.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.to_string();
        self
    }

    /// The token sent as the `rivet_token.{token}` subprotocol.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Send no token at all.
    pub fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Whether the runner answers pings from the start (off: it looks hung, and the test
    /// answers pings itself).
    pub fn answer_pings(mut self, on: bool) -> Self {
        self.answer_pings = on;
        self
    }

    /// Connect without sending `ToRivetMetadata` (for refused connections).
    pub fn without_metadata(mut self) -> Self {
        self.send_metadata = false;
        self
    }

    /// Connects and completes the handshake: the first frame must be `ToEnvoyInit`, which is
    /// kept in [`FakeRunner::init`].
    pub async fn connect(self) -> FakeRunner {
        let mut runner = self.connect_raw().await;
        match runner.next().await {
            Incoming::Frame(ToEnvoy::ToEnvoyInit(init)) => runner.init = Some(init),
            other => panic!(
                "runner {}: the first frame must be ToEnvoyInit, got {other:?}",
                runner.envoy_key
            ),
        }
        runner
    }

    /// Opens the WebSocket and, unless disabled, sends the metadata RivetKit sends; reads
    /// nothing (for refused connections).
    pub async fn connect_raw(self) -> FakeRunner {
        let mut url = format!("ws://{}/envoys/connect?", self.addr);
        if let Some(v) = &self.protocol_version {
            url.push_str(&format!("protocol_version={v}&"));
        }
        url.push_str(&format!(
            "namespace={}&envoy_key={}&version=1&pool_name={}",
            self.namespace, self.envoy_key, self.pool_name
        ));
        let mut req = url.into_client_request().unwrap();
        let protocols = match &self.token {
            Some(token) => format!("rivet, rivet_token.{token}"),
            None => "rivet".to_string(),
        };
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&protocols).unwrap(),
        );
        let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("envoy connect timed out")
            .unwrap();
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("rivet"),
            "the gateway must select the rivet subprotocol"
        );
        let runner = FakeRunner::spawn(self.envoy_key, ws, self.answer_pings);
        if self.send_metadata {
            runner.send(ToRivet::ToRivetMetadata(ToRivetMetadata {
                prepopulate_actor_names: Some(BTreeMap::from([(
                    "counter".into(),
                    ActorName {
                        metadata: "{}".into(),
                    },
                )])),
                metadata: Some(r#"{"rivetkit":{"version":"2.3.19"}}"#.into()),
            }));
        }
        runner
    }
}

// === impl FakeRunner ===

/// Something that arrived on a runner's socket.
#[derive(Debug)]
pub enum Incoming {
    /// A decoded binary frame.
    Frame(ToEnvoy),
    /// A binary frame that does not decode as `ToEnvoy`.
    Undecodable(String),
    /// A text frame (never valid from the gateway).
    Text(String),
    /// A close frame: code and reason.
    Closed(Option<(u16, String)>),
    /// The connection ended (error text, if it failed).
    Ended(Option<String>),
}

/// A started actor as the runner saw its start command.
#[derive(Debug, Clone)]
pub struct Started {
    /// The actor.
    pub actor_id: String,
    /// Its generation.
    pub generation: u32,
    /// The start command's checkpoint.
    pub checkpoint: ActorCheckpoint,
    /// The start command.
    pub start: CommandStartActor,
}

/// A runner speaking envoy v8 over a real socket, driven step by step by the test.
pub struct FakeRunner {
    /// Its envoy key.
    pub envoy_key: String,
    /// The init frame, once [`RunnerBuilder::connect`] read it.
    pub init: Option<ToEnvoyInit>,
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    answer_pings: Arc<AtomicBool>,
    /// While true, the reader takes nothing from the socket (a runner that stops reading).
    paused: tokio::sync::watch::Sender<bool>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    next_request_id: u32,
    /// Next event index per (actor, generation), as the envoy numbers them.
    event_index: HashMap<(String, u32), i64>,
    /// Next outgoing tunnel message index per request.
    tunnel_index: HashMap<[u8; 4], u16>,
}

impl Drop for FakeRunner {
    fn drop(&mut self) {
        for task in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

type ClientWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl FakeRunner {
    fn spawn(envoy_key: String, ws: ClientWs, answer_pings: bool) -> FakeRunner {
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let answer_pings = Arc::new(AtomicBool::new(answer_pings));
        let (paused, mut paused_rx) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let reader = {
            let out = out.clone();
            let answer = answer_pings.clone();
            tokio::spawn(async move {
                loop {
                    if paused_rx.wait_for(|p| !*p).await.is_err() {
                        return;
                    }
                    let Some(item) = stream.next().await else {
                        break;
                    };
                    let incoming = match item {
                        Ok(Message::Binary(bytes)) => match decode_to_envoy(bytes) {
                            Ok(msg) => {
                                if let ToEnvoy::ToEnvoyPing(ping) = &msg {
                                    if answer.load(Ordering::SeqCst) {
                                        let pong =
                                            ToRivet::ToRivetPong(ToRivetPong { ts: ping.ts });
                                        let _ = out
                                            .send(Message::Binary(encode_to_rivet(&pong).into()));
                                    }
                                }
                                Incoming::Frame(msg)
                            }
                            Err(err) => Incoming::Undecodable(err.to_string()),
                        },
                        Ok(Message::Text(text)) => Incoming::Text(text.to_string()),
                        Ok(Message::Close(frame)) => Incoming::Closed(
                            frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                        ),
                        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                        Err(err) => {
                            let _ = inbox_tx.send(Incoming::Ended(Some(err.to_string())));
                            return;
                        }
                    };
                    if inbox_tx.send(incoming).is_err() {
                        return;
                    }
                }
                let _ = inbox_tx.send(Incoming::Ended(None));
            })
        };
        FakeRunner {
            envoy_key,
            init: None,
            out,
            inbox,
            answer_pings,
            paused,
            reader: Some(reader),
            writer: Some(writer),
            next_request_id: 1,
            event_index: HashMap::new(),
            tunnel_index: HashMap::new(),
        }
    }

    /// Whether the background reader answers pings (off: the runner looks hung).
    pub fn answer_pings(&self, on: bool) {
        self.answer_pings.store(on, Ordering::SeqCst);
    }

    /// Stops (true) or resumes (false) reading the socket, as a runner whose event loop is
    /// busy would; the gateway's frames then wait in TCP buffers and its queue.
    pub fn pause_reading(&self, on: bool) {
        let _ = self.paused.send(on);
    }

    /// Sends one message.
    pub fn send(&self, msg: ToRivet) {
        self.send_raw(Message::Binary(encode_to_rivet(&msg).into()));
    }

    /// Sends a raw WebSocket message (for malformed input).
    pub fn send_raw(&self, msg: Message) {
        // A closed connection shows up on the read side; tests assert there.
        let _ = self.out.send(msg);
    }

    /// Drops the TCP connection without a close frame, as a crashed runner process would, and
    /// returns once the socket is gone.
    pub async fn disconnect(mut self) {
        // Awaiting the aborted tasks guarantees both socket halves were dropped.
        for task in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
            let _ = task.await;
        }
    }

    /// The next thing that arrives, bounded by [`WAIT`].
    pub async fn next(&mut self) -> Incoming {
        match tokio::time::timeout(WAIT, self.inbox.recv()).await {
            Ok(Some(incoming)) => incoming,
            Ok(None) => Incoming::Ended(None),
            Err(_) => panic!("runner {}: nothing arrived within {WAIT:?}", self.envoy_key),
        }
    }

    /// The next frame other than a ping; fails on anything that is not a frame.
    pub async fn next_frame(&mut self) -> ToEnvoy {
        loop {
            match self.next().await {
                Incoming::Frame(ToEnvoy::ToEnvoyPing(_)) => continue,
                Incoming::Frame(msg) => return msg,
                other => panic!("runner {}: expected a frame, got {other:?}", self.envoy_key),
            }
        }
    }

    /// Waits for the frame `pick` accepts. Pings and event acks (which the gateway sends
    /// after every event batch) are skipped; any other frame fails the test, so unexpected
    /// traffic is never silently ignored.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&ToEnvoy) -> Option<T>,
    ) -> T {
        loop {
            let msg = self.next_frame().await;
            if let Some(found) = pick(&msg) {
                return found;
            }
            if matches!(msg, ToEnvoy::ToEnvoyAckEvents(_)) {
                continue;
            }
            panic!("runner {}: expected {what}, got {msg:?}", self.envoy_key);
        }
    }

    /// Waits for a close frame; only pings and event acks may come before it.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Incoming::Frame(ToEnvoy::ToEnvoyPing(_) | ToEnvoy::ToEnvoyAckEvents(_)) => {}
                Incoming::Closed(Some(frame)) => return frame,
                other => panic!(
                    "runner {}: expected a close frame, got {other:?}",
                    self.envoy_key
                ),
            }
        }
    }

    // --- commands and events ---

    /// Waits for one command batch.
    pub async fn expect_commands(&mut self) -> Vec<CommandWrapper> {
        self.expect("commands", |m| match m {
            ToEnvoy::ToEnvoyCommands(cmds) => Some(cmds.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for a batch holding exactly one start command.
    pub async fn expect_start(&mut self) -> Started {
        let cmds = self.expect_commands().await;
        assert_eq!(cmds.len(), 1, "expected one start command, got {cmds:?}");
        let cmd = cmds.into_iter().next().unwrap();
        match cmd.inner {
            Command::CommandStartActor(start) => Started {
                actor_id: cmd.checkpoint.actor_id.to_string(),
                generation: cmd.checkpoint.generation,
                checkpoint: cmd.checkpoint,
                start,
            },
            Command::CommandStopActor(stop) => panic!("expected a start, got stop {stop:?}"),
        }
    }

    /// Waits for a batch holding exactly one stop command.
    pub async fn expect_stop(&mut self) -> (ActorCheckpoint, StopActorReason) {
        let cmds = self.expect_commands().await;
        assert_eq!(cmds.len(), 1, "expected one stop command, got {cmds:?}");
        let cmd = cmds.into_iter().next().unwrap();
        match cmd.inner {
            Command::CommandStopActor(stop) => (cmd.checkpoint, stop.reason),
            Command::CommandStartActor(start) => panic!("expected a stop, got start {start:?}"),
        }
    }

    /// Acknowledges commands up to `checkpoint`.
    pub fn ack(&self, checkpoint: &ActorCheckpoint) {
        self.send(ToRivet::ToRivetAckCommands(ToRivetAckCommands {
            last_command_checkpoints: vec![checkpoint.clone()],
        }));
    }

    /// Sends one event, numbered as the envoy numbers them (per actor and generation, from 0).
    pub fn event(&mut self, actor_id: &str, generation: u32, inner: Event) {
        let next = self
            .event_index
            .entry((actor_id.to_string(), generation))
            .or_insert(0);
        let index = *next;
        *next += 1;
        self.send(ToRivet::ToRivetEvents(vec![EventWrapper {
            checkpoint: ActorCheckpoint {
                actor_id: actor_id.to_string().into(),
                generation,
                index,
            },
            inner,
        }]));
    }

    /// Reports the actor running.
    pub fn running(&mut self, actor_id: &str, generation: u32) {
        self.event(
            actor_id,
            generation,
            Event::EventActorStateUpdate(EventActorStateUpdate {
                state: ActorState::ActorStateRunning,
            }),
        );
    }

    /// Reports the actor stopped, cleanly or with an error.
    pub fn stopped(&mut self, actor_id: &str, generation: u32, error: Option<&str>) {
        let state = ActorState::ActorStateStopped(ActorStateStopped {
            code: if error.is_some() {
                StopCode::Error
            } else {
                StopCode::Ok
            },
            message: error.map(|e| e.to_string().into()),
        });
        self.event(
            actor_id,
            generation,
            Event::EventActorStateUpdate(EventActorStateUpdate { state }),
        );
    }

    /// The actor asks to sleep.
    pub fn intent_sleep(&mut self, actor_id: &str, generation: u32) {
        self.event(
            actor_id,
            generation,
            Event::EventActorIntent(EventActorIntent {
                intent: ActorIntent::ActorIntentSleep,
            }),
        );
    }

    /// Takes the next start: waits for it, acknowledges it and reports the actor running.
    pub async fn accept_start(&mut self) -> Started {
        let started = self.expect_start().await;
        self.ack(&started.checkpoint);
        self.running(&started.actor_id, started.generation);
        started
    }

    /// Puts a running actor to sleep the way RivetKit does: sleep intent, wait for the stop
    /// command, report stopped.
    pub async fn sleep_actor(&mut self, actor_id: &str, generation: u32) -> ActorCheckpoint {
        self.intent_sleep(actor_id, generation);
        let (checkpoint, reason) = self.expect_stop().await;
        assert_eq!(reason, StopActorReason::SleepIntent);
        assert_eq!(checkpoint.actor_id.as_str(), actor_id);
        assert_eq!(checkpoint.generation, generation);
        self.ack(&checkpoint);
        self.stopped(actor_id, generation, None);
        checkpoint
    }

    // --- tunnel ---

    /// Waits for a tunnel message.
    pub async fn expect_tunnel(&mut self) -> ToEnvoyTunnelMessage {
        self.expect("a tunnel message", |m| match m {
            ToEnvoy::ToEnvoyTunnelMessage(t) => Some(t.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for an HTTP request start.
    pub async fn expect_http(&mut self) -> (MessageId, ToEnvoyRequestStart) {
        let msg = self.expect_tunnel().await;
        match msg.message_kind {
            rivulet_wire::envoy::ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(start) => {
                (msg.message_id, start)
            }
            other => panic!("expected a request start, got {other:?}"),
        }
    }

    /// Sends a tunnel message for a request, numbered as RivetKit numbers them
    /// (`docs/observed-envoy.md` §6): data messages count from 0 per request, an ack carries the
    /// acknowledged index, a close carries 0.
    pub fn tunnel(
        &mut self,
        gateway_id: [u8; 4],
        request_id: [u8; 4],
        kind: ToRivetTunnelMessageKind,
    ) {
        let message_index = match &kind {
            ToRivetTunnelMessageKind::ToRivetWebSocketMessageAck(ack) => ack.index,
            ToRivetTunnelMessageKind::ToRivetWebSocketClose(_) => 0,
            _ => {
                let next = self.tunnel_index.entry(request_id).or_insert(0);
                let index = *next;
                *next = next.wrapping_add(1);
                index
            }
        };
        self.send(ToRivet::ToRivetTunnelMessage(ToRivetTunnelMessage {
            message_id: MessageId {
                gateway_id,
                request_id,
                message_index,
            },
            message_kind: kind,
        }));
    }

    /// Answers an HTTP request with a whole response.
    pub fn respond(&mut self, id: &MessageId, status: u16, body: &[u8]) {
        let headers = BTreeMap::from([("content-type".into(), "text/plain".into())]);
        self.tunnel(
            id.gateway_id,
            id.request_id,
            ToRivetTunnelMessageKind::ToRivetResponseStart(ToRivetResponseStart {
                status,
                headers,
                body: Some(body.to_vec().into()),
                stream: false,
            }),
        );
    }

    // --- storage ---

    fn request_id(&mut self) -> u32 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// One KV request and its response.
    pub async fn kv(&mut self, actor_id: &str, data: KvRequestData) -> KvResponseData {
        let request_id = self.request_id();
        self.send(ToRivet::ToRivetKvRequest(ToRivetKvRequest {
            actor_id: actor_id.to_string().into(),
            request_id,
            data,
        }));
        self.expect("a KV response", |m| match m {
            ToEnvoy::ToEnvoyKvResponse(r) => {
                assert_eq!(r.request_id, request_id, "KV response for another request");
                Some(r.data.clone())
            }
            _ => None,
        })
        .await
    }

    /// Makes sure everything sent so far was read by the gateway: a KV request for an actor
    /// that does not exist is answered only after the gateway's reader got past every earlier
    /// frame, because it reads one connection in order.
    pub async fn barrier(&mut self) {
        let data = KvRequestData::KvGetRequest(KvGetRequest { keys: vec![] });
        match self.kv("barrier-no-such-actor", data).await {
            KvResponseData::KvErrorResponse(_) => {}
            other => panic!("barrier: expected a KV error, got {other:?}"),
        }
    }

    /// Every frame other than pings that arrives before the answer to a [`Self::barrier`]
    /// request, i.e. everything the gateway had queued for this runner when it read the
    /// barrier.
    pub async fn frames_until_barrier(&mut self) -> Vec<ToEnvoy> {
        let request_id = self.request_id();
        self.send(ToRivet::ToRivetKvRequest(ToRivetKvRequest {
            actor_id: "barrier-no-such-actor".into(),
            request_id,
            data: KvRequestData::KvGetRequest(KvGetRequest { keys: vec![] }),
        }));
        let mut before = Vec::new();
        loop {
            match self.next_frame().await {
                ToEnvoy::ToEnvoyKvResponse(r) if r.request_id == request_id => return before,
                other => before.push(other),
            }
        }
    }

    /// Reads SQLite pages.
    pub async fn get_pages(
        &mut self,
        actor_id: &str,
        pgnos: &[u32],
        expected_generation: Option<u64>,
    ) -> SqliteGetPagesResponse {
        let request_id = self.request_id();
        self.send(ToRivet::ToRivetSqliteGetPagesRequest(
            ToRivetSqliteGetPagesRequest {
                request_id,
                data: SqliteGetPagesRequest {
                    actor_id: actor_id.to_string().into(),
                    pgnos: pgnos.to_vec(),
                    expected_generation,
                    expected_head_txid: None,
                },
            },
        ));
        self.expect("a get-pages response", |m| match m {
            ToEnvoy::ToEnvoySqliteGetPagesResponse(r) => {
                assert_eq!(r.request_id, request_id);
                Some(r.data.clone())
            }
            _ => None,
        })
        .await
    }

    /// One single-shot commit.
    pub async fn commit(&mut self, data: SqliteCommitRequest) -> SqliteCommitResponse {
        let request_id = self.request_id();
        self.send(ToRivet::ToRivetSqliteCommitRequest(
            ToRivetSqliteCommitRequest { request_id, data },
        ));
        self.expect("a commit response", |m| match m {
            ToEnvoy::ToEnvoySqliteCommitResponse(r) => {
                assert_eq!(r.request_id, request_id);
                Some(r.data.clone())
            }
            _ => None,
        })
        .await
    }

    /// Opens a staged commit.
    pub async fn stage_begin(
        &mut self,
        data: SqliteCommitStageBeginRequest,
    ) -> SqliteCommitStageBeginResponse {
        let request_id = self.request_id();
        self.send(ToRivet::ToRivetSqliteCommitStageBeginRequest(
            ToRivetSqliteCommitStageBeginRequest { request_id, data },
        ));
        self.expect("a stage-begin response", |m| match m {
            ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(r) => {
                assert_eq!(r.request_id, request_id);
                Some(r.data.clone())
            }
            _ => None,
        })
        .await
    }

    /// Stages one segment.
    pub async fn stage_segment(
        &mut self,
        data: SqliteCommitStageSegmentRequest,
    ) -> SqliteCommitStageSegmentResponse {
        let request_id = self.request_id();
        self.send(ToRivet::ToRivetSqliteCommitStageSegmentRequest(
            ToRivetSqliteCommitStageSegmentRequest { request_id, data },
        ));
        self.expect("a stage-segment response", |m| match m {
            ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(r) => {
                assert_eq!(r.request_id, request_id);
                Some(r.data.clone())
            }
            _ => None,
        })
        .await
    }

    /// Publishes a staged commit.
    pub async fn finalize(
        &mut self,
        data: SqliteCommitFinalizeRequest,
    ) -> SqliteCommitFinalizeResponse {
        let request_id = self.request_id();
        self.send(ToRivet::ToRivetSqliteCommitFinalizeRequest(
            ToRivetSqliteCommitFinalizeRequest { request_id, data },
        ));
        self.expect("a finalize response", |m| match m {
            ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(r) => {
                assert_eq!(r.request_id, request_id);
                Some(r.data.clone())
            }
            _ => None,
        })
        .await
    }
}

/// Creates an actor, wakes it through the API and starts it on `runner`; returns what the
/// runner saw. The actor is running on the runner (its `Running` event was sent) when this
/// returns, and the gateway has applied it: the API shows it connectable.
pub async fn run_actor(gw: &TestGateway, runner: &mut FakeRunner, key: &str) -> Started {
    let actor_id = gw.create_actor("counter", key).await;
    gw.wake(&actor_id).await;
    let started = runner.accept_start().await;
    assert_eq!(started.actor_id, actor_id);
    gw.wait_actor(&actor_id, "connectable", |a| !a["connectable_ts"].is_null())
        .await;
    started
}
