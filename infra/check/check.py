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
4. Every HEALER_* variable the task definition sets is one the binary reads,
   and the container listens on 0.0.0.0 explicitly (the binary's default is
   127.0.0.1).
5. The EventBridge rules route what the normalizer acts on: every raw
   EventBridge event in tests/fixtures/aws-events matches exactly one rule, or
   is listed in NOT_ROUTED with the reason; every rule target retries and has
   a dead-letter queue.

Usage: check.py [--self-test]      exit 1 with one line per problem.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
HOST_SRC = ROOT / "host" / "src"
FIXTURES = ROOT / "tests" / "fixtures" / "aws-events"
DOCKERFILE = ROOT / "infra" / "Dockerfile"

# SDK client receivers in host/src and the IAM service prefix of each; a plain
# `client` takes the one aws_sdk_* crate its file uses.
RECEIVERS = {
    "ec2": "ec2",
    "ecs": "ecs",
    "autoscaling": "autoscaling",
    "elbv2": "elasticloadbalancing",
    "lambda": "lambda",
    "cloudwatch": "cloudwatch",
    "sqs": "sqs",
    "ssm": "ssm",
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
    "aws_sdk_cloudwatch": "cloudwatch",
}
# Called only by `healer store init`; in a deploy Terraform owns the tables.
INIT_ONLY = {
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:UpdateTimeToLive",
}
# Client methods that are not API operations.
NOT_OPERATIONS = {"config"}
# `healer chaos` is an operator's tool (a laptop, a drill's CI job), never run
# by the service: what it calls must stay out of the task role.
OPERATOR_ONLY = ("host/src/chaos/", "host/src/cmd/chaos.rs")
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

