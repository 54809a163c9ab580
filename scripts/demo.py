#!/usr/bin/env python3
"""The main job, live, in a local AWS: `scripts/run` runs this.

It starts moto (the AWS API emulator) on 127.0.0.1 and a free port, creates
the seeds' workloads in it, starts `healer run --live` against it with the
bundled policies, breaks each workload with `healer chaos`, and prints one
line per failure as healer heals it, then a summary and what the team's inbox
received. `--once` exits after the summary (non-zero if a scenario did not
heal); otherwise the service and its dashboard stay up until Ctrl-C.

moto changes state but emits no event and evaluates no alarm: `healer chaos
--emit-to` sends the event AWS would send, and this script plays CloudWatch
for the recovery (the function's Errors alarm back to OK once its
FAILURE_RATE is 0 again). Everything else is healer's own doing, through the
real AWS SDK.
"""

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from datetime import datetime, timezone

import boto3

REGION = "us-east-1"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
TERMINAL = {"healed", "escalated", "denied", "ignored"}
CHAOS = [{"Key": "HealerChaos", "Value": "true"}]

FRAGILE = """\
import os, random

def handler(event, context):
    if random.random() < float(os.environ.get("FAILURE_RATE", "0")):
        raise RuntimeError("fragile: injected failure")
    return {"ok": True}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, what, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"error: {what} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"error: {what} did not listen on {port} within {seconds}s")


class World:
    """The seeds' workloads in the local AWS."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        kw = dict(endpoint_url=endpoint, region_name=REGION, **CREDS)
        self.c = {n: boto3.client(n, **kw) for n in
                  ("sqs", "sns", "iam", "lambda", "cloudwatch", "ec2", "ecs",
                   "elbv2", "autoscaling")}

    def moto_api(self, path, body):
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).read()

    def create(self):
        c = self.c
        # ECS tasks stay where they are put (moto otherwise walks them to STOPPED).
        self.moto_api("/moto-api/state-manager/set-transition",
                      {"model_name": "ecs::task",
                       "transition": {"progression": "manual", "times": 1000000}})
        self.events = c["sqs"].create_queue(QueueName="healer-events")["QueueUrl"]
        # The team's channel, and a queue subscribed to it standing for its inbox.
        self.topic = c["sns"].create_topic(Name="healer-team")["TopicArn"]
        self.inbox = c["sqs"].create_queue(QueueName="team-inbox")["QueueUrl"]
        inbox_arn = c["sqs"].get_queue_attributes(
            QueueUrl=self.inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        c["sns"].subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=inbox_arn)
        self.create_function()
        self.create_instance()
        self.create_service()
        self.create_target_group()

    def create_function(self):
        c = self.c
        role = c["iam"].create_role(
            RoleName="fragile", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                               "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("fragile.py", FRAGILE)
        c["lambda"].create_function(
            FunctionName="fragile", Runtime="python3.12", Role=role["Role"]["Arn"],
            Handler="fragile.handler", Code={"ZipFile": buf.getvalue()},
            Environment={"Variables": {"FAILURE_RATE": "0", "GREETING": "hello"}},
            Tags={"HealerChaos": "true"})
        c["cloudwatch"].put_metric_alarm(
            AlarmName="fragile-errors", Namespace="AWS/Lambda", MetricName="Errors",
            Dimensions=[{"Name": "FunctionName", "Value": "fragile"}], Statistic="Sum",
            Period=60, EvaluationPeriods=1, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold")
        c["cloudwatch"].set_alarm_state(AlarmName="fragile-errors", StateValue="OK",
                                        StateReason="created")

    def create_instance(self):
        ec2 = self.c["ec2"]
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        self.vpc = vpc
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
        self.group = ec2.create_security_group(
            GroupName="web", Description="web", VpcId=vpc)["GroupId"]
        ec2.create_key_pair(KeyName="ops")
        self.image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        inst = ec2.run_instances(
            ImageId=self.image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
            SubnetId=self.subnet, SecurityGroupIds=[self.group], KeyName="ops",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "Name", "Value": "web-1"}, {"Key": "SelfHeal", "Value": "true"},
                *CHAOS]}])["Instances"][0]["InstanceId"]
        self.instance = inst
        alloc = ec2.allocate_address(Domain="vpc")
        self.allocation, self.ip = alloc["AllocationId"], alloc["PublicIp"]
        ec2.associate_address(AllocationId=self.allocation, InstanceId=inst)
        self.c["cloudwatch"].put_metric_alarm(
            AlarmName=f"status-{inst}", Namespace="AWS/EC2", MetricName="StatusCheckFailed",
            Dimensions=[{"Name": "InstanceId", "Value": inst}], Statistic="Maximum",
            Period=60, EvaluationPeriods=2, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold")
        self.c["cloudwatch"].set_alarm_state(AlarmName=f"status-{inst}", StateValue="OK",
                                             StateReason="created")

    def create_service(self):
        ecs = self.c["ecs"]
        ecs.create_cluster(clusterName="prod")
        revisions = [ecs.register_task_definition(
            family="api", containerDefinitions=[{"name": "api", "image": f"api:{n}", "memory": 128}],
        )["taskDefinition"]["taskDefinitionArn"] for n in (1, 2)]
        ecs.create_service(cluster="prod", serviceName="api", taskDefinition=revisions[1],
                           desiredCount=2, tags=[{"key": "HealerChaos", "value": "true"}])
        # moto starts no task for a service: run its two as the scheduler
        # would, and count them running (moto does on a desired-count update).
        for _ in range(2):
            ecs.run_task(cluster="prod", taskDefinition=revisions[1], group="service:api",
                         launchType="FARGATE")
        ecs.update_service(cluster="prod", service="api", desiredCount=2)
        self.revisions = revisions

    def create_target_group(self):
        """An Auto Scaling group behind a target group (for the load-balancer
        scenario, which needs the target-health poller: not in this demo yet)."""
        c = self.c
        tg = c["elbv2"].create_target_group(Name="web", Protocol="HTTP", Port=80,
                                            VpcId=self.vpc)
        c["ec2"].create_launch_template(
            LaunchTemplateName="web", LaunchTemplateData={"ImageId": self.image,
                                                          "InstanceType": "t3.micro"})
        c["autoscaling"].create_auto_scaling_group(
            AutoScalingGroupName="web", LaunchTemplate={"LaunchTemplateName": "web"},
            MinSize=2, MaxSize=4, DesiredCapacity=2, VPCZoneIdentifier=self.subnet,
            TargetGroupARNs=[tg["TargetGroups"][0]["TargetGroupArn"]],
            Tags=[{"Key": "HealerChaos", "Value": "true", "PropagateAtLaunch": True}])

    def function_rate(self):
        conf = self.c["lambda"].get_function_configuration(FunctionName="fragile")
        return conf["Environment"]["Variables"].get("FAILURE_RATE")

    def alarm_ok(self, name, reason):
        """CloudWatch's part in the recovery: the alarm back to OK, and the
        EventBridge event AWS sends for it."""
        cw = self.c["cloudwatch"]
        alarm = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason=reason)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        arn = alarm["AlarmArn"]
        event = {
            "version": "0", "id": f"demo-{time.time_ns()}",
            "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": arn.split(":")[4], "region": REGION, "resources": [arn],
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "detail": {
                "alarmName": name,
                "configuration": {"metrics": [{"id": "m1", "returnData": True, "metricStat": {
                    "metric": {"name": alarm["MetricName"], "namespace": alarm["Namespace"],
                               "dimensions": {d["Name"]: d["Value"] for d in alarm["Dimensions"]}},
                    "period": alarm["Period"], "stat": alarm["Statistic"]}}]},
                "previousState": {"value": alarm["StateValue"], "timestamp": stamp,
                                  "reason": alarm.get("StateReason", "")},
                "state": {"value": "OK", "timestamp": stamp, "reason": reason},
            },
        }
        self.c["sqs"].send_message(QueueUrl=self.events, MessageBody=json.dumps(event))

    def inbox_messages(self):
        out = []
        while True:
            got = self.c["sqs"].receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10)
            msgs = got.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                body = json.loads(m["Body"])
                out.append((body.get("Subject") or "", body.get("Message", "")))
                self.c["sqs"].delete_message(QueueUrl=self.inbox,
                                             ReceiptHandle=m["ReceiptHandle"])


