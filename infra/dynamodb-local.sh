#!/usr/bin/env bash
# A local DynamoDB stand-in (moto) for development and the DynamoDB store tests.
#
#   infra/dynamodb-local.sh install   installs moto (pinned, infra/venv.sh) if needed and
#                                     prints the venv's python
#   infra/dynamodb-local.sh [PORT]    installs if needed, then runs moto in the foreground on
#                                     127.0.0.1:PORT (a free port when PORT is absent or 0)
#                                     and prints "endpoint=http://127.0.0.1:<port>" once it
#                                     accepts requests
#
# The server exits by itself when the process that started it exits (it polls its parent
# pid), so a test harness that dies or forgets to stop it leaves no orphan behind.
# Point the AWS SDK at it with AWS_ENDPOINT_URL_DYNAMODB=<endpoint>, any region and any
# static credentials. moto keeps everything in memory and never reaps TTL-expired items.
set -euo pipefail

# moto and its dependencies are pinned in infra/requirements/moto.txt (infra/venv.sh).
VENV="$(bash "$(dirname "${BASH_SOURCE[0]}")/venv.sh" moto)"
PY="$VENV/bin/python"
if [ "${1:-}" = "install" ]; then
  echo "$PY"
  exit 0
fi

PORT="${1:-0}"
exec "$PY" - "$PORT" <<'PYEOF'
import logging, os, sys, threading, time

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

parent = os.getppid()
# One log line per request would drown test output.
logging.getLogger("werkzeug").setLevel(logging.ERROR)
# moto does not isolate concurrent TransactWriteItems from each other (two can both pass
# their conditions); serving one request at a time makes each one atomic, as in DynamoDB.
server = make_server("127.0.0.1", int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)

def watch_parent():
    # Re-parenting means whoever started us is gone: stop instead of lingering.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)

threading.Thread(target=watch_parent, daemon=True).start()
print(f"endpoint=http://127.0.0.1:{server.server_port}", flush=True)
server.serve_forever()
PYEOF
