#!/usr/bin/env bash
# The AWS Lambda runtime emulator the Lambda tests use: cargo-lambda from PyPI, pinned with its
# dependencies in infra/requirements/cargo-lambda.txt and installed by infra/venv.sh into
# ${RIVULET_CACHE:-~/.cache/rivulet}/venv-cargo-lambda (about 100 MB, most of it the zig
# toolchain cargo-lambda bundles for cross builds). Prints the path of the `cargo-lambda` binary.
#
#   infra/cargo-lambda.sh                 install if needed, print the path
#   $(infra/cargo-lambda.sh) lambda watch -A 127.0.0.1 -P 9000 --bin rivulet-runner
set -euo pipefail
VENV="$(bash "$(dirname "${BASH_SOURCE[0]}")/venv.sh" cargo-lambda)"
echo "$VENV/bin/cargo-lambda"
