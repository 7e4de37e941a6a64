#!/usr/bin/env python3
"""Static checks that the deployment (terraform/ and the Dockerfile) fits the code it deploys.

check.py compares the module's table and the gateway's IAM policy with the gateway's source;
this compares everything else with what the binaries and the source accept, since there is no
terraform binary to plan with:

- every .tf (and .tfvars) under terraform/ parses; every variable has a description and a
  type; every root pins Terraform >= 1.5 and the AWS provider ~> 5.0;
- the example calls the module with inputs the module declares, sets every required one,
  its terraform.tfvars sets only declared variables, and its outputs name module outputs;
- every RIVULET_* variable the gateway container gets is an option of `rivulet serve`
  (the `[env: NAME=]` markers of `rivulet serve --help`), any other (the log filter) is read
  by the gateway's source, and the values the deployment depends on are set (store, host,
  node URL, table, runner pools, token from Secrets Manager); likewise the function's
  variables are read by the runner's source;
- the runner function: handler `bootstrap` on `provided.al2023`, the runner's source has its
  Lambda entry, and the documented `cargo lambda build` command names the runner's package
  and one of its binaries; the function timeout and the pool's request_lifespan come from
  one variable that Lambda's 900 s bound holds;
- the gateway task: stopTimeout and the target group's deregistration delay cover the drain
  variable (at most ECS's 120 s); the load balancer's idle timeout is at least an hour; the
  health check asks /health; the task role carries the gateway policy and nothing else does;
- the register-a-runner output uses only flags `rivulet runners put --help` lists;
- the Dockerfile builds the gateway with the workspace it needs and runs it as non-root.

Usage: deploy.py [--tf-dir DIR] [--rivulet-bin BIN] [--dockerfile FILE]
Prints "ok <check>" / "FAIL <check>" lines and "deploy.py: N passed, M failed" last.
"""

import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import tomllib

# check.py is imported for its helpers; no __pycache__ is left in the repository.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check import ROOT, Report, labelled, load_tf, one_block, strip_comments  # noqa: E402

import hcl2  # noqa: E402

# Names the checks below rely on. A rename in the module must be made here too: the check
# then fails loudly instead of passing on nothing.
MODULE_SUBDIR = os.path.join("modules", "rivulet")
EXAMPLES_SUBDIR = "examples"
LIFESPAN_VAR = "runner_request_lifespan"
DRAIN_GRACE_VAR = "runner_drain_grace_seconds"
DRAIN_VAR = "gateway_drain_seconds"
IDLE_VAR = "alb_idle_timeout"
PORT_VAR = "gateway_port"
GATEWAY_POLICY = "gateway"

REQUIRED_TERRAFORM = ">= 1.5"
REQUIRED_AWS = "~> 5.0"
LAMBDA_RUNTIME = "provided.al2023"
# cargo-lambda names the binary `bootstrap` in the zip, the file provided.* runtimes start.
LAMBDA_HANDLER = "bootstrap"
LAMBDA_MAX_TIMEOUT_S = 900
ECS_MAX_STOP_TIMEOUT_S = 120
MIN_IDLE_TIMEOUT_S = 3600
HEALTH_PATH = "/health"
RUNNER_CRATE = "lambda-runner"
RUNNER_LAMBDA_ENTRY = os.path.join("lambda-runner", "src", "entry", "lambda.rs")
RUNNER_LAMBDA_MARKER = "lambda_runtime::run"
GATEWAY_CRATE = "gateway"

# Values of the container environment the deployment depends on: the store and table, an
# address reachable from outside the task, a node URL per task, logs as JSON.
CONTAINER_VALUES = {
    "RIVULET_STORE": "dynamodb",
    "RIVULET_HOST": "0.0.0.0",
    "RIVULET_NODE_URL": "auto",
    "RIVULET_LOG_FORMAT": "json",
}

