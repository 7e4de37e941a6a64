//! Gateway configuration: parsed once, typed, with units in the field names, from three
//! layers (built-in defaults, an optional TOML file, then flags and `RIVULET_*` environment
//! variables). A bad value fails here, before any socket is bound.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default port, the same as the Rivet engine so RivetKit's defaults work unchanged.
pub const DEFAULT_PORT: u16 = 6420;

/// Where durable state lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", deny_unknown_fields)]
pub enum StoreConfig {
    /// A redb file in the data directory (the default; one gateway node).
    Embedded,
    /// A DynamoDB table, found through the standard AWS configuration chain.
    Dynamodb {
        /// Table name.
        table: String,
    },
}

/// Default DynamoDB table name.
pub const DEFAULT_TABLE: &str = "rivulet";

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the public HTTP/WebSocket listener binds.
    pub listen: SocketAddr,
    /// Where the embedded store keeps its file.
    pub data_dir: PathBuf,
    /// Which store backend to use.
    pub store: StoreConfig,
    /// Admin token; `None` accepts every caller (local development).
    pub auth_token: Option<String>,
    /// Longest a store call may take before callers get `store.unavailable`.
    pub store_timeout_ms: u64,
    /// URL runners and clients are told to use for this gateway.
    pub public_url: String,
    /// Envoy protocol timing and limits.
    pub envoy: EnvoyConfig,
    /// Client gateway timing and limits.
    pub gateway: GatewayConfig,
    /// How this node finds and fences the others sharing its store.
    pub cluster: ClusterConfig,
    /// Runner pools declared at start (`--runner-configs`): name and the body `PUT
    /// /runner-configs/{name}` takes, already checked. Stored in the `default` namespace when
    /// the gateway starts, so a deployment brings its pools with it.
    pub runner_configs: Vec<(String, serde_json::Value)>,
}

/// Several gateway nodes on one store: who this node is and how long its actor leases last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Stable name of this node; a restarted node with the same name takes its leases back
    /// at once. `None`: derived from the node URL.
    pub node_id: Option<String>,
    /// URL other nodes forward this node's actors' requests to. `None`: the bound address
    /// (or the public URL when bound to all interfaces).
    pub node_url: Option<String>,
    /// How long an actor lease lasts without renewal: after a node dies, its actors are
    /// served elsewhere within this time. Renewed every third of it.
    pub lease_ms: u64,
}

/// Default actor lease duration.
pub const DEFAULT_LEASE_MS: u64 = 10_000;

/// Timing and limits of the envoy (runner) endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvoyConfig {
    /// How often the gateway pings each runner.
    pub ping_interval_ms: u64,
    /// A runner that has not answered a ping for this long is lost.
    pub ping_timeout_ms: u64,
    /// Told to runners: how long they keep actors after losing the gateway.
    pub lost_threshold_ms: i64,
    /// Told to runners: how long an actor may take to stop.
    pub actor_stop_threshold_ms: i64,
    /// Largest tunnel payload a runner may send.
    pub max_response_payload_bytes: u64,
    /// Frames queued towards one runner before the connection counts as stuck; client
    /// traffic may take half and waits for room beyond that.
    pub outbound_queue_frames: usize,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        Self {
            ping_interval_ms: 3_000,
            ping_timeout_ms: 15_000,
            lost_threshold_ms: 15_000,
            actor_stop_threshold_ms: 1_800_000,
            max_response_payload_bytes: 20 * 1024 * 1024,
            outbound_queue_frames: 1024,
        }
    }
}

