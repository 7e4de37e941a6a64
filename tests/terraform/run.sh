#!/usr/bin/env bash
# Static checks of the Terraform in terraform/ (no terraform binary or network needed):
#   1. check.py: the table matches `rivulet schema` and the IAM policy grants exactly the
#      DynamoDB actions the store code calls (python-hcl2);
#   2. checkov on terraform/; a failed check passes only when the .tf skips it with a reason
#      (`#checkov:skip=CKV_...:why`), never through a command-line skip.
#
# Both tools are pinned (infra/requirements/) and installed on first use by infra/venv.sh, one
# venv each: checkov depends on bc-python-hcl2, which installs the same `hcl2` module as
# python-hcl2, so they cannot share one.
#
#   RIVULET_BIN   the rivulet binary (built with cargo when unset)
#   TF_DIR        the Terraform to check (default: terraform/ of this repository)
#
# Last line: "terraform: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/terraform"
TF_DIR="${TF_DIR:-$ROOT/terraform}"
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

echo "=== check.py: table vs rivulet schema, IAM policy vs store calls ===" >&2
set +e
"$HCL2_VENV/bin/python" "$HERE/check.py" --tf-dir "$TF_DIR" \
  --store-src "$ROOT/gateway/src/store/dynamo" --rivulet-bin "$RIVULET_BIN" | tee "$out/check.log"
check_rc=${PIPESTATUS[0]}
set -e
p=$(grep -c '^ok ' "$out/check.log" || true)
f=$(grep -c '^FAIL ' "$out/check.log" || true)
passed=$((passed + p)); failed=$((failed + f))
if [ "$check_rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi

echo "=== checkov (framework terraform, offline) ===" >&2
set +e
# --skip-download keeps it offline; without it checkov tries to fetch guidelines and prints
# a traceback. Exit code 1 only means "some check failed": the JSON below decides.
"$CHECKOV_VENV/bin/checkov" -d "$TF_DIR" --framework terraform --skip-download --compact \
  -o json >"$out/checkov.json" 2>"$out/checkov.err"
checkov_rc=$?
set -e
set +e
"$HCL2_VENV/bin/python" - "$out/checkov.json" "$checkov_rc" <<'PYEOF' | tee "$out/checkov.log"
import json, sys

path, rc = sys.argv[1], int(sys.argv[2])
try:
    with open(path) as f:
        data = json.load(f)
except (OSError, ValueError) as e:
    print(f"FAIL checkov produced no readable report (exit {rc}): {e}")
    sys.exit(1)
# One framework gives an object, several a list.
reports = data if isinstance(data, list) else [data]
if not any(r.get("check_type") == "terraform" for r in reports):
    print("FAIL checkov scanned no terraform (wrong directory?)")
    sys.exit(1)
bad = 0
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
for r in reports:
    for e in r.get("results", {}).get("parsing_errors", []) or []:
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
