//! The runner's command line, for the `rivulet-runner` binary and for users' own binaries
//! (`fn main() -> ExitCode { rivulet_lambda_runner::cli::main(my_registry()) }`).
//!
//! Without a subcommand it runs as an AWS Lambda function when the Lambda runtime API is
//! present (`AWS_LAMBDA_RUNTIME_API`), and as a long-lived runner otherwise.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::actor::Registry;
use crate::entry::{self, Connections};
use crate::runner::Runner;
use crate::serverless::DEFAULT_DRAIN_MARGIN;

#[derive(Parser)]
#[command(
    name = "rivulet-runner",
    version,
    about = "Runs Rust actors for a Rivulet gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Keep one connection to a gateway and run whatever actors it places here.
    Serve(ServeArgs),
    /// Run as an AWS Lambda function: each invocation starts one actor.
    Lambda(ServerlessArgs),
    /// Serve the serverless URL protocol (`POST {base}/start`) over HTTP.
    Http(HttpArgs),
    /// Serve one actor whose start command arrives on stdin, then exit: the command of a
    /// gateway's `process` pool (`rivulet runners put NAME --command "rivulet-runner once"`).
    Once(OnceArgs),
}

#[derive(Args)]
struct OnceArgs {
    /// Gateway URL.
    #[arg(long, env = "RIVET_ENDPOINT", default_value = "http://127.0.0.1:6420")]
    endpoint: String,
    /// Namespace.
    #[arg(long, env = "RIVET_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Pool (runner config) this request belongs to.
    #[arg(long, env = "RIVET_POOL", default_value = "default")]
    pool: String,
    /// Token the gateway requires, if any.
    #[arg(long, env = "RIVET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long this request may serve its actor (the pool's lifespan); the gateway moves
    /// the actor before then, this is the backstop.
    #[arg(long, env = "RIVULET_LIFESPAN_MS")]
    lifespan_ms: Option<u64>,
    /// Time kept back before the lifespan's end to hand the actor back, if the gateway has
    /// not moved it by then.
    #[arg(long, env = "RIVULET_ONCE_DRAIN_MARGIN_MS", default_value_t = 500)]
    drain_margin_ms: u64,
    /// A standby request: with an empty stdin, connect under this runner key and wait for
    /// the gateway to send the start (set by the gateway shortly before an actor moves).
    #[arg(long, env = "RIVULET_STANDBY_KEY")]
    standby_key: Option<String>,
}

#[derive(Args, Default)]
struct ServeArgs {
    /// Gateway URL.
    #[arg(long, env = "RIVET_ENDPOINT", default_value = "http://127.0.0.1:6420")]
    endpoint: String,
    /// Namespace.
    #[arg(long, env = "RIVET_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Pool (runner config) this runner belongs to.
    #[arg(long, env = "RIVET_POOL", default_value = "default")]
    pool: String,
    /// Token the gateway requires, if any.
    #[arg(long, env = "RIVET_TOKEN")]
    token: Option<String>,
    /// Runner key shown in `GET /envoys` [default: random per process]. A process restarted
    /// under the same key is known to the gateway as a new process: the actors the old one
    /// ran are restarted or put to sleep at once (their crash policy), never waited on.
    /// Two live processes must not share a key: the newer evicts the older, which exits.
    #[arg(long, env = "RIVET_ENVOY_KEY")]
    envoy_key: Option<String>,
}

#[derive(Args, Default)]
struct ServerlessArgs {
    /// Time kept back before a request's deadline to stop the actor and leave.
    #[arg(long, env = "RIVULET_DRAIN_MARGIN_MS", default_value_t = DEFAULT_DRAIN_MARGIN.as_millis() as u64)]
    drain_margin_ms: u64,
    /// Longest one request serves its actor, below the platform's own deadline.
    #[arg(long, env = "RIVULET_MAX_INVOCATION_MS")]
    max_invocation_ms: Option<u64>,
}

#[derive(Args)]
struct HttpArgs {
    /// Address to listen on.
    #[arg(long, env = "RIVULET_RUNNER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Path the routes live under.
    #[arg(long, env = "RIVULET_RUNNER_BASE_PATH", default_value = "/api/rivet")]
    base_path: String,
    #[command(flatten)]
    serverless: ServerlessArgs,
}

