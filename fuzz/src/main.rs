//! `rivulet-fuzz`: runs each network decoder on mutated inputs for a bounded time and fails on
//! the first panic or hang, saving the input so it can be replayed.
//!
//! `scripts/test.sh` runs every target for a few seconds on each test run (no nightly
//! toolchain or libFuzzer needed); run it longer by hand with `--seconds`.

mod engine;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::engine::Target;
use crate::targets::{PLANTED, TARGETS};

/// Fuzzes the decoders Rivulet exposes to the network: envoy frames, client protocol
/// messages, HTTP action bodies, connect headers, gateway paths with rvt-* queries, actor keys.
#[derive(Parser)]
#[command(name = "rivulet-fuzz")]
struct Args {
    /// Targets to run (default: all). See --list.
    targets: Vec<String>,
    /// Seconds per target.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Random seed; printed at the start so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// An input running longer than this many milliseconds is a hang.
    #[arg(long, default_value_t = 2_000)]
    hang_ms: u64,
    /// Where failing inputs are saved.
    #[arg(long, default_value = "target/fuzz-failures")]
    out: PathBuf,
    /// Runs one saved input through the first named target and exits (for debugging).
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Lists the targets and exits.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for t in TARGETS {
            println!("{:<16} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<&Target> = if args.targets.is_empty() {
        TARGETS.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.targets {
            match TARGETS.iter().chain(PLANTED).find(|t| t.name == name) {
                Some(t) => chosen.push(t),
                None => {
                    eprintln!("unknown target `{name}`; --list shows them");
                    return ExitCode::from(64);
                }
            }
        }
        chosen
    };
    if let Some(path) = &args.replay {
        let input = match std::fs::read(path) {
            Ok(input) => input,
            Err(err) => {
                eprintln!("cannot read {}: {err}", path.display());
                return ExitCode::from(66);
            }
        };
        let accepted = (chosen[0].run)(&input);
        println!("{}: accepted={accepted}", chosen[0].name);
        return ExitCode::SUCCESS;
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        eprintln!("--seconds must be a positive number");
        return ExitCode::from(64);
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    eprintln!(
        "[fuzz] seed {seed}, {}s per target, {} targets",
        args.seconds,
        chosen.len()
    );
    // Panics are expected and caught; the report says which input caused one.
    std::panic::set_hook(Box::new(|info| eprintln!("[fuzz] panic: {info}")));
    let mut failed = false;
    for (i, target) in chosen.iter().enumerate() {
        let report = engine::fuzz(
            target,
            Duration::from_secs_f64(args.seconds),
            seed.wrapping_add(i as u64),
            Duration::from_millis(args.hang_ms),
            &args.out,
        );
        println!(
            "{{\"target\":\"{}\",\"execs\":{},\"accepted\":{},\"corpus\":{},\"ok\":{}}}",
            target.name,
            report.execs,
            report.accepted,
            report.corpus,
            report.failure.is_none()
        );
        if let Some(failure) = report.failure {
            eprintln!("[fuzz] {} failed: {failure}", target.name);
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
