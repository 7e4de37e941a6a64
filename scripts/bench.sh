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
# Actors moving between serverless requests, each with a connected stock client:
# client-visible pauses, cold wakes, requests and request-seconds per actor-hour, and
# lost/duplicated/reordered replies and closed sockets (must be 0). Over HTTP (the stock
# RivetKit app behind registry.handler), with the Rust runner in a process per request, and
# with the Rust runner's Lambda entry under cargo lambda watch (5 actors; installed by
# infra/cargo-lambda.sh, built in release by the emulator). BENCH_SERVERLESS=0 skips it;
# BENCH_SL_LAMBDA=0 skips the Lambda part.
if [ "${BENCH_SERVERLESS:-1}" = "1" ]; then
  BENCH_SL_ADAPTER=http "$NODE" tests/compat/bench-serverless.mjs
  RIVULET_RUNNER_BIN="$RUST_RUNNER_BIN" BENCH_SL_ADAPTER=process "$NODE" tests/compat/bench-serverless.mjs
  if [ "${BENCH_SL_LAMBDA:-1}" = "1" ]; then
    CARGO_LAMBDA="$(bash infra/cargo-lambda.sh | tail -n1)" BENCH_SL_ACTORS=5 BENCH_SL_ADAPTER=lambda \
      "$NODE" tests/compat/bench-serverless.mjs
  fi
fi
# Idle client sockets: gateway RSS per socket at 1,000, 10,000 and 100,000 sockets, CPU
# while they sit, time to open them (a step past `ulimit -n` is skipped, saying so).
# BENCH_SOCKETS=0 skips it.
if [ "${BENCH_SOCKETS:-1}" = "1" ]; then
  "$NODE" tests/compat/bench-sockets.mjs
fi
# Store requests per operation and per idle minute (DynamoDB on moto), gateway memory per
# sleeping actor; BENCH_STORE=0 skips it (waking 1,000 actors on moto takes minutes).
if [ "${BENCH_STORE:-1}" = "1" ]; then
  "$NODE" tests/compat/bench-store.mjs
fi
