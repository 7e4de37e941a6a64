//! Start-up failures a new user meets, run through the real `rivulet` binary: each must end
//! the process at once with one line on stderr that names the problem and the fix, a sysexits
//! code, and none of an SDK's or a parser's internals. DynamoDB cases run against moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod moto;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const EX_USAGE: i32 = 64;
const EX_UNAVAILABLE: i32 = 69;

/// `rivulet ARGS` with a clean AWS environment plus `env`, bounded to 60 s.
fn rivulet(args: &[&str], env: &[(&str, &str)], home: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rivulet"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Only the error line: the gateway's own logs would make "one line" untestable.
        .env("RIVET_LOG_LEVEL", "error")
        // No profile files, no instance metadata: the credential chain must find nothing
        // unless a case gives it something, and never leaves this machine looking.
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        );
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "RIVULET_CONFIG",
        "RIVULET_PORT",
        "RIVULET_HOST",
        "RIVULET_DATA_DIR",
        "RIVULET_STORE",
        "RIVULET_TABLE",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn rivulet");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "rivulet {args:?} kept running instead of failing; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the exit code and that stderr is exactly one `rivulet: ...` line containing every
/// `needle`; returns the line.
fn one_line_error(out: &Output, code: i32, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{stderr}"
    );
    let line = lines[0];
    assert!(line.starts_with("rivulet: "), "{line}");
    for needle in needles {
        assert!(line.contains(needle), "{line:?} should mention {needle:?}");
    }
    for internal in [
        "ServiceError",
        "source:",
        "Error {",
        "DispatchFailure",
        "os error",
    ] {
        assert!(!line.contains(internal), "{line:?} leaks {internal:?}");
    }
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {line}");
    line.to_owned()
}

fn moto_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
    ]
}

fn borrow<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn dynamodb_table_missing_names_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let env = moto_env(moto::endpoint());
    let out = rivulet(
        &[
            "serve",
            "--port",
            "0",
            "--store",
            "dynamodb",
            "--table",
            "no-such-table",
        ],
        &borrow(&env),
        home.path(),
    );
    one_line_error(
        &out,
        EX_USAGE,
        &[
            "no-such-table does not exist",
            "rivulet schema --apply --table no-such-table",
            "terraform/",
        ],
    );
}

#[test]
fn dynamodb_table_made_by_schema_apply_then_serves() {
    // The fix the error names works: after `rivulet schema --apply`, serve starts (it is
    // stopped by the harness once it has passed the check and is listening).
    let home = tempfile::tempdir().unwrap();
    let env = moto_env(moto::endpoint());
    let table = format!("startup-{:08x}", rand::random::<u32>());
    let out = rivulet(
        &["schema", "--apply", "--table", &table],
        &borrow(&env),
        home.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rivulet"));
    cmd.args([
        "serve", "--port", "0", "--store", "dynamodb", "--table", &table,
    ])
    .env("RIVET_LOG_LEVEL", "info")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    // The gateway logs to stdout.
    let rx = stdout_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let hit = line.contains("listening");
                seen.push(line);
                if hit {
                    break true;
                }
            }
            Err(_) if child.0.try_wait().unwrap().is_some() || Instant::now() > deadline => {
                break false
            }
            Err(_) => {}
        }
    };
    drop(child);
    assert!(
        listening,
        "serve did not start on the new table:\n{}",
        seen.join("\n")
    );
}

