//! The Rust runtime alone: how long one action takes in a native Rust actor, without the
//! network or the gateway (the `counter` example behind an in-memory host). Prints JSON:
//! p50/p99 in microseconds and sequential actions per second, for HTTP actions in BARE and
//! JSON. `BENCH_ACTIONS` sets the count (default 20,000 per series).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;
use rivulet_lambda_runner::actor::{Host, HostError, HttpRequest, SocketId, StartInfo};
use rivulet_lambda_runner::protocol::{self, Encoding, Frame};
use tokio_util::sync::CancellationToken;

/// KV in memory; everything else is ignored.
#[derive(Default)]
struct MemoryHost {
    kv: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

#[async_trait]
impl Host for MemoryHost {
    async fn kv_get(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>, HostError> {
        let kv = self.kv.lock();
        Ok(keys.iter().map(|k| kv.get(k).cloned()).collect())
    }
    async fn kv_put(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), HostError> {
        self.kv.lock().extend(entries);
        Ok(())
    }
    async fn kv_delete(&self, keys: Vec<Vec<u8>>) -> Result<(), HostError> {
        let mut kv = self.kv.lock();
        for k in keys {
            kv.remove(&k);
        }
        Ok(())
    }
    async fn kv_list_prefix(&self, prefix: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, HostError> {
        Ok(self
            .kv
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn set_alarm(&self, _at_ms: Option<i64>) {}
    fn request_sleep(&self) {}
    fn request_destroy(&self) {}
    fn ws_accept(&self, _socket: SocketId, _hibernatable: bool) {}
    fn ws_ack(&self, _socket: SocketId, _index: u16) {}
    fn ws_hibernate(&self, _socket: SocketId) {}
    fn ws_send(&self, _socket: SocketId, _frame: Frame) {}
    fn ws_close(&self, _socket: SocketId, _code: u16, _reason: String) {}
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64) as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_ACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let registry = rivulet_lambda_runner::examples::registry();
    let host = Arc::new(MemoryHost::default());
    let info = StartInfo {
        actor_id: "bench".into(),
        key: Some("bench".into()),
        generation: 1,
        input: None,
        create_ts: 0,
        hibernating: Vec::new(),
    };
    let runtime = match registry
        .start("counter", info, host, CancellationToken::new())
        .await
    {
        Ok(r) => r,
        Err(err) => {
            eprintln!("bench_actor: {err}");
            std::process::exit(1);
        }
    };
    let mut series = Vec::new();
    for encoding in [Encoding::Bare, Encoding::Json] {
        let name = match encoding {
            Encoding::Bare => "bare",
            Encoding::Cbor => "cbor",
            Encoding::Json => "json",
        };
        let body = match protocol::encode_http_action_args(encoding, &[ciborium::Value::from(1)]) {
            Ok(b) => b,
            Err(err) => {
                eprintln!("bench_actor: {err}");
                std::process::exit(1);
            }
        };
        let request = HttpRequest {
            method: "POST".into(),
            path: "/action/increment".into(),
            headers: HashMap::from([("x-rivet-encoding".to_string(), name.to_string())]),
            body,
        };
        // Warm up.
        for _ in 0..1000 {
            runtime.handle_http(request.clone()).await;
        }
        let mut xs = Vec::with_capacity(n);
        let started = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let resp = runtime.handle_http(request.clone()).await;
            xs.push(t.elapsed().as_secs_f64() * 1e6);
            if resp.status != 200 {
                eprintln!("bench_actor: status {}", resp.status);
                std::process::exit(1);
            }
        }
        let total = started.elapsed().as_secs_f64();
        xs.sort_by(|a, b| a.total_cmp(b));
        series.push(serde_json::json!({
            "encoding": name,
            "actions": n,
            "p50_us": (pct(&xs, 50.0) * 10.0).round() / 10.0,
            "p99_us": (pct(&xs, 99.0) * 10.0).round() / 10.0,
            "actions_per_s": (n as f64 / total).round(),
        }));
    }
    let report = serde_json::json!({
        "bench": "native_rust_actor",
        "what": "POST /action/increment on the counter example through ActorRuntime::handle_http, in-memory host",
        "series": series,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}
