#!/usr/bin/env bash
# Starts the demo runner (examples/demo/app.mjs) with the cached Node 22 and RivetKit 2.3.19,
# installing them on first use. `rivulet dev` runs this and passes RIVET_ENDPOINT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NODE="$(bash "$REPO/tests/compat/setup.sh" | tail -n1)"
ln -sfn "${RIVULET_CACHE:-$HOME/.cache/rivulet}/compat/node_modules" "$HERE/node_modules"
export RIVET_RUN_SERVICES=0 RIVETKIT_ENGINE_SPAWN=never
exec "$NODE" "$HERE/app.mjs"
