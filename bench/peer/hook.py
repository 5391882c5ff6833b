"""The smoke-test hook as users write it today: Python, boto3 and requests, like the AWS sample
lifecycle hooks for ECS blue/green deployments with CodeDeploy.

The peer of `functions/smoke-test-hook` in the benchmarks (BENCHMARKS.md). It does the same job
on the CodeDeploy path, with the same AWS calls:

  GetDeployment -> ListDeploymentTargets + BatchGetDeploymentTargets (the running lifecycle
  event) -> GetDeploymentGroup (the test or production route) -> DescribeTaskDefinition (the new
  image, for the version) -> DescribeListeners + DescribeLoadBalancers (the listener's URL) ->
  the checks of the smoke spec, one requests.Session -> PutLifecycleEventHookExecutionStatus.

The spec is the same JSON document the Rust hook reads (SMOKE_SPEC_DEFAULT): checks with a
method, a path, headers, a JSON body, and expectations on the status, the body text, JSON
pointers, headers and latency, with a timeout and retries. Checks run one after the other, as a
for loop does; the Rust hook runs `concurrency` of them at once.

Clients and the HTTP session are created once, at module level, as the AWS samples do.
"""

import json
import os
import random
import re
import time

import boto3
import requests

codedeploy = boto3.client("codedeploy")
ecs = boto3.client("ecs")
elbv2 = boto3.client("elbv2")
session = requests.Session()

SPEC = json.loads(os.environ.get("SMOKE_SPEC_DEFAULT") or '{"checks": []}')
DEFAULTS = SPEC.get("defaults", {})
TIMEOUT_S = DEFAULTS.get("timeout_ms", 5000) / 1000
RETRY = {"attempts": 3, "base_delay_ms": 250, "max_delay_ms": 4000, **DEFAULTS.get("retry", {})}
HEADERS = DEFAULTS.get("headers", {})


def lambda_handler(event, context):
    deployment_id = event["DeploymentId"]
    execution_id = event["LifecycleEventHookExecutionId"]
    started = time.monotonic()
    status, reasons, checks, endpoint = "Failed", [], [], None
    try:
        passed, reasons, checks, endpoint = evaluate(deployment_id)
        status = "Succeeded" if passed else "Failed"
    except Exception as e:  # a verdict every time, as the samples do
        reasons = [f"{type(e).__name__}: {e}"]
    finally:
        codedeploy.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id,
            lifecycleEventHookExecutionId=execution_id,
            status=status,
        )
    print(
        json.dumps(
            {
                "target": "outcome",
                "deployment_id": deployment_id,
                "endpoint": endpoint,
                "verdict": status,
                "reason": "; ".join(reasons),
                "checks": checks,
                "duration_ms": int((time.monotonic() - started) * 1000),
            }
        )
    )
    return {"verdict": status, "reason": "; ".join(reasons)}


def evaluate(deployment_id):
    info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    if info.get("creator") == "codeDeployRollback":
        return True, ["a rollback deployment is not gated"], [], None
    app, group = info["applicationName"], info["deploymentGroupName"]

    target_ids = codedeploy.list_deployment_targets(deploymentId=deployment_id)["targetIds"]
    targets = codedeploy.batch_get_deployment_targets(
        deploymentId=deployment_id, targetIds=target_ids
    )["deploymentTargets"]
    running = [
        e["lifecycleEventName"]
        for t in targets
        for e in t.get("ecsTarget", {}).get("lifecycleEvents", [])
        if e.get("status") == "InProgress"
    ]
    if not running:
        return False, ["no lifecycle event is InProgress"], [], None
    lifecycle_event = running[0]

    group_info = codedeploy.get_deployment_group(
        applicationName=app, deploymentGroupName=group
    )["deploymentGroupInfo"]
    pair = group_info["loadBalancerInfo"]["targetGroupPairInfoList"][0]
    route = pair["prodTrafficRoute"] if lifecycle_event == "AfterAllowTraffic" else pair["testTrafficRoute"]
    listener_arn = route["listenerArns"][0]

    appspec = json.loads(info["revision"]["appSpecContent"]["content"])
    props = appspec["Resources"][0]["TargetService"]["Properties"]
    task_definition = ecs.describe_task_definition(taskDefinition=props["TaskDefinition"])["taskDefinition"]
    container = props["LoadBalancerInfo"]["ContainerName"]
    image = next(c["image"] for c in task_definition["containerDefinitions"] if c["name"] == container)
    version = image.split("@", 1)[1] if "@" in image else image.rsplit(":", 1)[-1]

    listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    lb = elbv2.describe_load_balancers(LoadBalancerArns=[listener["LoadBalancerArn"]])["LoadBalancers"][0]
    scheme = "https" if listener["Protocol"] in ("HTTPS", "TLS") else "http"
    base = f"{scheme}://{lb['DNSName']}:{listener['Port']}"

    checks = [run_check(base, c) for c in SPEC.get("checks", [])]
    proof = SPEC.get("version_proof")
    if proof:
        checks.append(prove_version(base, proof, version))
    failed = [c for c in checks if not c["passed"]]
    if failed:
        return False, [f"{c['name']}: {c['reason']}" for c in failed], checks, base
    return True, [f"{len(checks)} checks passed"], checks, base


