#!/usr/bin/env bash
# Static checks of the deployment in terraform/ (the module and its example) and of the
# Dockerfile (no terraform binary, docker daemon or network needed):
#   1. check.py: the module's table matches `rivulet schema`, and the gateway's IAM policy
#      grants exactly the DynamoDB actions the store code calls and the Lambda actions the
#      Lambda adapter calls (python-hcl2);
#   2. deploy.py: the rest of the deployment against the code it runs: every variable
#      documented and typed, the example's calls into the module, the container's RIVULET_*
#      variables against `rivulet serve --help`, the runner function (runtime, handler,
#      build command, timeout = pool lifespan), drain and idle timeouts, roles, Dockerfile;
#   3. checkov on terraform/ (framework terraform) and on the Dockerfile (framework
#      dockerfile); a failed check passes only when the file skips it with a reason
#      (`#checkov:skip=CKV_...:why`), never through a command-line skip.
#
# Both tools are pinned (infra/requirements/) and installed on first use by infra/venv.sh, one
# venv each: checkov depends on bc-python-hcl2, which installs the same `hcl2` module as
# python-hcl2, so they cannot share one.
#
#   RIVULET_BIN   the rivulet binary (built with cargo when unset)
#   TF_DIR        the Terraform to check (default: terraform/ of this repository)
#   DOCKERFILE    the Dockerfile to check (default: Dockerfile of this repository)
#
# Last line: "terraform: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/terraform"
TF_DIR="${TF_DIR:-$ROOT/terraform}"
DOCKERFILE="${DOCKERFILE:-$ROOT/Dockerfile}"
# Pinned with every dependency in infra/requirements/{hcl2,checkov}.txt; one venv each
# (infra/venv.sh).
HCL2_VENV="$(bash "$ROOT/infra/venv.sh" hcl2)"
CHECKOV_VENV="$(bash "$ROOT/infra/venv.sh" checkov)"

if [ -z "${RIVULET_BIN:-}" ]; then
  (cd "$ROOT" && cargo build -q -p rivulet-gateway --bin rivulet)
  RIVULET_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/rivulet"
fi

passed=0; failed=0
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# Runs one checker; its "ok " and "FAIL " lines are counted, and a non-zero exit without any
# FAIL line (a crash) counts as one failure.
run_checker() {
  local name="$1"; shift
  set +e
  "$@" | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  set -e
  local p f
  p=$(grep -c '^ok ' "$out/$name.log" || true)
  f=$(grep -c '^FAIL ' "$out/$name.log" || true)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
}

echo "=== check.py: table vs rivulet schema, IAM policy vs store and Lambda calls ===" >&2
run_checker check "$HCL2_VENV/bin/python" "$HERE/check.py" --tf-dir "$TF_DIR" \
  --store-src "$ROOT/gateway/src/store/dynamo" --lambda-src "$ROOT/adapters/src/lambda.rs" \
  --rivulet-bin "$RIVULET_BIN"

echo "=== deploy.py: module, example, container, function and Dockerfile vs the code ===" >&2
run_checker deploy "$HCL2_VENV/bin/python" "$HERE/deploy.py" --tf-dir "$TF_DIR" \
  --dockerfile "$DOCKERFILE" --rivulet-bin "$RIVULET_BIN"

echo "=== checkov (frameworks terraform and dockerfile, offline) ===" >&2
set +e
# --skip-download keeps it offline; without it checkov tries to fetch guidelines and prints
# a traceback. Exit code 1 only means "some check failed": the JSON below decides. -d scans
# terraform/ recursively; the module is evaluated through the example's call to it.
"$CHECKOV_VENV/bin/checkov" -d "$TF_DIR" --framework terraform --skip-download --compact \
  -o json >"$out/checkov-terraform.json" 2>"$out/checkov.err"
tf_rc=$?
"$CHECKOV_VENV/bin/checkov" -f "$DOCKERFILE" --framework dockerfile --skip-download --compact \
  -o json >"$out/checkov-dockerfile.json" 2>>"$out/checkov.err"
docker_rc=$?
set -e
set +e
"$HCL2_VENV/bin/python" - "$out/checkov-terraform.json:$tf_rc:terraform" \
  "$out/checkov-dockerfile.json:$docker_rc:dockerfile" <<'PYEOF' | tee "$out/checkov.log"
import json, sys

bad = 0
for arg in sys.argv[1:]:
    path, rc, framework = arg.rsplit(":", 2)
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"FAIL checkov {framework} produced no readable report (exit {rc}): {e}")
        bad += 1
        continue
    # One framework gives an object, several a list.
    reports = data if isinstance(data, list) else [data]
    if not any(r.get("check_type") == framework for r in reports):
        print(f"FAIL checkov scanned no {framework} (wrong path?)")
        bad += 1
        continue
    for r in reports:
        res = r.get("results", {})
        # The summary counts what the lists hold; a mismatch means the report was trimmed.
        for kind in ("passed", "failed", "skipped"):
            n = len(res.get(f"{kind}_checks", []))
            if n != r.get("summary", {}).get(kind, n):
                bad += 1
                print(f"FAIL checkov report lists {n} {kind} checks, its summary says {r['summary'][kind]}")
        for c in res.get("passed_checks", []):
            print(f"ok   {c['check_id']} {c['resource']}: {c['check_name']}")
        for c in res.get("failed_checks", []):
            bad += 1
            print(f"FAIL {c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]}): "
                  f"{c['check_name']}")
        for c in res.get("skipped_checks", []):
            why = (c.get("check_result") or {}).get("suppress_comment") or ""
            # checkov fills in this text when a skip comment carries no reason.
            if not why.strip() or why.strip() == "No comment provided":
                bad += 1
                print(f"FAIL {c['check_id']} {c['resource']}: skipped without a reason")
            else:
                print(f"skip {c['check_id']} {c['resource']}: {why}")
        for e in res.get("parsing_errors", []) or []:
            bad += 1
            print(f"FAIL checkov could not parse {e}")
sys.exit(1 if bad else 0)
PYEOF
report_rc=${PIPESTATUS[0]}
set -e
p=$(grep -c '^ok ' "$out/checkov.log" || true)
f=$(grep -c '^FAIL ' "$out/checkov.log" || true)
if [ "$report_rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
if [ "$f" -gt 0 ] || [ "$report_rc" -ne 0 ]; then sed 's/^/checkov: /' "$out/checkov.err" >&2; fi
passed=$((passed + p)); failed=$((failed + f))

echo "terraform: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
