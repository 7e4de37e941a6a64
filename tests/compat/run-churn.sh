#!/usr/bin/env bash
# Runs the three-node churn test (tests/compat/churn.test.mjs) with the cached Node 22: three
# Rivulet nodes on one DynamoDB table (moto, installed by infra/dynamodb-local.sh), killed and
# restarted in turn, three stock RivetKit apps, stock clients.
#   RIVULET_BIN        (default target/debug/rivulet, relative to the repo root)
#   CHURN_LEASE_MS     (default 2000), CHURN_ROUNDS (default 3)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NODE="$(bash "$HERE/setup.sh" | tail -n1)"
export NODE
export RIVULET_BIN="${RIVULET_BIN:-target/debug/rivulet}"
cd "$REPO"
exec "$NODE" --test --test-reporter=spec --test-timeout=600000 "$@" "$HERE/churn.test.mjs"
