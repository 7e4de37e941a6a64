# Source this file (bash): runs setup.sh (idempotent, fast when up to date) and exports
#   NODE                 the cached Node 22 binary
#   COMPAT_DIR           the cache dir holding package.json + node_modules
#   COMPAT_NODE_MODULES  $COMPAT_DIR/node_modules
#   NODE_PATH            $COMPAT_NODE_MODULES (CommonJS resolution only; our .mjs files resolve via COMPAT_DIR)
#   RIVET_ENGINE_BIN     the real rivet-engine binary shipped by @rivetkit/engine-cli
_compat_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE="$(bash "$_compat_here/setup.sh" | tail -n1)" || return 1 2>/dev/null || exit 1
export NODE
export COMPAT_DIR="${RIVULET_CACHE:-$HOME/.cache/rivulet}/compat"
export COMPAT_NODE_MODULES="$COMPAT_DIR/node_modules"
export NODE_PATH="$COMPAT_NODE_MODULES"
RIVET_ENGINE_BIN="$(ls "$COMPAT_NODE_MODULES"/@rivetkit/engine-cli-linux-x64-*/rivet-engine 2>/dev/null | head -n1)"
export RIVET_ENGINE_BIN
unset _compat_here
