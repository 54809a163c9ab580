#!/usr/bin/env python3
"""Static checks of infra/terraform that need no terraform binary or providers.

1. Every .tf file parses (python-hcl2).
2. Every reference resolves: var.*, local.*, data.*.*, resources, module.*
   (and module outputs), and every module call passes only variables the
   module declares, and every one it requires. Every variable and output has a
   description; every declared variable is used.
3. The task role grants exactly the AWS API actions the code calls: the SDK
   operations found in host/src (client.<operation>() calls), as IAM actions,
   minus the ones only `healer store init` calls.
4. Every HEALER_* variable the task definition sets is one the binary reads.

Usage: check.py [--self-test]      exit 1 with one line per problem.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
HOST_SRC = ROOT / "host" / "src"

# SDK client receivers in host/src and the IAM service prefix of each; a plain
# `client` takes the one aws_sdk_* crate its file uses.
RECEIVERS = {
    "ec2": "ec2",
    "ecs": "ecs",
    "autoscaling": "autoscaling",
    "elbv2": "elasticloadbalancing",
}
CRATES = {
    "aws_sdk_dynamodb": "dynamodb",
    "aws_sdk_sqs": "sqs",
    "aws_sdk_ec2": "ec2",
    "aws_sdk_ecs": "ecs",
    "aws_sdk_autoscaling": "autoscaling",
    "aws_sdk_elasticloadbalancingv2": "elasticloadbalancing",
    "aws_sdk_sns": "sns",
    "aws_sdk_ssm": "ssm",
    "aws_sdk_lambda": "lambda",
}
# Called only by `healer store init`; in a deploy Terraform owns the tables.
INIT_ONLY = {
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:UpdateTimeToLive",
}
# The task role's policy document.
TASK_POLICY = ("modules/service", "aws_iam_policy_document", "task")

META_ARGS = {"source", "version", "count", "for_each", "depends_on", "providers"}
MARKERS = {"__start_line__", "__end_line__"}


# ---------------------------------------------------------------- parsing


def load_module(directory: Path, problems: list[str]) -> dict:
    """Every .tf file of one module directory, merged by block type."""
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        try:
            with path.open() as f:
                doc = hcl2.load(f)
        except Exception as e:  # noqa: BLE001 - any parse failure is a finding
            problems.append(f"{path.relative_to(ROOT)}: does not parse: {e}")
            continue
        for kind, blocks in doc.items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def strings(node) -> list[str]:
    """Every string inside a parsed value."""
    out: list[str] = []
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k not in MARKERS:
                out.extend(strings(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(strings(v))
    return out


def names(blocks: list, depth: int) -> set:
    """Block labels: depth 1 gives names, depth 2 (type, name) pairs."""
    found = set()
    for block in blocks:
        for first, inner in block.items():
            if first in MARKERS:
                continue
            if depth == 1:
                found.add(first)
            else:
                for second in inner:
                    if second not in MARKERS:
                        found.add((first, second))
    return found


def first(value):
    """python-hcl2 wraps attribute values in a list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


# ---------------------------------------------------------------- references

REF_VAR = re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)")
REF_LOCAL = re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)")
REF_DATA = re.compile(r"(?<![\w.])data\.([a-z]+_[\w]+)\.([A-Za-z_][\w-]*)")
REF_MODULE = re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?(?:\.([A-Za-z_][\w-]*))?")
REF_RESOURCE = re.compile(r"(?<![\w.])((?:aws|random|archive)_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")


def expressions(node) -> list[str]:
    """The interpolated expressions of a parsed value (`${...}` strings)."""
    return [s for s in strings(node) if "${" in s]