OP_CALL = re.compile(
    r"(?:\.|(?<![A-Za-z0-9_]))(client|ec2|ecs|autoscaling|elbv2|lambda|cloudwatch|sqs|ssm)\.([a-z][a-z0-9_]*)\(\)"
)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def pascal(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


# SDK operations authorised by other IAM actions.
IAM_OF_OPERATION = {
    "dynamodb:TransactWriteItems": ["dynamodb:PutItem"],
    # Tags at launch are authorised as CreateTags; a twin with an instance
    # profile passes its role.
    "ec2:RunInstances": ["ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"],
}


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
            if op in NOT_OPERATIONS:
                continue
            if receiver == "client":
                if len(crates) != 1:
                    problems.append(f"{rel(path)}: `client.{op}()` is ambiguous (SDK crates: {crates})")
                    continue
                service = crates[0]
            else:
                service = RECEIVERS[receiver]
            action = f"{service}:{pascal(op)}"
            # IAM has no action of its own for some operations: a transaction's
            # puts are authorised as PutItem (DynamoDB "Using IAM with
            # transactions").
            for granted in IAM_OF_OPERATION.get(action, [action]):
                found.setdefault(granted, []).append(rel(path))
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
    called = {
        action: service_files
        for action, files in code_actions(HOST_SRC, problems).items()
        if (service_files := [f for f in files if not f.startswith(OPERATOR_ONLY)])
    }
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


# ---------------------------------------------------------------- listen address


def check_listen(problems: list[str]) -> None:
    """The binary listens on 127.0.0.1 unless told otherwise; the container must
    say 0.0.0.0, or nothing outside the task (the ECS health check aside) reaches it."""
    task = (TERRAFORM / "modules" / "service" / "main.tf").read_text()
    m = re.search(r'name\s*=\s*"HEALER_LISTEN",\s*value\s*=\s*"([^"]*)"', task)
    if not m or not m.group(1).startswith("0.0.0.0:"):
        problems.append("modules/service/main.tf: the task definition must set HEALER_LISTEN to 0.0.0.0:<port>")
    docker = DOCKERFILE.read_text()
    if not re.search(r"\bHEALER_LISTEN=0\.0\.0\.0:\d+", docker):
        problems.append("infra/Dockerfile: ENV must set HEALER_LISTEN=0.0.0.0:<port>")


# ---------------------------------------------------------------- routing

# Raw EventBridge fixtures no rule routes, with the reason. The normalizer
# ignores each of these shapes, so delivering them would only cost messages.
NOT_ROUTED = {
    "autoscaling/instance-refresh-failed-docs-placeholder.json": "instance refresh is ignored",
    "autoscaling/launch-lifecycle-action.json": "lifecycle hooks are ignored",
    "autoscaling/terminate-lifecycle-action-kops.json": "lifecycle hooks are ignored",
    "autoscaling/terminate-successful.json": "successful activity is not a failure",
    "cloudwatch/eventbridge-alarm-configuration-change-update.json": "configuration changes are ignored",
    "ec2/instance-state-change-pending.json": "instance state is context, not a failure",
    "ec2/instance-state-change-shutting-down.json": "instance state is context, not a failure",
    "ecs/container-instance-state-change.json": "container instance state is context",
    "ecs/task-running-fargate.json": "a running task that is not being stopped",
    "ecs/task-running-with-stopped-container.json": "a running task that is not being stopped",
}


class PatternError(ValueError):
    """A pattern this matcher does not understand (so it cannot vouch for it)."""


def clean(node):
    """A parsed value without python-hcl2's line markers."""
    if isinstance(node, dict):
        return {k: clean(v) for k, v in node.items() if k not in MARKERS}
    if isinstance(node, list):
        return [clean(v) for v in node]
    return node


def value_matches(want, value) -> bool:
    if isinstance(want, dict):
        if set(want) == {"anything-but"}:
            but = want["anything-but"]
            return value not in (but if isinstance(but, list) else [but])
        if set(want) == {"prefix"}:
            return isinstance(value, str) and value.startswith(want["prefix"])
        raise PatternError(f"unsupported operator {sorted(want)}")
    return want == value


def matches(pattern: dict, event) -> bool:
    """EventBridge pattern matching: every key must be present; a list matches
    when any of its values equals the event's value (or any element of an event
    array); an object recurses. Supports `anything-but` and `prefix`."""
    for key, want in pattern.items():
        if not isinstance(event, dict) or key not in event:
            return False
        got = event[key]
        if isinstance(want, dict):
            if not matches(want, got):
                return False
        elif isinstance(want, list):
            values = got if isinstance(got, list) else [got]
            if not any(value_matches(w, v) for w in want for v in values):
                return False
        else:
            raise PatternError(f"{key}: a pattern value must be a list or an object, not {want!r}")
    return True


def event_rules(problems: list[str], directory: Path | None = None) -> dict[str, dict]:
    """The events module's `local.rules`: name -> event pattern."""
    doc = load_module(directory or TERRAFORM / "modules" / "events", problems)
    for block in doc.get("locals", []):
        if "rules" in block:
            return {name: clean(body)["pattern"] for name, body in first(block["rules"]).items() if name not in MARKERS}
    problems.append("modules/events: no local.rules")
    return {}


def eventbridge_fixtures(root: Path) -> dict[str, dict]:
    """Fixtures that are raw EventBridge events (what a rule delivers), by path."""
    found = {}
    for path in sorted(root.rglob("*.json")):
        event = json.loads(path.read_text())
        if isinstance(event, dict) and {"source", "detail-type", "detail"} <= set(event):
            found[path.relative_to(root).as_posix()] = event
    return found


def check_routing(
    problems: list[str],
    rules: dict[str, dict],
    fixtures: dict[str, dict],
    not_routed: dict[str, str],
) -> int:
    """Every EventBridge fixture reaches the queue through exactly one rule,
    unless it is listed as not routed (and then no rule may route it)."""
    routed = 0
    for name, event in fixtures.items():
        try:
            hits = sorted(r for r, pattern in rules.items() if matches(pattern, event))
        except PatternError as e:
            problems.append(f"modules/events: {e}")
            continue
        if name in not_routed:
            if hits:
                problems.append(f"{name} is listed as not routed ({not_routed[name]}) but rule {', '.join(hits)} routes it")
            continue
        if not hits:
            problems.append(
                f"no EventBridge rule routes {name} ({event['source']} {event['detail-type']!r}); "
                "add a rule, or list it in NOT_ROUTED with the reason"
            )
        elif len(hits) > 1:
            problems.append(f"{name} matches rules {', '.join(hits)}: it would be delivered {len(hits)} times")
        else:
            routed += 1
    for name in sorted(set(not_routed) - set(fixtures)):
        problems.append(f"NOT_ROUTED lists {name}, which is not an EventBridge fixture")
    return routed


def check_targets(problems: list[str], directory: Path | None = None) -> int:
    """Every EventBridge target retries and keeps undeliverable events in a DLQ."""
    directory = directory or TERRAFORM / "modules" / "events"
    doc = load_module(directory, problems)
    count = 0
    for block in doc.get("resource", []):
        for name, body in block.get("aws_cloudwatch_event_target", {}).items():
            if name in MARKERS:
                continue
            count += 1
            dlq = first(body.get("dead_letter_config", [{}])) or {}
            if not first(dlq.get("arn", [""])):
                problems.append(f"{rel(directory)}: aws_cloudwatch_event_target.{name} has no dead_letter_config arn")
            retry = first(body.get("retry_policy", [{}])) or {}
            for field in ("maximum_retry_attempts", "maximum_event_age_in_seconds"):
                if field not in retry:
                    problems.append(f"{rel(directory)}: aws_cloudwatch_event_target.{name} retry_policy lacks {field}")
    if not count:
        problems.append(f"{rel(directory)}: no aws_cloudwatch_event_target")
    return count


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

        # Routing: the spot warning of a running task, an Auto Scaling failure
        # and an alarm contributor event each need their rule.
        rules = {
            "stopped": {"source": ["aws.ecs"], "detail": {"lastStatus": ["STOPPED"]}},
            "notice": {"detail": {"lastStatus": [{"anything-but": "STOPPED"}], "stopCode": ["TerminationNotice"]}},
            "alarm": {"detail-type": ["CloudWatch Alarm State Change"], "resources": [{"prefix": "arn:aws:cloudwatch:"}]},
        }
        ecs = {"source": "aws.ecs", "detail-type": "ECS Task State Change"}
        fixtures = {
            "stopped.json": {**ecs, "detail": {"lastStatus": "STOPPED", "stopCode": "TerminationNotice"}},
            "notice.json": {**ecs, "detail": {"lastStatus": "RUNNING", "stopCode": "TerminationNotice"}},
            "asg.json": {"source": "aws.autoscaling", "detail-type": "EC2 Instance Launch Unsuccessful", "detail": {}},
            "contributor.json": {
                "source": "aws.cloudwatch",
                "detail-type": "CloudWatch Alarm Contributor State Change",
                "resources": ["arn:aws:cloudwatch:us-east-1:1:alarm:a"],
                "detail": {},
            },
            "running.json": {**ecs, "detail": {"lastStatus": "RUNNING"}},
        }
        problems = []
        routed = check_routing(problems, rules, fixtures, {"running.json": "x", "gone.json": "x"})
        text = "\n".join(problems)
        assert routed == 2, (routed, text)
        for expected in [
            "no EventBridge rule routes asg.json (aws.autoscaling 'EC2 Instance Launch Unsuccessful')",
            "no EventBridge rule routes contributor.json",
            "NOT_ROUTED lists gone.json",
        ]:
            assert expected in text, f"self-test: expected {expected!r} in:\n{text}"
        assert not any("notice.json" in p or "running.json" in p for p in problems), text
        rules["notice"] = {"detail": {"stopCode": ["TerminationNotice"]}}
        problems = []
        check_routing(problems, rules, {"stopped.json": fixtures["stopped.json"]}, {})
        assert problems == ["stopped.json matches rules notice, stopped: it would be delivered 2 times"], problems
        problems = []
        check_routing(problems, {"r": {"source": "aws.ecs"}}, {"notice.json": fixtures["notice.json"]}, {})
        assert problems and "must be a list or an object" in problems[0], problems

        # Targets: without retry policy and dead-letter queue, a finding each.
        t = d / "targets"
        t.mkdir()
        (t / "main.tf").write_text(
            'resource "aws_cloudwatch_event_target" "bare" {\n  rule = "r"\n  arn = "a"\n}\n'
            'resource "aws_cloudwatch_event_target" "safe" {\n  rule = "r"\n  arn = "a"\n'
            '  retry_policy {\n    maximum_retry_attempts = 3\n    maximum_event_age_in_seconds = 60\n  }\n'
            '  dead_letter_config {\n    arn = "dlq"\n  }\n}\n'
        )
        saved, ROOT = ROOT, d
        try:
            problems = []
            assert check_targets(problems, t) == 2
        finally:
            ROOT = saved
        text = "\n".join(problems)
        assert "aws_cloudwatch_event_target.bare has no dead_letter_config arn" in text, text
        assert "aws_cloudwatch_event_target.bare retry_policy lacks maximum_retry_attempts" in text, text
        assert "safe" not in text, text
    print("self-test: ok")


def main() -> int:
    if "--self-test" in sys.argv:
        self_test()
    problems: list[str] = []
    files = sorted(TERRAFORM.rglob("*.tf"))
    check_module(TERRAFORM, problems, set())
    needed, granted = check_iam(problems)
    env = check_env(problems)
    check_listen(problems)
    rules = event_rules(problems)
    fixtures = eventbridge_fixtures(FIXTURES)
    routed = check_routing(problems, rules, fixtures, NOT_ROUTED)
    targets = check_targets(problems)
    for p in problems:
        print(f"error: {p}")
    if problems:
        return 1
    print(
        f"terraform: {len(files)} files parse, every reference resolves; "
        f"task role grants exactly the {len(needed)} actions the code calls: {', '.join(sorted(granted))}; "
        f"the binary reads the {len(env)} HEALER_* variables the task sets; "
        f"{len(rules)} rules route {routed} of {len(fixtures)} EventBridge fixtures "
        f"({len(NOT_ROUTED)} not routed, with reasons); {targets} target(s) retry into a dead-letter queue"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
