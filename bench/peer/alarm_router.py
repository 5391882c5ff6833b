"""The alarm -> rollback router as users write it today: Python and boto3, an EventBridge rule on
"CloudWatch Alarm State Change" invoking a function that stops the deployment.

The peer of `functions/alarm-rollback` in the benchmarks (BENCHMARKS.md), on its CodeDeploy path
with the same AWS calls: DescribeAlarms (re-read the alarm) and ListTagsForResource (which
application and deployment group the alarm guards), ListDeployments + BatchGetDeployments (the
group's deployments of the last 14 days), StopDeployment with automatic rollback for the one in
flight (unless it is itself a rollback), GetDeployment to confirm, and PutEvents to announce it.

Clients are created once, at module level, as the AWS samples do.
"""

import datetime as dt
import json
import os

import boto3

cloudwatch = boto3.client("cloudwatch")
codedeploy = boto3.client("codedeploy")
events = boto3.client("events")

TAG_PREFIX = os.environ.get("TAG_PREFIX", "deploy-guard:")
MAX_EVENT_AGE_S = int(os.environ.get("MAX_EVENT_AGE_S", "600"))
HISTORY_DAYS = int(os.environ.get("HISTORY_DAYS", "14"))
EVENT_BUS = os.environ.get("EVENT_BUS_NAME", "default")
REGION = os.environ.get("AWS_REGION", "us-east-1")
IN_FLIGHT = {"Created", "Queued", "InProgress", "Baking", "Ready"}


def lambda_handler(event, context):
    outcome = route(event, context)
    print(json.dumps({"target": "outcome", **outcome}, default=str))
    return outcome


def route(event, context):
    if event.get("source") != "aws.cloudwatch" or event.get("detail-type") != "CloudWatch Alarm State Change":
        return {"action": "ignored", "reason": "not a CloudWatch alarm state change"}
    detail = event["detail"]
    name = detail["alarmName"]
    if detail["state"]["value"] != "ALARM":
        return {"action": "ignored", "alarm": name, "reason": f"the alarm went to {detail['state']['value']}"}
    account = context.invoked_function_arn.split(":")[4]
    if event["account"] != account or event["region"] != REGION:
        return {"action": "ignored", "alarm": name, "reason": "another account or region"}
    sent = dt.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    if (dt.datetime.now(dt.timezone.utc) - sent).total_seconds() > MAX_EVENT_AGE_S:
        return {"action": "ignored", "alarm": name, "reason": "the event is too old"}

    found = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    alarms = found["MetricAlarms"] + found["CompositeAlarms"]
    state = alarms[0]["StateValue"] if alarms else "missing"
    if state != "ALARM":
        return {"action": "nothing", "alarm": name, "reason": f"the alarm is {state} now"}

    arn = event["resources"][0]
    tags = {t["Key"]: t["Value"] for t in cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"]}
    app = tags.get(TAG_PREFIX + "codedeploy-application")
    group = tags.get(TAG_PREFIX + "codedeploy-deployment-group")
    if not app or not group:
        return {"action": "nothing", "alarm": name, "reason": "the alarm names no deployment group"}

    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=HISTORY_DAYS)
    ids = []
    for page in codedeploy.get_paginator("list_deployments").paginate(
        applicationName=app, deploymentGroupName=group, createTimeRange={"start": since}
    ):
        ids.extend(page["deployments"])
    infos = []
    for i in range(0, len(ids), 25):
        infos.extend(codedeploy.batch_get_deployments(deploymentIds=ids[i : i + 25])["deploymentsInfo"])
    infos.sort(key=lambda d: d["createTime"], reverse=True)

    live = next((d for d in infos if d["status"] in IN_FLIGHT), None)
    if live is None:
        return {"action": "nothing", "alarm": name, "reason": f"no deployment of {app}/{group} is in flight"}
    rollback = live.get("rollbackInfo", {}).get("rollbackTriggeringDeploymentId")
    if live.get("creator") == "codeDeployRollback" or rollback:
        return {"action": "nothing", "alarm": name, "reason": f"{live['deploymentId']} is itself a rollback"}

    deployment_id = live["deploymentId"]
    try:
        codedeploy.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    except codedeploy.exceptions.DeploymentAlreadyCompletedException:
        return {"action": "nothing", "alarm": name, "reason": f"{deployment_id} already completed"}
    confirmed = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    result = {
        "action": "StopDeployment",
        "alarm": name,
        "release": deployment_id,
        "status": confirmed["status"],
        "rollback": confirmed.get("rollbackInfo", {}).get("rollbackDeploymentId"),
        "reason": f"alarm {name} is in ALARM while {deployment_id} is in flight",
    }
    events.put_events(
        Entries=[
            {
                "Source": "deploy-guard-peer.alarm-router",
                "DetailType": "Rollback Started",
                "Detail": json.dumps(result),
                "EventBusName": EVENT_BUS,
                "Resources": [arn],
            }
        ]
    )
    return result
