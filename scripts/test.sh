#!/usr/bin/env bash
# Installs what the tests need and runs every test:
#   1. formatting and clippy (-D warnings)
#   2. cargo tests: unit tests, the store conformance suite, envoy protocol and tunnel tests
#   3. every decoder the network reaches, fuzzed for a bounded time (RIVULET_FUZZ_SECONDS per
#      target, default 10; failing inputs are saved under the target folder's fuzz-failures/)
#   4. the RivetKit compatibility test: stock rivetkit 2.3.19 app + client against Rivulet
#      (Node 22 and the npm packages are installed into ~/.cache/rivulet on first use,
#      into a fresh temporary cache on every CI run), on the
#      embedded store and on DynamoDB (moto), including two gateway nodes on one table, and
#      three nodes killed and restarted in turn while clients write
#   5. Rust actors (lambda-runner's test_runner) with the stock RivetKit client, on a
#      connected runner and as a `process` pool whose actors move every two seconds under
#      open client sockets; the Lambda entry runs under cargo-lambda's emulator inside the
#      cargo tests
#   6. the k6 load scripts (tests/load/), a few seconds each against a fresh `rivulet dev`
#   7. the deployment checks: the Terraform module and example (python-hcl2, checkov, wiring
#      against the code) and the Dockerfile (checkov)
# Prints one summary line "N passed, N failed" at the end; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"

# Under CI every package install starts from nothing, so a lock or pin that a new machine would
# refuse fails here too: npm packages and Python venvs go into a fresh temporary cache, with npm's
# and pip's own download caches beside them. Only the cargo target folder is kept between runs
# (outside the clone, which CI makes anew); Cargo.lock is enforced with --locked.
CARGO_FLAGS=()
if [ "${CI:-}" = "true" ]; then
  if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/rivulet/target"
  fi
  if [ -z "${RIVULET_CACHE:-}" ]; then
    RIVULET_CACHE="$(mktemp -d -t rivulet-ci-cache.XXXXXX)"
    trap 'rm -rf "$RIVULET_CACHE"' EXIT
  fi
  export RIVULET_CACHE
  export npm_config_cache="$RIVULET_CACHE/npm-cache"
  export PIP_CACHE_DIR="$RIVULET_CACHE/pip-cache"
  CARGO_FLAGS=(--locked)
  # Incremental artefacts double the kept target folder and buy little in a fresh clone.
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
  echo "CI: installing packages into a fresh cache, $RIVULET_CACHE" >&2
fi
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
LOG="$(mktemp -d)/test.log"
passed=0; failed=0

START=$SECONDS
step() { echo; echo "=== [$((SECONDS - START)) s] $* ===" >&2; }

step "install test dependencies: Node 22, rivetkit 2.3.19, envoy codec (tests/compat/package-lock.json)"
NODE="$(bash tests/compat/setup.sh | tail -n1)"
export NODE

step "install the Lambda runtime emulator, moto and k6 (pinned in infra/requirements/)"
CARGO_LAMBDA="$(bash infra/cargo-lambda.sh | tail -n1)"
export CARGO_LAMBDA
# moto once here, so the parallel store tests find it installed.
bash infra/venv.sh moto >/dev/null
bash infra/venv.sh k6 >/dev/null
# The Lambda test must run here, not skip for want of the emulator.
export RIVULET_REQUIRE_LAMBDA=1

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy "${CARGO_FLAGS[@]}" -q --workspace --all-targets -- -D warnings

step "cargo test"
set +e
# --no-fail-fast: every test binary runs, so one failure does not hide the others (or the count).
cargo test "${CARGO_FLAGS[@]}" --workspace --no-fail-fast 2>&1 | tee "$LOG"
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

# Runs a script whose last summary line is "NAME: N passed, M failed" and adds its counts.
summary_suite() {
  local name="$1"; shift
  set +e
  "$@" 2>&1 | tee "$LOG"
  local rc=${PIPESTATUS[0]}
  set -e
  local line p f
  line=$(grep -Eo "^$name: [0-9]+ passed, [0-9]+ failed" "$LOG" | tail -n1)
  p=$(echo "$line" | awk '{print $2+0}')
  f=$(echo "$line" | awk '{print $4+0}')
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
}

step "fuzz every network decoder for ${RIVULET_FUZZ_SECONDS:-10} s each (rivulet-fuzz; no panic, no hang)"
cargo build "${CARGO_FLAGS[@]}" -q -p rivulet-fuzz
set +e
"$TARGET/debug/rivulet-fuzz" --seconds "${RIVULET_FUZZ_SECONDS:-10}" --out "$TARGET/fuzz-failures" 2>&1 | tee "$LOG"
fuzz_rc=${PIPESTATUS[0]}
set -e
p=$(grep -c '"ok":true' "$LOG" || true)
f=$(grep -c '"ok":false' "$LOG" || true)
passed=$((passed + p)); failed=$((failed + f))
if [ "$fuzz_rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi

export RIVULET_BIN="$TARGET/debug/rivulet"
cargo build "${CARGO_FLAGS[@]}" -q -p rivulet-gateway --bin rivulet
cargo build "${CARGO_FLAGS[@]}" -q -p rivulet-lambda-runner --example test_runner

step "rivetkit compatibility (stock rivetkit 2.3.19 against rivulet)"
node_suite COMPAT_TARGET=rivulet bash tests/compat/run.sh

step "Rust actors (lambda-runner) with the stock rivetkit client"
node_suite RUST_RUNNER_BIN="$TARGET/debug/examples/test_runner" bash tests/compat/run-rust.sh

step "reliability defects (gateway, Rust runner and stock client as real processes)"
node_suite RUST_RUNNER_BIN="$TARGET/debug/examples/test_runner" bash tests/compat/run-rust.sh reliability.test.mjs

step "serverless pools: stock rivetkit app behind registry.handler, invoked and moved by the gateway"
node_suite bash tests/compat/run-rust.sh serverless.test.mjs

step "serverless process pool of the Rust runner: 50 connected clients through 15 moves each"
node_suite RUST_RUNNER_BIN="$TARGET/debug/examples/test_runner" bash tests/compat/run-rust.sh serverless-rust.test.mjs

step "rivetkit compatibility on the DynamoDB store (moto)"
node_suite COMPAT_TARGET=rivulet COMPAT_STORE=dynamodb bash tests/compat/run.sh

step "two gateway nodes on one DynamoDB table (stock rivetkit apps and clients; owner killed)"
node_suite bash tests/compat/run-cluster.sh

step "three gateway nodes on one table, killed and restarted while clients write"
node_suite bash tests/compat/run-cluster.sh churn.test.mjs

step "k6 load scripts against rivulet dev (tests/load; a few seconds each)"
cargo build "${CARGO_FLAGS[@]}" -q -p rivulet-lambda-runner --bin rivulet-runner
summary_suite load bash tests/load/run.sh

step "deployment: terraform module and example, Dockerfile (python-hcl2, checkov, wiring against the code; static)"
summary_suite terraform bash tests/terraform/run.sh

echo
echo "took $((SECONDS - START)) s" >&2
echo "rivulet: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
