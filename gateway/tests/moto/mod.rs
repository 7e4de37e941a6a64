//! One moto server (the local DynamoDB stand-in) per test binary, started on first use through
//! `infra/dynamodb-local.sh` on a free loopback port. moto watches its parent pid and exits
//! when the test binary does, so no server outlives the run.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The running moto server; the child handle is kept so it is never reaped early.
struct Moto {
    endpoint: String,
    _child: Mutex<Child>,
}

/// The endpoint URL of this binary's moto server, starting it if needed. Blocking: call it
/// from `tokio::task::block_in_place` in async tests.
pub fn endpoint() -> &'static str {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/dynamodb-local.sh");
            let mut child = Command::new("bash")
                .arg(script)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start infra/dynamodb-local.sh");
            let stdout = child.stdout.take().expect("moto stdout");
            let mut lines = BufReader::new(stdout).lines();
            let endpoint = loop {
                match lines.next() {
                    Some(Ok(line)) => {
                        if let Some(ep) = line.strip_prefix("endpoint=") {
                            break ep.to_owned();
                        }
                    }
                    Some(Err(e)) => panic!("reading moto output: {e}"),
                    None => panic!("moto exited before printing its endpoint"),
                }
            };
            Moto {
                endpoint,
                _child: Mutex::new(child),
            }
        })
        .endpoint
}
