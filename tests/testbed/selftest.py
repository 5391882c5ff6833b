#!/usr/bin/env python3
"""Self-test of tests/testbed/testbed.py: starts it as a subprocess (as the Rust harness does) and
exercises every route and extended operation with boto3 and a hand-built CBOR client.

    python tests/testbed/selftest.py        # exits non-zero on the first failure
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable

import boto3
import botocore.config
import cbor2
import yaml
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
PASSED: list[str] = []
REGISTERED: list[Callable[[], None]] = []


class Testbed:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "testbed.py"), "--port", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
        )
        line = self._readline(timeout=20)
        assert line.startswith("TESTBED_READY port="), f"unexpected first line {line!r}"
        self.port = int(line.strip().split("=", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _readline(self, timeout: float) -> str:
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not out:
            self.proc.kill()
            raise AssertionError("testbed did not print TESTBED_READY in time")
        return out[0].decode()

    def http(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def route(self, method: str, path: str, body: Any = None) -> Any:
        status, _, out = self.http(method, path, body)
        assert status == 200, f"{method} {path} -> {status} {out[:500]!r}"
        return json.loads(out)

    def calls(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in filters.items())
        return self.route("GET", "/_testbed/calls" + (f"?{query}" if query else ""))

    def client(self, name: str, attempts: int = 1) -> Any:
        return boto3.session.Session().client(
            name, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
            config=botocore.config.Config(retries={"total_max_attempts": attempts, "mode": "standard"}, read_timeout=20),
        )

    def cbor(self, operation: str, params: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        status, headers, out = self.http(
            "POST", f"/service/GraniteServiceVersion20100801/operation/{operation}", raw=cbor2.dumps(params),
            headers={"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor", "Accept": "application/cbor",
                     "Authorization": "AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/monitoring/aws4_request, "
                                      "SignedHeaders=host, Signature=0"},
        )
        return status, {k.lower(): v for k, v in headers.items()}, (cbor2.loads(out) if out else None)


def check(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            start = time.monotonic()
            fn()
            PASSED.append(name)
            print(f"ok   {name} ({time.monotonic() - start:.2f}s)", flush=True)
        run.__name__ = name
        REGISTERED.append(run)
        return run
    return wrap


def expect_error(code: str, fn: Callable[[], Any]) -> ClientError:
    try:
        fn()
    except ClientError as err:
        got = err.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {err}"
        return err
    raise AssertionError(f"expected {code}, call succeeded")


def main() -> int:
    started = time.monotonic()
    tb = Testbed()
    print(f"testbed up on port {tb.port} in {time.monotonic() - started:.2f}s", flush=True)
    cd, ecs, elb = tb.client("codedeploy"), tb.client("ecs"), tb.client("elbv2")
    ctx: dict[str, Any] = {}

    @check("health and empty call log")
    def _() -> None:
        assert tb.route("GET", "/_testbed/health") == {"status": "ok"}
        assert tb.calls() == []

    @check("codedeploy scenario (json appspec) is unrecorded and complete")
    def _() -> None:
        s = tb.route("POST", "/_testbed/scenarios/codedeploy", {
            "name": "cd-json", "image_from": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1",
            "image_to": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:" + "ab" * 32,
            "container": "web", "container_port": 8080, "prod_port": 18080, "test_port": 18081,
            "lifecycle_event": "AfterAllowTestTraffic", "appspec_format": "json"})
        assert re.fullmatch(r"d-[A-Z0-9]{9}", s["deploymentId"]), s["deploymentId"]
        expected = {"deploymentId", "hookExecutionId", "application", "deploymentGroup", "cluster", "service",
                    "loadBalancerArn", "loadBalancerDns", "prodListenerArn", "testListenerArn",
                    "taskDefinitionFrom", "taskDefinitionTo"}
        assert set(s) == expected, set(s) ^ expected
        assert tb.calls() == [], "seeding calls must not be recorded"
        ctx["cd"] = s
        info = cd.get_deployment(deploymentId=s["deploymentId"])["deploymentInfo"]
        assert info["applicationName"] == s["application"] and info["deploymentGroupName"] == s["deploymentGroup"]
        assert info["status"] == "InProgress" and info["creator"] == "user" and info["computePlatform"] == "ECS"
        rev = info["revision"]
        assert rev["revisionType"] == "AppSpecContent" and len(rev["appSpecContent"]["sha256"]) == 64
        appspec = json.loads(rev["appSpecContent"]["content"])
        props = appspec["Resources"][0]["TargetService"]["Properties"]
        assert props["TaskDefinition"] == s["taskDefinitionTo"]
        assert props["LoadBalancerInfo"] == {"ContainerName": "web", "ContainerPort": 8080}
        assert appspec["Hooks"][0]["AfterAllowTestTraffic"].startswith("CodeDeployHook_")
        group = cd.get_deployment_group(applicationName=s["application"],
                                        deploymentGroupName=s["deploymentGroup"])["deploymentGroupInfo"]
        assert group["ecsServices"] == [{"serviceName": s["service"], "clusterName": s["cluster"]}]
        pair = group["loadBalancerInfo"]["targetGroupPairInfoList"][0]
        assert len(pair["targetGroups"]) == 2
        assert pair["prodTrafficRoute"]["listenerArns"] == [s["prodListenerArn"]]
        assert pair["testTrafficRoute"]["listenerArns"] == [s["testListenerArn"]]
        listeners = {l["ListenerArn"]: l for l in elb.describe_listeners(LoadBalancerArn=s["loadBalancerArn"])["Listeners"]}
        assert listeners[s["prodListenerArn"]]["Port"] == 18080 and listeners[s["testListenerArn"]]["Port"] == 18081
        tgs = {t["TargetGroupArn"]: t["TargetGroupName"] for t in elb.describe_target_groups()["TargetGroups"]}
        test_tg = listeners[s["testListenerArn"]]["DefaultActions"][0]["TargetGroupArn"]
        prod_tg = listeners[s["prodListenerArn"]]["DefaultActions"][0]["TargetGroupArn"]
        assert tgs[test_tg] == pair["targetGroups"][1]["name"], "test listener serves green after AllowTestTraffic"
        assert tgs[prod_tg] == pair["targetGroups"][0]["name"], "prod listener still serves blue"
        lb = elb.describe_load_balancers(LoadBalancerArns=[s["loadBalancerArn"]])["LoadBalancers"][0]
        assert lb["DNSName"] == s["loadBalancerDns"] and lb["Scheme"] == "internet-facing"
        td = ecs.describe_task_definition(taskDefinition=s["taskDefinitionTo"])["taskDefinition"]
        assert td["containerDefinitions"][0]["image"].endswith("app@sha256:" + "ab" * 32)
        svc = ecs.describe_services(cluster=s["cluster"], services=[s["service"]])["services"][0]
        assert svc["deploymentController"] == {"type": "CODE_DEPLOY"}

    @check("codedeploy ListDeploymentTargets / BatchGetDeploymentTargets")
    def _() -> None:
        s = ctx["cd"]
        ids = cd.list_deployment_targets(deploymentId=s["deploymentId"])["targetIds"]
        assert ids == [f"{s['cluster']}:{s['service']}"], ids
        target = cd.batch_get_deployment_targets(deploymentId=s["deploymentId"], targetIds=ids)["deploymentTargets"][0]
        assert target["deploymentTargetType"] == "ECSTarget"
        ecs_target = target["ecsTarget"]
        assert ecs_target["deploymentId"] == s["deploymentId"] and ecs_target["targetId"] == ids[0]
        assert ecs_target["targetArn"].endswith(f":service/{s['cluster']}/{s['service']}")
        assert ecs_target["status"] == "InProgress" and isinstance(ecs_target["lastUpdatedAt"], dt.datetime)
        events = {e["lifecycleEventName"]: e for e in ecs_target["lifecycleEvents"]}
        assert list(events) == ["BeforeInstall", "Install", "AfterInstall", "AllowTestTraffic", "AfterAllowTestTraffic",
                                "BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"]
        assert all(events[e]["status"] == "Succeeded" and "endTime" in events[e]
                   for e in ["BeforeInstall", "Install", "AfterInstall", "AllowTestTraffic"])
        assert events["AfterAllowTestTraffic"]["status"] == "InProgress" and "startTime" in events["AfterAllowTestTraffic"]
        assert all(events[e]["status"] == "Pending" for e in ["BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"])
        labels = {t["taskSetLabel"]: t for t in ecs_target["taskSetsInfo"]}
        assert labels["Blue"]["trafficWeight"] == 100.0 and labels["Green"]["trafficWeight"] == 0.0
        expect_error("DeploymentTargetDoesNotExistException",
                     lambda: cd.batch_get_deployment_targets(deploymentId=s["deploymentId"], targetIds=["nope:nope"]))
        expect_error("DeploymentDoesNotExistException",
                     lambda: cd.list_deployment_targets(deploymentId="d-NOPE12345"))

    @check("codedeploy PutLifecycleEventHookExecutionStatus: first report wins")
    def _() -> None:
        s = ctx["cd"]
        out = cd.put_lifecycle_event_hook_execution_status(
            deploymentId=s["deploymentId"], lifecycleEventHookExecutionId=s["hookExecutionId"], status="Succeeded")
        assert out["lifecycleEventHookExecutionId"] == s["hookExecutionId"]
        expect_error("LifecycleEventAlreadyCompletedException", lambda: cd.put_lifecycle_event_hook_execution_status(
            deploymentId=s["deploymentId"], lifecycleEventHookExecutionId=s["hookExecutionId"], status="Failed"))
        expect_error("DeploymentDoesNotExistException", lambda: cd.put_lifecycle_event_hook_execution_status(
            deploymentId="d-NOPE12345", lifecycleEventHookExecutionId=s["hookExecutionId"], status="Succeeded"))
        expect_error("InvalidLifecycleEventHookExecutionIdException", lambda: cd.put_lifecycle_event_hook_execution_status(
            deploymentId=s["deploymentId"], lifecycleEventHookExecutionId="bogus", status="Succeeded"))
        target = cd.batch_get_deployment_targets(deploymentId=s["deploymentId"],
                                                 targetIds=[f"{s['cluster']}:{s['service']}"])["deploymentTargets"][0]
        events = {e["lifecycleEventName"]: e["status"] for e in target["ecsTarget"]["lifecycleEvents"]}
        assert events["AfterAllowTestTraffic"] == "Succeeded"
        calls = tb.calls(service="codedeploy", operation="PutLifecycleEventHookExecutionStatus")
        assert [c["status"] for c in calls] == [200, 400, 400, 400], calls
        assert calls[0]["error"] is None and calls[1]["error"] == "LifecycleEventAlreadyCompletedException"
        assert calls[0]["params"] == {"deploymentId": s["deploymentId"], "lifecycleEventHookExecutionId": s["hookExecutionId"],
                                      "status": "Succeeded"}

    @check("codedeploy lifecycle route, failed hook fails the deployment and rolls back")
    def _() -> None:
        s = ctx["cd"]
        moved = tb.route("POST", "/_testbed/codedeploy/lifecycle",
                         {"deploymentId": s["deploymentId"], "lifecycleEventName": "AfterAllowTraffic"})
        assert set(moved) == {"hookExecutionId", "lifecycleEventName"} and moved["hookExecutionId"] != s["hookExecutionId"]
        target = cd.batch_get_deployment_targets(deploymentId=s["deploymentId"],
                                                 targetIds=[f"{s['cluster']}:{s['service']}"])["deploymentTargets"][0]["ecsTarget"]
        events = {e["lifecycleEventName"]: e["status"] for e in target["lifecycleEvents"]}
        assert events["AllowTraffic"] == "Succeeded" and events["AfterAllowTraffic"] == "InProgress"
        assert {t["taskSetLabel"]: t["trafficWeight"] for t in target["taskSetsInfo"]} == {"Blue": 0.0, "Green": 100.0}
        listener = elb.describe_listeners(ListenerArns=[s["prodListenerArn"]])["Listeners"][0]
        assert "/cdg-" in listener["DefaultActions"][0]["TargetGroupArn"], "prod serves green after AllowTraffic"
        cd.put_lifecycle_event_hook_execution_status(
            deploymentId=s["deploymentId"], lifecycleEventHookExecutionId=moved["hookExecutionId"], status="Failed")
        info = cd.get_deployment(deploymentId=s["deploymentId"])["deploymentInfo"]
        assert info["status"] == "Failed" and info["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"
        rollback_id = info["rollbackInfo"]["rollbackDeploymentId"]
        rollback = cd.get_deployment(deploymentId=rollback_id)["deploymentInfo"]
        assert rollback["creator"] == "codeDeployRollback"
        assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == s["deploymentId"]
        assert json.loads(rollback["revision"]["appSpecContent"]["content"])["Resources"][0]["TargetService"][
            "Properties"]["TaskDefinition"] == s["taskDefinitionFrom"]
        status, _, out = tb.http("POST", "/_testbed/codedeploy/lifecycle", {"deploymentId": "d-NOPE", "lifecycleEventName": "Install"})
        assert status == 404, (status, out)

    @check("codedeploy scenario (yaml), StopDeployment, GetApplicationRevision")
    def _() -> None:
        s = tb.route("POST", "/_testbed/scenarios/codedeploy", {
            "name": "cd-yaml", "image_from": "repo/app:v1", "image_to": "repo/app:v2", "container": "api",
            "container_port": 9000, "prod_port": 18090, "test_port": 18091, "lifecycle_event": "BeforeInstall",
            "appspec_format": "yaml"})
        info = cd.get_deployment(deploymentId=s["deploymentId"])["deploymentInfo"]
        doc = yaml.safe_load(info["revision"]["appSpecContent"]["content"])
        props = doc["Resources"][0]["TargetService"]["Properties"]
        assert props["TaskDefinition"] == s["taskDefinitionTo"] and props["LoadBalancerInfo"]["ContainerName"] == "api"
        assert props["LoadBalancerInfo"]["ContainerPort"] == 9000 and "BeforeInstall" in doc["Hooks"][0]
        listener = elb.describe_listeners(ListenerArns=[s["testListenerArn"]])["Listeners"][0]
        assert "/cdb-" in listener["DefaultActions"][0]["TargetGroupArn"], "test listener serves blue before AllowTestTraffic"
        out = cd.stop_deployment(deploymentId=s["deploymentId"], autoRollbackEnabled=True)
        assert out["status"] == "Succeeded" and out["statusMessage"]
        info = cd.get_deployment(deploymentId=s["deploymentId"])["deploymentInfo"]
        assert info["status"] == "Stopped" and info["rollbackInfo"]["rollbackDeploymentId"]
        assert info["errorInformation"]["code"] == "MANUAL_STOP"
        expect_error("DeploymentAlreadyCompletedException", lambda: cd.stop_deployment(deploymentId=s["deploymentId"]))
        expect_error("LifecycleEventAlreadyCompletedException", lambda: cd.put_lifecycle_event_hook_execution_status(
            deploymentId=s["deploymentId"], lifecycleEventHookExecutionId=s["hookExecutionId"], status="Succeeded"))
        expect_error("DeploymentDoesNotExistException", lambda: cd.stop_deployment(deploymentId="d-NOPE12345"))
        rev = cd.get_application_revision(applicationName=s["application"], revision=info["revision"])
        assert rev["revisionInfo"]["deploymentGroups"] == [s["deploymentGroup"]]
        assert isinstance(rev["revisionInfo"]["firstUsedTime"], dt.datetime)
        expect_error("RevisionDoesNotExistException", lambda: cd.get_application_revision(
            applicationName=s["application"],
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": "{}"}}))
        status, _, _ = tb.http("POST", "/_testbed/scenarios/codedeploy", {
            "name": "cd-yaml", "prod_port": 1, "test_port": 2})
        assert status == 409, "a reused scenario name is a conflict"

    @check("ecs scenario, advancedConfiguration, service deployments and revisions")
    def _() -> None:
        s = tb.route("POST", "/_testbed/scenarios/ecs", {
            "name": "ecs-1", "image_from": "repo/app:v1", "image_to": "repo/app@sha256:" + "cd" * 32,
            "container": "web", "prod_port": 18100, "test_port": 18101, "deployment_status": "IN_PROGRESS"})
        expected = {"cluster", "service", "serviceArn", "serviceDeploymentArn", "sourceServiceRevisionArn",
                    "targetServiceRevisionArn", "loadBalancerArn", "loadBalancerDns", "prodListenerArn", "testListenerArn",
                    "prodListenerRuleArn", "testListenerRuleArn", "taskDefinitionFrom", "taskDefinitionTo"}
        assert set(s) == expected, set(s) ^ expected
        ctx["ecs"] = s
        svc = ecs.describe_services(cluster=s["cluster"], services=[s["service"]])["services"][0]
        assert svc["deploymentController"] == {"type": "ECS"}
        assert svc["deploymentConfiguration"]["strategy"] == "BLUE_GREEN"
        assert svc["deploymentConfiguration"]["lifecycleHooks"][0]["lifecycleStages"] == ["POST_TEST_TRAFFIC_SHIFT"]
        adv = svc["loadBalancers"][0]["advancedConfiguration"]
        assert adv["productionListenerRule"] == s["prodListenerRuleArn"] and adv["testListenerRule"] == s["testListenerRuleArn"]
        assert adv["alternateTargetGroupArn"].split("/")[1].startswith("ecsg-") and adv["roleArn"].startswith("arn:aws:iam::")
        assert svc["taskDefinition"] == s["taskDefinitionTo"]
        assert svc["currentServiceDeployment"] == s["serviceDeploymentArn"]
        rules = elb.describe_rules(RuleArns=[s["prodListenerRuleArn"], s["testListenerRuleArn"]])["Rules"]
        assert {r["RuleArn"] for r in rules} == {s["prodListenerRuleArn"], s["testListenerRuleArn"]}
        listed = ecs.list_service_deployments(cluster=s["cluster"], service=s["service"])["serviceDeployments"]
        assert [d["status"] for d in listed] == ["IN_PROGRESS", "SUCCESSFUL"], listed
        assert listed[0]["serviceDeploymentArn"] == s["serviceDeploymentArn"]
        assert listed[0]["targetServiceRevisionArn"] == s["targetServiceRevisionArn"]
        only = ecs.list_service_deployments(cluster=s["cluster"], service=s["service"], status=["IN_PROGRESS"])
        assert len(only["serviceDeployments"]) == 1
        described = ecs.describe_service_deployments(serviceDeploymentArns=[s["serviceDeploymentArn"], "arn:nope"])
        d = described["serviceDeployments"][0]
        assert described["failures"] == [{"arn": "arn:nope", "reason": "MISSING"}]
        assert d["serviceArn"] == s["serviceArn"] and d["clusterArn"].endswith(f":cluster/{s['cluster']}")
        assert d["status"] == "IN_PROGRESS" and d["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT"
        assert d["targetServiceRevision"]["arn"] == s["targetServiceRevisionArn"]
        assert d["sourceServiceRevisions"][0]["arn"] == s["sourceServiceRevisionArn"]
        assert isinstance(d["createdAt"], dt.datetime) and isinstance(d["startedAt"], dt.datetime)
        revs = ecs.describe_service_revisions(serviceRevisionArns=[s["sourceServiceRevisionArn"], s["targetServiceRevisionArn"]])
        by_arn = {r["serviceRevisionArn"]: r for r in revs["serviceRevisions"]}
        assert by_arn[s["sourceServiceRevisionArn"]]["taskDefinition"] == s["taskDefinitionFrom"]
        target = by_arn[s["targetServiceRevisionArn"]]
        assert target["taskDefinition"] == s["taskDefinitionTo"] and target["serviceArn"] == s["serviceArn"]
        assert target["containerImages"][0]["imageDigest"] == "sha256:" + "cd" * 32
        assert isinstance(target["createdAt"], dt.datetime)
        expect_error("ServiceNotFoundException", lambda: ecs.list_service_deployments(cluster=s["cluster"], service="nope"))

    @check("ecs StopServiceDeployment ROLLBACK / ABORT / ConflictException, state route")
    def _() -> None:
        s = ctx["ecs"]
        out = ecs.stop_service_deployment(serviceDeploymentArn=s["serviceDeploymentArn"], stopType="ROLLBACK")
        assert out["serviceDeploymentArn"] == s["serviceDeploymentArn"]
        d = ecs.describe_service_deployments(serviceDeploymentArns=[s["serviceDeploymentArn"]])["serviceDeployments"][0]
        assert d["status"] == "ROLLBACK_REQUESTED" and d["rollback"]["serviceRevisionArn"] == s["sourceServiceRevisionArn"]
        expect_error("ConflictException", lambda: ecs.stop_service_deployment(
            serviceDeploymentArn=s["serviceDeploymentArn"], stopType="ROLLBACK"))
        expect_error("ServiceDeploymentNotFoundException", lambda: ecs.stop_service_deployment(
            serviceDeploymentArn=s["serviceDeploymentArn"] + "x"))
        tb.route("POST", "/_testbed/scenarios/ecs", {"name": "cd-json", "prod_port": 18120, "test_port": 18121})
        s2 = tb.route("POST", "/_testbed/scenarios/ecs", {"name": "ecs-2", "prod_port": 18110, "test_port": 18111,
                                                          "deployment_status": "PENDING", "lb_dns_name": "localhost"})
        assert s2["loadBalancerDns"] == "localhost"
        assert elb.describe_load_balancers(Names=[s2["loadBalancerArn"].split("/")[2]])["LoadBalancers"][0]["DNSName"] == "localhost"
        ecs.stop_service_deployment(serviceDeploymentArn=s2["serviceDeploymentArn"], stopType="ABORT")
        d2 = ecs.describe_service_deployments(serviceDeploymentArns=[s2["serviceDeploymentArn"]])["serviceDeployments"][0]
        assert d2["status"] == "STOP_REQUESTED"
        moved = tb.route("POST", "/_testbed/ecs/service-deployment",
                         {"serviceDeploymentArn": s["serviceDeploymentArn"], "status": "ROLLBACK_SUCCESSFUL"})
        assert moved["status"] == "ROLLBACK_SUCCESSFUL"
        d = ecs.describe_service_deployments(serviceDeploymentArns=[s["serviceDeploymentArn"]])["serviceDeployments"][0]
        assert d["status"] == "ROLLBACK_SUCCESSFUL" and isinstance(d["finishedAt"], dt.datetime)
        # UpdateService on an ECS-controller service starts a new service deployment...
        ecs.update_service(cluster=s["cluster"], service=s["service"], taskDefinition=s["taskDefinitionFrom"])
        listed = ecs.list_service_deployments(cluster=s["cluster"], service=s["service"])["serviceDeployments"]
        assert listed[0]["status"] == "IN_PROGRESS" and len(listed) == 3
        # ...while a CODE_DEPLOY service refuses a task definition change, as AWS does.
        c = ctx["cd"]
        expect_error("InvalidParameterException", lambda: ecs.update_service(
            cluster=c["cluster"], service=c["service"], taskDefinition=c["taskDefinitionTo"]))

    @check("codepipeline PutJobSuccessResult / PutJobFailureResult: first report wins; GetPipelineState")
    def _() -> None:
        cp = tb.client("codepipeline")
        job = str(uuid.uuid4())
        cp.put_job_success_result(jobId=job, executionDetails={"summary": "all good"})
        expect_error("InvalidJobStateException", lambda: cp.put_job_success_result(jobId=job))
        expect_error("InvalidJobStateException", lambda: cp.put_job_failure_result(
            jobId=job, failureDetails={"type": "JobFailed", "message": "late"}))
        job2 = str(uuid.uuid4())
        cp.put_job_failure_result(jobId=job2, failureDetails={"type": "JobFailed", "message": "smoke test failed"})
        expect_error("InvalidJobStateException", lambda: cp.put_job_success_result(jobId=job2))
        expect_error("ValidationException", lambda: cp.put_job_success_result(jobId="not-a-uuid"))
        calls = tb.calls(service="codepipeline", contains=job2)
        assert [(c["operation"], c["error"]) for c in calls] == [("PutJobFailureResult", None),
                                                                  ("PutJobSuccessResult", "InvalidJobStateException")]
        iam = tb.client("iam")
        role = iam.create_role(RoleName="cp-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "codepipeline.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        cp.create_pipeline(pipeline={"name": "pipe", "roleArn": role,
                                     "artifactStore": {"type": "S3", "location": "bucket"}, "stages": [
            {"name": "Source", "actions": [{"name": "Src", "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "S3", "version": "1"},
                                            "configuration": {"S3Bucket": "b", "S3ObjectKey": "k"}, "outputArtifacts": [{"name": "out"}]}]},
            {"name": "Guard", "actions": [{"name": "Check", "actionTypeId": {"category": "Invoke", "owner": "AWS", "provider": "Lambda", "version": "1"},
                                           "configuration": {"FunctionName": "guard"}, "inputArtifacts": [{"name": "out"}]}]}]})
        state = cp.get_pipeline_state(name="pipe")
        assert [st["stageName"] for st in state["stageStates"]] == ["Source", "Guard"]
        assert state["stageStates"][1]["actionStates"][0]["actionName"] == "Check"

    @check("cloudwatch over rpc-v2-cbor: alarms, state, history, tags, composite, errors")
    def _() -> None:
        t0 = time.time() - 1
        status, headers, out = tb.cbor("PutMetricAlarm", {
            "AlarmName": "guard-5xx", "Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count",
            "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 5.0,
            "ComparisonOperator": "GreaterThanThreshold", "Dimensions": [{"Name": "LoadBalancer", "Value": "app/x/1"}],
            "Tags": [{"Key": "team", "Value": "guard"}]})
        assert status == 200 and headers["smithy-protocol"] == "rpc-v2-cbor", (status, headers, out)
        status, headers, out = tb.cbor("DescribeAlarms", {"AlarmNames": ["guard-5xx"]})
        assert status == 200 and headers["content-type"] == "application/cbor"
        alarm = out["MetricAlarms"][0]
        assert alarm["StateValue"] == "OK" and alarm["Threshold"] == 5.0
        raw_status, _, raw = tb.http("POST", "/service/GraniteServiceVersion20100801/operation/DescribeAlarms",
                                     raw=cbor2.dumps({"AlarmNames": ["guard-5xx"]}),
                                     headers={"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"})
        # timestamps are CBOR tag 1 (0xc1) holding a float64 (0xfb) of epoch seconds, never tag 0 strings
        assert raw_status == 200 and b"StateUpdatedTimestamp\xc1\xfb" in raw, raw
        assert isinstance(cbor2.loads(raw)["MetricAlarms"][0]["StateUpdatedTimestamp"], dt.datetime)
        for value in ("ALARM", "OK"):
            status, _, out = tb.cbor("SetAlarmState", {"AlarmName": "guard-5xx", "StateValue": value,
                                                       "StateReason": f"to {value}", "StateReasonData": json.dumps({"n": 1})})
            assert status == 200 and out is None, (status, out)
        status, _, out = tb.cbor("DescribeAlarmHistory", {
            "AlarmName": "guard-5xx", "HistoryItemType": "StateUpdate",
            "StartDate": dt.datetime.fromtimestamp(t0, dt.timezone.utc),
            "EndDate": dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)})
        assert status == 200, out
        items = out["AlarmHistoryItems"]
        assert len(items) == 2 and all(i["HistoryItemType"] == "StateUpdate" for i in items)
        newest = json.loads(items[0]["HistoryData"])
        assert newest["oldState"]["stateValue"] == "ALARM" and newest["newState"]["stateValue"] == "OK"
        assert json.loads(items[1]["HistoryData"])["oldState"]["stateValue"] == "OK"
        assert isinstance(items[0]["Timestamp"], dt.datetime)
        status, _, out = tb.cbor("DescribeAlarmHistory", {"AlarmName": "guard-5xx",
                                                          "EndDate": dt.datetime.fromtimestamp(t0, dt.timezone.utc)})
        assert out["AlarmHistoryItems"] == [], out
        status, _, raw = tb.http("POST", "/service/GraniteServiceVersion20100801/operation/DescribeAlarmHistory",
                                 raw=gzip.compress(cbor2.dumps({"AlarmName": "guard-5xx"})),
                                 headers={"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor",
                                          "Content-Encoding": "gzip"})
        assert status == 200, raw
        out = cbor2.loads(raw)
        assert {i["HistoryItemType"] for i in out["AlarmHistoryItems"]} == {"StateUpdate", "ConfigurationUpdate"}
        arn = alarm["AlarmArn"]
        status, _, out = tb.cbor("TagResource", {"ResourceARN": arn, "Tags": [{"Key": "env", "Value": "test"}]})
        assert status == 200, out
        status, _, out = tb.cbor("ListTagsForResource", {"ResourceARN": arn})
        assert {t["Key"]: t["Value"] for t in out["Tags"]} == {"team": "guard", "env": "test"}, out
        status, _, out = tb.cbor("PutCompositeAlarm", {"AlarmName": "guard-any", "AlarmRule": 'ALARM("guard-5xx")'})
        assert status == 200, out
        status, _, out = tb.cbor("DescribeAlarms", {"AlarmNames": ["guard-any"], "AlarmTypes": ["CompositeAlarm"]})
        assert out["CompositeAlarms"][0]["AlarmRule"] == 'ALARM("guard-5xx")', out
        status, _, out = tb.cbor("DescribeAlarms", {})
        assert out["CompositeAlarms"] == [] and [a["AlarmName"] for a in out["MetricAlarms"]] == ["guard-5xx"], \
            "without AlarmTypes only metric alarms are listed"
        status, _, out = tb.cbor("DescribeAlarms", {"AlarmNames": ["guard-5xx"], "StateValue": "ALARM"})
        assert out["MetricAlarms"] == [], "AlarmNames and StateValue combine"
        status, headers, out = tb.cbor("SetAlarmState", {"AlarmName": "missing", "StateValue": "ALARM", "StateReason": "x"})
        assert status == 404 and out["__type"].endswith("ResourceNotFound"), (status, out)
        assert headers["x-amzn-query-error"].startswith("ResourceNotFound;"), headers
        status, _, out = tb.cbor("DeleteAlarms", {"AlarmNames": ["guard-any"]})
        assert status == 200
        status, _, out = tb.cbor("DescribeAlarms", {"AlarmNames": ["guard-any"]})
        assert out.get("CompositeAlarms", []) == []
        calls = tb.calls(service="cloudwatch", operation="SetAlarmState")
        assert calls[0]["params"]["StateValue"] == "ALARM" and calls[-1]["error"] == "ResourceNotFound", calls
        history = tb.client("cloudwatch").describe_alarm_history(AlarmName="guard-5xx", HistoryItemType="StateUpdate")
        assert len(history["AlarmHistoryItems"]) == 2, "boto3 (awsJson) sees the same history"

    @check("faults: throttle twice then success (boto3 retries), match_text, access_denied")
    def _() -> None:
        s = ctx["cd"]
        fault = tb.route("POST", "/_testbed/faults", {"service": "codedeploy", "operation": "GetDeployment",
                                                      "match_text": s["deploymentId"], "mode": "throttle", "times": 2})
        assert fault["mode"] == "throttle" and fault["times"] == 2
        since = tb.calls()[-1]["seq"]
        expect_error("DeploymentDoesNotExistException", lambda: cd.get_deployment(deploymentId="d-OTHER1234"))
        retrying = tb.client("codedeploy", attempts=3)
        info = retrying.get_deployment(deploymentId=s["deploymentId"])["deploymentInfo"]
        assert info["deploymentId"] == s["deploymentId"]
        calls = tb.calls(operation="GetDeployment", since=since)
        assert [(c["status"], c["error"]) for c in calls] == [
            (400, "DeploymentDoesNotExistException"), (400, "ThrottlingException"), (400, "ThrottlingException"), (200, None)], calls
        assert tb.route("GET", "/_testbed/faults") == [], "times=2 fault is used up"
        tb.route("POST", "/_testbed/faults", {"service": "ecs", "operation": "DescribeServices", "mode": "access_denied"})
        expect_error("AccessDeniedException", lambda: ecs.describe_services(cluster="x", services=["y"]))
        tb.route("POST", "/_testbed/faults", {"service": "codedeploy", "mode": "throttle", "times": 1})
        status, headers, out = tb.http("POST", "/", {"deploymentId": "x"}, headers={
            "X-Amz-Target": "CodeDeploy_20141006.GetDeployment", "Content-Type": "application/x-amz-json-1.1"})
        assert status == 400 and headers.get("x-amzn-ErrorType") == "ThrottlingException"
        assert json.loads(out) == {"__type": "ThrottlingException", "message": "Rate exceeded"}
        assert tb.route("DELETE", "/_testbed/faults")["cleared"] == 1
        ecs.describe_services(cluster=ctx["ecs"]["cluster"], services=[ctx["ecs"]["service"]])

    @check("faults: internal_error over query (elbv2), cbor (cloudwatch) and rest-xml (s3)")
    def _() -> None:
        tb.route("POST", "/_testbed/faults", {"service": "elbv2", "operation": "DescribeListeners", "mode": "internal_error", "times": 1})
        err = expect_error("InternalFailure", lambda: elb.describe_listeners(ListenerArns=[ctx["cd"]["prodListenerArn"]]))
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        tb.route("POST", "/_testbed/faults", {"service": "elbv2", "operation": "DescribeLoadBalancers", "mode": "throttle", "times": 1})
        expect_error("Throttling", lambda: elb.describe_load_balancers())
        call = tb.calls(service="elbv2", operation="DescribeLoadBalancers")[-1]
        assert call["params"]["Action"] == "DescribeLoadBalancers" and call["error"] == "Throttling"
        tb.route("POST", "/_testbed/faults", {"service": "cloudwatch", "operation": "DescribeAlarms", "mode": "throttle", "times": 1})
        status, headers, out = tb.cbor("DescribeAlarms", {})
        assert status == 400 and out["__type"] == "ThrottlingException" and headers["content-type"] == "application/cbor"
        s3 = tb.client("s3")
        s3.create_bucket(Bucket="artifacts")
        s3.put_object(Bucket="artifacts", Key="a/imagedefinitions.json", Body=b"[]")
        tb.route("POST", "/_testbed/faults", {"service": "s3", "operation": "GetObject", "mode": "access_denied",
                                              "match_text": "imagedefinitions", "times": 1})
        expect_error("AccessDenied", lambda: s3.get_object(Bucket="artifacts", Key="a/imagedefinitions.json"))
        assert s3.get_object(Bucket="artifacts", Key="a/imagedefinitions.json")["Body"].read() == b"[]"
        gets = tb.calls(service="s3", operation="GetObject")
        assert gets[0]["params"]["method"] == "GET" and gets[0]["params"]["path"] == "/artifacts/a/imagedefinitions.json"
        assert [(c["status"], c["error"]) for c in gets] == [(403, "AccessDenied"), (200, None)]

    @check("faults: hang holds one request, others are served meanwhile")
    def _() -> None:
        tb.route("POST", "/_testbed/faults", {"service": "codedeploy", "operation": "GetDeployment",
                                              "mode": "hang", "hang_seconds": 2, "times": 1})
        result: dict[str, Any] = {}

        def hung() -> None:
            t = time.monotonic()
            try:
                cd.get_deployment(deploymentId=ctx["cd"]["deploymentId"])
            except ClientError as err:
                result["code"] = err.response["Error"]["Code"]
                result["status"] = err.response["ResponseMetadata"]["HTTPStatusCode"]
            result["elapsed"] = time.monotonic() - t

        thread = threading.Thread(target=hung)
        thread.start()
        time.sleep(0.3)
        t = time.monotonic()
        ecs.describe_services(cluster=ctx["ecs"]["cluster"], services=[ctx["ecs"]["service"]])
        assert time.monotonic() - t < 1.0, "a hanging request must not block others"
        thread.join(10)
        assert result.get("status") == 500 and result.get("code") == "InternalFailure", result
        assert 1.8 < result["elapsed"] < 5, result

    @check("calls listing filters and unimplemented operations")
    def _() -> None:
        all_calls = tb.calls()
        assert all(set(c) == {"seq", "service", "operation", "params", "status", "error"} for c in all_calls)
        assert [c["seq"] for c in all_calls] == sorted(c["seq"] for c in all_calls)
        assert all(c["service"] == "ecs" for c in tb.calls(service="ecs"))
        hits = tb.calls(contains=ctx["ecs"]["serviceDeploymentArn"])
        assert hits and all(ctx["ecs"]["serviceDeploymentArn"] in json.dumps(c["params"]) for c in hits)
        assert not any(c["service"] == "ec2" for c in all_calls), "scenario seeding calls are not recorded"
        expect_error("NotImplemented", lambda: cd.list_application_revisions(applicationName=ctx["cd"]["application"]))
        assert tb.calls(operation="ListApplicationRevisions")[0]["status"] == 501

    @check("reset clears moto state, calls and faults")
    def _() -> None:
        tb.route("POST", "/_testbed/faults", {"service": "sts", "mode": "throttle"})
        assert tb.route("POST", "/_testbed/reset") == {"status": "ok"}
        assert tb.calls() == [] and tb.route("GET", "/_testbed/faults") == []
        expect_error("DeploymentDoesNotExistException", lambda: cd.get_deployment(deploymentId=ctx["cd"]["deploymentId"]))
        s = tb.route("POST", "/_testbed/scenarios/codedeploy", {"name": "cd-json", "prod_port": 18080, "test_port": 18081})
        assert cd.get_deployment(deploymentId=s["deploymentId"])["deploymentInfo"]["status"] == "InProgress"

    @check("concurrent scenarios with distinct names")
    def _() -> None:
        errors: list[str] = []

        def seed(i: int) -> None:
            status, _, out = tb.http("POST", "/_testbed/scenarios/codedeploy" if i % 2 else "/_testbed/scenarios/ecs",
                                     {"name": f"par-{i}", "prod_port": 19000 + i, "test_port": 19100 + i})
            if status != 200:
                errors.append(out.decode())

        threads = [threading.Thread(target=seed, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors

    @check("alarm-rollback seeding: tagged alarms, deployment status, time-ranged ListDeployments, ECS rolling")
    def _() -> None:
        alarm = tb.route("POST", "/_testbed/cloudwatch/alarm", {"name": "rb-5xx", "period": 86400,
                                                               "tags": {"deploy-guard:ecs-cluster": "c"}})
        assert alarm["state"] == "ALARM" and alarm["alarmArn"].endswith(":alarm:rb-5xx"), alarm
        status, _, out = tb.cbor("ListTagsForResource", {"ResourceARN": alarm["alarmArn"]})
        assert status == 200 and out["Tags"] == [{"Key": "deploy-guard:ecs-cluster", "Value": "c"}], out
        assert tb.route("POST", "/_testbed/cloudwatch/alarm", {"name": "rb-5xx", "state": "OK"})["state"] == "OK"
        composite = tb.route("POST", "/_testbed/cloudwatch/alarm", {"name": "rb-any", "composite": True})
        status, _, out = tb.cbor("DescribeAlarms", {"AlarmNames": ["rb-any"], "AlarmTypes": ["CompositeAlarm"]})
        assert out["CompositeAlarms"][0]["StateValue"] == "ALARM", (composite, out)
        assert not tb.calls(operation="PutMetricAlarm", contains="rb-5xx"), "seeding is not recorded"

        s = tb.route("POST", "/_testbed/scenarios/codedeploy", {"name": "rb-cd", "prod_port": 18130, "test_port": 18131,
                                                                "previous_deployment": True})
        previous = cd.get_deployment(deploymentId=s["previousDeploymentId"])["deploymentInfo"]
        assert previous["status"] == "Succeeded" and "completeTime" in previous, previous
        done = tb.route("POST", "/_testbed/codedeploy/deployment", {"deploymentId": s["deploymentId"],
                                                                    "status": "Succeeded", "completedMinutesAgo": 5})
        assert done["status"] == "Succeeded", done
        info = cd.get_deployment(deploymentId=s["deploymentId"])["deploymentInfo"]
        age = dt.datetime.now(dt.timezone.utc) - info["completeTime"]
        assert dt.timedelta(minutes=4) < age < dt.timedelta(minutes=6), age
        listed = cd.list_deployments(applicationName=s["application"], deploymentGroupName=s["deploymentGroup"],
                                     createTimeRange={"start": dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)})
        assert listed["deployments"] == [s["deploymentId"]], listed
        status, _, _ = tb.http("POST", "/_testbed/codedeploy/deployment", {"deploymentId": s["deploymentId"], "status": "Bad"})
        assert status == 400

        e = tb.route("POST", "/_testbed/scenarios/ecs", {"name": "rb-ecs", "prod_port": 18140, "test_port": 18141,
                                                        "strategy": "ROLLING", "deployment_status": "SUCCESSFUL"})
        svc = ecs.describe_services(cluster=e["cluster"], services=[e["service"]])["services"][0]
        assert svc["deploymentConfiguration"]["strategy"] == "ROLLING", svc["deploymentConfiguration"]
        assert "advancedConfiguration" not in svc["loadBalancers"][0], svc["loadBalancers"]
        out = tb.route("POST", "/_testbed/ecs/service-deployment", {"serviceDeploymentArn": e["serviceDeploymentArn"],
                                                                    "status": "SUCCESSFUL", "finishedMinutesAgo": 50})
        d = ecs.describe_service_deployments(serviceDeploymentArns=[e["serviceDeploymentArn"]])["serviceDeployments"][0]
        age = dt.datetime.now(dt.timezone.utc) - d["finishedAt"]
        assert dt.timedelta(minutes=49) < age < dt.timedelta(minutes=51), (out, age)

    @check("pipeline actions seeding: SSE-KMS zip artifacts read with the job's key, ECR images and scans, alarm states")
    def _() -> None:
        import io
        import zipfile
        art = tb.route("POST", "/_testbed/codepipeline/artifact", {
            "bucket": "pipe-arts", "key": "in/a.zip", "files": {"imageDetail.json": {"ImageURI": "x"}}, "kms": True})
        assert art["kmsKeyId"] and art["size"] > 0, art
        s3 = boto3.session.Session().client(
            "s3", endpoint_url=tb.url, region_name="us-east-1", aws_access_key_id="JOBKEY", aws_secret_access_key="s",
            config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
        obj = s3.get_object(Bucket="pipe-arts", Key="in/a.zip")
        assert obj["ServerSideEncryption"] == "aws:kms"
        assert zipfile.ZipFile(io.BytesIO(obj["Body"].read())).namelist() == ["imageDetail.json"]
        reads = tb.calls(service="s3", operation="GetObject", contains="pipe-arts")
        assert reads[-1]["params"]["accessKeyId"] == "JOBKEY", reads
        raw = tb.route("POST", "/_testbed/codepipeline/artifact", {"bucket": "pipe-arts", "key": "junk", "raw_base64": "eA=="})
        assert raw["size"] == 1
        ecr = tb.client("ecr")
        img = tb.route("POST", "/_testbed/ecr/image", {
            "repository": "gate", "tags": ["1.0.0", "latest"], "pushed_days_ago": 3,
            "scan": {"status": "COMPLETE", "findings": [{"name": "CVE-1", "severity": "CRITICAL"}]}})
        detail = ecr.describe_images(repositoryName="gate", imageIds=[{"imageTag": "latest"}])["imageDetails"][0]
        assert detail["imageDigest"] == img["digest"] and sorted(detail["imageTags"]) == ["1.0.0", "latest"]
        assert (dt.datetime.now(dt.timezone.utc) - detail["imagePushedAt"]).days == 3
        assert ecr.describe_repositories(repositoryNames=["gate"])["repositories"][0]["imageTagMutability"] == "IMMUTABLE"
        scan = ecr.describe_image_scan_findings(repositoryName="gate", imageId={"imageDigest": img["digest"]})
        assert scan["imageScanStatus"]["status"] == "COMPLETE"
        assert scan["imageScanFindings"]["findingSeverityCounts"] == {"CRITICAL": 1}, scan
        tb.route("POST", "/_testbed/ecr/image", {"repository": "gate", "tags": ["2.0.0"], "scan": None})
        expect_error("ScanNotFoundException", lambda: ecr.describe_image_scan_findings(
            repositoryName="gate", imageId={"imageTag": "2.0.0"}))
        tb.route("POST", "/_testbed/ecr/image", {"repository": "gate", "tags": ["3.0.0"], "scan": {"status": "IN_PROGRESS"}})
        pending = ecr.describe_image_scan_findings(repositoryName="gate", imageId={"imageTag": "3.0.0"})
        assert pending["imageScanStatus"]["status"] == "IN_PROGRESS" and "imageScanFindings" not in pending
        status, _, _ = tb.cbor("PutMetricAlarm", {
            "AlarmName": "bake-5xx", "Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count",
            "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 5.0,
            "ComparisonOperator": "GreaterThanThreshold"})
        assert status == 200
        for state in ("ALARM", "OK"):
            assert tb.route("POST", "/_testbed/cloudwatch/alarm-state", {"name": "bake-5xx", "state": state})["state"] == state
        _, _, out = tb.cbor("DescribeAlarmHistory", {"AlarmName": "bake-5xx", "HistoryItemType": "StateUpdate"})
        assert [json.loads(i["HistoryData"])["newState"]["stateValue"] for i in out["AlarmHistoryItems"]] == ["OK", "ALARM"]
        assert not tb.calls(operation="SetAlarmState", contains="bake-5xx"), "seeding is not recorded"

    @check("exits when stdin closes")
    def _() -> None:
        tb.proc.stdin.close()
        tb.proc.wait(timeout=5)

    failures = 0
    for fn in REGISTERED:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            failures += 1
            print(f"FAIL {fn.__name__}: {exc}", flush=True)
            traceback.print_exc()
            break
    if tb.proc.poll() is None:
        tb.proc.kill()
    total = time.monotonic() - started
    print(f"{len(PASSED)} passed, {failures} failed ({total:.1f}s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
