#!/usr/bin/env bash
# Installs what the tests need and runs every test:
#   1. formatting and clippy (-D warnings)
#   2. cargo tests: unit tests, the store conformance suite, envoy protocol and tunnel tests
#   3. the RivetKit compatibility test: stock rivetkit 2.3.19 app + client against Rivulet
#      (Node 22 and the npm packages are installed into ~/.cache/rivulet on first use), on the
#      embedded store and on DynamoDB (moto), including two gateway nodes on one table
#   4. Rust actors (lambda-runner's test_runner) with the stock RivetKit client; the Lambda
#      entry runs under cargo-lambda's emulator inside the cargo tests
#   5. the Terraform check: terraform/ describes the table `rivulet schema` prints
# Prints one summary line "N passed, N failed" at the end; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"

# CI starts from a fresh clone; keeping the build cache outside it saves the full rebuild.
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${RIVULET_CACHE:-$HOME/.cache/rivulet}/target"
fi
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
LOG="$(mktemp -d)/test.log"
passed=0; failed=0

step() { echo; echo "=== $* ===" >&2; }

step "install test dependencies (Node 22, rivetkit 2.3.19, envoy codec; cached)"
NODE="$(bash tests/compat/setup.sh | tail -n1)"
export NODE

step "install the Lambda runtime emulator (cargo-lambda from PyPI; cached)"
CARGO_LAMBDA="$(bash infra/cargo-lambda.sh | tail -n1)"
export CARGO_LAMBDA
# The Lambda test must run here, not skip for want of the emulator.
export RIVULET_REQUIRE_LAMBDA=1

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy -q --workspace --all-targets -- -D warnings

step "cargo test"
set +e
cargo test --workspace 2>&1 | tee "$LOG"
cargo_rc=${PIPESTATUS[0]}
set -e
p=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$LOG" | awk '{p+=$4; f+=$6} END {print p+0}')
f=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$LOG" | awk '{p+=$4; f+=$6} END {print f+0}')
passed=$((passed + p)); failed=$((failed + f))
if [ "$cargo_rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi

# Runs one node --test suite (its command after the env assignments) and adds its counts.
node_suite() {
  set +e
  env "$@" 2>&1 | tee "$LOG"
  local rc=${PIPESTATUS[0]}
  set -e
  local p f
  p=$(grep -Eo '^ℹ pass [0-9]+' "$LOG" | awk '{s+=$3} END {print s+0}')
  f=$(grep -Eo '^ℹ fail [0-9]+' "$LOG" | awk '{s+=$3} END {print s+0}')
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
}

export RIVULET_BIN="$TARGET/debug/rivulet"
cargo build -q -p rivulet-gateway --bin rivulet
cargo build -q -p rivulet-lambda-runner --example test_runner

step "rivetkit compatibility (stock rivetkit 2.3.19 against rivulet)"
node_suite COMPAT_TARGET=rivulet bash tests/compat/run.sh

step "Rust actors (lambda-runner) with the stock rivetkit client"
node_suite RUST_RUNNER_BIN="$TARGET/debug/examples/test_runner" bash tests/compat/run-rust.sh

step "rivetkit compatibility on the DynamoDB store (moto, installed into ~/.cache/rivulet)"
node_suite COMPAT_TARGET=rivulet COMPAT_STORE=dynamodb bash tests/compat/run.sh

step "two gateway nodes on one DynamoDB table (stock rivetkit apps and clients; owner killed)"
node_suite bash tests/compat/run-cluster.sh

step "terraform matches the gateway's DynamoDB schema (python-hcl2, checkov; static)"
set +e
bash tests/terraform/run.sh 2>&1 | tee "$LOG"
tf_rc=${PIPESTATUS[0]}
set -e
line=$(grep -Eo '^terraform: [0-9]+ passed, [0-9]+ failed' "$LOG" | tail -n1)
p=$(echo "$line" | awk '{print $2+0}')
f=$(echo "$line" | awk '{print $4+0}')
passed=$((passed + p)); failed=$((failed + f))
if [ "$tf_rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi

echo
echo "rivulet: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
