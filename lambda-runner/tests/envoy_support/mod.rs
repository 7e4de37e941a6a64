//! Support for the envoy client tests: the real gateway served in-process on a loopback
//! port with an embedded store in a temporary directory ([`TestGateway`], which can also be
//! restarted on the same port and data), and a handler that records what the client
//! delivers and behaves like a simple runtime ([`Recorder`]).
//!
//! Every wait is bounded by [`WAIT`] and fails with what was expected rather than hanging.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rivulet_gateway::config::Config;
use rivulet_gateway::store::embedded::EmbeddedStore;
use rivulet_gateway::store::{ActorRecord, Store};
use rivulet_lambda_runner::envoy::{ActorStart, EnvoyClient, EnvoyConfig, EnvoyHandler};
use rivulet_wire::envoy::{
    MessageId, StopActorReason, ToEnvoyTunnelMessage, ToEnvoyTunnelMessageKind,
    ToRivetResponseStart, ToRivetTunnelMessage, ToRivetTunnelMessageKind,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound of every wait; only turns a hang into a clear failure.
pub const WAIT: Duration = Duration::from_secs(10);
/// Poll cadence of waits on the HTTP API (the wait ends on the observed state).
const POLL: Duration = Duration::from_millis(20);

// === impl TestGateway ===

/// A gateway private to one test. Dropping it fires its shutdown token.
pub struct TestGateway {
    /// Where it listens (kept across restarts).
    pub addr: SocketAddr,
    /// Its configuration.
    pub config: Config,
    /// Client for the API and `/gateway` routes.
    pub http: reqwest::Client,
    store: Option<Arc<dyn Store>>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), String>>>,
    dir: tempfile::TempDir,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestGateway {
    /// A gateway with production defaults.
    pub async fn start() -> TestGateway {
        Self::start_with(|_| {}).await
    }

    /// A gateway whose configuration `f` adjusts.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(PathBuf::from(dir.path()));
        f(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut gw = TestGateway {
            addr,
            config,
            http: reqwest::Client::new(),
            store: None,
            shutdown: CancellationToken::new(),
            task: None,
            dir,
        };
        gw.serve(listener).await;
        gw
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("rivulet.redb")
    }

    async fn serve(&mut self, listener: TcpListener) {
        // The previous process's store may still be closing: its file lock goes with it.
        let deadline = tokio::time::Instant::now() + WAIT;
        let store: Arc<dyn Store> = loop {
            match EmbeddedStore::open(&self.store_path()) {
                Ok(store) => break Arc::new(store),
                Err(err) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot open the store: {err}"
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        self.shutdown = CancellationToken::new();
        let run = rivulet_gateway::run(
            listener,
            self.config.clone(),
            store.clone(),
            self.shutdown.clone(),
        );
        self.task = Some(tokio::spawn(
            async move { run.await.map_err(|e| e.to_string()) },
        ));
        self.store = Some(store);
    }

    /// Stops the gateway (its shutdown phases run), then starts a new one on the same
    /// port and data directory, as a process restart would.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }

    /// Starts a stopped gateway again on the same port and data directory.
    pub async fn resume(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(err) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot rebind {}: {err}",
                        self.addr
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        self.serve(listener).await;
    }

    /// Stops the gateway and waits for `run` to return.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the gateway did not stop")
                .unwrap()
                .unwrap();
        }
        self.store = None;
    }

    /// The stored record of an actor (the API does not show everything, e.g. alarms).
    pub async fn record(&self, actor_id: &str) -> ActorRecord {
        let store = self.store.as_ref().expect("gateway is running");
        store.get_actor(actor_id).await.unwrap().unwrap()
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Envoy configuration pointing at this gateway with a fresh key.
    pub fn envoy_config(&self) -> EnvoyConfig {
        EnvoyConfig {
            actor_names: vec![("counter".to_string(), json!({"icon": "c"}))],
            ..EnvoyConfig::new(self.url("/"))
        }
    }

    /// `GET` on the API: status and JSON body.
    pub async fn api_get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// `POST` of a JSON body on the API: status and JSON body.
    pub async fn api_post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Calls action `name` over `/gateway` with JSON: status and JSON body (60 s at most: a
    /// serverless pool may start a process first).
    pub async fn action(&self, actor_id: &str, name: &str, args: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(&format!("/gateway/{actor_id}/action/{name}")))
            .header("x-rivet-encoding", "json")
            .json(&json!({ "args": args }))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Creates an actor through `POST /actors`; returns its id.
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

    /// The API's view of an actor.
    pub async fn actor(&self, actor_id: &str) -> Value {
        let (status, body) = self
            .api_get(&format!("/actors?namespace=default&actor_ids={actor_id}"))
            .await;
        assert_eq!(status, 200, "get actor: {body}");
        body["actors"][0].clone()
    }

    /// Re-reads the actor until `done` holds.
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

    /// Wakes an actor through `POST /actors/{id}/reschedule`.
    pub async fn wake(&self, actor_id: &str) {
        let (status, body) = self
            .api_post(
                &format!("/actors/{actor_id}/reschedule?namespace=default"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "reschedule: {body}");
    }

    /// `GET /envoys?namespace=default`.
    pub async fn envoys(&self) -> Vec<Value> {
        let (status, body) = self.api_get("/envoys?namespace=default").await;
        assert_eq!(status, 200, "list envoys: {body}");
        body["envoys"].as_array().unwrap().clone()
    }

    /// Re-reads `GET /envoys` until `done` holds.
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

    /// A client request through `/gateway/...` on its own task.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> JoinHandle<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = self
            .http
            .request(method, self.url(path))
            .header("x-test", "yes")
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
            Reply {
                status,
                headers,
                body,
            }
        })
    }
}

/// What a client got back.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Awaits a client request.
pub async fn reply(handle: JoinHandle<Reply>) -> Reply {
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("client request did not finish in time")
        .unwrap()
}

// === impl Recorder ===

/// A stop the handler was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// The actor.
    pub actor_id: String,
    /// Its generation.
    pub generation: u32,
    /// Why.
    pub reason: StopActorReason,
}

