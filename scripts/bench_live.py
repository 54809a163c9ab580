"""The body of scripts/bench-live (see there)."""

import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone

import boto3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def alarm(function: str, state: str) -> str:
    now = datetime.now(timezone.utc)
    message = {
        "AlarmName": f"errors-{function}",
        "AWSAccountId": "123456789012",
        "NewStateValue": state,
        "OldStateValue": "OK" if state == "ALARM" else "ALARM",
        "NewStateReason": "Threshold Crossed: 1 datapoint [3.0] was greater than the threshold (0.0).",
        "StateChangeTime": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        "Region": "US East (N. Virginia)",
        "AlarmArn": f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:errors-{function}",
        "Trigger": {
            "MetricName": "Errors",
            "Namespace": "AWS/Lambda",
            "Statistic": "SUM",
            "Dimensions": [{"value": function, "name": "FunctionName"}],
            "Period": 60,
            "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0.0,
        },
    }
    return json.dumps({
        "Type": "Notification",
        "MessageId": f"{function}-{state}",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
        "Subject": f"{state}: errors-{function}",
        "Message": json.dumps(message),
        "Timestamp": now.isoformat(),
    })


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(p * len(values) + 0.5)) - 1))]


def main() -> int:
    n, healer, policies, moto_server = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    # burst: every alarm at once (throughput, and latency under queueing);
    # sequential: one at a time (the latency of an idle host).
    mode = os.environ.get("BENCH_MODE", "burst")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    work = tempfile.mkdtemp(prefix="healer-bench-")
    moto = subprocess.Popen([moto_server, "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=work)
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    healer_proc = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        kw = dict(endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        sqs, sns, lam, iam = (boto3.client(s, **kw) for s in ("sqs", "sns", "lambda", "iam"))
        queue = sqs.create_queue(QueueName="events")["QueueUrl"]
        topic = sns.create_topic(Name="healer")["TopicArn"]
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("h.py", "def h(e, c): return 1\n")
        functions = [f"fragile-{i}" for i in range(n)]
        for f in functions:
            lam.create_function(FunctionName=f, Runtime="python3.12", Role=role, Handler="h.h",
                                Code={"ZipFile": code.getvalue()},
                                Environment={"Variables": {"FAILURE_RATE": "1", "KEEP": "x"}})
        pdir = os.path.join(work, "policies")
        os.makedirs(pdir)
        shutil.copy(os.path.join(policies, "lambda-failure-rate.wasm"), pdir)
        data = os.path.join(work, "data")
        listen = f"127.0.0.1:{free_port()}"
        healer_proc = subprocess.Popen(
            [healer, "run", "--live", "--policies", pdir, "--sqs-queue-url", queue,
             "--listen", listen, "--notify-default", topic],
            env=dict(env, HEALER_DATA_DIR=data, HEALER_LOG=os.environ.get("BENCH_LOG", "healer=info"),
                     HEALER_LOG_FORMAT="json", HEALER_DRIVE_INTERVAL_MS="1000",
                     HEALER_GOVERNOR_JSON=json.dumps({"rate-per-kind-per-hour": 100000, "rate-global-per-hour": 100000, "notify-per-hour": 100000, "max-in-flight": 100000})),
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "healer.log"), "w"))
        time.sleep(1.0)

        def listed():
            out = subprocess.run([healer, "incidents", "list", "--json", "--limit", str(n + 10)],
                                 env=dict(env, HEALER_DATA_DIR=data), capture_output=True, text=True)
            return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

        def wait_acted(count, deadline):
            while time.time() < deadline:
                records = listed()
                acted = [r for r in records if r["state"] in ("verifying", "healed", "escalated", "denied")]
                if len(acted) >= count:
                    return records
                time.sleep(0.05 if mode == "sequential" else 0.5)
            return None

        start = time.time()
        deadline = start + 600
        records = None
        if mode == "sequential":
            # One alarm at a time: the latency of an idle host (no queueing
            # behind other incidents, moto not busy with them).
            for i, f in enumerate(functions):
                sqs.send_message(QueueUrl=queue, MessageBody=alarm(f, "ALARM"))
                records = wait_acted(i + 1, deadline)
                if records is None:
                    break
        else:
            for i in range(0, n, 10):
                sqs.send_message_batch(QueueUrl=queue, Entries=[
                    {"Id": str(j), "MessageBody": alarm(f, "ALARM")}
                    for j, f in enumerate(functions[i:i + 10])])
            records = wait_acted(n, deadline)
        if records is None:
            print(f"not every incident was acted on in time", file=sys.stderr)
            with open(os.path.join(work, "healer.log")) as log:
                sys.stderr.write(log.read()[-4000:])
            return 1
        # The worker logs "Executing." right before the executor sends its
        # first request, after the step-started write: that, not the step's
        # recorded start (taken before the write), is when the request leaves.
        executing = {}
        with open(os.path.join(work, "healer.log")) as log:
            for line in log:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                fields = entry.get("fields", {})
                if fields.get("message") == "Executing." and fields.get("action") == "update-function-config":
                    executing.setdefault(fields.get("incident"), ts(entry["timestamp"]))
        gaps, steps, states = [], [], {}
        for r in records:
            states[r["state"]] = states.get(r["state"], 0) + 1
            s = [x for x in r["steps"] if x["action"]["action"] == "update-function-config"]
            sent = executing.get(r["incident"]["id"])
            if not s or sent is None or "decided" not in r["timestamps"]:
                continue
            gaps.append((sent - ts(r["timestamps"]["decided"])) * 1000)
            steps.append((ts(s[0]["ended-at"]) - ts(s[0]["started-at"])) * 1000)
        first = min(ts(r["timestamps"]["decided"]) for r in records)
        last = max(ts(x["ended-at"]) for r in records for x in r["steps"] if x.get("ended-at"))
        print(json.dumps({
            "mode": mode,
            "incidents": n,
            "states": states,
            "receipt_to_first_request_ms": {"p50": round(pct(gaps, 0.5), 2), "p99": round(pct(gaps, 0.99), 2),
                                         "mean": round(statistics.mean(gaps), 2)},
            "update_step_ms": {"p50": round(pct(steps, 0.5), 2), "p99": round(pct(steps, 0.99), 2)},
            "incidents_per_s": round(n / max(last - first, 1e-9), 1),
            "wall_s": round(time.time() - start, 1),
        }, indent=2))
        return 0
    finally:
        if healer_proc:
            healer_proc.terminate()
            healer_proc.wait(30)
        moto.kill()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
