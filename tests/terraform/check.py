#!/usr/bin/env python3
"""Static checks that the Terraform module describes the table and the permissions the
gateway actually uses.

There is no terraform binary here (and `terraform validate` would not know the gateway's
schema anyway), so this parses the module (terraform/modules/rivulet) with python-hcl2 and
compares:

- the DynamoDB table (key schema, attribute definitions, billing mode, indexes, streams,
  provisioned throughput, and the default table name) with the CreateTable input that
  `rivulet schema` prints, field by field, with a diff when they differ;
- the gateway's IAM policy document (data "aws_iam_policy_document" "gateway", the task
  role's policy) with the calls the gateway's source makes: its DynamoDB actions with the
  operations gateway/src/store/dynamo/ calls, and its Lambda actions with the operations
  adapters/src/lambda.rs calls. Every action those calls need must be granted, nothing else
  may be, DynamoDB only on the table and Lambda only on the runner function (and its
  versions). No other policy document of the module may grant DynamoDB or Lambda actions.
  The calls are found by scanning the source at run time, so a new SDK call without a
  policy update fails here;
- the settings the module promises: encryption at rest, point-in-time recovery and deletion
  protection on by default, and outputs for the table's name and ARN.

tests/terraform/deploy.py checks the rest of the deployment (container, function, example).

Usage: check.py [RIVULET_BIN] [--tf-dir DIR] [--module-dir DIR] [--store-src DIR]
                [--lambda-src FILE]
(RIVULET_BIN defaults to the environment variable of that name.)
Prints one "ok <check>" or "FAIL <check>" line per check (details indented below it) and
"check.py: N passed, M failed" last; exits 1 on any failure.
"""

import argparse
import difflib
import glob
import json
import os
import re
import subprocess
import sys

import hcl2

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Every operation of the DynamoDB API as the Rust SDK names its client methods
# (aws-sdk-dynamodb 1.136, src/operation/). A method of this name called with no arguments
# in the store source is an SDK call.
SDK_OPERATIONS = {
    "batch_execute_statement", "batch_get_item", "batch_write_item", "create_backup",
    "create_global_table", "create_table", "delete_backup", "delete_item",
    "delete_resource_policy", "delete_table", "describe_backup", "describe_continuous_backups",
    "describe_contributor_insights", "describe_endpoints", "describe_export",
    "describe_global_table", "describe_global_table_settings", "describe_import",
    "describe_kinesis_streaming_destination", "describe_limits", "describe_table",
    "describe_table_replica_auto_scaling", "describe_time_to_live",
    "disable_kinesis_streaming_destination", "enable_kinesis_streaming_destination",
    "execute_statement", "execute_transaction", "export_table_to_point_in_time", "get_item",
    "get_resource_policy", "import_table", "list_backups", "list_contributor_insights",
    "list_exports", "list_global_tables", "list_imports", "list_tables",
    "list_tags_of_resource", "put_item", "put_resource_policy", "query",
    "restore_table_from_backup", "restore_table_to_point_in_time", "scan", "search_vectors",
    "tag_resource", "transact_get_items", "transact_write_items", "untag_resource",
    "update_continuous_backups", "update_contributor_insights", "update_global_table",
    "update_global_table_settings", "update_item", "update_kinesis_streaming_destination",
    "update_table", "update_table_replica_auto_scaling", "update_time_to_live",
}

# Methods of the SDK client that are not API calls.
CLIENT_NON_OPERATIONS = {"clone", "config", "from_conf", "new"}

# Operations whose IAM permission is not simply their own name: a transaction is authorised
# per action inside it (found below from the TransactWriteItem builders), and a PartiQL
# statement by its verb, which a static scan cannot tell.
TRANSACT_WRITE_KINDS = {
    "put": "PutItem",
    "update": "UpdateItem",
    "delete": "DeleteItem",
    "condition_check": "ConditionCheckItem",
}
UNMAPPABLE = {"execute_statement", "batch_execute_statement", "execute_transaction"}

# Operations the deployed gateway (`rivulet serve`) never makes, and where they may appear:
# table creation runs only in `rivulet dev` and `rivulet schema --apply`, and Terraform
# creates the table, so the gateway's role does not get to create tables. (It does describe
# the table: that is its start-up check.) A call of these anywhere else in the store counts
# as needed.
SETUP_ONLY = {
    "create_table": "create_table_if_missing",
}