/// Creates a `counter` actor under `key` for runners named `selector`; returns its id.
async fn create_counter(http: &reqwest::Client, base: &str, key: &str, selector: &str) -> String {
    let created: serde_json::Value = http
        .post(format!("{base}/actors?namespace=default"))
        .json(&serde_json::json!({"name": "counter", "key": key, "runner_name_selector": selector}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["actor"]["actor_id"].as_str().unwrap().to_owned()
}

/// The child's stdout, line by line, read on a thread of its own.
fn stdout_lines(child: &mut KillOnDrop) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Kills the child however the test ends, so a failed assertion leaves no gateway running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dynamodb_without_credentials() {
    let home = tempfile::tempdir().unwrap();
    let endpoint = moto::endpoint().to_owned();
    let out = rivulet(
        &[
            "serve", "--port", "0", "--store", "dynamodb", "--table", "t",
        ],
        &[
            ("AWS_ENDPOINT_URL_DYNAMODB", &endpoint),
            ("AWS_REGION", "us-east-1"),
        ],
        home.path(),
    );
    one_line_error(&out, EX_USAGE, &["no AWS credentials", "AWS_ACCESS_KEY_ID"]);
}

#[test]
fn dynamodb_without_region() {
    let home = tempfile::tempdir().unwrap();
    let out = rivulet(
        &[
            "serve", "--port", "0", "--store", "dynamodb", "--table", "t",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
        home.path(),
    );
    one_line_error(&out, EX_USAGE, &["no AWS region", "AWS_REGION"]);
}

#[test]
fn dynamodb_endpoint_that_does_not_answer() {
    // A loopback port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = moto_env(&endpoint);
    let out = rivulet(
        &[
            "serve", "--port", "0", "--store", "dynamodb", "--table", "t",
        ],
        &borrow(&env),
        home.path(),
    );
    one_line_error(
        &out,
        EX_UNAVAILABLE,
        &["DynamoDB did not answer", "AWS_ENDPOINT_URL_DYNAMODB"],
    );
}

#[test]
fn port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let out = rivulet(
        &[
            "serve",
            "--port",
            &port,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
        home.path(),
    );
    one_line_error(&out, EX_USAGE, &["already in use", "--port"]);
}

#[test]
fn data_dir_that_is_a_file() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = rivulet(
        &["serve", "--port", "0", "--data-dir", file.to_str().unwrap()],
        &[],
        home.path(),
    );
    one_line_error(
        &out,
        EX_USAGE,
        &["is a file, not a directory", "--data-dir"],
    );
}

#[test]
fn data_file_that_is_not_a_store() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("rivulet.redb"),
        b"this is not a database file, just some bytes",
    )
    .unwrap();
    let out = rivulet(
        &["serve", "--port", "0", "--data-dir", dir.to_str().unwrap()],
        &[],
        home.path(),
    );
    one_line_error(&out, EX_USAGE, &["rivulet.redb", "--data-dir"]);
}

#[test]
fn config_file_missing() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("nowhere.toml");
    let out = rivulet(
        &["serve", "--config", path.to_str().unwrap()],
        &[],
        home.path(),
    );
    one_line_error(
        &out,
        EX_USAGE,
        &["cannot read config file", "nowhere.toml", "no such file"],
    );
}

#[test]
fn config_file_with_a_syntax_error_names_the_line() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("rivulet.toml");
    std::fs::write(
        &path,
        "port = 7000\nhost = \"127.0.0.1\"\nstore = embedded oops\n",
    )
    .unwrap();
    let out = rivulet(
        &["serve", "--config", path.to_str().unwrap()],
        &[],
        home.path(),
    );
    one_line_error(&out, EX_USAGE, &["rivulet.toml, line 3"]);
}

#[test]
fn config_file_with_an_unknown_key_names_it() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("rivulet.toml");
    std::fs::write(&path, "port = 7000\n\n[gateway]\nmax_body_bites = 10\n").unwrap();
    let out = rivulet(
        &["serve", "--config", path.to_str().unwrap()],
        &[],
        home.path(),
    );
    one_line_error(&out, EX_USAGE, &["line 4", "max_body_bites"]);
}

#[test]
fn unknown_store_kind() {
    let home = tempfile::tempdir().unwrap();
    let out = rivulet(&["serve", "--store", "postgres"], &[], home.path());
    one_line_error(
        &out,
        EX_USAGE,
        &["store", "postgres", "embedded or dynamodb"],
    );
}

