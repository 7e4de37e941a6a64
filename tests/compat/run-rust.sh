#!/usr/bin/env bash
# Runs a Rust-actor test (default tests/compat/rust-actors.test.mjs; or the file named first,
# e.g. reliability.test.mjs) with the cached Node 22: Rivulet, the Rust runner's test_runner
# example and the stock RivetKit client.
#   RIVULET_BIN       (default target/debug/rivulet)
#   RUST_RUNNER_BIN   (default target/debug/examples/test_runner)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NODE="$(bash "$HERE/setup.sh" | tail -n1)"
export NODE
export RIVULET_BIN="${RIVULET_BIN:-target/debug/rivulet}"
TEST="$HERE/rust-actors.test.mjs"
if [ "${1:-}" != "" ] && [ -f "$HERE/$1" ]; then TEST="$HERE/$1"; shift; fi
cd "$REPO"
exec "$NODE" --test --test-reporter=spec --test-timeout=600000 "$@" "$TEST"