# CreateTable fields this check knows how to compare; anything else in `rivulet schema`
# fails the check instead of being ignored.
SCHEMA_FIELDS = [
    "TableName",
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
]


# Every operation of the Lambda API as the Rust SDK names its client methods
# (aws-sdk-lambda 1.156, src/operation/). A method of this name called with no arguments in
# the Lambda adapter is an SDK call.
LAMBDA_SDK_OPERATIONS = {
    "add_layer_version_permission", "add_permission", "checkpoint_durable_execution",
    "create_alias", "create_capacity_provider", "create_code_signing_config",
    "create_event_source_mapping", "create_function", "create_function_url_config",
    "delete_alias", "delete_capacity_provider", "delete_code_signing_config",
    "delete_event_source_mapping", "delete_function", "delete_function_code_signing_config",
    "delete_function_concurrency", "delete_function_event_invoke_config",
    "delete_function_url_config", "delete_layer_version",
    "delete_provisioned_concurrency_config", "delete_resource_policy",
    "get_account_settings", "get_alias", "get_capacity_provider", "get_code_signing_config",
    "get_durable_execution", "get_durable_execution_history", "get_durable_execution_state",
    "get_event_source_mapping", "get_function", "get_function_code_signing_config",
    "get_function_concurrency", "get_function_configuration",
    "get_function_event_invoke_config", "get_function_recursion_config",
    "get_function_scaling_config", "get_function_url_config", "get_layer_version",
    "get_layer_version_by_arn", "get_layer_version_policy", "get_policy",
    "get_provisioned_concurrency_config", "get_resource_policy",
    "get_runtime_management_config", "invoke", "invoke_async", "invoke_with_response_stream",
    "list_aliases", "list_capacity_providers", "list_code_signing_configs",
    "list_durable_executions_by_function", "list_event_source_mappings",
    "list_function_event_invoke_configs", "list_function_url_configs",
    "list_function_versions_by_capacity_provider", "list_functions",
    "list_functions_by_code_signing_config", "list_layer_versions", "list_layers",
    "list_provisioned_concurrency_configs", "list_tags", "list_versions_by_function",
    "publish_layer_version", "publish_version", "put_function_code_signing_config",
    "put_function_concurrency", "put_function_event_invoke_config",
    "put_function_recursion_config", "put_function_scaling_config",
    "put_provisioned_concurrency_config", "put_resource_policy",
    "put_runtime_management_config", "remove_layer_version_permission", "remove_permission",
    "send_durable_execution_callback_failure", "send_durable_execution_callback_heartbeat",
    "send_durable_execution_callback_success", "stop_durable_execution", "tag_resource",
    "untag_resource", "update_alias", "update_capacity_provider",
    "update_code_signing_config", "update_event_source_mapping", "update_function_code",
    "update_function_configuration", "update_function_event_invoke_config",
    "update_function_url_config",
}

# Lambda operations whose IAM action is not their name in PascalCase (the service
# authorization reference): both invoke calls are authorised as InvokeFunction.
LAMBDA_IAM_ACTION = {
    "invoke": "InvokeFunction",
    "invoke_with_response_stream": "InvokeFunction",
    "get_layer_version_by_arn": "GetLayerVersion",
}

# Method calls on something named `client` in the Lambda adapter that are not API calls: the
# OnceCell the client is built in once.
LAMBDA_CLIENT_NON_OPERATIONS = CLIENT_NON_OPERATIONS | {"get_or_init", "get"}

# The policy document attached to the gateway's task role, and the services it may name.
GATEWAY_POLICY = "gateway"
POLICY_SERVICES = ("dynamodb", "lambda")


