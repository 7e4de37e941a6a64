//! A local command per actor request, for `rivulet dev` and tests: the same life as a
//! serverless request (one actor, a lifespan, a clean or early end) without a platform.
//!
//! The command runs under `sh -c` in its own process group. It gets the start command on
//! stdin and where to connect back in `RIVET_ENDPOINT`, `RIVET_NAMESPACE`, `RIVET_POOL` and
//! `RIVET_TOKEN`, with `RIVULET_LIFESPAN_MS`; `rivulet-runner once` is such a command. A
//! standby request has an empty stdin and `RIVULET_STANDBY_KEY`: the command connects under
//! that envoy key and waits for the gateway to send it the start. It
//! should exit 0 once its actor has stopped. Any other exit, or a signal, is an early end. At
//! the end of its lifespan (plus a little slack, so the runner's own deadline comes first)
//! the whole group is killed, as a platform kills a request at its time limit. Output goes
//! to the gateway's log, and the last lines of stderr into the early-end message.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    AdapterError, ErrorKind, Headers, Invocation, InvocationEvent, InvokeRequest, Platform,
};

/// Time allowed past the lifespan before the group is killed.
const LIFESPAN_SLACK: Duration = Duration::from_secs(2);
/// Lines of stderr kept for an early-end message.
const KEPT_LINES: usize = 8;

/// A local command.
pub struct ProcessPlatform {
    command: String,
    env: Headers,
}

impl ProcessPlatform {
    /// Runs `command` with `sh -c` and `env` added.
    pub fn new(command: &str, env: Headers) -> Self {
        Self {
            command: command.to_owned(),
            env,
        }
    }
}

impl Platform for ProcessPlatform {
    fn name(&self) -> &'static str {
        "process"
    }

    fn standby(&self) -> bool {
        true
    }

    fn invoke(&self, req: InvokeRequest, cancel: CancellationToken) -> Invocation {
        let (tx, rx) = mpsc::channel(4);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&self.command)
            .envs(&self.env)
            .env("RIVET_ENDPOINT", &req.endpoint)
            .env("RIVET_NAMESPACE", &req.namespace)
            .env("RIVET_POOL", &req.pool)
            .env("RIVULET_LIFESPAN_MS", req.lifespan.as_millis().to_string())
            .env("RIVULET_ACTOR_ID", &req.actor_id)
            .env("RIVULET_GENERATION", req.generation.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        match &req.token {
            Some(token) => cmd.env("RIVET_TOKEN", token),
            None => cmd.env_remove("RIVET_TOKEN"),
        };
        match &req.standby {
            Some(key) => cmd.env("RIVULET_STANDBY_KEY", key),
            None => cmd.env_remove("RIVULET_STANDBY_KEY"),
        };
        let command = self.command.clone();
        let token = cancel.clone();
        tokio::spawn(async move {
            let child = match cmd.spawn() {
                Ok(child) => child,
                Err(err) => {
                    let _ = tx
                        .send(InvocationEvent::Failed(AdapterError::new(
                            ErrorKind::Spawn,
                            format!("`{command}` could not be started: {err}"),
                        )))
                        .await;
                    return;
                }
            };
            let _ = tx.send(InvocationEvent::Accepted).await;
            if let Some(end) = supervise(child, req, token).await {
                let _ = tx.send(end).await;
            }
        });
        Invocation::new(rx, cancel)
    }
}

/// Feeds the start, forwards output, and waits for the end; `None` when cancelled.
async fn supervise(
    mut child: Child,
    req: InvokeRequest,
    cancel: CancellationToken,
) -> Option<InvocationEvent> {
    let pgid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        let payload = req.payload.clone();
        tokio::spawn(async move {
            // A command that does not read its start fails on its own; nothing to do here.
            let _ = stdin.write_all(&payload).await;
            let _ = stdin.shutdown().await;
        });
    }
    let (lines_tx, mut lines_rx) = mpsc::channel::<String>(64);
    if let Some(out) = child.stdout.take() {
        forward(out, None, req.actor_id.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward(err, Some(lines_tx), req.actor_id.clone());
    }
    let mut kept: VecDeque<String> = VecDeque::new();
    let deadline = tokio::time::Instant::now() + req.lifespan + LIFESPAN_SLACK;
    let outcome = loop {
        tokio::select! {
            status = child.wait() => break Some(status),
            Some(line) = lines_rx.recv() => {
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
            _ = tokio::time::sleep_until(deadline) => break None,
            _ = cancel.cancelled() => {
                kill_group(pgid).await;
                let _ = child.wait().await;
                return None;
            }
        }
    };
    // Lines written just before the exit may still be on their way.
    while let Ok(Some(line)) =
        tokio::time::timeout(Duration::from_millis(200), lines_rx.recv()).await
    {
        if kept.len() == KEPT_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
    let tail = || {
        if kept.is_empty() {
            String::new()
        } else {
            format!("; last output: {}", Vec::from(kept.clone()).join(" | "))
        }
    };
    Some(match outcome {
        Some(Ok(status)) if status.success() => InvocationEvent::Finished,
        Some(Ok(status)) => {
            InvocationEvent::EndedEarly(format!("the runner process {status}{}", tail()))
        }
        Some(Err(err)) => {
            InvocationEvent::EndedEarly(format!("waiting for the runner process failed: {err}"))
        }
        None => {
            kill_group(pgid).await;
            let _ = child.wait().await;
            InvocationEvent::EndedEarly(format!(
                "the runner process outlived its {} s lifespan and was killed{}",
                req.lifespan.as_secs(),
                tail()
            ))
        }
    })
}

/// Sends each line to the log (and, for stderr, to `keep`).
fn forward(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    keep: Option<mpsc::Sender<String>>,
    actor_id: String,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "rivulet::runner_process", %actor_id, "{line}");
            if let Some(keep) = &keep {
                let _ = keep.try_send(line);
            }
        }
    });
}

/// Kills the process group: `sh -c` may have started children that would outlive it.
async fn kill_group(pgid: Option<u32>) {
    let Some(pgid) = pgid else { return };
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}
