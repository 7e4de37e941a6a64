//! The `rivulet` binary: parses the command line, sets up logging and the store, and runs
//! the gateway until Ctrl-C or SIGTERM. `rivulet dev` also starts a demo runner process.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rivulet_gateway::config::{Config, Overrides};
use rivulet_gateway::startup::{self, StartupError};
use rivulet_gateway::store::dynamo::DynamoStore;
use tokio_util::sync::CancellationToken;

mod runners_cmd;

#[derive(Parser)]
#[command(
    name = "rivulet",
    version,
    about = "Rivulet: a gateway that runs RivetKit actors, wire-compatible with the Rivet engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: `text` (coloured on a terminal) or `json` (one object per line, with the
    /// actor's span fields: actor id, key and generation) for log collectors.
    #[arg(long, global = true, env = "RIVULET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON objects, one per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway alone.
    Serve(ServeArgs),
    /// Run the gateway with a demo runner you can talk to.
    Dev(DevArgs),
    /// Print the DynamoDB table schema as JSON (CreateTable input), or create the table.
    Schema(SchemaArgs),
    /// Register, list and delete runner pools (serverless URLs, Lambda functions, local
    /// commands) on a running gateway.
    Runners(runners_cmd::RunnersArgs),
}

#[derive(Args)]
struct SchemaArgs {
    /// Create the table (on-demand billing) if it does not exist, instead of printing.
    #[arg(long)]
    apply: bool,
    /// Table name.
    #[arg(long, env = "RIVULET_TABLE", default_value = rivulet_gateway::config::DEFAULT_TABLE)]
    table: String,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "RIVULET_HOST")]
    host: Option<IpAddr>,
    /// Port to bind [default: 6420, like the Rivet engine].
    #[arg(long, env = "RIVULET_PORT")]
    port: Option<u16>,
    /// Where the embedded store keeps its data [default: ./.rivulet].
    #[arg(long, env = "RIVULET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Accept `process` runner pools, which run a command on this host per actor request
    /// (anyone who may call the API could run commands; `rivulet dev` turns this on).
    #[arg(long, env = "RIVULET_ALLOW_PROCESS_POOLS")]
    allow_process_pools: bool,
    /// Admin token runners and API callers must present; unset accepts everyone.
    #[arg(long, env = "RIVULET_TOKEN")]
    token: Option<String>,
    /// URL to advertise for this gateway [default: http://HOST:PORT].
    #[arg(long, env = "RIVULET_PUBLIC_URL")]
    public_url: Option<String>,
    /// Longest a store call may take before callers get a `store.unavailable` error
    /// [default: 10000].
    #[arg(long, env = "RIVULET_STORE_TIMEOUT_MS")]
    store_timeout_ms: Option<u64>,
    /// Where state lives: `embedded` (a file in --data-dir) or `dynamodb` (AWS configuration
    /// from the standard chain; AWS_ENDPOINT_URL_DYNAMODB for a local server) [default: embedded].
    #[arg(long, env = "RIVULET_STORE")]
    store: Option<String>,
    /// DynamoDB table, with --store dynamodb [default: rivulet].
    #[arg(long, env = "RIVULET_TABLE")]
    table: Option<String>,
    /// Stable name of this node among gateways sharing a DynamoDB table; a restarted node
    /// with the same name takes its actors back at once [default: from --node-url].
    #[arg(long, env = "RIVULET_NODE_ID")]
    node_id: Option<String>,
    /// URL the other nodes use to forward requests for actors this node serves; `auto`: this
    /// host's private address and the port (containers, VMs) [default: http://HOST:PORT;
    /// required on DynamoDB when bound to all interfaces].
    #[arg(long, env = "RIVULET_NODE_URL")]
    node_url: Option<String>,
    /// How long an actor stays with a node that stopped renewing its lease; a dead node's
    /// actors are served by another within this time [default: 10000].
    #[arg(long, env = "RIVULET_LEASE_MS")]
    lease_ms: Option<u64>,
    /// Runner pools to create or update at start, as a JSON object of pool name to the body
    /// `PUT /runner-configs/{pool}` takes, e.g. `{"lambda": {"lambda": {"function":
    /// "arn:...", "request_lifespan": 900}}}`; stored in the `default` namespace.
    #[arg(long, env = "RIVULET_RUNNER_CONFIGS")]
    runner_configs: Option<String>,
    /// TOML file with any of the settings above plus [envoy] and [gateway] tuning.
    #[arg(long, env = "RIVULET_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct DevArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Command that starts the runner with the demo actors; it gets RIVET_ENDPOINT
    /// [default: the Rust runner `rivulet-runner serve` next to this binary, else
    /// examples/demo/run.sh, the same actors written with RivetKit].
    #[arg(long, env = "RIVULET_DEV_RUNNER")]
    runner: Option<String>,
    /// Run the demo actors as a serverless platform would: each actor in its own process
    /// (`rivulet-runner once`, or --runner's command) that lives LIFESPAN_S seconds (default
    /// 30), moved to a fresh one shortly before it ends, with clients staying connected.
    /// Registers the pool `default` as a `process` pool instead of starting a long-lived
    /// runner.
    #[arg(
        long,
        value_name = "LIFESPAN_S",
        num_args = 0..=1,
        default_missing_value = "30",
        env = "RIVULET_DEV_SERVERLESS"
    )]
    serverless: Option<u64>,
}