class Report:
    """Collects check results and prints them as they come."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, name, detail=""):
        self.passed += 1
        print(f"ok   {name}" + (f": {detail}" if detail else ""))

    def fail(self, name, detail, lines=()):
        self.failed += 1
        print(f"FAIL {name}: {detail}")
        for line in lines:
            for part in str(line).splitlines():
                print(f"       {part}")

    def check(self, name, good, detail, lines=()):
        if good:
            self.ok(name, detail)
        else:
            self.fail(name, detail, lines)


# === Terraform ===


def load_tf(tf_dir, report, name="parse"):
    """Parses every .tf of one module into one merged dict of lists per block type."""
    opts = hcl2.SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    merged = {}
    files = sorted(glob.glob(os.path.join(tf_dir, "*.tf")))
    if not files:
        report.fail(name, f"no .tf files in {tf_dir}")
        return None
    errors = []
    for path in files:
        try:
            with open(path) as f:
                doc = hcl2.load(f, serialization_options=opts)
        except Exception as e:  # the parser raises several unrelated types
            errors.append(f"{os.path.basename(path)}: {e}")
            continue
        for kind, blocks in doc.items():
            merged.setdefault(kind, []).extend(blocks if isinstance(blocks, list) else [blocks])
    report.check(
        name,
        not errors,
        f"{len(files)} files parsed" if not errors else "python-hcl2 cannot parse",
        errors,
    )
    return None if errors else merged


def labelled(tf, kind, type_=None):
    """{name: body} of the blocks of one kind (and resource/data type)."""
    out = {}
    for block in tf.get(kind, []):
        if type_ is None:
            out.update(block)
        else:
            out.update(block.get(type_, {}))
    return out


def variable_defaults(tf):
    return {name: body.get("default") for name, body in labelled(tf, "variable").items()}


REF = re.compile(r"^\$\{var\.([A-Za-z0-9_-]+)\}$")


def resolve(value, defaults):
    """A literal, or the default of the variable it names; other expressions stay strings."""
    if isinstance(value, str):
        m = REF.match(value)
        if m and m.group(1) in defaults:
            return defaults[m.group(1)]
    return value


def one_block(body, name):
    """A nested block that may appear at most once: its body, or None."""
    blocks = body.get(name)
    if not blocks:
        return None
    return blocks[0] if isinstance(blocks, list) else blocks


def key_schema(hash_key, range_key):
    ks = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        ks.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return ks


def projection(body):
    p = {"ProjectionType": body.get("projection_type")}
    if body.get("non_key_attributes"):
        p["NonKeyAttributes"] = sorted(body["non_key_attributes"])
    return p


def throughput(body, defaults):
    r, w = body.get("read_capacity"), body.get("write_capacity")
    if r is None and w is None:
        return None
    return {
        "ReadCapacityUnits": resolve(r, defaults),
        "WriteCapacityUnits": resolve(w, defaults),
    }


def table_as_create_input(body, defaults):
    """The table resource written as the CreateTable input it stands for (AWS defaults
    applied: PROVISIONED billing, no streams)."""
    out = {
        "TableName": resolve(body.get("name"), defaults),
        "KeySchema": key_schema(body.get("hash_key"), body.get("range_key")),
        "AttributeDefinitions": [
            {"AttributeName": a.get("name"), "AttributeType": a.get("type")}
            for a in body.get("attribute", [])
        ],
        "BillingMode": resolve(body.get("billing_mode"), defaults) or "PROVISIONED",
    }
    tp = throughput(body, defaults)
    if tp:
        out["ProvisionedThroughput"] = tp
    gsis = []
    for g in body.get("global_secondary_index", []):
        gsi = {
            "IndexName": g.get("name"),
            "KeySchema": key_schema(g.get("hash_key"), g.get("range_key")),
            "Projection": projection(g),
        }
        if throughput(g, defaults):
            gsi["ProvisionedThroughput"] = throughput(g, defaults)
        gsis.append(gsi)
    if gsis:
        out["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {
            "IndexName": l.get("name"),
            "KeySchema": key_schema(body.get("hash_key"), l.get("range_key")),
            "Projection": projection(l),
        }
        for l in body.get("local_secondary_index", [])
    ]
    if lsis:
        out["LocalSecondaryIndexes"] = lsis
    if resolve(body.get("stream_enabled"), defaults) is True:
        out["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": resolve(body.get("stream_view_type"), defaults),
        }
    return out


def normalise(schema):
    """Order-insensitive where DynamoDB is: attribute definitions and indexes by name."""
    s = json.loads(json.dumps(schema))
    if "AttributeDefinitions" in s:
        s["AttributeDefinitions"].sort(key=lambda a: a.get("AttributeName") or "")
    for k in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if k in s:
            s[k].sort(key=lambda i: i.get("IndexName") or "")
            for i in s[k]:
                nka = i.get("Projection", {}).get("NonKeyAttributes")
                if nka:
                    i["Projection"]["NonKeyAttributes"] = sorted(nka)
    if s.get("StreamSpecification", {}).get("StreamEnabled") is False:
        del s["StreamSpecification"]
    return s


def diff(expected, actual, exp_name, act_name):
    a = json.dumps(expected, indent=2, sort_keys=True).splitlines()
    b = json.dumps(actual, indent=2, sort_keys=True).splitlines()
    return list(difflib.unified_diff(a, b, exp_name, act_name, lineterm="", n=3))


# === rivulet schema ===


def gateway_schema(rivulet_bin, report):
    # The default table name is part of the comparison, so the caller's RIVULET_TABLE must
    # not leak in.
    env = {k: v for k, v in os.environ.items() if k != "RIVULET_TABLE"}
    try:
        out = subprocess.run(
            [rivulet_bin, "schema"], env=env, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        report.fail("rivulet schema", f"cannot run {rivulet_bin} schema: {e}")
        return None
    if out.returncode != 0:
        report.fail(
            "rivulet schema",
            f"{rivulet_bin} schema exited {out.returncode}",
            out.stderr.splitlines()[-10:],
        )
        return None
    try:
        schema = json.loads(out.stdout)
    except ValueError as e:
        report.fail("rivulet schema", f"output is not JSON: {e}", out.stdout.splitlines()[:10])
        return None
    report.ok("rivulet schema", f"from {rivulet_bin}")
    return schema


# === store source ===


def strip_comments(src):
    """Drops // comments (doc comments mention calls they do not make). The store has no
    string literal holding "//", so a plain cut is enough."""
    return re.sub(r"//[^\n]*", "", src)


def enclosing_fn(src, pos):
    names = re.findall(r"\bfn\s+([A-Za-z0-9_]+)", src[:pos])
    return names[-1] if names else None


def line_of(src, pos):
    return src.count("\n", 0, pos) + 1


def store_calls(store_src, report):
    """{operation: [(file:line, enclosing fn)]} and the TransactWriteItem kinds used."""
    files = sorted(glob.glob(os.path.join(store_src, "**", "*.rs"), recursive=True))
    if not files:
        report.fail("store calls", f"no Rust source under {store_src}")
        return None, None
    calls, kinds, unknown = {}, {}, []
    ops = "|".join(sorted(SDK_OPERATIONS, key=len, reverse=True))
    call_re = re.compile(r"\.\s*(" + ops + r")\s*\(\s*\)")
    client_re = re.compile(r"\bclient\s*\.\s*([a-z_][a-z0-9_]*)\s*\(")
    kind_re = re.compile(r"TransactWriteItem::builder\(\)\s*\.\s*([a-z_]+)\s*\(")
    for path in files:
        with open(path) as f:
            src = strip_comments(f.read())
        rel = os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path
        for m in call_re.finditer(src):
            where = f"{rel}:{line_of(src, m.start(1))}"
            calls.setdefault(m.group(1), []).append((where, enclosing_fn(src, m.start())))
        for m in client_re.finditer(src):
            name = m.group(1)
            if name not in SDK_OPERATIONS and name not in CLIENT_NON_OPERATIONS:
                unknown.append(f"{rel}:{line_of(src, m.start(1))}: client.{name}(...)")
        for m in kind_re.finditer(src):
            kinds.setdefault(m.group(1), []).append(f"{rel}:{line_of(src, m.start(1))}")
    report.check(
        "store calls",
        calls and not unknown,
        f"{len(files)} files, operations: {', '.join(sorted(calls))}"
        if calls and not unknown
        else "cannot tell which DynamoDB operations the store makes",
        unknown
        + (["no SDK operation call found (did the store move?)"] if not calls else [])
        + ["update SDK_OPERATIONS or CLIENT_NON_OPERATIONS in tests/terraform/check.py"]
        * bool(unknown),
    )
    return calls, kinds


def required_actions(calls, kinds, report):
    """{IAM action: [why]} the store's calls need, without the setup-only ones."""
    need, problems = {}, []
    for op, sites in sorted(calls.items()):
        if op in SETUP_ONLY:
            sites = [s for s in sites if s[1] != SETUP_ONLY[op]]
            if not sites:
                continue
        where = ", ".join(s[0] for s in sites)
        if op in UNMAPPABLE:
            problems.append(f"{op} at {where}: its IAM action depends on the statement; "
                            "map it in tests/terraform/check.py")
        elif op == "transact_write_items":
            if not kinds:
                problems.append(f"{op} at {where}: no TransactWriteItem::builder() found")
            for kind, at in sorted(kinds.items()):
                if kind not in TRANSACT_WRITE_KINDS:
                    problems.append(f"unknown transaction action .{kind}() at {at[0]}")
                    continue
                need.setdefault("dynamodb:" + TRANSACT_WRITE_KINDS[kind], []).append(
                    f"TransactWriteItems {kind} ({at[0]})"
                )
        elif op == "transact_get_items":
            need.setdefault("dynamodb:GetItem", []).append(f"TransactGetItems ({where})")
        else:
            action = "dynamodb:" + "".join(w.capitalize() for w in op.split("_"))
            need.setdefault(action, []).append(f"{op} ({where})")
    if problems:
        report.fail("store actions", "cannot derive the IAM actions", problems)
        return None
    return need