fn init_logging() {
    let filter = std::env::var("RIVET_LOG_LEVEL")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    // Colours only on a terminal: a gateway's process pool, CloudWatch and log files get
    // plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Parses the command line and runs the runner with `registry`'s actor types.
pub fn main(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("rivulet-runner: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or_else(|| {
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
            Command::Lambda(ServerlessArgs {
                drain_margin_ms: std::env::var("RIVULET_DRAIN_MARGIN_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(DEFAULT_DRAIN_MARGIN.as_millis() as u64),
                max_invocation_ms: std::env::var("RIVULET_MAX_INVOCATION_MS")
                    .ok()
                    .and_then(|v| v.parse().ok()),
            })
        } else {
            Command::Serve(ServeArgs::parse_env())
        }
    });
    let runner = Runner::new(registry);
    let result: Result<(), String> = runtime.block_on(async move {
        match command {
            Command::Serve(args) => {
                let mut config = entry::envoy_config(&runner, &args.endpoint);
                config.namespace = args.namespace;
                config.pool_name = args.pool;
                config.token = args.token.filter(|t| !t.is_empty());
                if let Some(key) = args.envoy_key {
                    config.envoy_key = key;
                }
                let stop = CancellationToken::new();
                let on_signal = stop.clone();
                tokio::spawn(async move {
                    entry::shutdown_signal().await;
                    on_signal.cancel();
                });
                entry::serve::run(runner, config, stop)
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Lambda(args) => {
                let mut conns = Connections::new(
                    runner,
                    Duration::from_millis(args.drain_margin_ms),
                    CancellationToken::new(),
                );
                conns.max_invocation = args.max_invocation_ms.map(Duration::from_millis);
                let conns = Arc::new(conns);
                entry::lambda::run(conns).await.map_err(|e| e.to_string())
            }
            Command::Once(args) => run_once(runner, args).await,
            Command::Http(args) => {
                let cancel = CancellationToken::new();
                let mut conns = Connections::new(
                    runner,
                    Duration::from_millis(args.serverless.drain_margin_ms),
                    cancel.clone(),
                );
                conns.max_invocation = args.serverless.max_invocation_ms.map(Duration::from_millis);
                let conns = Arc::new(conns);
                let app = entry::http::router(conns.clone(), &args.base_path);
                let listener = tokio::net::TcpListener::bind(args.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
                tracing::info!(addr = %args.listen, base = %args.base_path, "serverless runner listening");
                // The event streams last as long as their actors: hand the actors back first,
                // which ends the streams, so the server can finish its graceful shutdown.
                let leaving = conns.clone();
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        entry::shutdown_signal().await;
                        leaving.shutdown().await;
                    })
                    .await
                    .map_err(|e| e.to_string());
                cancel.cancel();
                served
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rivulet-runner: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `once`: the start from stdin (or, with `RIVULET_STANDBY_KEY` and an empty stdin, the
/// start the gateway sends over a connection under that key), served until its actor stops
/// or the lifespan ends.
async fn run_once(runner: Arc<Runner>, args: OnceArgs) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut payload = Vec::new();
    tokio::io::stdin()
        .take(crate::serverless::MAX_START_PAYLOAD as u64 + 1)
        .read_to_end(&mut payload)
        .await
        .map_err(|e| format!("cannot read the start command from stdin: {e}"))?;
    let start = match args.standby_key.filter(|k| !k.is_empty()) {
        Some(key) if payload.is_empty() => crate::serverless::Start::Standby(key),
        Some(_) => return Err("a standby request takes no start command on stdin".into()),
        None => crate::serverless::Start::Command(Box::new(
            crate::serverless::parse_start_payload(&payload).map_err(|e| e.to_string())?,
        )),
    };
    let cancel = CancellationToken::new();
    let conns = Arc::new(Connections::new(
        runner,
        Duration::from_millis(args.drain_margin_ms),
        cancel.clone(),
    ));
    let deadline = args
        .lifespan_ms
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let request = crate::serverless::StartRequest {
        endpoint: args.endpoint,
        namespace: args.namespace,
        pool_name: args.pool,
        token: args.token.filter(|t| !t.is_empty()),
        start,
    };
    let leaving = conns.clone();
    tokio::spawn(async move {
        entry::shutdown_signal().await;
        leaving.shutdown().await;
    });
    let served = conns
        .serve(request, conns.deadline(deadline))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(actor = ?served.actor, outcome = ?served.outcome, "request done");
    conns.shutdown().await;
    cancel.cancel();
    match served.outcome {
        crate::serverless::Outcome::GatewayLost => Err("lost the gateway connection".into()),
        _ => Ok(()),
    }
}

impl ServeArgs {
    /// The serve settings from the environment alone (no subcommand given).
    fn parse_env() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(["rivulet-runner"]).args
    }
}