/// What `rivulet dev` runs the demo actors with.
enum DemoRunner {
    /// A long-lived runner process (the command, or the default).
    LongLived(Option<String>),
    /// A `process` pool: the command per actor request, with this lifespan.
    Serverless {
        command: Option<String>,
        lifespan_s: u64,
    },
}

fn init_logging(format: LogFormat) {
    let filter = std::env::var("RIVET_LOG_LEVEL")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    let builder =
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter));
    match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
        // Colours only on a terminal; log collectors get plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}

fn load(args: &ServeArgs) -> Result<Config, StartupError> {
    let overrides = Overrides {
        host: args.host,
        port: args.port,
        data_dir: args.data_dir.clone(),
        auth_token: args.token.clone(),
        public_url: args.public_url.clone(),
        store_timeout_ms: args.store_timeout_ms,
        store: args.store.clone(),
        table: args.table.clone(),
        node_id: args.node_id.clone(),
        node_url: args.node_url.clone(),
        lease_ms: args.lease_ms,
        runner_configs: args.runner_configs.clone(),
        allow_process_pools: args.allow_process_pools,
    };
    Ok(Config::load(args.config.as_deref(), overrides)?)
}

/// jemalloc, because glibc's per-thread arenas keep the memory of actors that woke and slept
/// (see docs/ARCHITECTURE.md, "Memory").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let (args, runner) = match cli.command {
        Command::Serve(args) => (args, None),
        Command::Dev(mut dev) => {
            dev.serve.allow_process_pools = true;
            let demo = match dev.serverless {
                Some(lifespan_s) => DemoRunner::Serverless {
                    command: dev.runner,
                    lifespan_s,
                },
                None => DemoRunner::LongLived(dev.runner),
            };
            (dev.serve, Some(demo))
        }
        Command::Schema(schema) => return run_schema(schema),
        Command::Runners(runners) => return runners_cmd::run(runners),
    };
    let config = match load(&args) {
        Ok(c) => c,
        Err(err) => return fail(&err),
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            return fail(&StartupError::Internal(format!(
                "cannot start runtime: {err}"
            )))
        }
    };
    match rt.block_on(serve(config, runner)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Startup(err)) => fail(&err),
        Err(Failure::Run(err)) => {
            eprintln!("rivulet: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a start-up failure as its one line and returns its exit code.
fn fail(err: &StartupError) -> ExitCode {
    eprintln!("rivulet: {err}");
    ExitCode::from(err.exit_code())
}

/// Why `serve` returned: before serving (one line, sysexits code) or while serving.
enum Failure {
    Startup(StartupError),
    Run(anyhow::Error),
}

impl From<StartupError> for Failure {
    fn from(err: StartupError) -> Self {
        Failure::Startup(err)
    }
}

fn run_schema(args: SchemaArgs) -> ExitCode {
    if !args.apply {
        let mut schema = rivulet_gateway::store::dynamo::table_schema_json();
        schema["TableName"] = serde_json::Value::String(args.table);
        println!(
            "{}",
            serde_json::to_string_pretty(&schema).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            return fail(&StartupError::Internal(format!(
                "cannot start runtime: {err}"
            )))
        }
    };
    let table = args.table.clone();
    match rt.block_on(DynamoStore::connect_checked(&args.table, true)) {
        Ok(_) => {
            eprintln!("rivulet: table {table} is ready");
            ExitCode::SUCCESS
        }
        Err(problem) => fail(&StartupError::Dynamo { table, problem }),
    }
}

async fn serve(mut config: Config, runner: Option<DemoRunner>) -> Result<(), Failure> {
    rivulet_gateway::open_files::apply(&mut config.gateway.max_client_sockets);
    // `rivulet dev` may create its DynamoDB table; `serve` never creates infrastructure.
    let store = startup::open_store(&config, runner.is_some()).await?;
    let listener = startup::bind(config.listen).await?;
    let endpoint = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|e| StartupError::Internal(e.to_string()))?
    );
    let shutdown = CancellationToken::new();
    let child = match runner {
        Some(DemoRunner::LongLived(runner)) => {
            let child = dev::start_runner(runner, &endpoint).map_err(Failure::Run)?;
            dev::print_banner(&endpoint);
            Some(child)
        }
        Some(DemoRunner::Serverless {
            command,
            lifespan_s,
        }) => {
            let command = command.unwrap_or_else(dev::default_once_command);
            tokio::spawn(dev::register_process_pool(
                endpoint.clone(),
                config.auth_token.clone(),
                command,
                lifespan_s,
                shutdown.clone(),
            ));
            dev::print_banner(&endpoint);
            None
        }
        None => None,
    };
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            // The demo runner stops first, while the gateway can still take its last
            // state saves.
            if let Some(child) = child {
                dev::stop_runner(child).await;
            }
            shutdown.cancel();
            wait_for_signal().await;
            tracing::warn!("second signal, exiting now");
            std::process::exit(130);
        });
    }
    rivulet_gateway::run(listener, config, store, shutdown)
        .await
        .map_err(Failure::Run)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

