//! `rivulet runners`: registers, lists and deletes runner pools through a gateway's HTTP API
//! (`PUT/GET/DELETE /runner-configs`), so what the CLI does a script can do with curl.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

/// Where the gateway is and who is asking.
#[derive(Args)]
pub struct RunnersArgs {
    /// Gateway URL.
    #[arg(
        long,
        env = "RIVET_ENDPOINT",
        default_value = "http://127.0.0.1:6420",
        global = true
    )]
    endpoint: String,
    /// Admin token, if the gateway requires one.
    #[arg(long, env = "RIVET_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Namespace.
    #[arg(
        long,
        env = "RIVET_NAMESPACE",
        default_value = "default",
        global = true
    )]
    namespace: String,
    #[command(subcommand)]
    command: RunnersCommand,
}

#[derive(Subcommand)]
enum RunnersCommand {
    /// Registers or replaces a pool: one of --url, --lambda, --command or --normal.
    Put(Box<PutArgs>),
    /// Lists the pools.
    List,
    /// Deletes a pool.
    Delete {
        /// Pool name.
        name: String,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["url", "lambda", "command", "normal"])))]
struct PutArgs {
    /// Pool name (the `runner_name_selector` actors are created with; RivetKit's default is
    /// `default`).
    name: String,
    /// A serverless URL answering `POST {url}/start` (RivetKit's `registry.handler`, or
    /// `rivulet-runner` behind a function URL); checked through its `/metadata` first.
    #[arg(long)]
    url: Option<String>,
    /// An AWS Lambda function (name or ARN) running the Rust runner's Lambda entry.
    #[arg(long, value_name = "FUNCTION")]
    lambda: Option<String>,
    /// A command started once per actor request (`sh -c`); the gateway must allow process
    /// pools (`rivulet dev` does).
    #[arg(long)]
    command: Option<String>,
    /// Runners connect by themselves (`rivulet-runner serve`, `registry.start()`).
    #[arg(long)]
    normal: bool,
    /// Seconds one request may live [default: the platform's; 900 for Lambda].
    #[arg(long, value_name = "S")]
    lifespan: Option<u64>,
    /// Seconds before the end of a request at which its actor moves to a fresh one
    /// [default: a tenth of the lifespan, 1 to 60 s].
    #[arg(long, value_name = "S")]
    drain_grace: Option<u64>,
    /// Actors running at once [default: 1000].
    #[arg(long, value_name = "N")]
    max_actors: Option<u64>,
    /// A header sent with every request to --url (repeatable).
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    header: Vec<(String, String)>,
    /// The platform behind --url: generic, vercel or cloud_run [default: from the host].
    #[arg(long)]
    platform: Option<String>,
    /// Lambda version or alias.
    #[arg(long)]
    qualifier: Option<String>,
    /// Lambda region [default: the AWS SDK's].
    #[arg(long)]
    region: Option<String>,
    /// An environment variable for --command (repeatable).
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    env: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

impl PutArgs {
    fn body(&self) -> Value {
        let mut spec = Map::new();
        let mut set = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                spec.insert(k.to_owned(), v);
            }
        };
        set("request_lifespan", self.lifespan.map(Value::from));
        set("drain_grace_period", self.drain_grace.map(Value::from));
        set("max_concurrent_actors", self.max_actors.map(Value::from));
        let pairs = |p: &[(String, String)]| {
            (!p.is_empty()).then(|| {
                Value::Object(
                    p.iter()
                        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                        .collect(),
                )
            })
        };
        let kind = if let Some(url) = &self.url {
            set("url", Some(url.clone().into()));
            set("headers", pairs(&self.header));
            set("platform", self.platform.clone().map(Value::from));
            "serverless"
        } else if let Some(function) = &self.lambda {
            set("function", Some(function.clone().into()));
            set("qualifier", self.qualifier.clone().map(Value::from));
            set("region", self.region.clone().map(Value::from));
            "lambda"
        } else if let Some(command) = &self.command {
            set("command", Some(command.clone().into()));
            set("env", pairs(&self.env));
            "process"
        } else {
            spec.clear();
            "normal"
        };
        json!({"datacenters": {"default": {kind: Value::Object(spec)}}})
    }
}

/// Runs the subcommand.
pub fn run(args: RunnersArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("rivulet: cannot start runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(call(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rivulet: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn call(args: &RunnersArgs) -> Result<(), String> {
    let http = reqwest::Client::new();
    let base = args.endpoint.trim_end_matches('/');
    let ns = &args.namespace;
    let (method, path, body) = match &args.command {
        RunnersCommand::Put(put) => (
            reqwest::Method::PUT,
            format!("/runner-configs/{}?namespace={ns}", put.name),
            Some(put.body()),
        ),
        RunnersCommand::List => (
            reqwest::Method::GET,
            format!("/runner-configs?namespace={ns}"),
            None,
        ),
        RunnersCommand::Delete { name } => (
            reqwest::Method::DELETE,
            format!("/runner-configs/{name}?namespace={ns}"),
            None,
        ),
    };
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(token) = &args.token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = &body {
        req = req.json(body);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach the gateway at {base}: {e}"))?;
    let status = resp.status();
    let answer: Value = resp
        .json()
        .await
        .map_err(|e| format!("the gateway at {base} answered {status} without JSON: {e}"))?;
    if !status.is_success() {
        let message = answer["message"].as_str().unwrap_or("no message");
        let code = format!(
            "{}.{}",
            answer["group"].as_str().unwrap_or("?"),
            answer["code"].as_str().unwrap_or("?")
        );
        return Err(format!("{code}: {message} ({status})"));
    }
    match &args.command {
        RunnersCommand::Put(put) => {
            let changed = answer["endpoint_config_changed"].as_bool().unwrap_or(true);
            println!(
                "pool `{}` {}",
                put.name,
                if changed { "stored" } else { "unchanged" }
            );
        }
        RunnersCommand::List => print_list(&answer),
        RunnersCommand::Delete { name } => println!("pool `{name}` deleted"),
    }
    Ok(())
}

fn print_list(answer: &Value) {
    let empty = Map::new();
    let pools = answer["runner_configs"].as_object().unwrap_or(&empty);
    if pools.is_empty() {
        println!("no runner pools (runners that connect by themselves need none)");
        return;
    }
    println!(
        "{:<20} {:<11} {:<44} {:>9} {:>6} {:>10}",
        "POOL", "KIND", "TARGET", "LIFESPAN", "GRACE", "MAX ACTORS"
    );
    for (name, config) in pools {
        let dc = config["datacenters"]["default"]
            .as_object()
            .unwrap_or(&empty);
        let (kind, spec) = ["normal", "serverless", "lambda", "process"]
            .iter()
            .find_map(|k| dc.get(*k).map(|s| (*k, s)))
            .unwrap_or(("?", &Value::Null));
        let target = spec["url"]
            .as_str()
            .or(spec["function"].as_str())
            .or(spec["command"].as_str())
            .unwrap_or("-");
        let secs = |k: &str| {
            spec[k]
                .as_u64()
                .map(|s| format!("{s} s"))
                .unwrap_or_else(|| "-".into())
        };
        let max = spec["max_concurrent_actors"]
            .as_u64()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<11} {:<44} {:>9} {:>6} {:>10}",
            name,
            kind,
            target,
            secs("request_lifespan"),
            secs("drain_grace_period"),
            max
        );
    }
}
