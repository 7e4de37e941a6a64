#!/usr/bin/env bash
# Runs the two-node test (tests/compat/cluster.test.mjs) with the cached Node 22: two Rivulet
# nodes on one DynamoDB table (moto, installed by infra/dynamodb-local.sh), two stock RivetKit
# apps, stock clients.
#   RIVULET_BIN        (default target/debug/rivulet, relative to the repo root)
#   CLUSTER_LEASE_MS   (default 2000)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NODE="$(bash "$HERE/setup.sh" | tail -n1)"
export NODE
export RIVULET_BIN="${RIVULET_BIN:-target/debug/rivulet}"
cd "$REPO"
exec "$NODE" --test --test-reporter=spec --test-timeout=600000 "$@" "$HERE/cluster.test.mjs"
