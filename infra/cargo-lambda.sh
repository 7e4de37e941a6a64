#!/usr/bin/env bash
# The AWS Lambda runtime emulator the Lambda tests use: cargo-lambda from PyPI, installed
# into a venv under ~/.cache/rivulet (idempotent; about 100 MB, most of it the zig toolchain
# cargo-lambda bundles for cross builds). Prints the path of the `cargo-lambda` binary.
#
#   infra/cargo-lambda.sh                 install if needed, print the path
#   $(infra/cargo-lambda.sh) lambda watch -A 127.0.0.1 -P 9000 --bin rivulet-runner
set -euo pipefail

CACHE="${RIVULET_CACHE:-$HOME/.cache/rivulet}"
VENV="$CACHE/venv-lambda"
BIN="$VENV/bin/cargo-lambda"
VERSION="1.9.2"
STAMP="$VENV/.rivulet-cargo-lambda-$VERSION"

mkdir -p "$CACHE"
exec 9>"$CACHE/venv-lambda.lock"
flock 9
if [ ! -f "$STAMP" ]; then
  echo "installing cargo-lambda $VERSION into $VENV (first run only)" >&2
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2
  fi
  "$VENV/bin/python" -m pip install --quiet "cargo-lambda==$VERSION" >&2
  touch "$STAMP"
fi
flock -u 9
echo "$BIN"
