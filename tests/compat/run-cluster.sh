#!/usr/bin/env bash
# Runs a several-node test with the cached Node 22, Rivulet nodes on one DynamoDB table (moto,
# installed by infra/dynamodb-local.sh), stock RivetKit apps and clients:
#   tests/compat/run-cluster.sh                       two nodes, the owner killed (cluster.test.mjs)
#   tests/compat/run-cluster.sh churn.test.mjs        three nodes killed and restarted in turn
#   RIVULET_BIN        (default target/debug/rivulet, relative to the repo root)
#   CLUSTER_LEASE_MS   (default 2000; cluster.test.mjs), CHURN_LEASE_MS, CHURN_ROUNDS (churn)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TEST="$HERE/${1:-cluster.test.mjs}"
NODE="$(bash "$HERE/setup.sh" | tail -n1)"
export NODE
export RIVULET_BIN="${RIVULET_BIN:-target/debug/rivulet}"
cd "$REPO"
exec "$NODE" --test --test-reporter=spec --test-timeout=600000 "$TEST"
