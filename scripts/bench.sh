#!/usr/bin/env bash
# Benchmarks actions called by the stock RivetKit client through Rivulet (release build):
# served by the stock RivetKit app and by the same counter in Rust (rivulet-runner), in one run
# (BENCH_RUNNERS, default node,rust); with BENCH_TARGETS=rivulet,engine also through the Rivet
# engine 2.3.19. Then the Rust runtime alone (no network): one action through a native Rust
# actor. Then serverless moves (tests/compat/bench-serverless.mjs). Then what the store costs
# (tests/compat/bench-store.mjs). Prints JSON on stdout (see
# tests/compat/bench.mjs, lambda-runner/examples/bench_actor.rs and tests/compat/bench-store.mjs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q --release -p rivulet-gateway --bin rivulet
cargo build -q --release -p rivulet-lambda-runner --bin rivulet-runner --example bench_actor
NODE="$(bash tests/compat/setup.sh | tail -n1)"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
export RIVULET_BIN="$TARGET/release/rivulet"
export RUST_RUNNER_BIN="$TARGET/release/rivulet-runner"
export BENCH_RUNNERS="${BENCH_RUNNERS:-node,rust}"
# Client logs would mix with the JSON on stdout; BENCH_OUT also keeps a copy.
export RIVET_LOG_LEVEL="${RIVET_LOG_LEVEL:-error}"
"$NODE" tests/compat/bench.mjs
"$TARGET/release/examples/bench_actor"
# Actors moving between serverless requests: client-visible pauses, cold wakes, requests
# per actor-hour, and lost/duplicated/reordered replies (must be 0); over HTTP (the stock
# RivetKit app behind registry.handler, connected sockets) and with the Rust runner in a
# process per request (HTTP actions). BENCH_SERVERLESS=0 skips it.
if [ "${BENCH_SERVERLESS:-1}" = "1" ]; then
  BENCH_SL_ADAPTER=http "$NODE" tests/compat/bench-serverless.mjs
  RIVULET_RUNNER_BIN="$RUST_RUNNER_BIN" BENCH_SL_ADAPTER=process "$NODE" tests/compat/bench-serverless.mjs
fi
# Store requests per operation and per idle minute (DynamoDB on moto), gateway memory per
# sleeping actor; BENCH_STORE=0 skips it (waking 1,000 actors on moto takes minutes).
if [ "${BENCH_STORE:-1}" = "1" ]; then
  "$NODE" tests/compat/bench-store.mjs
fi