REF = re.compile(r"^\$\{(var|local)\.([A-Za-z0-9_-]+)\}$")
ENV_MARK = re.compile(r"\[env:\s*([A-Z][A-Z0-9_]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def rel(path):
    return os.path.relpath(path, ROOT)


class Module:
    """One parsed Terraform directory with a resolver for var/local references."""

    def __init__(self, path, tf):
        self.path = path
        self.tf = tf
        self.vars = labelled(tf, "variable")
        self.locals = {}
        for block in tf.get("locals", []):
            self.locals.update(block)

    def res(self, type_):
        return labelled(self.tf, "resource", type_)

    def resolve(self, value, depth=0):
        """A literal, ("var", name) for a variable, or the expression string; locals are
        followed to their values."""
        if isinstance(value, str) and depth < 20:
            m = REF.match(value)
            if m and m.group(1) == "local" and m.group(2) in self.locals:
                return self.resolve(self.locals[m.group(2)], depth + 1)
            if m and m.group(1) == "var":
                return ("var", m.group(2))
        return value

    def default(self, name):
        return self.vars.get(name, {}).get("default")


# === helpers ===


def run_help(rivulet_bin, args, report, name):
    try:
        out = subprocess.run(
            [rivulet_bin, *args, "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        report.fail(name, f"cannot run {rivulet_bin} {' '.join(args)} --help: {e}")
        return None
    if out.returncode != 0:
        report.fail(name, f"{rivulet_bin} {' '.join(args)} --help exited {out.returncode}",
                    out.stderr.splitlines()[-5:])
        return None
    return out.stdout


def cargo_bins(crate_dir):
    """(package name, binary names) of a crate."""
    with open(os.path.join(crate_dir, "Cargo.toml"), "rb") as f:
        manifest = tomllib.load(f)
    package = manifest.get("package", {}).get("name")
    bins = {b.get("name") for b in manifest.get("bin", [])}
    explicit_main = any(b.get("path") == "src/main.rs" for b in manifest.get("bin", []))
    auto = manifest.get("package", {}).get("autobins", True)
    if auto and not explicit_main and os.path.exists(os.path.join(crate_dir, "src", "main.rs")):
        bins.add(package)
    return package, bins


def read_by_source(name, src_dir):
    """Whether the Rust source under src_dir names the environment variable as a literal."""
    for path in glob.glob(os.path.join(ROOT, src_dir, "**", "*.rs"), recursive=True):
        with open(path) as f:
            if f'"{name}"' in strip_comments(f.read()):
                return True
    return False


def number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# === checks ===


def parse_all(tf_root, report):
    """Parses every directory holding .tf files; returns {dir: Module}."""
    dirs = sorted({os.path.dirname(p) for p in glob.glob(os.path.join(tf_root, "**", "*.tf"), recursive=True)})
    if not dirs:
        report.fail("parse", f"no .tf files under {tf_root}")
        return {}
    modules = {}
    for d in dirs:
        tf = load_tf(d, report, name=f"parse {rel(d)}")
        if tf is not None:
            modules[d] = Module(d, tf)
    opts = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    for path in sorted(glob.glob(os.path.join(tf_root, "**", "*.tfvars"), recursive=True)):
        try:
            with open(path) as f:
                hcl2.load(f, serialization_options=opts)
            report.ok(f"parse {rel(path)}")
        except Exception as e:  # the parser raises several unrelated types
            report.fail(f"parse {rel(path)}", str(e))
    return modules


def check_variables(mod, report):
    bad = []
    for name, body in sorted(mod.vars.items()):
        if not str(body.get("description") or "").strip():
            bad.append(f"variable {name} has no description")
        if "type" not in body:
            bad.append(f"variable {name} has no type")
    report.check(
        f"variables {rel(mod.path)}",
        not bad,
        f"all {len(mod.vars)} have a description and a type",
        bad,
    )


def check_versions(mod, report):
    blocks = mod.tf.get("terraform", [])
    req = next((b.get("required_version") for b in blocks if "required_version" in b), None)
    providers = {}
    for b in blocks:
        for p in b.get("required_providers", []):
            providers.update(p)
    aws = (providers.get("aws") or {}).get("version")
    report.check(
        f"versions {rel(mod.path)}",
        req == REQUIRED_TERRAFORM and aws == REQUIRED_AWS,
        f"terraform {req}, aws {aws}",
        [f"want required_version = \"{REQUIRED_TERRAFORM}\" and aws version = \"{REQUIRED_AWS}\" "
         f"in versions.tf; found {req!r} and {aws!r}"],
    )


def check_example(example, module, report):
    """The example's module call, terraform.tfvars and outputs against the module."""
    calls = {n: b for n, b in labelled(example.tf, "module").items()
             if os.path.normpath(os.path.join(example.path, str(b.get("source", "")))) == os.path.normpath(module.path)}
    if not calls:
        report.fail(f"example {rel(example.path)}", f"no module block with source {rel(module.path)}")
        return {}
    (call_name, call), = list(calls.items())[:1]
    inputs = {k for k in call if k not in ("source", "version", "providers", "depends_on", "count", "for_each")}
    unknown = sorted(inputs - set(module.vars))
    required = sorted(n for n, b in module.vars.items() if "default" not in b)
    missing = sorted(set(required) - inputs)
    report.check(
        f"example {rel(example.path)} module inputs",
        not unknown and not missing,
        f"module.{call_name}: {len(inputs)} inputs, every required one ({', '.join(required)}) set",
        [f"{k} is not a variable of the module" for k in unknown]
        + [f"required module variable {k} is not set" for k in missing],
    )

    tfvars_path = os.path.join(example.path, "terraform.tfvars")
    if not os.path.exists(tfvars_path):
        report.fail(f"example {rel(example.path)} terraform.tfvars", "missing")
    else:
        opts = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
        with open(tfvars_path) as f:
            values = hcl2.load(f, serialization_options=opts)
        unknown = sorted(set(values) - set(example.vars))
        missing = sorted(n for n, b in example.vars.items() if "default" not in b and n not in values)
        report.check(
            f"example {rel(example.path)} terraform.tfvars",
            not unknown and not missing,
            f"sets {len(values)} declared variables, every required one",
            [f"{k} is not a variable of the example" for k in unknown]
            + [f"required variable {k} is not set" for k in missing],
        )

    module_outputs = set(labelled(module.tf, "output"))
    refs = {}
    for name, body in labelled(example.tf, "output").items():
        for out in re.findall(rf"module\.{re.escape(call_name)}\.([A-Za-z0-9_]+)", str(body.get("value"))):
            refs.setdefault(out, []).append(name)
    bad = [f"output {', '.join(o)} refers to module.{call_name}.{r}, which the module does not output"
           for r, o in sorted(refs.items()) if r not in module_outputs]
    report.check(
        f"example {rel(example.path)} outputs",
        refs and not bad,
        f"{len(refs)} module outputs passed on",
        bad or ["the example outputs nothing of the module"],
    )
    return {k: call[k] for k in inputs}


def check_outputs(module, report):
    outputs = labelled(module.tf, "output")
    tables = module.res("aws_dynamodb_table")
    functions = module.res("aws_lambda_function")
    env = gateway_environment(module) or {}
    want = {
        "gateway_url": env.get("RIVULET_PUBLIC_URL"),
        "table_name": "".join(f"${{aws_dynamodb_table.{t}.name}}" for t in tables),
        "runner_function_arn": "".join(f"${{aws_lambda_function.{f}.arn}}" for f in functions),
    }
    problems = []
    for name, value in want.items():
        if name not in outputs:
            problems.append(f"no output {name}")
        elif value is not None and outputs[name].get("value") != value:
            problems.append(f"output {name} is {outputs[name].get('value')!r}, want {value!r} "
                            "(for gateway_url: the same expression as RIVULET_PUBLIC_URL)")
    if "register_runner_command" not in outputs:
        problems.append("no output register_runner_command")
    report.check(
        "module outputs",
        not problems,
        ", ".join(sorted(want) + ["register_runner_command"]),
        problems,
    )


def check_register_command(module, rivulet_bin, report):
    body = labelled(module.tf, "output").get("register_runner_command")
    if body is None:
        return
    cmd = str(body.get("value"))
    help_text = run_help(rivulet_bin, ["runners", "put"], report, "register command")
    if help_text is None:
        return
    at = cmd.find("rivulet runners put")
    if at < 0:
        report.fail("register command", "register_runner_command does not run `rivulet runners put`")
        return
    used = FLAG.findall(cmd[at:])
    known = set(FLAG.findall(help_text))
    envs = set(ENV_MARK.findall(help_text))
    token_env = re.match(r"^\s*([A-Z_]+)=", cmd)
    functions = module.res("aws_lambda_function")
    problems = [f"{f} is not an option of `rivulet runners put`" for f in used if f not in known]
    if token_env and token_env.group(1) not in envs:
        problems.append(f"{token_env.group(1)} is not read by `rivulet runners put` ({', '.join(sorted(envs))})")
    for flag, want in (
        ("--lambda", [f"${{aws_lambda_function.{f}.arn}}" for f in functions]),
        ("--lifespan", [f"${{var.{LIFESPAN_VAR}}}"]),
        ("--endpoint", ["${local.gateway_url}"]),
    ):
        m = re.search(re.escape(flag) + r"\s+(\S+)", cmd[at:])
        if not m or m.group(1) not in want:
            problems.append(f"{flag} should be {' or '.join(want)}, found {m.group(1) if m else 'nothing'}")
    report.check(
        "register command",
        not problems,
        f"rivulet runners put {' '.join(used)}; the token from {token_env.group(1) if token_env else '?'}",
        problems,
    )


def gateway_container(module):
    """The gateway's container definition (a local object passed to jsonencode), or None."""
    tasks = module.res("aws_ecs_task_definition")
    if len(tasks) != 1:
        return None, None
    (name, task), = tasks.items()
    m = re.fullmatch(r"\$\{jsonencode\(\[local\.([A-Za-z0-9_]+)\]\)\}", str(task.get("container_definitions")))
    if not m or not isinstance(module.locals.get(m.group(1)), dict):
        return name, None
    return name, module.locals[m.group(1)]


def local_map(module, container, key):
    """{name: value} of the container's environment or secrets, kept in a local map."""
    m = re.search(r"\bin\s+local\.([A-Za-z0-9_]+)\s*:", str((container or {}).get(key)))
    if not m or not isinstance(module.locals.get(m.group(1)), dict):
        return None
    return module.locals[m.group(1)]


def gateway_environment(module):
    _, container = gateway_container(module)
    return local_map(module, container, "environment")


def check_container(module, rivulet_bin, report):
    task, container = gateway_container(module)
    if container is None:
        report.fail(
            "container",
            "cannot read the gateway container: want one aws_ecs_task_definition whose "
            "container_definitions = jsonencode([local.X]), X an object",
        )
        return None
    env = local_map(module, container, "environment")
    secrets = local_map(module, container, "secrets")
    if env is None or secrets is None:
        report.fail("container", "environment and secrets must be `[for k, v in local.MAP : ...]` over local maps")
        return None
    help_text = run_help(rivulet_bin, ["serve"], report, "container env")
    if help_text is None:
        return container
    known = set(ENV_MARK.findall(help_text))
    names = sorted(n for n in list(env) + list(secrets) if n.startswith("RIVULET_"))
    for n in names:
        report.check(
            f"container env {n}",
            n in known,
            "an option of rivulet serve",
            [f"`{rivulet_bin} serve --help` has no [env: {n}=] (a typo, or a gateway without that option)"],
        )

    # Other variables (the log filter) are read with std::env, not through clap; AWS_* are the
    # SDK's.
    others = sorted(n for n in env if not n.startswith(("RIVULET_", "AWS_")))
    unread = [n for n in others if not read_by_source(n, os.path.join(GATEWAY_CRATE, "src"))]
    report.check(
        "container env, other names",
        not unread,
        f"{', '.join(others) or 'none'} read by the gateway's source",
        [f"{n} is not read anywhere in {GATEWAY_CRATE}/src" for n in unread],
    )

    problems = []
    for n, want in CONTAINER_VALUES.items():
        if env.get(n) != want:
            problems.append(f"{n} = {env.get(n)!r}, want {want!r}")
    tables = module.res("aws_dynamodb_table")
    if env.get("RIVULET_TABLE") not in [f"${{aws_dynamodb_table.{t}.name}}" for t in tables]:
        problems.append(f"RIVULET_TABLE = {env.get('RIVULET_TABLE')!r}, want the table's name")
    if not re.fullmatch(r"\$\{(tostring\()?var\.%s\)?\}" % PORT_VAR, str(env.get("RIVULET_PORT"))):
        problems.append(f"RIVULET_PORT = {env.get('RIVULET_PORT')!r}, want var.{PORT_VAR}")
    for n in ("RIVULET_PUBLIC_URL", "AWS_REGION"):
        if not env.get(n):
            problems.append(f"{n} is not set")
    if not re.fullmatch(r"\$\{jsonencode\(local\.[A-Za-z0-9_]+\)\}", str(env.get("RIVULET_RUNNER_CONFIGS"))):
        problems.append("RIVULET_RUNNER_CONFIGS should be jsonencode(local.<pools>)")
    if "RIVULET_TOKEN" in env:
        problems.append("RIVULET_TOKEN is in the plain environment; it belongs in secrets")
    if "RIVULET_TOKEN" not in secrets:
        problems.append("RIVULET_TOKEN is not among the container's secrets (the gateway would accept everyone)")
    port = container.get("portMappings") or [{}]
    if module.resolve(port[0].get("containerPort")) != ("var", PORT_VAR):
        problems.append(f"portMappings[0].containerPort should be var.{PORT_VAR}")
    report.check(
        "container settings",
        not problems,
        "dynamodb store, 0.0.0.0, node URL auto, JSON logs, table, port, pools, token from Secrets Manager",
        problems,
    )
    return container


def runner_pools(module):
    """The local the RIVULET_RUNNER_CONFIGS value encodes: {pool: body}."""
    env = gateway_environment(module) or {}
    m = re.fullmatch(r"\$\{jsonencode\(local\.([A-Za-z0-9_]+)\)\}", str(env.get("RIVULET_RUNNER_CONFIGS")))
    return module.locals.get(m.group(1)) if m else None


def check_lambda(module, tf_root, report):
    functions = module.res("aws_lambda_function")
    if len(functions) != 1:
        report.fail("runner function", f"expected one aws_lambda_function, found {len(functions)}")
        return
    (fname, fn), = functions.items()
    report.check(
        "runner function runtime",
        fn.get("runtime") == LAMBDA_RUNTIME and fn.get("handler") == LAMBDA_HANDLER,
        f"aws_lambda_function.{fname}: {LAMBDA_RUNTIME}, handler {LAMBDA_HANDLER}",
        [f"runtime = {fn.get('runtime')!r} (want {LAMBDA_RUNTIME!r}), handler = {fn.get('handler')!r} "
         f"(want {LAMBDA_HANDLER!r}: cargo-lambda packages the binary as bootstrap)"],
    )

    variables = (one_block(fn, "environment") or {}).get("variables") or {}
    unread = [n for n in variables if not read_by_source(n, os.path.join(RUNNER_CRATE, "src"))]
    report.check(
        "runner function env",
        isinstance(variables, dict) and not unread,
        f"{', '.join(variables) or 'none'} read by the runner's source",
        [f"{n} is not read anywhere in {RUNNER_CRATE}/src" for n in unread]
        or ["environment.variables should be a literal map"],
    )

    entry = os.path.join(ROOT, RUNNER_LAMBDA_ENTRY)
    try:
        with open(entry) as f:
            has_entry = RUNNER_LAMBDA_MARKER in strip_comments(f.read())
    except OSError:
        has_entry = False
    report.check(
        "runner lambda entry",
        has_entry,
        f"{RUNNER_LAMBDA_ENTRY} calls {RUNNER_LAMBDA_MARKER}",
        [f"{RUNNER_LAMBDA_ENTRY} is missing or no longer calls {RUNNER_LAMBDA_MARKER}; the function would not start"],
    )

    # The architectures list is one variable, validated to the two values Lambda accepts.
    arch = fn.get("architectures") or []
    arch_var = module.resolve(arch[0]) if len(arch) == 1 else None
    cond = ""
    if isinstance(arch_var, tuple):
        cond = " ".join(str(v.get("condition")) for v in module.vars.get(arch_var[1], {}).get("validation", []))
    report.check(
        "runner function architecture",
        isinstance(arch_var, tuple) and "arm64" in cond and "x86_64" in cond,
        f"var.{arch_var[1] if isinstance(arch_var, tuple) else '?'}, validated to arm64 or x86_64",
        ["architectures should be [var.X] with a validation allowing only arm64 and x86_64"],
    )

    vpc = one_block(fn, "vpc_config") or {}
    services = module.res("aws_ecs_service")
    task_subnets = [str((one_block(s, "network_configuration") or {}).get("subnets")) for s in services.values()]
    report.check(
        "runner function network",
        vpc.get("subnet_ids") is not None and [str(vpc.get("subnet_ids"))] * len(task_subnets) == task_subnets
        and task_subnets and vpc.get("security_group_ids"),
        f"in the gateway tasks' subnets ({vpc.get('subnet_ids')}), with its own security group",
        [f"vpc_config.subnet_ids = {vpc.get('subnet_ids')!r}, the tasks use {task_subnets}; the runner "
         "connects back to a task's private IP"],
    )

    # The documented build command must build a binary that exists.
    package, bins = cargo_bins(os.path.join(ROOT, RUNNER_CRATE))
    texts = []
    readme = os.path.join(tf_root, "README.md")
    if os.path.exists(readme):
        with open(readme) as f:
            texts.append((rel(readme), f.read()))
    for name, body in module.vars.items():
        texts.append((f"{rel(module.path)} variable {name}", str(body.get("description", ""))))
    commands = [(where, m.group(0)) for where, text in texts
                for m in re.finditer(r"cargo lambda build[^`\n]*", text)]
    problems = []
    for where, cmd in commands:
        words = shlex.split(cmd.replace("[", " ").replace("]", " "))
        p = words[words.index("-p") + 1] if "-p" in words[:-1] else None
        b = words[words.index("--bin") + 1] if "--bin" in words[:-1] else None
        if p != package:
            problems.append(f"{where}: `{cmd}` builds package {p!r}, the runner is {package!r}")
        if b not in bins:
            problems.append(f"{where}: `{cmd}` builds binary {b!r}; {RUNNER_CRATE} has {sorted(bins)}")
        if "--release" not in words or "zip" not in words or "--output-format" not in words:
            problems.append(f"{where}: `{cmd}` needs --release and --output-format zip")
    # Where the zip is expected: cargo lambda writes target/lambda/<binary>/bootstrap.zip.
    zip_defaults = []
    paths = glob.glob(os.path.join(module.path, "*.tf")) + [
        p for ext in ("*.tf", "*.tfvars")
        for p in glob.glob(os.path.join(tf_root, EXAMPLES_SUBDIR, "*", ext))
    ]
    for path in sorted(paths):
        with open(path) as f:
            for m in re.finditer(r"target/lambda/[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+", f.read()):
                zip_defaults.append((rel(path), m.group(0)))
    for where, value in zip_defaults:
        m = re.search(r"target/lambda/([A-Za-z0-9_-]+)/bootstrap\.zip", value)
        if not m or m.group(1) not in bins:
            problems.append(f"{where}: {value} is not where cargo lambda puts {sorted(bins)}")
    report.check(
        "runner build command",
        commands and not problems,
        f"{len(commands)} documented: -p {package} --bin {'/'.join(sorted(bins))}; zip paths match",
        problems or ["no `cargo lambda build` command documented in terraform/README.md"],
    )


def check_lifespan(module, report):
    functions = module.res("aws_lambda_function")
    pools = runner_pools(module)
    if len(functions) != 1 or not isinstance(pools, dict) or not pools:
        report.fail("lifespan", "cannot find the runner function and the pools of RIVULET_RUNNER_CONFIGS")
        return
    (fname, fn), = functions.items()
    timeout = module.resolve(fn.get("timeout"))
    problems = []
    lambda_pools = {k: v.get("lambda") for k, v in pools.items() if isinstance(v, dict) and "lambda" in v}
    if not lambda_pools:
        problems.append("RIVULET_RUNNER_CONFIGS declares no lambda pool")
    fn_ref = f"${{aws_lambda_function.{fname}.arn}}"
    for pool, body in lambda_pools.items():
        # A computed key such as (var.runner_pool_name) comes back as "${(var...)}".
        pool = re.sub(r"^\$\{\(?(.*?)\)?\}$", r"\1", pool)
        body = body or {}
        if body.get("function") != fn_ref:
            problems.append(f"pool {pool}: function = {body.get('function')!r}, want {fn_ref}")
        lifespan = module.resolve(body.get("request_lifespan"))
        if lifespan != timeout:
            problems.append(f"pool {pool}: request_lifespan is {lifespan!r}, the function timeout {timeout!r}; "
                            "both must come from one variable")
    if timeout != ("var", LIFESPAN_VAR):
        problems.append(f"the function timeout is {timeout!r}, want var.{LIFESPAN_VAR}")
    default = number(module.default(LIFESPAN_VAR))
    if default is None or not 60 <= default <= LAMBDA_MAX_TIMEOUT_S:
        problems.append(f"var.{LIFESPAN_VAR} defaults to {default!r}; Lambda allows up to {LAMBDA_MAX_TIMEOUT_S} s")
    cond = " ".join(str(v.get("condition")) for v in module.vars.get(LIFESPAN_VAR, {}).get("validation", []))
    if f"<= {LAMBDA_MAX_TIMEOUT_S}" not in cond:
        problems.append(f"var.{LIFESPAN_VAR} has no validation capping it at {LAMBDA_MAX_TIMEOUT_S}")
    grace = number(module.default(DRAIN_GRACE_VAR))
    if grace is None or default is None or not 1 <= grace < default:
        problems.append(f"var.{DRAIN_GRACE_VAR} defaults to {grace!r}; it must be at least 1 and below the lifespan")
    preconditions = " ".join(
        str(p.get("condition"))
        for body in [r for t in module.tf.get("resource", []) for rs in t.values() for r in rs.values()]
        for lc in body.get("lifecycle", []) for p in lc.get("precondition", [])
    )
    if f"var.{DRAIN_GRACE_VAR} < var.{LIFESPAN_VAR}" not in preconditions:
        problems.append(f"no precondition var.{DRAIN_GRACE_VAR} < var.{LIFESPAN_VAR}")
    report.check(
        "lifespan",
        not problems,
        f"function timeout and pool request_lifespan both var.{LIFESPAN_VAR} (default {default} s); "
        f"drain grace {grace} s below it",
        problems,
    )


def check_drain(module, container, report):
    problems = []
    drain_default = number(module.default(DRAIN_VAR))
    if drain_default is None or not 1 <= drain_default <= ECS_MAX_STOP_TIMEOUT_S:
        problems.append(f"var.{DRAIN_VAR} defaults to {drain_default!r}; ECS allows 1 to {ECS_MAX_STOP_TIMEOUT_S} s")
    cond = " ".join(str(v.get("condition")) for v in module.vars.get(DRAIN_VAR, {}).get("validation", []))
    if f"<= {ECS_MAX_STOP_TIMEOUT_S}" not in cond:
        problems.append(f"var.{DRAIN_VAR} has no validation capping it at {ECS_MAX_STOP_TIMEOUT_S}")

    def covers(what, value):
        v = module.resolve(value)
        if v == ("var", DRAIN_VAR):
            return
        if number(v) is not None and drain_default is not None and v >= drain_default:
            return
        problems.append(f"{what} is {value!r}; it must be var.{DRAIN_VAR} (or at least its default)")

    covers("the container's stopTimeout", (container or {}).get("stopTimeout"))
    groups = module.res("aws_lb_target_group")
    for name, tg in groups.items():
        covers(f"aws_lb_target_group.{name}.deregistration_delay", tg.get("deregistration_delay"))
    report.check(
        "drain",
        not problems and groups,
        f"stopTimeout and deregistration delay = var.{DRAIN_VAR} (default {drain_default} s, at most {ECS_MAX_STOP_TIMEOUT_S})",
        problems or ["no target group"],
    )


def check_alb(module, example_inputs, report):
    lbs = module.res("aws_lb")
    problems = []
    for name, lb in lbs.items():
        v = module.resolve(lb.get("idle_timeout"))
        if isinstance(v, tuple):
            given = example_inputs.get(v[1])
            values = [module.default(v[1])] + ([given] if given is not None else [])
            cond = " ".join(str(x.get("condition")) for x in module.vars.get(v[1], {}).get("validation", []))
            if f">= {MIN_IDLE_TIMEOUT_S}" not in cond:
                problems.append(f"var.{v[1]} has no validation keeping it at least {MIN_IDLE_TIMEOUT_S}")
        else:
            values = [v]
        for x in values:
            if number(x) is None or x < MIN_IDLE_TIMEOUT_S:
                problems.append(f"aws_lb.{name}.idle_timeout resolves to {x!r}; want at least {MIN_IDLE_TIMEOUT_S} s "
                                "(sleeping actors' client sockets stay open through the load balancer)")
    report.check(
        "load balancer idle timeout",
        lbs and not problems,
        f"at least {MIN_IDLE_TIMEOUT_S} s (default {module.default(IDLE_VAR)})",
        problems or ["no aws_lb"],
    )
    groups = module.res("aws_lb_target_group")
    bad = [f"aws_lb_target_group.{n}: health_check.path = {(one_block(tg, 'health_check') or {}).get('path')!r}"
           for n, tg in groups.items() if (one_block(tg, "health_check") or {}).get("path") != HEALTH_PATH]
    report.check(
        "health check",
        groups and not bad,
        f"target group asks {HEALTH_PATH}",
        bad or ["no aws_lb_target_group"],
    )


def check_roles(module, report):
    tasks = module.res("aws_ecs_task_definition")
    policies = module.res("aws_iam_role_policy")
    problems = []
    for tname, task in tasks.items():
        task_role = re.fullmatch(r"\$\{aws_iam_role\.([A-Za-z0-9_]+)\.arn\}", str(task.get("task_role_arn")))
        exec_role = re.fullmatch(r"\$\{aws_iam_role\.([A-Za-z0-9_]+)\.arn\}", str(task.get("execution_role_arn")))
        if not task_role or not exec_role:
            problems.append(f"aws_ecs_task_definition.{tname}: task_role_arn and execution_role_arn should name roles of this module")
            continue
        if task_role.group(1) == exec_role.group(1):
            problems.append("the task role and the execution role are the same role")
        attached = [p for p in policies.values()
                    if p.get("role") == f"${{aws_iam_role.{task_role.group(1)}.id}}"
                    and p.get("policy") == f"${{data.aws_iam_policy_document.{GATEWAY_POLICY}.json}}"]
        if not attached:
            problems.append(f"no aws_iam_role_policy attaches data.aws_iam_policy_document.{GATEWAY_POLICY} "
                            f"to the task role aws_iam_role.{task_role.group(1)}")
        elsewhere = [n for n, p in policies.items()
                     if p.get("policy") == f"${{data.aws_iam_policy_document.{GATEWAY_POLICY}.json}}"
                     and p.get("role") != f"${{aws_iam_role.{task_role.group(1)}.id}}"]
        if elsewhere:
            problems.append(f"the gateway policy is also attached by {', '.join(elsewhere)}")
    if not tasks:
        problems.append("no aws_ecs_task_definition")
    report.check(
        "gateway roles",
        not problems,
        f"the task role carries data.aws_iam_policy_document.{GATEWAY_POLICY}; the execution role is another",
        problems,
    )

    # The runner's role: its own log group and network interfaces, nothing else.
    functions = module.res("aws_lambda_function")
    docs = labelled(module.tf, "data", "aws_iam_policy_document")
    problems = []
    for fname, fn in functions.items():
        role = re.fullmatch(r"\$\{aws_iam_role\.([A-Za-z0-9_]+)\.arn\}", str(fn.get("role")))
        if not role:
            problems.append(f"aws_lambda_function.{fname}.role should name a role of this module")
            continue
        attached = [p for p in policies.values() if p.get("role") == f"${{aws_iam_role.{role.group(1)}.id}}"]
        managed = [p for p in module.res("aws_iam_role_policy_attachment").values()
                   if p.get("role") == f"${{aws_iam_role.{role.group(1)}.name}}"]
        if managed:
            problems.append("managed policies attached to the runner role; use the scoped inline policy")
        for p in attached:
            m = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([A-Za-z0-9_]+)\.json\}", str(p.get("policy")))
            doc = docs.get(m.group(1)) if m else None
            if doc is None:
                problems.append(f"the runner role's policy {p.get('policy')!r} is not a policy document of this module")
                continue
            for st in doc.get("statement", []):
                for a in st.get("actions", []):
                    if a.startswith("logs:"):
                        if any("log_group" not in str(r) for r in st.get("resources", [])):
                            problems.append(f"{a} on {st.get('resources')}: only the runner's own log group")
                    elif not a.startswith("ec2:"):
                        problems.append(f"{a}: the runner makes no AWS API call; its role needs only logs and ec2 network interfaces")
    report.check(
        "runner role",
        functions and not problems,
        "logs on its own log group and VPC network interfaces only",
        problems or ["no runner function"],
    )


def dockerfile_stages(path):
    """[(FROM line, [(instruction, args)])] with continuation lines joined."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stages.append((args.strip(), []))
        elif stages:
            stages[-1][1].append((instr, args.strip()))
    return stages


def check_dockerfile(dockerfile, module, report):
    if not os.path.exists(dockerfile):
        report.fail("dockerfile", f"no {rel(dockerfile)}")
        return
    stages = dockerfile_stages(dockerfile)
    if len(stages) < 2:
        report.fail("dockerfile", "want a multi-stage build: a Rust build stage and a small final stage")
        return
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        members = tomllib.load(f).get("workspace", {}).get("members", [])
    package, bins = cargo_bins(os.path.join(ROOT, GATEWAY_CRATE))
    build_instrs = [i for _, instrs in stages[:-1] for i in instrs]
    runs = [a for i, a in build_instrs if i == "RUN"]
    build = next((r for r in runs if "cargo build" in r), None)
    problems = []
    if build is None:
        problems.append("no `cargo build` in a build stage")
    else:
        words = build.split()
        p = words[words.index("-p") + 1] if "-p" in words[:-1] else None
        b = words[words.index("--bin") + 1] if "--bin" in words[:-1] else None
        if p != package or b not in bins:
            problems.append(f"builds -p {p} --bin {b}; the gateway is -p {package} with binaries {sorted(bins)}")
        for flag in ("--release", "--locked"):
            if flag not in words:
                problems.append(f"cargo build without {flag}")
    copied = set()
    for i, a in build_instrs:
        if i in ("COPY", "ADD"):
            parts = [w for w in a.split() if not w.startswith("--")]
            copied.update(os.path.normpath(w).rstrip("/") for w in parts[:-1])
    if "." not in copied:
        for need in ["Cargo.toml", "Cargo.lock"] + members:
            if os.path.normpath(need) not in copied:
                problems.append(f"{need} is not copied into the build stage (cargo loads every workspace member)")
    report.check(
        "dockerfile build",
        not problems,
        f"cargo build --release --locked -p {package} --bin {'/'.join(sorted(bins))}; workspace members copied",
        problems,
    )

    base, final = stages[-1]
    problems = []
    image = base.split()[0]
    if ":" not in image.rsplit("/", 1)[-1] and "@sha256:" not in image or image.endswith(":latest"):
        problems.append(f"final base image {image} is not pinned by tag or digest")
    users = [a for i, a in final if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage does not switch to a non-root USER")
    exposed = [a for i, a in final if i == "EXPOSE"]
    port = module.default(PORT_VAR) if module else None
    if port is not None and not any(str(port) in e.split() or f"{port}/tcp" in e.split() for e in exposed):
        problems.append(f"EXPOSE {exposed} does not include var.{PORT_VAR}'s default {port}")
    entry = " ".join(a for i, a in final if i in ("ENTRYPOINT", "CMD"))
    if "serve" not in entry:
        problems.append(f"ENTRYPOINT/CMD {entry!r} does not run `rivulet serve`")
    report.check(
        "dockerfile image",
        not problems,
        f"{image}, USER {users[-1] if users else '?'}, EXPOSE {' '.join(exposed)}, {entry}",
        problems,
    )

    ignore = os.path.join(os.path.dirname(dockerfile), ".dockerignore")
    patterns = []
    if os.path.exists(ignore):
        with open(ignore) as f:
            patterns = [l.strip().rstrip("/") for l in f if l.strip() and not l.startswith("#")]
    missing = [p for p in ("target", ".git") if p not in patterns]
    report.check(
        "dockerignore",
        os.path.exists(ignore) and not missing,
        f"excludes {', '.join(p for p in ('target', '.git') if p in patterns)}",
        [f".dockerignore does not exclude {p}" for p in missing] or [f"no {rel(ignore)}"],
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tf-dir", default=os.path.join(ROOT, "terraform"))
    ap.add_argument("--rivulet-bin", default=os.environ.get("RIVULET_BIN"))
    ap.add_argument("--dockerfile", default=os.path.join(ROOT, "Dockerfile"))
    args = ap.parse_args()
    if not args.rivulet_bin:
        ap.error("give the rivulet binary with --rivulet-bin or in RIVULET_BIN")

    report = Report()
    modules = parse_all(args.tf_dir, report)
    for mod in modules.values():
        check_variables(mod, report)
    module_dir = os.path.join(args.tf_dir, MODULE_SUBDIR)
    module = modules.get(module_dir)
    examples = [m for d, m in modules.items() if d.startswith(os.path.join(args.tf_dir, EXAMPLES_SUBDIR) + os.sep)]
    for mod in [module] + examples:
        if mod is not None:
            check_versions(mod, report)
    if module is None:
        report.fail("module", f"no module at {rel(module_dir)}")
    if not examples:
        report.fail("examples", f"no example under {rel(os.path.join(args.tf_dir, EXAMPLES_SUBDIR))}")
    if module is not None:
        example_inputs = {}
        for ex in examples:
            example_inputs.update(check_example(ex, module, report))
        check_outputs(module, report)
        check_register_command(module, args.rivulet_bin, report)
        container = check_container(module, args.rivulet_bin, report)
        check_lambda(module, args.tf_dir, report)
        check_lifespan(module, report)
        check_drain(module, container, report)
        check_alb(module, example_inputs, report)
        check_roles(module, report)
    check_dockerfile(args.dockerfile, module, report)
    print(f"deploy.py: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