def run_check(base, check):
    name = check.get("name") or f"{check.get('method', 'GET')} {check['path']}"
    retry = {**RETRY, **check.get("retry", {})}
    timeout = check.get("timeout_ms", TIMEOUT_S * 1000) / 1000
    reason, status, latency = "not run", None, None
    for attempt in range(1, retry["attempts"] + 1):
        try:
            r = session.request(
                check.get("method", "GET"),
                base + check["path"],
                headers={**HEADERS, **check.get("headers", {})},
                json=check.get("json"),
                data=check.get("body"),
                timeout=timeout,
                allow_redirects=False,
            )
            status, latency = r.status_code, int(r.elapsed.total_seconds() * 1000)
            problems = judge(r, check.get("expect", {}))
        except requests.RequestException as e:
            problems = [f"request failed: {e}"]
        if not problems:
            return {"name": name, "passed": True, "status": status, "latency_ms": latency, "attempts": attempt}
        reason = "; ".join(problems)
        if attempt < retry["attempts"]:
            delay = min(retry["base_delay_ms"] * 2 ** (attempt - 1), retry["max_delay_ms"]) / 1000
            time.sleep(delay / 2 + random.uniform(0, delay / 2))
    return {"name": name, "passed": False, "status": status, "attempts": attempt, "reason": reason}


def status_ok(code, want):
    if want is None:
        return 200 <= code <= 299
    if isinstance(want, int):
        return code == want
    if isinstance(want, list):
        return code in want
    if isinstance(want, str):  # "2xx"
        return str(code)[0] == want[0]
    return want["min"] <= code <= want["max"]


def pointer(doc, path):
    for part in path.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def judge(r, expect):
    problems = []
    if not status_ok(r.status_code, expect.get("status")):
        problems.append(f"status {r.status_code}")
    for name, rule in expect.get("headers", {}).items():
        got = r.headers.get(name)
        if "equals" in rule and got != rule["equals"]:
            problems.append(f"header {name} is {got!r}")
        if "present" in rule and (got is not None) != rule["present"]:
            problems.append(f"header {name} presence")
        if "matches" in rule:
            if got is None or not re.search(rule["matches"], got):
                problems.append(f"header {name} is {got!r}")
    contains = expect.get("body_contains", [])
    for text in [contains] if isinstance(contains, str) else contains:
        if text not in r.text:
            problems.append(f"body does not contain {text!r}")
    if expect.get("json"):
        try:
            body = r.json()
            for path, want in expect["json"].items():
                try:
                    got = pointer(body, path)
                except (KeyError, IndexError, ValueError, TypeError):
                    got = None
                if got != want:
                    problems.append(f"{path} is {got!r}, expected {want!r}")
        except ValueError:
            problems.append("body is not JSON")
    if "max_latency_ms" in expect and r.elapsed.total_seconds() * 1000 > expect["max_latency_ms"]:
        problems.append("too slow")
    return problems


def prove_version(base, proof, version):
    check = {"name": "version proof", "path": proof.get("path", "/")}
    r = session.get(base + check["path"], timeout=TIMEOUT_S, allow_redirects=False)
    got = r.headers.get(proof["header"]) if "header" in proof else pointer(r.json(), proof["json_pointer"])
    passed = got == version
    return {
        "name": "version proof",
        "passed": passed,
        "status": r.status_code,
        "attempts": 1,
        **({} if passed else {"reason": f"{got!r} answered, expected {version!r}"}),
    }