mod dev {
    //! `rivulet dev`: the demo runner next to the gateway.

    use tokio::process::{Child, Command};

    /// The RivetKit demo app, used when the Rust runner was not built next to `rivulet`.
    const NODE_DEMO_RUNNER: &str = "examples/demo/run.sh";

    /// The Rust runner with the example actors (`counter`, `chat`) if it sits next to this
    /// binary (`cargo build` puts it there), else the same actors written with RivetKit.
    fn default_runner() -> String {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("rivulet-runner")))
            .filter(|path| path.exists());
        match beside {
            Some(path) => format!("'{}' serve", path.display()),
            None => NODE_DEMO_RUNNER.to_string(),
        }
    }

    /// `rivulet-runner once` next to this binary: the demo actors, one per process.
    pub fn default_once_command() -> String {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("rivulet-runner")))
            .unwrap_or_else(|| "rivulet-runner".into());
        format!("'{}' once", beside.display())
    }

    /// Registers the pool `default` as a `process` pool of `command` once the gateway
    /// answers, as `rivulet runners put default --command ...` would. The drain grace is a
    /// tenth of the lifespan, at least 1 s.
    pub async fn register_process_pool(
        endpoint: String,
        token: Option<String>,
        command: String,
        lifespan_s: u64,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let grace_s = (lifespan_s / 10).max(1);
        let body = serde_json::json!({"datacenters": {"default": {"process": {
            "command": command,
            "request_lifespan": lifespan_s,
            "drain_grace_period": grace_s,
        }}}});
        let client = reqwest::Client::new();
        let url = format!("{endpoint}/runner-configs/default?namespace=default");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let mut put = client.put(&url).json(&body);
            if let Some(token) = &token {
                put = put.bearer_auth(token);
            }
            match put.send().await {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(%command, lifespan_s, grace_s, "demo actors run as a process pool: one process per actor, moved before each lifespan ends");
                    return;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    tracing::error!(%status, answer = %text, "registering the demo process pool failed");
                    return;
                }
                Err(err) if tokio::time::Instant::now() > deadline => {
                    tracing::error!(error = %err, "registering the demo process pool failed: the gateway did not answer");
                    return;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
    }

    pub fn start_runner(runner: Option<String>, endpoint: &str) -> anyhow::Result<Child> {
        let cmd = runner.unwrap_or_else(default_runner);
        tracing::info!(command = %cmd, "starting demo runner");
        // Its own process group, so stopping it also stops whatever it started. The shell
        // in front holds a pipe from this process: when `rivulet dev` ends in any way, even
        // SIGKILL, the pipe closes and the shell stops the runner, so none is left behind.
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{cmd} </dev/null & r=$!\n\
                 trap 'kill -TERM $r 2>/dev/null; wait $r; exit' TERM INT\n\
                 read _parent_gone\n\
                 kill -TERM $r 2>/dev/null; wait $r"
            ))
            .env("RIVET_ENDPOINT", endpoint)
            .env("RIVET_RUN_SERVICES", "0")
            .stdin(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start demo runner `{cmd}`: {e}"))
    }

    /// Asks the runner's process group to stop, then waits briefly before killing it.
    pub async fn stop_runner(mut child: Child) {
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status()
                .await;
        }
        if tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    pub fn print_banner(endpoint: &str) {
        println!();
        println!("  Rivulet dev gateway on {endpoint}");
        println!("  Talk to the demo counter:");
        println!("    curl -X POST -H 'content-type: application/json' -d '{{\"args\":[1]}}' \\");
        println!("      '{endpoint}/gateway/counter/action/increment?rvt-method=getOrCreate&rvt-runner=default&rvt-key=demo'");
        println!();
    }
}