# === checks ===


def check_table(tf, schema, report):
    tables = labelled(tf, "resource", "aws_dynamodb_table")
    if len(tables) != 1:
        report.fail("table", f"expected one aws_dynamodb_table, found {len(tables)}")
        return None
    (name, body), = tables.items()
    report.ok("table", f"aws_dynamodb_table.{name}")
    defaults = variable_defaults(tf)
    actual = normalise(table_as_create_input(body, defaults))
    if schema is None:
        return name
    expected = normalise(schema)

    unknown = sorted(set(expected) - set(SCHEMA_FIELDS))
    report.check(
        "schema fields",
        not unknown,
        "every field of rivulet schema is compared" if not unknown
        else f"rivulet schema has fields this check does not compare: {', '.join(unknown)}",
        ["extend table_as_create_input() in tests/terraform/check.py"] if unknown else [],
    )
    labels = {
        "TableName": "table name (variable default vs gateway default)",
        "KeySchema": "hash/range keys",
        "AttributeDefinitions": "attribute definitions",
        "BillingMode": "billing mode",
        "ProvisionedThroughput": "provisioned throughput",
        "GlobalSecondaryIndexes": "global secondary indexes",
        "LocalSecondaryIndexes": "local secondary indexes",
        "StreamSpecification": "streams",
    }
    mismatch = False
    for field in SCHEMA_FIELDS:
        e, a = expected.get(field), actual.get(field)
        shown = json.dumps(e) if e is not None else "none"
        if e == a:
            report.ok(f"schema {field}", f"{labels[field]}: {shown}")
        else:
            mismatch = True
            report.fail(
                f"schema {field}",
                f"{labels[field]}: terraform does not match rivulet schema",
                diff({field: e}, {field: a}, "rivulet schema", f"terraform ({name})"),
            )
    if mismatch:
        print("       whole table, rivulet schema (-) vs terraform (+):")
        for line in diff(expected, actual, "rivulet schema", "terraform"):
            print(f"         {line}")
    return name