/// `rivulet dev` killed outright (SIGKILL, no chance to clean up) takes its demo runner with
/// it: a developer who kills and restarts it does not collect orphan runners.
#[test]
fn dev_killed_with_sigkill_leaves_no_runner_behind() {
    let home = tempfile::tempdir().unwrap();
    let pid_file = home.path().join("runner.pid");
    let runner = format!("sh -c 'echo $$ > {}; exec sleep 1000'", pid_file.display());
    let mut dev = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["dev", "--port", "0", "--runner", &runner, "--data-dir"])
        .arg(home.path().join("data"))
        .env("RIVET_LOG_LEVEL", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rivulet dev");
    let started = Instant::now();
    let runner_pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the demo runner never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(runner_pid));
    dev.kill().expect("SIGKILL rivulet dev");
    dev.wait().expect("reap rivulet dev");
    let killed = Instant::now();
    while alive(runner_pid) {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the demo runner outlived `rivulet dev`"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `rivulet runners put|list|delete` against a running gateway: pools are stored with their
/// effective defaults, refused ones print the gateway's named error and exit 1, and process
/// pools need the gateway's consent.
#[test]
fn runners_cli_puts_lists_and_deletes_pools() {
    let home = tempfile::tempdir().unwrap();
    let serve_with = |allow: bool| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = home.path().join(format!("data-{port}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rivulet"));
        cmd.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .env("RIVET_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if allow {
            cmd.arg("--allow-process-pools");
        }
        let child = KillOnDrop(cmd.spawn().unwrap());
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "gateway did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        (child, endpoint)
    };
    let cli = |endpoint: &str, args: &[&str]| {
        let mut all = vec!["runners", "--endpoint", endpoint];
        all.extend_from_slice(args);
        rivulet(&all, &[], home.path())
    };

    let (_gw, endpoint) = serve_with(true);
    let out = cli(
        &endpoint,
        &["put", "local", "--command", "./run.sh", "--lifespan", "20"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pool `local` stored"
    );
    let out = cli(&endpoint, &["put", "workers", "--normal"]);
    assert!(out.status.success());
    let out = cli(&endpoint, &["list"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listed
        .lines()
        .find(|l| l.starts_with("local"))
        .unwrap_or_default();
    for want in ["process", "./run.sh", "20 s", "2 s", "1000"] {
        assert!(line.contains(want), "{want} in {listed}");
    }
    assert!(listed
        .lines()
        .any(|l| l.starts_with("workers") && l.contains("normal")));

    let err = one_line_error(
        &cli(
            &endpoint,
            &[
                "put",
                "bad",
                "--command",
                "x",
                "--lifespan",
                "10",
                "--drain-grace",
                "10",
            ],
        ),
        1,
        &[
            "runner_config.invalid",
            "drain_grace_period",
            "10 s",
            "(400 Bad Request)",
        ],
    );
    assert!(!err.contains('{'), "{err}");

    let out = cli(&endpoint, &["delete", "local"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pool `local` deleted"
    );
    one_line_error(
        &cli(&endpoint, &["delete", "local"]),
        1,
        &["not_found", "local"],
    );

    let (_gw2, other) = serve_with(false);
    one_line_error(
        &cli(&other, &["put", "local", "--command", "./run.sh"]),
        1,
        &["runner_config.process_not_allowed", "--allow-process-pools"],
    );
    one_line_error(
        &cli("http://127.0.0.1:9", &["list"]),
        1,
        &["cannot reach the gateway at http://127.0.0.1:9"],
    );
}

/// `rivulet dev --serverless 5` registers the demo actors as a `process` pool (one process
/// per actor request, lifespan 5 s, drain grace 1 s) instead of starting a long-lived
/// runner; here the command only notes that it ran and exits, so the request that invoked it
/// gets the named error at once.
#[tokio::test]
async fn dev_serverless_runs_the_demo_actors_as_a_process_pool() {
    let home = tempfile::tempdir().unwrap();
    let marker = home.path().join("invoked");
    let command = format!(
        "echo ran >> {}; echo 'demo runner stand-in' >&2; exit 3",
        marker.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _dev = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(["dev", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--serverless", "5", "--runner", &command, "--data-dir"])
            .arg(home.path().join("data"))
            .env("RIVET_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let pool = loop {
        let listed = http
            .get(format!("{endpoint}/runner-configs?namespace=default"))
            .send()
            .await;
        if let Ok(resp) = listed {
            let body: serde_json::Value = resp.json().await.unwrap();
            if let Some(pool) = body["runner_configs"].get("default") {
                break pool.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the demo pool was never registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let process = &pool["datacenters"]["default"]["process"];
    assert_eq!(process["command"], command.as_str(), "{pool}");
    assert_eq!(process["request_lifespan"], 5, "{pool}");
    assert_eq!(process["drain_grace_period"], 1, "{pool}");

    let actor_id = create_counter(&http, &endpoint, "demo", "default").await;
    let resp = http
        .post(format!("{endpoint}/gateway/{actor_id}/action/increment"))
        .header("x-rivet-encoding", "json")
        .json(&serde_json::json!({"args": [1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "ended_early", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("demo runner stand-in"),
        "{body}"
    );
    assert!(marker.exists(), "the pool's command ran for the request");
}

/// `--log-format json`: every line the gateway logs is one JSON object, and a line logged for
/// an actor carries the actor's span (its id, name and key, and the generation).
#[test]
fn json_logs_keep_the_actor_span() {
    let home = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rivulet"));
    cmd.args([
        "serve",
        "--port",
        &port.to_string(),
        "--data-dir",
        home.path().join("data").to_str().unwrap(),
        "--log-format",
        "json",
    ])
    .env("RUST_LOG", "rivulet_gateway=debug")
    .env_remove("RIVET_LOG_LEVEL")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let rx = stdout_lines(&mut child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines: Vec<serde_json::Value> = Vec::new();
    let next_line = |lines: &mut Vec<serde_json::Value>| {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let parsed: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            lines.push(parsed);
        }
    };
    while !lines
        .iter()
        .any(|l| l["fields"]["message"] == "rivulet gateway listening")
    {
        assert!(Instant::now() < deadline, "no listening line: {lines:?}");
        next_line(&mut lines);
    }
    // An actor of a pool no runner serves: waking it logs its claim inside its span.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let actor_id = rt.block_on(async {
        let http = reqwest::Client::new();
        let actor_id = create_counter(&http, &base, "json-logs", "nobody").await;
        let resp = http
            .post(format!(
                "{base}/actors/{actor_id}/reschedule?namespace=default"
            ))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        actor_id
    });
    let in_span = |l: &serde_json::Value| {
        l["spans"].as_array().is_some_and(|spans| {
            spans.iter().any(|s| {
                s["name"] == "actor"
                    && s["actor_id"] == actor_id.as_str()
                    && s["actor_name"] == "counter"
                    && s["key"] == "json-logs"
            }) && spans
                .iter()
                .any(|s| s["name"] == "gen" && s["generation"].is_number())
        })
    };
    while !lines.iter().any(in_span) {
        assert!(
            Instant::now() < deadline,
            "no line in the actor's span: {lines:#?}"
        );
        next_line(&mut lines);
    }
}

/// Started with a soft open-files limit below its hard one, the gateway raises it. With a hard
/// limit below `gateway.max_client_sockets`, it lowers its socket cap to fit under it with
/// room to spare, so the socket past the cap gets the gateway's named refusal (503
/// `guard.too_many_sockets`) while the system still has descriptors to accept it with.
#[test]
fn the_open_files_limit_is_raised_and_caps_client_sockets() {
    const HARD: u64 = 120;
    // rivulet_gateway::open_files::socket_cap(_, Some(120)): 120 less a reserve of 64.
    const CAP: usize = 56;
    let home = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            r#"ulimit -Sn 60 && ulimit -Hn {HARD} && exec "$0" "$@""#
        ))
        .arg(env!("CARGO_BIN_EXE_rivulet"))
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--data-dir",
            home.path().join("data").to_str().unwrap(),
        ])
        .env("RIVET_LOG_LEVEL", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let pid = child.0.id();
    let rx = stdout_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("rivulet gateway listening"))
    {
        assert!(Instant::now() < deadline, "no listening line: {seen:#?}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
    }
    let raised = seen
        .iter()
        .find(|l| l.contains("open-files limit raised"))
        .unwrap_or_else(|| panic!("no line about raising the limit: {seen:#?}"));
    assert!(
        raised.contains("from=Some(60)") && raised.contains(&format!("to=Some({HARD})")),
        "{raised}"
    );
    let lowered = seen
        .iter()
        .find(|l| l.contains("max_client_sockets lowered"))
        .unwrap_or_else(|| panic!("no line about the lowered cap: {seen:#?}"));
    assert!(lowered.contains(&format!("cap={CAP}")), "{lowered}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        [HARD.to_string(), HARD.to_string()],
        "{open_files}"
    );

    // The allocator returns freed memory from a thread of its own (.cargo/config.toml); an
    // idle gateway would otherwise keep what a burst of sockets freed.
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap())
        .collect();
    assert!(
        threads.iter().any(|t| t.trim() == "jemalloc_bg_thd"),
        "no jemalloc background thread: {threads:?}"
    );

    // Sockets to an actor no runner serves wait for it, each holding its place.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = format!("http://127.0.0.1:{port}");
        let actor_id = create_counter(&reqwest::Client::new(), &base, "open-files", "nobody").await;
        let url = format!("ws://127.0.0.1:{port}/gateway/{actor_id}/connect");
        let mut open = Vec::new();
        for _ in 0..CAP {
            let (socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            open.push(socket);
        }
        let refused = tokio_tungstenite::connect_async(&url).await.unwrap_err();
        let tokio_tungstenite::tungstenite::Error::Http(resp) = refused else {
            panic!("expected the gateway's refusal, got {refused:?}");
        };
        assert_eq!(resp.status(), 503);
        let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
        assert!(body.contains("too_many_sockets"), "{body}");
    });
}
