#!/usr/bin/env bash
# Runs Rivulet on the embedded store with the demo actors (counter, chat) on 127.0.0.1:6420.
# First run: builds the gateway and installs Node 22 + RivetKit 2.3.19 into
# ~/.cache/rivulet (a few minutes); later runs start in seconds. Data lives in ./.rivulet.
# Any extra arguments go to `rivulet dev` (see `rivulet dev --help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v cargo >/dev/null || { echo "dev.sh: cargo (Rust) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "dev.sh: npm is required once, to install Node 22 for the demo runner" >&2; exit 1; }
echo "[dev] building rivulet" >&2
cargo build -q -p rivulet-gateway --bin rivulet
echo "[dev] preparing the demo runner (Node 22 + RivetKit 2.3.19, cached)" >&2
bash tests/compat/setup.sh >/dev/null
exec "${CARGO_TARGET_DIR:-target}/debug/rivulet" dev "$@"