/// Timing and limits of the client gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// How long a request waits for its actor to become ready.
    pub actor_ready_timeout_ms: u64,
    /// How long a request waits for the actor's response to start.
    pub response_start_timeout_ms: u64,
    /// How long a WebSocket waits for the actor to accept it.
    pub websocket_open_timeout_ms: u64,
    /// Largest request body accepted from a client.
    pub max_body_bytes: usize,
    /// Largest WebSocket message accepted from a client; a larger one closes the socket
    /// with 1009 `message.incoming_too_long`.
    pub max_ws_message_bytes: usize,
    /// How long a client may take to send a request's head (line and headers); a connection
    /// that sends none in time is closed, so idle or trickling sockets cannot pile up.
    /// Upgraded WebSockets are not affected.
    pub request_head_timeout_ms: u64,
    /// Request bodies all clients together may have buffered in the gateway at once; past
    /// it a request is refused with 503 `guard.overloaded` (and `retry-after`) instead of
    /// growing memory without bound.
    pub max_buffered_body_bytes: usize,
    /// Client-to-actor messages kept per hibernatable socket until the actor acknowledges them.
    pub max_pending_ws_messages: usize,
    /// How long a message to a client WebSocket may wait for the client to read. Past it (or
    /// once the socket's queue of 1,024 messages from the actor is full) the socket is closed
    /// with 1008 `guard.client_not_reading`; nothing else waits on a client that stopped
    /// reading.
    pub client_write_timeout_ms: u64,
    /// How long a client WebSocket may see no traffic before it puts its codec and buffers
    /// down ("parks"), to be picked up again by the next message either way; an idle socket
    /// then costs the gateway under 2 KiB, its connection included.
    pub client_park_after_ms: u64,
    /// Client WebSockets this node holds at once (awake actors' and hibernating alike); past
    /// it an upgrade is refused with 503 `guard.too_many_sockets` and `retry-after`, so a
    /// surge cannot take the node's memory. `rivulet serve` lowers it to fit the process's
    /// open-files limit, with room for everything else (see `open_files`).
    pub max_client_sockets: usize,
    /// How long a sleeping actor with nothing held for it keeps its supervisor in memory
    /// before unloading; the next request or due alarm loads it again (one store read).
    pub actor_unload_after_ms: u64,
    /// How often the store is scanned for due alarms no node holds in memory; DynamoDB pays
    /// 8 requests per scan (see `scheduler`), so the default 16 s costs 0.5 requests/s.
    pub alarm_scan_interval_ms: u64,
    /// Accept `process` runner pools, which run a command on this host for each actor
    /// request. Off by default: anyone who may call the API could run commands. `rivulet
    /// dev` turns it on.
    pub allow_process_pools: bool,
}

impl GatewayConfig {
    /// [`GatewayConfig::actor_unload_after_ms`] as a duration.
    pub fn actor_unload_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.actor_unload_after_ms)
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            actor_ready_timeout_ms: 30_000,
            response_start_timeout_ms: 300_000,
            websocket_open_timeout_ms: 15_000,
            max_body_bytes: 20 * 1024 * 1024,
            max_ws_message_bytes: 32 * 1024 * 1024,
            max_buffered_body_bytes: 256 * 1024 * 1024,
            request_head_timeout_ms: 30_000,
            max_pending_ws_messages: 65_535,
            client_write_timeout_ms: 30_000,
            client_park_after_ms: 5_000,
            max_client_sockets: 200_000,
            actor_unload_after_ms: 10_000,
            alarm_scan_interval_ms: 16_000,
            allow_process_pools: false,
        }
    }
}