def check_module(directory: Path, problems: list[str], seen: set) -> dict:
    """Checks one module (and the modules it calls); returns its interface."""
    directory = directory.resolve()
    rel = directory.relative_to(ROOT)
    doc = load_module(directory, problems)
    variables = {}
    for block in doc.get("variable", []):
        for name, body in block.items():
            if name in MARKERS:
                continue
            variables[name] = body
            if not first(body.get("description", [""])):
                problems.append(f"{rel}: variable {name} has no description")
    outputs = names(doc.get("output", []), 1)
    for block in doc.get("output", []):
        for name, body in block.items():
            if name not in MARKERS and not first(body.get("description", [""])):
                problems.append(f"{rel}: output {name} has no description")
    interface = {"variables": variables, "outputs": outputs}
    if directory in seen:
        return interface
    seen.add(directory)

    local_names = set()
    for block in doc.get("locals", []):
        local_names |= {k for k in block if k not in MARKERS}
    resources = names(doc.get("resource", []), 2)
    data = names(doc.get("data", []), 2)
    modules = {}
    for block in doc.get("module", []):
        for name, body in block.items():
            if name in MARKERS:
                continue
            source = first(body.get("source"))
            target = (directory / source).resolve()
            if not target.is_dir():
                problems.append(f"{rel}: module {name}: source {source} is not a directory")
                continue
            sub = check_module(target, problems, seen)
            modules[name] = sub
            passed = {k for k in body if k not in META_ARGS and k not in MARKERS}
            for arg in sorted(passed - set(sub["variables"])):
                problems.append(f"{rel}: module {name} passes {arg}, which {source} does not declare")
            required = {v for v, b in sub["variables"].items() if "default" not in b}
            for arg in sorted(required - passed):
                problems.append(f"{rel}: module {name} does not pass required variable {arg}")

    used_vars = set()
    for expr in expressions({k: v for k, v in doc.items() if k != "variable"}) + expressions(
        [{k: v for k, v in b.items() if k != "default"} for blk in doc.get("variable", []) for b in blk.values() if isinstance(b, dict)]
    ):
        for v in REF_VAR.findall(expr):
            used_vars.add(v)
            if v not in variables:
                problems.append(f"{rel}: var.{v} is not declared")
        for v in REF_LOCAL.findall(expr):
            if v not in local_names:
                problems.append(f"{rel}: local.{v} is not declared")
        for t, n in REF_DATA.findall(expr):
            if (t, n) not in data:
                problems.append(f"{rel}: data.{t}.{n} is not declared")
        for m, out in REF_MODULE.findall(expr):
            if m not in modules:
                problems.append(f"{rel}: module.{m} is not declared")
            elif out and out not in modules[m]["outputs"]:
                problems.append(f"{rel}: module.{m}.{out} is not an output of that module")
        for t, n in REF_RESOURCE.findall(expr):
            if (t, n) not in resources:
                problems.append(f"{rel}: resource {t}.{n} is not declared")
    for v in sorted(set(variables) - used_vars):
        problems.append(f"{rel}: variable {v} is declared but never used")
    return interface


# ---------------------------------------------------------------- IAM vs code

