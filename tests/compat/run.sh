#!/usr/bin/env bash
# Runs the RivetKit compatibility test with the cached Node 22.
#   COMPAT_TARGET=rivulet|engine   (default rivulet)
#   RIVULET_BIN                    (default target/debug/rivulet, relative to the repo root)
# Extra args are passed to `node --test` (e.g. --test-name-pattern=sleep).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NODE="$(bash "$HERE/setup.sh" | tail -n1)"
export NODE
export COMPAT_TARGET="${COMPAT_TARGET:-rivulet}"
export RIVULET_BIN="${RIVULET_BIN:-target/debug/rivulet}"
cd "$REPO"
echo "[compat] target=$COMPAT_TARGET node=$("$NODE" -v)" >&2
exec "$NODE" --test --test-reporter=spec --test-timeout=600000 "$@" "$HERE/compat.test.mjs"