/// The TOML file's shape; every field optional so flags can fill the rest.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Host to bind.
    pub host: Option<IpAddr>,
    /// Port to bind.
    pub port: Option<u16>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Admin token.
    pub auth_token: Option<String>,
    /// Public URL.
    pub public_url: Option<String>,
    /// Store call time limit.
    pub store_timeout_ms: Option<u64>,
    /// `embedded` or `dynamodb`.
    pub store: Option<String>,
    /// DynamoDB table.
    pub table: Option<String>,
    /// Node name.
    pub node_id: Option<String>,
    /// Node URL for forwarding.
    pub node_url: Option<String>,
    /// Actor lease duration.
    pub lease_ms: Option<u64>,
    /// Pools declared at start, `[runner_configs.NAME]` tables.
    pub runner_configs: Option<serde_json::Map<String, serde_json::Value>>,
    /// Envoy section.
    pub envoy: EnvoyConfig,
    /// Gateway section.
    pub gateway: GatewayConfig,
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--host` / `RIVULET_HOST`.
    pub host: Option<IpAddr>,
    /// `--port` / `RIVULET_PORT`.
    pub port: Option<u16>,
    /// `--data-dir` / `RIVULET_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--token` / `RIVULET_TOKEN`.
    pub auth_token: Option<String>,
    /// `--public-url` / `RIVULET_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// `--store-timeout-ms` / `RIVULET_STORE_TIMEOUT_MS`.
    pub store_timeout_ms: Option<u64>,
    /// `--store` / `RIVULET_STORE`.
    pub store: Option<String>,
    /// `--table` / `RIVULET_TABLE`.
    pub table: Option<String>,
    /// `--node-id` / `RIVULET_NODE_ID`.
    pub node_id: Option<String>,
    /// `--node-url` / `RIVULET_NODE_URL`.
    pub node_url: Option<String>,
    /// `--lease-ms` / `RIVULET_LEASE_MS`.
    pub lease_ms: Option<u64>,
    /// `--runner-configs` / `RIVULET_RUNNER_CONFIGS`: a JSON object of pools.
    pub runner_configs: Option<String>,
    /// `--allow-process-pools` / `RIVULET_ALLOW_PROCESS_POOLS`.
    pub allow_process_pools: bool,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// Which setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Builds the configuration from an optional TOML file and overrides.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let file_cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        Self::from_parts(file_cfg, overrides)
    }

    /// Merges a parsed file with overrides and validates the result.
    pub fn from_parts(file: FileConfig, o: Overrides) -> Result<Self, ConfigError> {
        let host = o
            .host
            .or(file.host)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = o.port.or(file.port).unwrap_or(DEFAULT_PORT);
        let listen = SocketAddr::new(host, port);
        let public_url = o
            .public_url
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        let store = match o.store.or(file.store).as_deref() {
            None | Some("embedded") => StoreConfig::Embedded,
            Some("dynamodb") => StoreConfig::Dynamodb {
                table: o
                    .table
                    .or(file.table)
                    .unwrap_or_else(|| DEFAULT_TABLE.to_string()),
            },
            Some(other) => {
                return Err(ConfigError::Invalid {
                    field: "store",
                    reason: format!("unknown store {other:?}; use embedded or dynamodb"),
                })
            }
        };
        let mut gateway = file.gateway;
        if o.allow_process_pools {
            gateway.allow_process_pools = true;
        }
        let runner_configs = declared_pools(
            o.runner_configs.as_deref(),
            file.runner_configs,
            gateway.allow_process_pools,
        )?;
        let node_url = match o.node_url.or(file.node_url).filter(|s| !s.is_empty()) {
            Some(url) if url == "auto" => Some(auto_node_url(port)?),
            other => other,
        };
        let cfg = Config {
            runner_configs,
            listen,
            store,
            data_dir: o
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(".rivulet")),
            auth_token: o.auth_token.or(file.auth_token).filter(|t| !t.is_empty()),
            store_timeout_ms: o
                .store_timeout_ms
                .or(file.store_timeout_ms)
                .unwrap_or(10_000),
            public_url,
            envoy: file.envoy,
            gateway,
            cluster: ClusterConfig {
                node_id: o.node_id.or(file.node_id).filter(|s| !s.is_empty()),
                node_url,
                lease_ms: o.lease_ms.or(file.lease_ms).unwrap_or(DEFAULT_LEASE_MS),
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.envoy;
        if e.ping_interval_ms == 0 || e.ping_timeout_ms <= e.ping_interval_ms {
            return Err(ConfigError::Invalid {
                field: "envoy.ping_timeout_ms",
                reason: "must be greater than envoy.ping_interval_ms, which must be non-zero"
                    .into(),
            });
        }
        if e.outbound_queue_frames < 2 {
            return Err(ConfigError::Invalid {
                field: "envoy.outbound_queue_frames",
                reason: "must be at least 2 (half of it is for client traffic)".into(),
            });
        }
        if self.store_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "store_timeout_ms",
                reason: "must be non-zero".into(),
            });
        }
        let room = rivulet_wire::ENVOY_MAX_FRAME_BYTES - rivulet_wire::ENVOY_FRAME_ENVELOPE_BYTES;
        for (field, value) in [
            ("gateway.max_body_bytes", self.gateway.max_body_bytes),
            (
                "gateway.max_ws_message_bytes",
                self.gateway.max_ws_message_bytes,
            ),
        ] {
            // One client payload travels to the runner in one envoy frame.
            if value == 0 || value > room {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!(
                        "must be between 1 and {room} bytes (an envoy frame holds at most {} bytes, envelope included)",
                        rivulet_wire::ENVOY_MAX_FRAME_BYTES
                    ),
                });
            }
        }
        if self.gateway.max_buffered_body_bytes < self.gateway.max_body_bytes {
            return Err(ConfigError::Invalid {
                field: "gateway.max_buffered_body_bytes",
                reason: "must be at least gateway.max_body_bytes".into(),
            });
        }
        if self.gateway.request_head_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "gateway.request_head_timeout_ms",
                reason: "must be non-zero".into(),
            });
        }
        if self.gateway.actor_ready_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "gateway.actor_ready_timeout_ms",
                reason: "must be non-zero".into(),
            });
        }
        if self.cluster.lease_ms < 300 {
            return Err(ConfigError::Invalid {
                field: "lease_ms",
                reason: "must be at least 300 (it is renewed every third of it)".into(),
            });
        }
        if matches!(self.store, StoreConfig::Dynamodb { .. })
            && self.listen.ip().is_unspecified()
            && self.cluster.node_url.is_none()
        {
            // Other nodes forward to this URL and tell nodes apart by it; the public URL
            // (often a load balancer) is the same for every node.
            return Err(ConfigError::Invalid {
                field: "node_url",
                reason: "bound to all interfaces on DynamoDB: set --node-url (RIVULET_NODE_URL) to the URL the other gateway nodes reach this one at".into(),
            });
        }
        if self.store_timeout_ms.saturating_mul(3) > self.cluster.lease_ms.saturating_mul(2)
            && matches!(self.store, StoreConfig::Dynamodb { .. })
        {
            tracing::warn!(
                store_timeout_ms = self.store_timeout_ms,
                lease_ms = self.cluster.lease_ms,
                "a store call may outlast most of a lease; renewals give up at the lease's end"
            );
        }
        if let Some(url) = &self.cluster.node_url {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(ConfigError::Invalid {
                    field: "node_url",
                    reason: format!("{url} is not an http(s) URL"),
                });
            }
        }
        if !self.public_url.starts_with("http://") && !self.public_url.starts_with("https://") {
            return Err(ConfigError::Invalid {
                field: "public_url",
                reason: format!("{} is not an http(s) URL", self.public_url),
            });
        }
        Ok(())
    }

    /// A configuration for tests: loopback, any port, the given data directory.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let o = Overrides {
            port: Some(0),
            data_dir: Some(data_dir),
            ..Overrides::default()
        };
        // Defaults always validate.
        match Self::from_parts(FileConfig::default(), o) {
            Ok(cfg) => cfg,
            Err(err) => unreachable!("default config is valid: {err}"),
        }
    }
}