/// A handler that records every call and acts like a minimal runtime: it reports started
/// actors running, stopped actors stopped, and answers HTTP requests with a JSON echo
/// (`{actor_id, generation, method, path, body, header}`).
pub struct Recorder {
    starts: mpsc::Sender<ActorStart>,
    stops: mpsc::Sender<Stop>,
    tunnel: mpsc::Sender<ToEnvoyTunnelMessage>,
}

/// The test's end of a [`Recorder`].
pub struct Seen {
    starts: mpsc::Receiver<ActorStart>,
    stops: mpsc::Receiver<Stop>,
    tunnel: mpsc::Receiver<ToEnvoyTunnelMessage>,
}

/// A recorder and its receiving end.
pub fn recorder() -> (Arc<Recorder>, Seen) {
    let (starts, starts_rx) = mpsc::channel(256);
    let (stops, stops_rx) = mpsc::channel(256);
    let (tunnel, tunnel_rx) = mpsc::channel(256);
    (
        Arc::new(Recorder {
            starts,
            stops,
            tunnel,
        }),
        Seen {
            starts: starts_rx,
            stops: stops_rx,
            tunnel: tunnel_rx,
        },
    )
}

#[async_trait]
impl EnvoyHandler for Recorder {
    async fn start_actor(&self, client: EnvoyClient, start: ActorStart) {
        client
            .actor_running(&start.actor_id, start.generation)
            .unwrap();
        let _ = self.starts.try_send(start);
    }

    async fn stop_actor(
        &self,
        client: EnvoyClient,
        actor_id: String,
        generation: u32,
        reason: StopActorReason,
    ) {
        client.actor_stopped(&actor_id, generation, None).unwrap();
        let _ = self.stops.try_send(Stop {
            actor_id,
            generation,
            reason,
        });
    }