def check_settings(tf, table, report):
    body = labelled(tf, "resource", "aws_dynamodb_table")[table]
    defaults = variable_defaults(tf)
    sse = one_block(body, "server_side_encryption") or {}
    report.check(
        "encryption at rest",
        resolve(sse.get("enabled"), defaults) is True,
        "server_side_encryption.enabled = true",
        ["add server_side_encryption { enabled = true }"],
    )
    pitr = one_block(body, "point_in_time_recovery") or {}
    report.check(
        "point-in-time recovery",
        resolve(pitr.get("enabled"), defaults) is True,
        "on by default",
        [f"point_in_time_recovery.enabled resolves to {resolve(pitr.get('enabled'), defaults)!r}"],
    )
    dp = resolve(body.get("deletion_protection_enabled"), defaults)
    report.check(
        "deletion protection",
        dp is True,
        "on by default",
        [f"deletion_protection_enabled resolves to {dp!r}"],
    )
    outputs = {n: str(b.get("value")) for n, b in labelled(tf, "output").items()}
    want = {
        "table name": f"aws_dynamodb_table.{table}.name",
        "table ARN": f"aws_dynamodb_table.{table}.arn",
    }
    missing = [w for w, ref in want.items() if not any(ref in v for v in outputs.values())]
    report.check(
        "table outputs",
        not missing,
        ", ".join(f"{n}" for n in sorted(outputs) if n.startswith("table")),
        [f"no output for the {w}" for w in missing],
    )