/// The pools declared at start: from the flag's JSON object, else the file's tables; each
/// body checked as `PUT /runner-configs/{name}` checks it (a URL pool's `/metadata` is fetched
/// when it is stored, at start).
fn declared_pools(
    flag: Option<&str>,
    file: Option<serde_json::Map<String, serde_json::Value>>,
    allow_process: bool,
) -> Result<Vec<(String, serde_json::Value)>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        field: "runner_configs",
        reason,
    };
    let pools = match flag.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => {
                return Err(invalid(
                    "must be a JSON object of pool name to runner config".into(),
                ))
            }
            Err(err) => return Err(invalid(format!("is not valid JSON: {err}"))),
        },
        None => file.unwrap_or_default(),
    };
    let allow = crate::pool::Allow {
        process: allow_process,
    };
    pools
        .into_iter()
        .map(|(name, body)| {
            if name.is_empty() || name.len() > 128 {
                return Err(invalid(format!(
                    "pool name {name:?} must be 1 to 128 characters"
                )));
            }
            crate::pool::parse(&body, allow)
                .map_err(|err| invalid(format!("pool {name}: {}", err.message)))?;
            Ok((name, body))
        })
        .collect()
}

/// `--node-url auto`: `http://{this host's address}:{port}`, the address being the one the
/// host would send from towards other machines (a container's or VM's private address, as
/// the other nodes of a cluster reach it). No packet is sent.
fn auto_node_url(port: u16) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        field: "node_url",
        reason,
    };
    if port == 0 {
        return Err(invalid("auto needs a fixed --port".into()));
    }
    // A documentation address (TEST-NET-1): only the route towards it is looked up.
    let probe = SocketAddr::from(([192, 0, 2, 1], 9));
    let ip = local_address_towards(probe).map_err(|err| {
        invalid(format!(
            "auto: cannot find this host's address ({err}); set the URL other nodes reach this one at"
        ))
    })?;
    if ip.is_loopback() || ip.is_unspecified() {
        return Err(invalid(format!(
            "auto: this host's only address is {ip}, which other nodes cannot reach; set the URL"
        )));
    }
    Ok(match ip {
        IpAddr::V4(ip) => format!("http://{ip}:{port}"),
        IpAddr::V6(ip) => format!("http://[{ip}]:{port}"),
    })
}