    async fn tunnel(&self, client: EnvoyClient, msg: ToEnvoyTunnelMessage) {
        if let ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(start) = &msg.message_kind {
            let body = json!({
                "actor_id": start.actor_id.to_string(),
                "generation": start.actor_generation,
                "method": start.method.to_string(),
                "path": start.path.to_string(),
                "body": String::from_utf8_lossy(start.body.as_deref().unwrap_or_default()),
                "header": start.headers.get("x-test").map(|v| v.to_string()),
            });
            let reply = ToRivetTunnelMessage {
                message_id: MessageId {
                    gateway_id: msg.message_id.gateway_id,
                    request_id: msg.message_id.request_id,
                    message_index: 0,
                },
                message_kind: ToRivetTunnelMessageKind::ToRivetResponseStart(
                    ToRivetResponseStart {
                        status: 200,
                        headers: BTreeMap::from([
                            ("content-type".into(), "application/json".into()),
                            ("x-runner".into(), "rust".into()),
                        ]),
                        body: Some(body.to_string().into_bytes().into()),
                        stream: false,
                    },
                ),
            };
            client.tunnel_send(reply).unwrap();
        }
        let _ = self.tunnel.try_send(msg);
    }
}

impl Seen {
    /// The next start.
    pub async fn start(&mut self) -> ActorStart {
        tokio::time::timeout(WAIT, self.starts.recv())
            .await
            .expect("no start_actor in time")
            .unwrap()
    }

    /// The next stop.
    pub async fn stop(&mut self) -> Stop {
        tokio::time::timeout(WAIT, self.stops.recv())
            .await
            .expect("no stop_actor in time")
            .unwrap()
    }

    /// The next tunnel message.
    pub async fn tunnel(&mut self) -> ToEnvoyTunnelMessage {
        tokio::time::timeout(WAIT, self.tunnel.recv())
            .await
            .expect("no tunnel message in time")
            .unwrap()
    }

    /// Whether a start arrived (without waiting).
    pub fn has_start(&mut self) -> bool {
        !self.starts.is_empty()
    }
}

/// Connects a client to `gw` with `handler`.
pub async fn connect(gw: &TestGateway, handler: Arc<Recorder>) -> EnvoyClient {
    EnvoyClient::connect(gw.envoy_config(), handler, CancellationToken::new())
        .await
        .unwrap()
}

// === impl Proxy ===

/// A loopback TCP forwarder in front of the gateway whose connections a test can cut, to
/// drop the envoy's connection without restarting the gateway.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

impl Proxy {
    /// Forwards `127.0.0.1:0` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let task = {
            let open = open.clone();
            let conns = conns.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if !open.load(std::sync::atomic::Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection end
                    }
                    let handle = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(handle.abort_handle());
                }
            })
        };
        Proxy {
            addr,
            open,
            conns,
            task,
        }
    }

    /// Drops every forwarded connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The start command a gateway sends for generation `generation` of a `counter` keyed `key`,
/// encoded as a serverless start payload.
pub fn counter_start_payload(actor_id: &str, key: &str, generation: u32) -> Vec<u8> {
    use rivulet_wire::envoy::{
        ActorCheckpoint, ActorConfig, Command, CommandStartActor, CommandWrapper,
    };
    rivulet_lambda_runner::serverless::encode_start_payload(CommandWrapper {
        checkpoint: ActorCheckpoint {
            actor_id: actor_id.to_string().into(),
            generation,
            index: 1,
        },
        inner: Command::CommandStartActor(CommandStartActor {
            config: ActorConfig {
                name: "counter".to_string().into(),
                key: Some(key.to_string().into()),
                create_ts: 0,
                input: None,
            },
            hibernating_requests: vec![],
            preloaded_kv: None,
        }),
    })
}