# === Lambda adapter source ===


def lambda_calls(lambda_src, report):
    """{IAM action: [why]} the Lambda adapter's SDK calls need."""
    paths = (
        sorted(glob.glob(os.path.join(lambda_src, "**", "*.rs"), recursive=True))
        if os.path.isdir(lambda_src)
        else [lambda_src]
    )
    need, unknown = {}, []
    ops = "|".join(sorted(LAMBDA_SDK_OPERATIONS, key=len, reverse=True))
    call_re = re.compile(r"\.\s*(" + ops + r")\s*\(\s*\)")
    client_re = re.compile(r"\bclient\s*\.\s*([a-z_][a-z0-9_]*)\s*\(")
    for path in paths:
        try:
            with open(path) as f:
                src = strip_comments(f.read())
        except OSError as e:
            report.fail("lambda calls", f"cannot read {path}: {e}")
            return None
        rel = os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path
        for m in call_re.finditer(src):
            op = m.group(1)
            action = "lambda:" + LAMBDA_IAM_ACTION.get(
                op, "".join(w.capitalize() for w in op.split("_"))
            )
            need.setdefault(action, []).append(f"{op} ({rel}:{line_of(src, m.start(1))})")
        for m in client_re.finditer(src):
            name = m.group(1)
            if name not in LAMBDA_SDK_OPERATIONS and name not in LAMBDA_CLIENT_NON_OPERATIONS:
                unknown.append(f"{rel}:{line_of(src, m.start(1))}: client.{name}(...)")
    report.check(
        "lambda calls",
        need and not unknown,
        f"{', '.join(os.path.relpath(p, ROOT) for p in paths)}: "
        + ", ".join(f"{a} ({'; '.join(w)})" for a, w in sorted(need.items()))
        if need and not unknown
        else "cannot tell which Lambda operations the adapter makes",
        unknown
        + (["no Lambda SDK operation call found (did the adapter move?)"] if not need else [])
        + ["update LAMBDA_SDK_OPERATIONS or LAMBDA_CLIENT_NON_OPERATIONS in tests/terraform/check.py"]
        * bool(unknown),
    )
    return need if need and not unknown else None


# === policy ===


def ref(expr):
    return f"${{{expr}}}"