class Demo:
    def __init__(self, args):
        self.args = args
        self.data = tempfile.mkdtemp(prefix="healer-demo-")
        self.procs = []
        self.chaos = []

    def env(self):
        return {**os.environ, "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "HEALER_DATA_DIR": self.data}

    def start_moto(self):
        port = free_port()
        log = open(os.path.join(self.data, "moto.log"), "w")
        moto = subprocess.Popen([self.args.moto, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=log)
        self.procs.append(moto)
        wait_listening(port, "moto_server", moto)
        self.endpoint = f"http://127.0.0.1:{port}"

    def start_healer(self, world):
        self.port = free_port()
        env = {**self.env(),
               "HEALER_POLICIES": self.args.policies,
               "HEALER_SQS_QUEUE_URL": world.events,
               "HEALER_LISTEN": f"127.0.0.1:{self.port}",
               "HEALER_NOTIFY_DEFAULT": world.topic,
               "HEALER_DRIVE_INTERVAL_MS": "200",
               # moto's status checks are ok at once: nothing to let settle.
               "HEALER_VERIFY_SETTLE_SECS": "0",
               # The EC2 seed: replace an impaired instance at once; and tell
               # the team of a crashed task even when ECS replaces it.
               "HEALER_CONTEXT_JSON": json.dumps(
                   {"config": {"strategy": "replace", "notify-replaced": "true"}}),
               "HEALER_LOG": os.environ.get("HEALER_LOG", "healer=info")}
        log = open(os.path.join(self.data, "healer.log"), "w")
        healer = subprocess.Popen(
            [self.args.healer, "run", "--live", "--aws-facts"], env=env,
            stdout=log, stderr=log)
        self.procs.append(healer)
        wait_listening(self.port, "healer run", healer)

    def healer(self, *args, check=True):
        out = subprocess.run([self.args.healer, *args], env=self.env(), capture_output=True,
                             text=True)
        if check and out.returncode != 0:
            sys.exit(f"error: healer {' '.join(args)}: {out.stdout}{out.stderr}")
        return out

    def incidents(self):
        out = self.healer("incidents", "list", "--json")
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def inject(self, *args):
        """`healer chaos ARGS --yes`, reverting itself after 10 minutes or when
        stopped; its output goes to the data directory."""
        log = open(os.path.join(self.data, f"chaos-{len(self.chaos)}.log"), "w")
        p = subprocess.Popen(
            [self.args.healer, "chaos", *args, "--yes", "--duration", "10m",
             "--emit-to", self.world.events],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self.chaos.append(p)

    def wait_incident(self, known, resource, timeout, tick=None):
        """The new incident on `resource`, once it has ended (or on timeout)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for r in self.incidents():
                inc = r["incident"]
                group = (inc.get("group") or {}).get("id", "")
                if inc["id"] in known or (resource not in inc["resource"]["id"]
                                          and resource not in group):
                    continue
                last = r
                if r["state"] in TERMINAL:
                    return r
            if tick:
                tick(last)
            time.sleep(0.25)
        return last

    def scenario(self, name, failure, resource, inject, tick=None):
        known = {r["incident"]["id"] for r in self.incidents()}
        started = time.monotonic()
        inject()
        r = self.wait_incident(known, resource, self.args.timeout, tick)
        took = time.monotonic() - started
        if r is None:
            line = f"{failure} → no incident in {self.args.timeout}s"
            self.results.append((name, "no incident", None, took))
        else:
            steps = ", ".join(f"{s['action']['action']}: {s['result']}" for s in r.get("steps", []))
            mttr = r.get("mttr-ms")
            mttr_s = f"{mttr / 1000:.1f}s" if mttr is not None else "-"
            if not steps:
                # The policy planned nothing to do but verify (a service's
                # crashed task: ECS's scheduler starts its replacement).
                steps = "verified, nothing to do" if r["state"] == "healed" else "no action"
            line = (f"{failure} → {r['incident']['id']} {r['incident']['kind']} → "
                    f"{steps} → {r['state']} → MTTR {mttr_s}")
            self.results.append((name, r["state"], mttr, took))
        print(f"  {line}", flush=True)

    def run(self):
        self.results = []
        t0 = time.monotonic()
        print(f"healer demo: data in {self.data}", flush=True)
        self.start_moto()
        world = self.world = World(self.endpoint)
        world.create()
        print(f"local AWS (moto) at {self.endpoint}: function fragile, instance "
              f"{world.instance} ({world.ip}), service prod/api, group web, topic healer-team",
              flush=True)
        self.start_healer(world)
        print(f"healer run --live at http://127.0.0.1:{self.port}/ (dashboard)", flush=True)
        print("breaking things:", flush=True)

        def cloudwatch(record):
            # The errors stop once FAILURE_RATE is 0: the alarm goes back to OK.
            if record and record["state"] == "verifying" and world.function_rate() == "0" \
                    and not getattr(cloudwatch, "done", False):
                cloudwatch.done = True
                world.alarm_ok("fragile-errors", "Threshold Crossed: no errors (FAILURE_RATE 0)")

        self.scenario("lambda errors", "fragile fails 90% of calls", "fragile",
                      lambda: self.inject("lambda-failure-rate", "--function", "fragile",
                                          "--rate", "0.9"), cloudwatch)
        self.scenario("instance impaired", f"{world.instance} fails its status checks",
                      world.instance,
                      lambda: self.inject("impair-instance", "--instance", world.instance))
        self.scenario("task crashed", "a task of prod/api crashes", "api",
                      lambda: self.inject("stop-task", "--cluster", "prod", "--service", "api"))
        self.scenario("bad deployment", "prod/api deploys an image that cannot start", "api",
                      lambda: self.inject("bad-deployment", "--cluster", "prod",
                                          "--service", "api"))
        self.summary(time.monotonic() - t0)

    def summary(self, total):
        print("\nsummary:")
        print(f"  {'scenario':<20} {'outcome':<12} {'MTTR':>8} {'wall':>7}")
        for name, state, mttr, took in self.results:
            m = f"{mttr / 1000:.1f}s" if mttr is not None else "-"
            print(f"  {name:<20} {state:<12} {m:>8} {took:>6.1f}s")
        healed = sum(1 for r in self.results if r[1] == "healed")
        print(f"  {healed}/{len(self.results)} healed in {total:.1f}s")
        time.sleep(1)
        messages = self.world.inbox_messages()
        print(f"\nthe team's inbox ({len(messages)} messages):")
        for subject, message in messages:
            first = message.strip().splitlines()[0] if message.strip() else ""
            print(f"  {subject or first}")
        # Every scenario healed with its MTTR recorded, and each incident
        # told the team at least once.
        self.ok = (healed == len(self.results)
                   and all(mttr is not None for _, _, mttr, _ in self.results)
                   and len(messages) >= len(self.results))

    def stop(self):
        for p in self.chaos:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.chaos:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--healer", required=True)
    ap.add_argument("--policies", required=True)
    ap.add_argument("--moto", required=True)
    ap.add_argument("--once", action="store_true", help="exit after the summary")
    ap.add_argument("--timeout", type=float, default=90, help="seconds per scenario")
    args = ap.parse_args()
    # SIGTERM stops as Ctrl-C does: chaos reverted, processes stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    demo = Demo(args)
    demo.ok = False
    try:
        demo.run()
        if not args.once:
            print(f"\nhealer and the local AWS stay up: http://127.0.0.1:{demo.port}/ "
                  f"(HEALER_DATA_DIR={demo.data}). Ctrl-C stops them.", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
    if args.once and demo.ok:
        shutil.rmtree(demo.data, ignore_errors=True)
    sys.exit(0 if demo.ok else 1)


if __name__ == "__main__":
    main()
