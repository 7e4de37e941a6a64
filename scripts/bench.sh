#!/usr/bin/env bash
# Benchmarks RivetKit actions through Rivulet (release build), and with BENCH_TARGETS=rivulet,engine
# also through the Rivet engine 2.3.19, in one run. Prints JSON on stdout (see tests/compat/bench.mjs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q --release -p rivulet-gateway --bin rivulet
NODE="$(bash tests/compat/setup.sh | tail -n1)"
export RIVULET_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/rivulet"
# Client logs would mix with the JSON on stdout; BENCH_OUT also keeps a copy.
export RIVET_LOG_LEVEL="${RIVET_LOG_LEVEL:-error}"
exec "$NODE" tests/compat/bench.mjs