def check_policy(tf, table, need, lambda_need, report):
    """The gateway's policy grants exactly what the store and the Lambda adapter call, on the
    table and the function only; no other policy document grants DynamoDB or Lambda."""
    docs = labelled(tf, "data", "aws_iam_policy_document")
    if GATEWAY_POLICY not in docs:
        report.fail("policy", f'no data "aws_iam_policy_document" "{GATEWAY_POLICY}" (the gateway task role\'s policy)')
        return
    functions = labelled(tf, "resource", "aws_lambda_function")
    if len(functions) != 1:
        report.fail("policy", f"expected one aws_lambda_function (the runner), found {len(functions)}")
        return
    (function,) = functions
    table_arn = f"aws_dynamodb_table.{table}.arn"
    fn_arn = f"aws_lambda_function.{function}.arn"
    # The table itself or a sub-resource (an index; the table has none today); the function
    # itself or a version or alias of it.
    allowed = {
        "dynamodb": (lambda r: r == ref(table_arn) or r.startswith(ref(table_arn) + "/"), table_arn),
        "lambda": (lambda r: r in (ref(fn_arn), ref(fn_arn) + ":*"), f"{fn_arn} (and :*)"),
    }

    granted, problems = {}, []
    for i, st in enumerate(docs[GATEWAY_POLICY].get("statement", [])):
        label = st.get("sid") or f"statement {i + 1}"
        if st.get("effect", "Allow") != "Allow":
            continue
        actions = st.get("actions", [])
        services = {str(a).split(":", 1)[0] for a in actions}
        if len(services) != 1 or not services <= set(POLICY_SERVICES):
            problems.append(f"{label}: actions of {sorted(services)}; each statement names one of {', '.join(POLICY_SERVICES)} only")
            continue
        (service,) = services
        resources = st.get("resources", [])
        if not resources:
            problems.append(f"{label}: a statement without resources")
        ok_resource, what = allowed[service]
        for r in resources:
            if not ok_resource(str(r)):
                problems.append(f"{label}: resource {r!r} is not {what}")
        for a in actions:
            granted.setdefault(a, []).append(label)
    wild = sorted(a for a in granted if "*" in a or "?" in a)
    report.check(
        "policy scope",
        not problems and not wild,
        f"DynamoDB only on {table_arn}, Lambda only on {fn_arn}, no wildcard actions",
        problems + [f"wildcard action {a}" for a in wild],
    )

    # Other roles (execution, runner) must not get the gateway's data or invoke rights.
    leaks = []
    for doc_name, doc in docs.items():
        if doc_name == GATEWAY_POLICY:
            continue
        for st in doc.get("statement", []) + [
            d.get("statement", {}).get("content", [{}])[0]
            for d in doc.get("dynamic", [])
            if isinstance(d.get("statement"), dict)
        ]:
            for a in st.get("actions", []) if isinstance(st, dict) else []:
                if str(a).split(":", 1)[0] in POLICY_SERVICES:
                    leaks.append(f"{doc_name} grants {a}")
    report.check(
        "policy only on the gateway role",
        not leaks,
        f"no other policy document grants {' or '.join(POLICY_SERVICES)} actions",
        leaks,
    )

    for service, want, source in (
        ("dynamodb", need, "the store"),
        ("lambda", lambda_need, "the Lambda adapter"),
    ):
        have = {a for a in granted if a.startswith(service + ":")}
        missing = sorted(set(want) - have)
        report.check(
            f"policy covers {service} calls",
            not missing,
            ", ".join(sorted(want)),
            [f"{a} is not granted; needed by {'; '.join(want[a])}" for a in missing],
        )
        extra = sorted(have - set(want))
        report.check(
            f"policy grants no more {service}",
            not extra,
            "least privilege",
            [f"{a} is granted but {source} never needs it" for a in extra],
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rivulet_bin", nargs="?", default=os.environ.get("RIVULET_BIN"))
    ap.add_argument("--rivulet-bin", dest="rivulet_bin_opt")
    ap.add_argument("--tf-dir", default=os.path.join(ROOT, "terraform"),
                    help="the Terraform root (default: terraform/)")
    ap.add_argument("--module-dir", help="the module (default: TF_DIR/modules/rivulet)")
    ap.add_argument("--store-src", default=os.path.join(ROOT, "gateway", "src", "store", "dynamo"))
    ap.add_argument("--lambda-src", default=os.path.join(ROOT, "adapters", "src", "lambda.rs"))
    args = ap.parse_args()
    rivulet_bin = args.rivulet_bin_opt or args.rivulet_bin
    if not rivulet_bin:
        ap.error("give the rivulet binary as argument or in RIVULET_BIN")
    module_dir = args.module_dir or os.path.join(args.tf_dir, "modules", "rivulet")

    report = Report()
    tf = load_tf(module_dir, report, name=f"parse {os.path.relpath(module_dir, ROOT)}")
    schema = gateway_schema(rivulet_bin, report)
    if tf is not None:
        table = check_table(tf, schema, report)
        if table is not None:
            check_settings(tf, table, report)
            calls, kinds = store_calls(args.store_src, report)
            lambda_need = lambda_calls(args.lambda_src, report)
            if calls and lambda_need is not None:
                need = required_actions(calls, kinds, report)
                if need is not None:
                    check_policy(tf, table, need, lambda_need, report)
    print(f"check.py: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
