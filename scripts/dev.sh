#!/usr/bin/env bash
# Runs Rivulet on the embedded store with the demo actors (counter, chat, written in Rust and
# run by rivulet-runner) on 127.0.0.1:6420. First run: builds the gateway and the runner, and
# installs Node 22 + RivetKit 2.3.19 into ~/.cache/rivulet for the terminal chat client (a few
# minutes); later runs start in seconds. Data lives in ./.rivulet.
# Any extra arguments go to `rivulet dev` (see `rivulet dev --help`); for the same actors
# written with RivetKit: ./scripts/dev.sh --runner examples/demo/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v cargo >/dev/null || { echo "dev.sh: cargo (Rust) is required" >&2; exit 1; }
echo "[dev] building rivulet and rivulet-runner" >&2
cargo build -q -p rivulet-gateway --bin rivulet
cargo build -q -p rivulet-lambda-runner --bin rivulet-runner
if command -v npm >/dev/null; then
  echo "[dev] preparing the stock RivetKit client for examples/demo/chat.mjs (Node 22, cached)" >&2
  bash tests/compat/setup.sh >/dev/null
  ln -sfn "${RIVULET_CACHE:-$HOME/.cache/rivulet}/compat/node_modules" examples/demo/node_modules
else
  echo "[dev] npm not found: the demo runs, but the terminal chat client needs Node 22" >&2
fi
exec "${CARGO_TARGET_DIR:-target}/debug/rivulet" dev "$@"