/// The local address the system would send from towards `probe` (a connected UDP socket
/// sends nothing).
fn local_address_towards(probe: SocketAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = if probe.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(probe)?;
    Ok(socket.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn auto_node_url_is_the_address_towards_other_hosts() {
        let towards_loopback = local_address_towards(SocketAddr::from(([127, 0, 0, 1], 9)));
        assert_eq!(towards_loopback.unwrap(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let o = Overrides {
            node_url: Some("auto".into()),
            port: Some(0),
            ..Default::default()
        };
        let err = Config::from_parts(FileConfig::default(), o).unwrap_err();
        assert!(err.to_string().contains("fixed --port"), "{err}");
        // Wherever this runs, `auto` is either a routable http URL on the port or a clear
        // refusal naming the setting (a machine with no route out).
        let o = Overrides {
            node_url: Some("auto".into()),
            port: Some(7000),
            ..Default::default()
        };
        match Config::from_parts(FileConfig::default(), o) {
            Ok(cfg) => {
                let url = cfg.cluster.node_url.unwrap();
                assert!(
                    url.starts_with("http://") && url.ends_with(":7000"),
                    "{url}"
                );
                assert!(
                    !url.contains("127.0.0.1") && !url.contains("0.0.0.0"),
                    "{url}"
                );
            }
            Err(err) => assert!(err.to_string().contains("node_url"), "{err}"),
        }
    }

    #[test]
    fn declared_pools_are_checked_like_the_api() {
        let load = |json: &str, allow_process: bool| {
            Config::from_parts(
                FileConfig::default(),
                Overrides {
                    runner_configs: Some(json.into()),
                    allow_process_pools: allow_process,
                    ..Default::default()
                },
            )
        };
        let cfg = load(
            r#"{"fn": {"lambda": {"function": "arn:aws:lambda:eu-west-1:1:function:r", "request_lifespan": 600}}}"#,
            false,
        )
        .unwrap();
        assert_eq!(cfg.runner_configs.len(), 1);
        assert_eq!(cfg.runner_configs[0].0, "fn");
        let err = load(r#"{"fn": {"lambda": {"request_lifespan": 901}}}"#, false).unwrap_err();
        assert!(err.to_string().contains("pool fn"), "{err}");
        let err = load("[1]", false).unwrap_err();
        assert!(err.to_string().contains("JSON object"), "{err}");
        let err = load("{", false).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let process = r#"{"p": {"process": {"command": "true"}}}"#;
        assert!(
            load(process, false).is_err(),
            "process pools need the opt-in"
        );
        assert!(load(process, true).is_ok());
        // The file's tables, when no flag is given.
        let file: FileConfig =
            toml::from_str(
                "[runner_configs.web.serverless]\nurl = \"http://127.0.0.1:1/api\"\nrequest_lifespan = 300\n",
            )
                .unwrap();
        let cfg = Config::from_parts(file, Overrides::default()).unwrap();
        assert_eq!(cfg.runner_configs[0].0, "web");
    }

    #[test]
    fn defaults_match_the_engine() {
        let cfg = Config::from_parts(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:6420");
        assert_eq!(cfg.data_dir, PathBuf::from(".rivulet"));
        assert_eq!(cfg.public_url, "http://127.0.0.1:6420");
    }

    #[test]
    fn overrides_win_over_file() {
        let file: FileConfig =
            toml::from_str("port = 7000\n[envoy]\nping_interval_ms = 500\n").unwrap();
        let cfg = Config::from_parts(
            file,
            Overrides {
                port: Some(7001),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 7001);
        assert_eq!(cfg.envoy.ping_interval_ms, 500);
    }

    #[test]
    fn store_selection() {
        let cfg = Config::from_parts(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(cfg.store, StoreConfig::Embedded);
        let o = Overrides {
            store: Some("dynamodb".into()),
            ..Default::default()
        };
        let cfg = Config::from_parts(FileConfig::default(), o).unwrap();
        assert_eq!(
            cfg.store,
            StoreConfig::Dynamodb {
                table: "rivulet".into()
            }
        );
        let o = Overrides {
            store: Some("postgres".into()),
            ..Default::default()
        };
        assert!(Config::from_parts(FileConfig::default(), o).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
        let file: FileConfig =
            toml::from_str("[envoy]\nping_interval_ms = 5000\nping_timeout_ms = 100\n").unwrap();
        assert!(matches!(
            Config::from_parts(file, Overrides::default()),
            Err(ConfigError::Invalid { .. })
        ));
    }
}