OP_CALL = re.compile(r"\.(client|ec2|ecs|autoscaling|elbv2)\.([a-z][a-z0-9_]*)\(\)")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def pascal(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def code_actions(src: Path, problems: list[str]) -> dict[str, list[str]]:
    """IAM action -> files whose code calls that SDK operation."""
    found: dict[str, list[str]] = {}
    for path in sorted(src.rglob("*.rs")):
        text = path.read_text()
        crates = sorted({CRATES[c] for c in re.findall(r"\b(aws_sdk_[a-z0-9]+)", text) if c in CRATES})
        flat = re.sub(r"\s+", "", text)
        calls = OP_CALL.findall(flat)
        if ".send()" in flat and crates and not calls:
            problems.append(f"{rel(path)}: calls an AWS SDK but no client.<operation>() call was recognised")
        for receiver, op in calls:
            if receiver == "client":
                if len(crates) != 1:
                    problems.append(f"{rel(path)}: `client.{op}()` is ambiguous (SDK crates: {crates})")
                    continue
                service = crates[0]
            else:
                service = RECEIVERS[receiver]
            found.setdefault(f"{service}:{pascal(op)}", []).append(rel(path))
    return found


def granted_actions(problems: list[str]) -> set[str]:
    """Actions in the task role's policy document, with local.* lists resolved."""
    module, dtype, dname = TASK_POLICY
    doc = load_module(TERRAFORM / module, problems)
    local_values = {}
    for block in doc.get("locals", []):
        for k, v in block.items():
            if k not in MARKERS:
                local_values[k] = first(v)
    statements = []
    for block in doc.get("data", []):
        body = block.get(dtype, {}).get(dname)
        if body:
            statements.extend(body.get("statement", []))
            for dyn in body.get("dynamic", []):
                for content in dyn.get("statement", {}).get("content", []):
                    statements.append(content)
    if not statements:
        problems.append(f"{module}: data.{dtype}.{dname} has no statement")
    actions: set[str] = set()
    for st in statements:
        for value in st.get("actions", []):
            value = first(value) if isinstance(value, list) else value
            if isinstance(value, str):
                m = re.fullmatch(r"\$\{local\.(\w+)\}", value)
                if not m or m.group(1) not in local_values:
                    problems.append(f"{module}: cannot resolve actions {value!r}")
                    continue
                value = local_values[m.group(1)]
            actions |= set(value if isinstance(value, list) else [value])
    return actions


def check_iam(problems: list[str]) -> tuple[set[str], set[str]]:
    called = code_actions(HOST_SRC, problems)
    needed = set(called) - INIT_ONLY
    granted = granted_actions(problems)
    for a in sorted(needed - granted):
        problems.append(f"task role lacks {a}, which {', '.join(sorted(set(called[a])))} calls")
    for a in sorted(granted - needed):
        problems.append(f"task role grants {a}, which no code calls")
    return needed, granted


# ---------------------------------------------------------------- env names

# Set by the task definition but read by no code yet, with the reason.
ENV_RESERVED = {"HEALER_ADMIN_TOKEN": "the admin API's token; the admin API is not built yet"}


def check_env(problems: list[str]) -> set[str]:
    """Every HEALER_* variable the task definition sets is one the binary reads."""
    read = set()
    for path in HOST_SRC.rglob("*.rs"):
        read |= set(re.findall(r'"(HEALER_[A-Z0-9_]+)"', path.read_text()))
    task = (TERRAFORM / "modules" / "service" / "main.tf").read_text()
    set_by_task = set(re.findall(r'name\s*=\s*"(HEALER_[A-Z0-9_]+)"', task))
    if not set_by_task:
        problems.append("modules/service/main.tf: no HEALER_* variable found in the task definition")
    for name in sorted(set_by_task - read - set(ENV_RESERVED)):
        problems.append(f"the task definition sets {name}, which the healer binary does not read")
    return set_by_task


# ---------------------------------------------------------------- self-test


def self_test() -> None:
    """The checks find what they should: a broken module and drifted IAM."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "sub").mkdir()
        (d / "main.tf").write_text(
            'variable "used" {\n  description = "x"\n  type = string\n}\n'
            'variable "unused" {\n  type = string\n}\n'
            'module "m" {\n  source = "./sub"\n  extra = var.used\n}\n'
            'resource "aws_sqs_queue" "q" {\n  name = "${var.missing}-${local.nope}"\n'
            '  policy = aws_iam_role.ghost.arn\n  tags = { a = module.m.nothing }\n}\n'
        )
        (d / "sub" / "main.tf").write_text(
            'variable "needed" {\n  description = "x"\n  type = string\n}\n'
            'output "o" {\n  description = "x"\n  value = var.needed\n}\n'
        )
        global ROOT
        saved, ROOT = ROOT, d
        try:
            problems: list[str] = []
            check_module(d, problems, set())
        finally:
            ROOT = saved
        text = "\n".join(problems)
        for expected in [
            "variable unused has no description",
            "variable unused is declared but never used",
            "module m passes extra",
            "does not pass required variable needed",
            "var.missing is not declared",
            "local.nope is not declared",
            "resource aws_iam_role.ghost is not declared",
            "module.m.nothing is not an output",
        ]:
            assert expected in text, f"self-test: expected {expected!r} in:\n{text}"
        src = d / "src"
        src.mkdir()
        (src / "a.rs").write_text(
            "use aws_sdk_sqs as x;\nasync fn f() { self\n  .client\n  .receive_message()\n  .send().await; }\n"
        )
        problems = []
        found = code_actions(src, problems)
        assert set(found) == {"sqs:ReceiveMessage"} and not problems, (found, problems)
        assert pascal("describe_target_health") == "DescribeTargetHealth"
    print("self-test: ok")


def main() -> int:
    if "--self-test" in sys.argv:
        self_test()
    problems: list[str] = []
    files = sorted(TERRAFORM.rglob("*.tf"))
    check_module(TERRAFORM, problems, set())
    needed, granted = check_iam(problems)
    env = check_env(problems)
    for p in problems:
        print(f"error: {p}")
    if problems:
        return 1
    print(
        f"terraform: {len(files)} files parse, every reference resolves; "
        f"task role grants exactly the {len(needed)} actions the code calls: {', '.join(sorted(granted))}; "
        f"the binary reads the {len(env)} HEALER_* variables the task sets"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
