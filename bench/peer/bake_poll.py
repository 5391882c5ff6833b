"""One poll of a bake timer as users write it today: a CodePipeline Lambda invoke action in
Python and boto3 that watches CloudWatch alarms during a bake period, polling once per
invocation and answering with a continuation token.

The peer of `functions/bake-timer` in the benchmarks (BENCHMARKS.md), with the same AWS calls
per poll: DescribeAlarms (the watched alarms by name prefix, metric and composite), on a
continuation DescribeAlarmHistory per alarm (state updates since the bake started), then
PutJobSuccessResult with a continuation token and the progress, or PutJobFailureResult naming
the alarm.

Clients are created once, at module level, as the AWS samples do.
"""

import datetime as dt
import json

import boto3

cloudwatch = boto3.client("cloudwatch")
codepipeline = boto3.client("codepipeline")

TYPES = ["MetricAlarm", "CompositeAlarm"]


def lambda_handler(event, context):
    job = event["CodePipeline.job"]
    job_id = job["id"]
    data = job["data"]
    try:
        params = json.loads(data["actionConfiguration"]["configuration"]["UserParameters"])
        duration = params.get("duration_minutes", 0) * 60 + params.get("duration_seconds", 0)
        now = dt.datetime.now(dt.timezone.utc)
        carried = data.get("continuationToken")
        token = json.loads(carried) if carried else {"start": now.timestamp(), "polls": 0}
        start = dt.datetime.fromtimestamp(token["start"], dt.timezone.utc)

        selection = params["alarms"]
        alarms = []
        query = {"AlarmNames": selection["names"]} if "names" in selection else {"AlarmNamePrefix": selection["prefix"]}
        for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=TYPES, **query):
            alarms.extend(page["MetricAlarms"] + page["CompositeAlarms"])
        if not alarms:
            raise ValueError("no alarm to watch")

        problems = [f"alarm {a['AlarmName']} is {a['StateValue']}" for a in alarms if a["StateValue"] != "OK"]
        if carried:
            for a in alarms:
                history = cloudwatch.describe_alarm_history(
                    AlarmName=a["AlarmName"],
                    AlarmTypes=TYPES,
                    HistoryItemType="StateUpdate",
                    StartDate=start - dt.timedelta(seconds=1),
                    EndDate=now + dt.timedelta(seconds=1),
                    ScanBy="TimestampAscending",
                    MaxRecords=100,
                )
                for item in history["AlarmHistoryItems"]:
                    new = json.loads(item.get("HistoryData") or "{}").get("newState", {})
                    if new.get("stateValue") == "ALARM":
                        problems.append(f"alarm {a['AlarmName']} went to ALARM at {item['Timestamp']}")
                        break

        names = ", ".join(a["AlarmName"] for a in alarms)
        elapsed = (now - start).total_seconds()
        if problems:
            codepipeline.put_job_failure_result(
                jobId=job_id, failureDetails={"type": "JobFailed", "message": "; ".join(problems)[:5000]}
            )
            return {"verdict": "Failed", "reason": "; ".join(problems)}
        if elapsed >= duration:
            codepipeline.put_job_success_result(
                jobId=job_id,
                executionDetails={"summary": f"bake passed: {len(alarms)} alarms OK: {names}"[:2048], "percentComplete": 100},
            )
            return {"verdict": "Succeeded"}
        percent = int(elapsed * 100 / duration)
        codepipeline.put_job_success_result(
            jobId=job_id,
            continuationToken=json.dumps({"start": token["start"], "polls": token["polls"] + 1}),
            executionDetails={"summary": f"baking {percent}%: {len(alarms)} alarms OK: {names}"[:2048], "percentComplete": percent},
        )
        return {"verdict": "InProgress", "percent": percent}
    except Exception as e:
        codepipeline.put_job_failure_result(jobId=job_id, failureDetails={"type": "JobFailed", "message": str(e)[:5000]})
        return {"verdict": "Failed", "reason": str(e)}
