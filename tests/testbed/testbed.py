#!/usr/bin/env python3
"""deploy-guard local AWS test bed: moto's server, extended.

Usage:  python tests/testbed/testbed.py --port 0 [--verbose] [--no-stdin-watchdog]

Binds 127.0.0.1 only, prints exactly one line ``TESTBED_READY port=<PORT>`` on stdout once
it accepts connections, logs to stderr, and exits when stdin reaches EOF (so it never outlives
the test process that spawned it) or on SIGTERM/SIGINT.  Clients point the AWS SDK at
``AWS_ENDPOINT_URL=http://127.0.0.1:<PORT>`` with any credentials (region us-east-1, account
123456789012, moto's defaults).

What this adds to moto 5.2.5 and why
------------------------------------
moto serves most of what deploy-guard reads, but not everything, and not every wire protocol
the current AWS SDK for Rust speaks.  Everything below is registered on moto's own classes
(so the state lives in moto's backends and a later read reflects an earlier write) or wraps
moto's WSGI application; nothing of moto is forked.

* Recording: every AWS API request that reaches the server is recorded (service, operation,
  params, status, error) and listed by ``GET /_testbed/calls``.  Test seeding routes talk to
  moto with an internal header and are never recorded.
* Fault injection (``/_testbed/faults``): throttle / access_denied / internal_error / hang,
  with error bodies in the shape of the request's protocol (awsJson, query, rpc-v2-cbor,
  rest-xml, rest-json) so the SDKs parse the error code (and retry throttles).
* CloudWatch over Smithy RPC v2 CBOR: aws-sdk-cloudwatch >= 1.100 sends
  ``POST /service/GraniteServiceVersion20100801/operation/<Op>`` with CBOR bodies, which moto
  does not understand.  Such a request is translated to moto's awsJson1.0 form, served by
  moto's CloudWatch backend, and the JSON answer (or error) is translated back to CBOR with
  timestamps as CBOR tag 1.  Also added: ``DescribeAlarmHistory`` (moto has none),
  ``PutCompositeAlarm`` (moto's model supports composite alarms but has no handler), alarm
  history entries written by ``PutMetricAlarm`` / ``PutCompositeAlarm`` / ``SetAlarmState``,
  and ``DescribeAlarms`` filters that combine and honour ``AlarmTypes`` as AWS does.
* CodeDeploy: ``ListDeploymentTargets``, ``BatchGetDeploymentTargets`` (ECS targets with
  lifecycle events and task sets), ``PutLifecycleEventHookExecutionStatus`` (first report
  wins), ``StopDeployment`` (with auto-rollback), ``GetApplicationRevision``;
  ``GetDeployment``/``BatchGetDeployments`` gain ``rollbackInfo``, ``errorInformation`` and
  ``appSpecContent.sha256`` (moto returns empty placeholders).
* ECS: service deployments and service revisions (``ListServiceDeployments``,
  ``DescribeServiceDeployments``, ``StopServiceDeployment``, ``DescribeServiceRevisions``),
  created automatically by ``CreateService``/``UpdateService`` of ECS-controller services;
  ``CreateService`` keeps ``deploymentConfiguration`` (moto drops it); ``UpdateService``
  refuses a task-definition change on a CODE_DEPLOY service, as AWS does.
* CodePipeline: ``PutJobSuccessResult``/``PutJobFailureResult`` (first report per job wins,
  a second gets ``InvalidJobStateException``), ``GetPipelineState``.
* Operations moto does not implement answer ``501 NotImplemented`` in the protocol's error
  shape (instead of moto's HTML 500, which the Rust SDK reports as a malformed body and retries).
* Test-only routes under ``/_testbed/`` seed whole scenarios (CodeDeploy blue/green, ECS native
  blue/green), move CodeDeploy lifecycle events, set ECS service-deployment states, reset.

Routes (all JSON; request and response shapes in tests/testbed/README.md):
  GET    /_testbed/calls[?service=&operation=&contains=&since=]   recorded calls
  DELETE /_testbed/calls                                          forget recorded calls
  POST   /_testbed/faults   {service, operation, match_text?, mode, times?, hang_seconds?}
  GET    /_testbed/faults
  DELETE /_testbed/faults
  POST   /_testbed/scenarios/codedeploy   POST /_testbed/codedeploy/lifecycle
  POST   /_testbed/scenarios/ecs          POST /_testbed/ecs/service-deployment
  POST   /_testbed/codedeploy/deployment  POST /_testbed/cloudwatch/alarm
  POST   /_testbed/codepipeline/artifact  POST /_testbed/ecr/image  POST /_testbed/cloudwatch/alarm-state
  POST   /_testbed/reset
  GET    /_testbed/health
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import os
import re
import secrets
import signal
import sys
import threading
import traceback
import uuid
import zipfile
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

# Any credentials work; make sure nothing in this process ever reaches real AWS.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testbed")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testbed")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)

import boto3  # noqa: E402
import botocore.config  # noqa: E402
import botocore.session  # noqa: E402
import cbor2  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from moto.cloudwatch.models import CloudWatchBackend, cloudwatch_backends  # noqa: E402
from moto.cloudwatch.responses import CloudWatchResponse  # noqa: E402
from moto.codedeploy import responses as codedeploy_responses  # noqa: E402
from moto.codedeploy.models import DeploymentInfo, codedeploy_backends  # noqa: E402
from moto.codedeploy.responses import CodeDeployResponse  # noqa: E402
from moto.codepipeline.models import codepipeline_backends  # noqa: E402
from moto.codepipeline.responses import CodePipelineResponse  # noqa: E402
from moto.core.exceptions import ServiceException  # noqa: E402
from moto.core.responses import ActionResult, EmptyResult  # noqa: E402
from moto.core.utils import utcnow  # noqa: E402
from moto.ecr.exceptions import ScanNotFoundException as ECRScanNotFoundException  # noqa: E402
from moto.ecr.models import ECRBackend, ecr_backends  # noqa: E402
from moto.ecs.models import ecs_backends  # noqa: E402
from moto.ecs.responses import EC2ContainerServiceResponse  # noqa: E402
from moto.elbv2.models import elbv2_backends  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
INTERNAL_HEADER = "x-testbed-internal"  # marks the seeding routes' own calls: not recorded
LOG = logging.getLogger("testbed")

_BOTOCORE = botocore.session.get_session()


def _service_model(name: str) -> Any:
    return _BOTOCORE.get_service_model(name)


def _now() -> dt.datetime:
    """moto keeps naive UTC datetimes; so do we."""
    return utcnow()


def _naive_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return _naive_utc(float(value))
        except ValueError:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _json_safe(value: Any) -> Any:
    """Decoded CBOR / form values -> something json.dumps accepts."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, cbor2.CBORTag):
        return _json_safe(value.value)
    return value


class TestbedError(ServiceException):
    """Defined outside the moto package on purpose: moto looks the code up in the model of the
    service answering (a ServiceException from moto.core would send it looking for a 'core' model)."""


def _err(code: str, message: str) -> TestbedError:
    """An error that moto serializes in the service's own protocol (status from the model)."""
    return TestbedError(code, message)


# ---------------------------------------------------------------------------------------------
# Recording and faults
# ---------------------------------------------------------------------------------------------


class State:
    """Calls, faults and hang releases; shared by all request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.seq = 0
        self.faults: list[dict[str, Any]] = []
        self.fault_seq = 0
        self.release = threading.Event()  # set to wake hanging requests (faults cleared/reset)

    def record(self, service: str, operation: str, params: Any, status: int, error: str | None) -> None:
        with self.lock:
            self.seq += 1
            self.calls.append(
                {
                    "seq": self.seq,
                    "service": service,
                    "operation": operation,
                    "params": params,
                    "status": status,
                    "error": error,
                }
            )

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        mode = spec.get("mode")
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {sorted(FAULT_MODES)}")
        times = spec.get("times")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("times must be a positive integer (omit it for 'forever')")
        with self.lock:
            self.fault_seq += 1
            fault = {
                "id": self.fault_seq,
                "service": spec.get("service"),
                "operation": spec.get("operation"),
                "match_text": spec.get("match_text"),
                "mode": mode,
                "times": times,  # remaining; None = forever
                "hang_seconds": float(spec.get("hang_seconds", 60)),
                "hits": 0,
            }
            self.faults.append(fault)
            return dict(fault)

    def take_fault(self, service: str, operation: str, body: bytes, target: bytes) -> dict[str, Any] | None:
        """First matching fault, consuming one of its ``times``."""
        with self.lock:
            for fault in self.faults:
                if fault["service"] and fault["service"] != service:
                    continue
                if fault["operation"] and fault["operation"] != operation:
                    continue
                text = fault["match_text"]
                if text:
                    needle = text.encode()
                    if needle not in body and needle not in target:
                        continue
                fault["hits"] += 1
                if fault["times"] is not None:
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self.faults.remove(fault)
                return dict(fault)
        return None

    def clear_faults(self) -> int:
        with self.lock:
            n = len(self.faults)
            self.faults = []
            old, self.release = self.release, threading.Event()
        old.set()
        return n


FAULT_MODES = {"throttle", "access_denied", "internal_error", "hang"}
STATE = State()


# ---------------------------------------------------------------------------------------------
# Request classification: which service / operation / protocol is this?
# ---------------------------------------------------------------------------------------------

TARGET_PREFIXES = {
    "CodeDeploy_20141006": "codedeploy",
    "AmazonEC2ContainerServiceV20141113": "ecs",
    "AmazonEC2ContainerRegistry_V20150921": "ecr",
    "CodePipeline_20150709": "codepipeline",
    "AmazonSSM": "ssm",
    "secretsmanager": "secretsmanager",
    "GraniteServiceVersion20100801": "cloudwatch",
    "AWSEvents": "events",
    "Logs_20140328": "logs",
    "DynamoDB_20120810": "dynamodb",
    "TrentService": "kms",
    "AWSStepFunctions": "stepfunctions",
    "AWSSecurityTokenServiceV20110615": "sts",
}
CBOR_SERVICE_IDS = {"GraniteServiceVersion20100801": "cloudwatch"}
QUERY_VERSIONS = {"2015-12-01": "elbv2", "2012-06-01": "elb", "2011-06-15": "sts", "2010-08-01": "cloudwatch",
                  "2010-05-08": "iam", "2010-03-31": "sns", "2012-11-05": "sqs", "2016-11-15": "ec2"}
SIGNING_NAMES = {"monitoring": "cloudwatch", "states": "stepfunctions", "email": "ses"}
SIGNING_BY_SERVICE = {**{s: s for s in TARGET_PREFIXES.values()}, **{v: k for k, v in SIGNING_NAMES.items()},
                      "elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing", "iam": "iam", "sns": "sns",
                      "sqs": "sqs", "ec2": "ec2"}


def _signing_name(environ: dict[str, Any]) -> tuple[str | None, str]:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=[^/]*/[^/]*/([^/]*)/([^/]*)/", auth)
    if not m:
        return None, REGION
    return m.group(2), m.group(1)


def _s3_operation(method: str, bucket: str | None, key: str | None, query: dict[str, Any], environ: dict[str, Any]) -> str:
    sub = {
        "tagging": "Tagging", "policy": "Policy", "versioning": "Versioning", "acl": "Acl",
        "lifecycle": "LifecycleConfiguration", "cors": "Cors", "encryption": "Encryption",
        "notification": "NotificationConfiguration", "website": "Website", "logging": "Logging",
        "replication": "Replication", "ownershipControls": "OwnershipControls",
        "accelerate": "AccelerateConfiguration", "object-lock": "ObjectLockConfiguration",
        "policyStatus": "PolicyStatus", "requestPayment": "RequestPayment",
    }
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method} /"
    if key is None:
        if method == "GET":
            if "list-type" in query:
                return "ListObjectsV2"
            if "versions" in query:
                return "ListObjectVersions"
            if "uploads" in query:
                return "ListMultipartUploads"
            if "location" in query:
                return "GetBucketLocation"
            if "publicAccessBlock" in query:
                return "GetPublicAccessBlock"
            for q, name in sub.items():
                if q in query:
                    return f"GetBucket{name}"
            return "ListObjects"
        if method == "PUT":
            if "publicAccessBlock" in query:
                return "PutPublicAccessBlock"
            for q, name in sub.items():
                if q in query:
                    return f"PutBucket{name}"
            return "CreateBucket"
        if method == "DELETE":
            for q, name in sub.items():
                if q in query:
                    return f"DeleteBucket{name}"
            return "DeleteBucket"
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        return f"{method} Bucket"
    if method == "GET":
        if "tagging" in query:
            return "GetObjectTagging"
        if "acl" in query:
            return "GetObjectAcl"
        if "uploadId" in query:
            return "ListParts"
        if "attributes" in query:
            return "GetObjectAttributes"
        return "GetObject"
    if method == "PUT":
        if "tagging" in query:
            return "PutObjectTagging"
        if "acl" in query:
            return "PutObjectAcl"
        if "partNumber" in query:
            return "UploadPartCopy" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "UploadPart"
        return "CopyObject" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PutObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "restore" in query:
            return "RestoreObject"
    return f"{method} Object"


def classify(environ: dict[str, Any], body: bytes) -> dict[str, Any]:
    """service, operation, params (JSON-able) and protocol of an AWS API request."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    query_string = environ.get("QUERY_STRING", "")
    query = parse_qs(query_string, keep_blank_values=True)
    ctype = environ.get("CONTENT_TYPE", "") or ""
    target = environ.get("HTTP_X_AMZ_TARGET")
    signing, region = _signing_name(environ)
    signing_service = SIGNING_NAMES.get(signing or "", signing)
    info: dict[str, Any] = {"region": region, "signing": signing}

    parts = path.split("/")
    if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip" and "cbor" in ctype:
        body = gzip.decompress(body)  # aws-sdk-cloudwatch compresses large PutMetricData bodies
    if (
        len(parts) == 5 and parts[1] == "service" and parts[3] == "operation"
        and (environ.get("HTTP_SMITHY_PROTOCOL") == "rpc-v2-cbor" or "cbor" in ctype)
    ):
        try:
            params = _json_safe(cbor2.loads(body)) if body else {}
        except Exception:  # noqa: BLE001 - record what we can
            params = {"_undecodable_cbor": base64.b64encode(body).decode()}
        service = CBOR_SERVICE_IDS.get(parts[2], signing_service or parts[2])
        return info | {"service": service, "operation": parts[4], "params": params,
                       "protocol": "cbor", "service_id": parts[2]}

    if target and "." in target:
        prefix, operation = target.split(".", 1)
        service = TARGET_PREFIXES.get(prefix) or signing_service or prefix.lower()
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            params = {"_raw": body.decode("utf-8", "replace")}
        return info | {"service": service, "operation": operation, "params": params,
                       "protocol": "json", "content_type": ctype or "application/x-amz-json-1.1"}

    form: dict[str, list[str]] = {}
    if ctype.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    merged = {**query, **form}
    if "Action" in merged:
        params = {k: (v[0] if len(v) == 1 else v) for k, v in merged.items()}
        version = params.get("Version", "")
        service = signing_service
        if service == "elasticloadbalancing":
            service = "elb" if version == "2012-06-01" else "elbv2"
        elif service is None:  # unsigned: guess from the API version
            service = QUERY_VERSIONS.get(version, "unknown")
        return info | {"service": service, "operation": params["Action"], "params": params,
                       "protocol": "query"}

    if signing_service in (None, "s3"):
        host = environ.get("HTTP_HOST", "")
        bucket_from_host = None
        m = re.match(r"^([^.]+(?:\.[^.]+)*?)\.s3[.-]", host)
        if m:
            bucket_from_host = m.group(1)
        segments = path.lstrip("/").split("/", 1)
        if bucket_from_host:
            bucket, key = bucket_from_host, path.lstrip("/") or None
        else:
            bucket = segments[0] or None
            key = segments[1] if len(segments) > 1 and segments[1] != "" else None
        operation = _s3_operation(method, bucket, key, query, environ)
        params = {"method": method, "path": path, "query": query_string}
        access_key = re.search(r"Credential=([^/,\s]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        if access_key:
            params["accessKeyId"] = access_key.group(1)  # which credentials read it (artifact credentials)
        return info | {"service": "s3", "operation": operation, "params": params, "protocol": "rest-xml"}

    try:
        json_body = json.loads(body) if body else None
    except ValueError:
        json_body = body.decode("utf-8", "replace")
    params = {"method": method, "path": path, "query": query_string, "body": json_body}
    return info | {"service": signing_service, "operation": f"{method} {path}", "params": params,
                   "protocol": "rest-json"}


# ---------------------------------------------------------------------------------------------
# Protocol-shaped error responses (faults, unimplemented operations)
# ---------------------------------------------------------------------------------------------

QUERY_NAMESPACES = {
    "elbv2": "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
    "elb": "http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/",
    "cloudwatch": "http://monitoring.amazonaws.com/doc/2010-08-01/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}


def _fault_error(mode: str, protocol: str) -> tuple[int, str, str]:
    """(status, code, message) per fault mode and protocol."""
    if mode == "throttle":
        if protocol == "rest-xml":
            return 503, "SlowDown", "Please reduce your request rate."
        if protocol == "query":
            return 400, "Throttling", "Rate exceeded"
        return 400, "ThrottlingException", "Rate exceeded"
    if mode == "access_denied":
        msg = "User: arn:aws:sts::123456789012:assumed-role/testbed/fault is not authorized to perform this action (testbed fault)"
        if protocol in ("rest-xml", "query"):
            return 403, "AccessDenied", msg
        return 400, "AccessDeniedException", msg
    if protocol == "rest-xml":
        return 500, "InternalError", "We encountered an internal error. Please try again."
    return 500, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure."


def error_response(info: dict[str, Any], status: int, code: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """An error body the SDK of ``info['protocol']`` parses into ``code``."""
    protocol = info.get("protocol")
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    if protocol == "json":
        headers += [("x-amzn-ErrorType", code), ("Content-Type", info.get("content_type") or "application/x-amz-json-1.1")]
        return status, headers, json.dumps({"__type": code, "message": message}).encode()
    if protocol == "cbor":
        fault = "Receiver" if status >= 500 else "Sender"
        headers += [("smithy-protocol", "rpc-v2-cbor"), ("Content-Type", "application/cbor"),
                    ("x-amzn-query-error", f"{code};{fault}")]
        return status, headers, cbor2.dumps({"__type": code, "message": message})
    if protocol == "query":
        fault = "Receiver" if status >= 500 else "Sender"
        ns = QUERY_NAMESPACES.get(info.get("service") or "", "")
        ns_attr = f' xmlns="{ns}"' if ns else ""
        body = (
            f'<ErrorResponse{ns_attr}><Error><Type>{fault}</Type><Code>{code}</Code>'
            f"<Message>{_xml_escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return status, headers + [("Content-Type", "text/xml")], body.encode()
    if protocol == "rest-xml":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>'
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return status, headers + [("Content-Type", "application/xml")], body.encode()
    headers += [("x-amzn-ErrorType", code), ("Content-Type", "application/json")]
    return status, headers, json.dumps({"__type": code, "message": message, "Message": message}).encode()


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_code_of(status: int, headers: list[tuple[str, str]], body: bytes) -> str | None:
    """The error code of a (moto) response, whatever its protocol."""
    if status < 400:
        return None
    for name, value in headers:
        if name.lower() == "x-amzn-errortype" and value:
            return value.split(":")[0].split("#")[-1]
    text = body[:65536]
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            code = doc.get("__type") or doc.get("code") or doc.get("Code")
            if code:
                return str(code).split("#")[-1]
    except ValueError:
        pass
    m = re.search(rb"<Code>([^<]+)</Code>", text)
    if m:
        return m.group(1).decode()
    return f"HTTP{status}"


# ---------------------------------------------------------------------------------------------
# CloudWatch: Smithy RPC v2 CBOR <-> moto's awsJson1.0
# ---------------------------------------------------------------------------------------------


class CborCloudWatch:
    """Serves rpc-v2-cbor CloudWatch requests through moto's JSON handler."""

    def __init__(self) -> None:
        self.model = _service_model("cloudwatch")
        self.code_to_shape: dict[str, str] = {}
        self.shape_status: dict[str, int] = {}
        for name in self.model.error_shapes if hasattr(self.model, "error_shapes") else []:
            meta = name.metadata.get("error", {})
            self.code_to_shape[meta.get("code", name.name)] = name.name
            self.shape_status[name.name] = meta.get("httpStatusCode", 400)

    @staticmethod
    def _to_json(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: CborCloudWatch._to_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [CborCloudWatch._to_json(v) for v in value]
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return value.timestamp()
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode()
        if isinstance(value, cbor2.CBORTag) and value.tag == 1:
            return float(value.value)
        return value

    def _to_cbor(self, shape: Any, value: Any) -> Any:
        if value is None or shape is None:
            return value
        t = shape.type_name
        if t == "structure" and isinstance(value, dict):
            out = {}
            for k, v in value.items():
                member = shape.members.get(k)
                if v is None:
                    continue
                out[k] = self._to_cbor(member, v) if member is not None else v
            return out
        if t == "list" and isinstance(value, list):
            return [self._to_cbor(shape.member, v) for v in value]
        if t == "map" and isinstance(value, dict):
            return {k: self._to_cbor(shape.value, v) for k, v in value.items()}
        if t == "timestamp":
            if isinstance(value, (int, float)):
                return cbor2.CBORTag(1, float(value))
            when = _naive_utc(value)
            return cbor2.CBORTag(1, when.replace(tzinfo=dt.timezone.utc).timestamp()) if when else None
        if t == "blob" and isinstance(value, str):
            return base64.b64decode(value)
        if t in ("double", "float") and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t in ("integer", "long") and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def __call__(self, moto_app: Any, environ: dict[str, Any], info: dict[str, Any], body: bytes) -> tuple[int, list[tuple[str, str]], bytes, str | None]:
        operation = info["operation"]
        try:
            op_model = self.model.operation_model(operation)
        except Exception:  # noqa: BLE001
            status, headers, out = error_response(info, 400, "UnknownOperationException", f"Unknown operation {operation}")
            return status, headers, out, "UnknownOperationException"
        try:
            if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
                body = gzip.decompress(body)
            request = cbor2.loads(body) if body else {}
        except Exception as exc:  # noqa: BLE001
            status, headers, out = error_response(info, 400, "SerializationException", f"Invalid CBOR body: {exc}")
            return status, headers, out, "SerializationException"
        json_body = json.dumps(self._to_json(request or {})).encode()
        env = dict(environ)
        env["PATH_INFO"] = "/"
        env["QUERY_STRING"] = ""
        env["CONTENT_TYPE"] = "application/x-amz-json-1.0"
        env["CONTENT_LENGTH"] = str(len(json_body))
        env["HTTP_X_AMZ_TARGET"] = f"GraniteServiceVersion20100801.{operation}"
        env["wsgi.input"] = io.BytesIO(json_body)
        if "HTTP_AUTHORIZATION" not in env:  # moto routes by the credential scope's service
            env["HTTP_AUTHORIZATION"] = (
                f"AWS4-HMAC-SHA256 Credential=testbed/20200101/{info.get('region') or REGION}/monitoring/aws4_request, "
                "SignedHeaders=host, Signature=0"
            )
        for key in ("HTTP_SMITHY_PROTOCOL", "HTTP_ACCEPT", "HTTP_CONTENT_ENCODING"):
            env.pop(key, None)
        status, headers, out = call_wsgi(moto_app, env)
        base = [("smithy-protocol", "rpc-v2-cbor")]
        for name, value in headers:
            if name.lower() in ("x-amzn-requestid",):
                base.append((name, value))
        if status >= 400:
            code = error_code_of(status, headers, out) or "InternalFailure"
            try:
                message = json.loads(out).get("message") or json.loads(out).get("Message") or ""
            except ValueError:
                message = out.decode("utf-8", "replace")[:500]
            shape = self.code_to_shape.get(code, code)
            status = self.shape_status.get(shape, status)
            fault = "Receiver" if status >= 500 else "Sender"
            query_code = code
            payload = cbor2.dumps({"__type": f"com.amazonaws.cloudwatch#{shape}", "message": message})
            return status, base + [("Content-Type", "application/cbor"), ("x-amzn-query-error", f"{query_code};{fault}")], payload, code
        if op_model.output_shape is None:
            return status, base, b"", None
        try:
            doc = json.loads(out) if out.strip() else {}
        except ValueError:
            doc = {}
        payload = cbor2.dumps(self._to_cbor(op_model.output_shape, doc) or {})
        return status, base + [("Content-Type", "application/cbor")], payload, None


def call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = list(headers)
        return lambda data: captured.setdefault("written", []).append(data)

    result = app(environ, start_response)
    try:
        chunks = list(captured.get("written", [])) + [c for c in result]
    finally:
        if hasattr(result, "close"):
            result.close()
    return captured.get("status", 500), captured.get("headers", []), b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# CloudWatch: alarm history, PutCompositeAlarm, DescribeAlarmHistory
# ---------------------------------------------------------------------------------------------


def _cw_history(backend: CloudWatchBackend) -> list[dict[str, Any]]:
    if not hasattr(backend, "_tb_history"):
        backend._tb_history = []  # type: ignore[attr-defined]
    return backend._tb_history  # type: ignore[attr-defined]


def _alarm_type(alarm: Any) -> str:
    return "CompositeAlarm" if getattr(alarm, "rule", None) else "MetricAlarm"


def _state_blob(value: str, reason: str | None, reason_data: str | None) -> dict[str, Any]:
    blob: dict[str, Any] = {"stateValue": value, "stateReason": reason or ""}
    if reason_data:
        try:
            blob["stateReasonData"] = json.loads(reason_data)
        except ValueError:
            pass
    return blob


_orig_cw_put_metric_alarm = CloudWatchBackend.put_metric_alarm
_orig_cw_set_alarm_state = CloudWatchBackend.set_alarm_state


def _cw_put_metric_alarm(self: CloudWatchBackend, *args: Any, **kwargs: Any) -> Any:
    name = kwargs.get("name", args[0] if args else None)
    existed = name in self.alarms
    alarm = _orig_cw_put_metric_alarm(self, *args, **kwargs)
    kind = "Update" if existed else "Create"
    _cw_history(self).append(
        {
            "AlarmName": alarm.name,
            "AlarmType": _alarm_type(alarm),
            "Timestamp": _now(),
            "HistoryItemType": "ConfigurationUpdate",
            "HistorySummary": f'Alarm "{alarm.name}" {"updated" if existed else "created"}',
            "HistoryData": json.dumps({"version": "1.0", "type": kind,
                                       ("updatedAlarm" if existed else "createdAlarm"): {"alarmName": alarm.name, "alarmArn": alarm.alarm_arn}}),
        }
    )
    return alarm


def _cw_set_alarm_state(self: CloudWatchBackend, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
    alarm = self.alarms.get(alarm_name)
    old = (alarm.state_value, alarm.state_reason, alarm.state_reason_data) if alarm else None
    _orig_cw_set_alarm_state(self, alarm_name, reason, reason_data, state_value)
    alarm = self.alarms[alarm_name]
    assert old is not None
    _cw_history(self).append(
        {
            "AlarmName": alarm_name,
            "AlarmType": _alarm_type(alarm),
            "Timestamp": alarm.state_updated_timestamp,
            "HistoryItemType": "StateUpdate",
            "HistorySummary": f"Alarm updated from {old[0]} to {state_value}",
            "HistoryData": json.dumps(
                {
                    "version": "1.0",
                    "oldState": _state_blob(*old),
                    "newState": _state_blob(state_value, reason, reason_data),
                }
            ),
        }
    )


def _cw_describe_alarm_history(self: CloudWatchResponse) -> ActionResult:
    items = list(_cw_history(self.cloudwatch_backend))
    name = self._get_param("AlarmName")
    types = self._get_param("AlarmTypes") or []
    item_type = self._get_param("HistoryItemType")
    start = _naive_utc(self._get_param("StartDate"))
    end = _naive_utc(self._get_param("EndDate"))
    if name:
        items = [i for i in items if i["AlarmName"] == name]
    if types:
        items = [i for i in items if i["AlarmType"] in types]
    if item_type:
        items = [i for i in items if i["HistoryItemType"] == item_type]
    if start:
        items = [i for i in items if i["Timestamp"] >= start]
    if end:
        items = [i for i in items if i["Timestamp"] <= end]
    items.sort(key=lambda i: i["Timestamp"], reverse=self._get_param("ScanBy") != "TimestampAscending")
    offset = int(self._get_param("NextToken") or 0)
    limit = int(self._get_param("MaxRecords") or 100)
    page = items[offset:offset + limit]
    result: dict[str, Any] = {"AlarmHistoryItems": page}
    if offset + limit < len(items):
        result["NextToken"] = str(offset + limit)
    return ActionResult(result)


_orig_cw_describe_alarms = CloudWatchResponse.describe_alarms


def _cw_describe_alarms(self: CloudWatchResponse) -> ActionResult:
    """moto applies only one of its filters and ignores AlarmTypes; AWS combines them, and without
    AlarmTypes returns metric alarms only."""
    result = _orig_cw_describe_alarms(self).result
    types = self._get_param("AlarmTypes") or ["MetricAlarm"]
    state = self._get_param("StateValue")
    names = self._get_param("AlarmNames") or []
    prefix = self._get_param("AlarmNamePrefix")

    def keep(alarm: Any) -> bool:
        return ((not state or alarm.state_value == state) and (not names or alarm.name in names)
                and (not prefix or alarm.name.startswith(prefix)))

    return ActionResult({
        "MetricAlarms": [a for a in result["MetricAlarms"] if keep(a)] if "MetricAlarm" in types else [],  # type: ignore[index]
        "CompositeAlarms": [a for a in result["CompositeAlarms"] if keep(a)] if "CompositeAlarm" in types else [],  # type: ignore[index]
    })


CloudWatchResponse.describe_alarms = _cw_describe_alarms  # type: ignore[method-assign]
CloudWatchBackend.put_metric_alarm = _cw_put_metric_alarm  # type: ignore[method-assign]
CloudWatchBackend.set_alarm_state = _cw_set_alarm_state  # type: ignore[method-assign]
CloudWatchResponse.describe_alarm_history = _cw_describe_alarm_history  # type: ignore[attr-defined]
# moto's put_metric_alarm handler already reads AlarmRule "to re-use this method for composite
# alarms", it was just never registered under the composite name.
CloudWatchResponse.put_composite_alarm = CloudWatchResponse.put_metric_alarm  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# CodeDeploy: deployment targets, lifecycle hooks, stop, application revisions
# ---------------------------------------------------------------------------------------------

ECS_LIFECYCLE_EVENTS = [
    "BeforeInstall", "Install", "AfterInstall", "AllowTestTraffic", "AfterAllowTestTraffic",
    "BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic",
]
COMPLETED_DEPLOYMENT = {"Succeeded", "Failed", "Stopped"}


def _cd_state(deployment: Any) -> dict[str, Any]:
    """Extension state kept on moto's DeploymentInfo object (so moto's reset drops it)."""
    st = getattr(deployment, "_tb", None)
    if st is None:
        done = deployment.status == "Succeeded"
        st = {
            "events": [
                {"lifecycleEventName": name, "status": "Succeeded" if done else "Pending",
                 "startTime": None, "endTime": None}
                for name in ECS_LIFECYCLE_EVENTS
            ],
            "hooks": {},  # hook execution id -> {"event", "status", "reportedAt"}
            "lastUpdatedAt": deployment.create_time,
            "rollbackInfo": None,
            "errorInformation": None,
            "taskSetIds": (f"ecs-svc/{secrets.randbelow(10**19)}", f"ecs-svc/{secrets.randbelow(10**19)}"),
        }
        deployment._tb = st
    return st


def _new_hook_execution_id() -> str:
    """Real ids are long opaque base64 strings (with '=', '+', '/'); imitate that."""
    blob = json.dumps({"encryptedData": base64.b64encode(secrets.token_bytes(96)).decode(),
                       "ivParameterSpec": base64.b64encode(secrets.token_bytes(12)).decode(),
                       "materialSetSerial": 1})
    return base64.b64encode(blob.encode()).decode()


def _cd_event_status_summary(st: dict[str, Any]) -> str:
    statuses = [e["status"] for e in st["events"]]
    if "Failed" in statuses:
        return "Failed"
    if "InProgress" in statuses:
        return "InProgress"
    if all(s in ("Succeeded", "Skipped") for s in statuses):
        return "Succeeded"
    if any(s == "Succeeded" for s in statuses):
        return "InProgress"
    return "Pending"


def cd_move_lifecycle(deployment: Any, event_name: str) -> str:
    """Earlier events Succeeded, ``event_name`` InProgress, later Pending; new hook execution id."""
    if event_name not in ECS_LIFECYCLE_EVENTS:
        raise ValueError(f"lifecycleEventName must be one of {ECS_LIFECYCLE_EVENTS}")
    st = _cd_state(deployment)
    now = _now()
    index = ECS_LIFECYCLE_EVENTS.index(event_name)
    for i, event in enumerate(st["events"]):
        if i < index:
            if event["status"] != "Succeeded":
                event["status"] = "Succeeded"
                event["startTime"] = event["startTime"] or now
                event["endTime"] = event["endTime"] or now
        elif i == index:
            event.update(status="InProgress", startTime=now, endTime=None)
        else:
            event.update(status="Pending", startTime=None, endTime=None)
    for hook in st["hooks"].values():  # an execution nobody reported is over once the event moves
        if hook["status"] is None:
            hook["status"] = "Superseded"
    execution_id = _new_hook_execution_id()
    st["hooks"][execution_id] = {"event": event_name, "status": None, "reportedAt": None}
    st["lastUpdatedAt"] = now
    deployment.status = "InProgress"
    deployment.start_time = deployment.start_time or now
    deployment.complete_time = None
    _cd_recount(deployment)
    return execution_id


def _cd_recount(deployment: Any) -> None:
    status = _cd_event_status_summary(_cd_state(deployment))
    overview = {k: 0 for k in deployment.deployment_overview}
    overview[status if status in overview else "Pending"] = 1
    deployment.deployment_overview = overview


def _cd_backend(resp: CodeDeployResponse) -> Any:
    return codedeploy_backends[resp.current_account][resp.region]


def _cd_get_deployment(resp: CodeDeployResponse) -> Any:
    deployment_id = resp._get_param("deploymentId")
    if not deployment_id:
        raise _err("DeploymentIdRequiredException", "At least one deployment ID must be specified.")
    return _cd_backend(resp).get_deployment(deployment_id)


def _cd_target_id(deployment: Any) -> str | None:
    services = deployment.deployment_group.ecs_services or []
    if not services:
        return None
    return f"{services[0].get('clusterName')}:{services[0].get('serviceName')}"


def _cd_ecs_target(deployment: Any, region: str, account: str) -> dict[str, Any]:
    st = _cd_state(deployment)
    service = deployment.deployment_group.ecs_services[0]
    cluster, name = service.get("clusterName"), service.get("serviceName")
    desired = 1
    try:
        desired = ecs_backends[account][region]._get_service(cluster, name).desired_count or 1
    except Exception:  # noqa: BLE001 - the ECS service may not exist in moto
        pass
    events = {e["lifecycleEventName"]: e["status"] for e in st["events"]}
    target_groups = []
    for pair in (deployment.deployment_group.load_balancer_info or {}).get("targetGroupPairInfoList", []):
        target_groups = [tg.get("name") for tg in pair.get("targetGroups", [])]
        break
    task_sets = [
        {"identifer": st["taskSetIds"][0], "desiredCount": desired, "pendingCount": 0, "runningCount": desired,
         "status": "PRIMARY", "trafficWeight": 0.0 if events["AllowTraffic"] == "Succeeded" else 100.0,
         "targetGroup": {"name": target_groups[0]} if target_groups else None, "taskSetLabel": "Blue"},
    ]
    if events["Install"] == "Succeeded":
        task_sets.append(
            {"identifer": st["taskSetIds"][1], "desiredCount": desired, "pendingCount": 0, "runningCount": desired,
             "status": "ACTIVE", "trafficWeight": 100.0 if events["AllowTraffic"] == "Succeeded" else 0.0,
             "targetGroup": {"name": target_groups[1]} if len(target_groups) > 1 else None, "taskSetLabel": "Green"}
        )
    return {
        "deploymentId": deployment.deployment_id,
        "targetId": f"{cluster}:{name}",
        "targetArn": f"arn:aws:ecs:{region}:{account}:service/{cluster}/{name}",
        "lastUpdatedAt": st["lastUpdatedAt"],
        "lifecycleEvents": [{k: v for k, v in e.items() if v is not None} for e in st["events"]],
        "status": _cd_event_status_summary(st),
        "taskSetsInfo": task_sets,
    }


def _cd_list_deployment_targets(self: CodeDeployResponse) -> ActionResult:
    deployment = _cd_get_deployment(self)
    target_id = _cd_target_id(deployment)
    if deployment.application.compute_platform != "ECS" or not target_id:
        return ActionResult({"targetIds": []})
    statuses = (self._get_param("targetFilters") or {}).get("TargetStatus")
    target = _cd_ecs_target(deployment, self.region, self.current_account)
    if statuses and target["status"] not in statuses:
        return ActionResult({"targetIds": []})
    return ActionResult({"targetIds": [target_id]})


def _cd_batch_get_deployment_targets(self: CodeDeployResponse) -> ActionResult:
    deployment = _cd_get_deployment(self)
    target_ids = self._get_param("targetIds") or []
    if not target_ids:
        raise _err("DeploymentTargetIdRequiredException", "A deployment target ID must be specified.")
    if len(target_ids) > 25:
        raise _err("DeploymentTargetListSizeExceededException", "The maximum number of targets is 25.")
    known = _cd_target_id(deployment)
    targets = []
    for target_id in target_ids:
        if deployment.application.compute_platform != "ECS" or target_id != known:
            raise _err("DeploymentTargetDoesNotExistException",
                       f"The provided target ID does not belong to the deployment {deployment.deployment_id}.")
        targets.append({"deploymentTargetType": "ECSTarget",
                        "ecsTarget": _cd_ecs_target(deployment, self.region, self.current_account)})
    return ActionResult({"deploymentTargets": targets})


def _cd_put_lifecycle_event_hook_execution_status(self: CodeDeployResponse) -> ActionResult:
    deployment = _cd_get_deployment(self)
    execution_id = self._get_param("lifecycleEventHookExecutionId")
    status = self._get_param("status")
    if status not in ("Succeeded", "Failed"):
        raise _err("InvalidLifecycleEventHookExecutionStatusException",
                   f"The specified status {status} is invalid: only Succeeded and Failed can be reported.")
    st = _cd_state(deployment)
    hook = st["hooks"].get(execution_id)
    if hook is None:
        raise _err("InvalidLifecycleEventHookExecutionIdException",
                   f"The lifecycle event hook execution ID {execution_id} is not valid for deployment {deployment.deployment_id}.")
    event = next(e for e in st["events"] if e["lifecycleEventName"] == hook["event"])
    if hook["status"] is not None or event["status"] != "InProgress" or deployment.status in COMPLETED_DEPLOYMENT:
        raise _err("LifecycleEventAlreadyCompletedException",
                   f"The lifecycle event {hook['event']} of deployment {deployment.deployment_id} is already completed.")
    now = _now()
    hook.update(status=status, reportedAt=now)
    event.update(status=status, endTime=now)
    st["lastUpdatedAt"] = now
    if status == "Failed":
        deployment.status = "Failed"
        deployment.complete_time = now
        st["errorInformation"] = {"code": "HOOK_EXECUTION_FAILURE",
                                  "message": f"The deployment failed because a specified lifecycle event hook ({hook['event']}) failed."}
        for e in st["events"]:
            if e["status"] == "Pending":
                e["status"] = "Skipped"
        rollback = deployment.auto_rollback_configuration or deployment.deployment_group.auto_rollback_configuration or {}
        if rollback.get("enabled") and "DEPLOYMENT_FAILURE" in (rollback.get("events") or []):
            _cd_start_rollback(_cd_backend(self), deployment, "Deployment failed: a lifecycle event hook failed.")
    elif all(e["status"] in ("Succeeded", "Skipped") for e in st["events"]):
        deployment.status = "Succeeded"
        deployment.complete_time = now
    _cd_recount(deployment)
    return ActionResult({"lifecycleEventHookExecutionId": execution_id})


def _cd_start_rollback(backend: Any, deployment: Any, message: str) -> str:
    """A rollback deployment (creator codeDeployRollback) like CodeDeploy's auto-rollback."""
    rollback_id = backend.create_deployment(
        application_name=deployment.application_name,
        deployment_group_name=deployment.deployment_group_name,
        revision=getattr(deployment, "_tb_previous_revision", None) or deployment.revision,
        description=f"Rollback of {deployment.deployment_id}",
    )
    rollback = backend.deployments[rollback_id]
    rollback.creator = "codeDeployRollback"
    rollback.status = "InProgress"
    rollback.start_time = _now()
    _cd_state(rollback)["rollbackInfo"] = {"rollbackTriggeringDeploymentId": deployment.deployment_id,
                                           "rollbackMessage": f"Rolling back deployment {deployment.deployment_id}"}
    _cd_state(deployment)["rollbackInfo"] = {"rollbackDeploymentId": rollback_id, "rollbackMessage": message}
    return rollback_id


def _cd_stop_deployment(self: CodeDeployResponse) -> ActionResult:
    deployment = _cd_get_deployment(self)
    if deployment.status in COMPLETED_DEPLOYMENT:
        raise _err("DeploymentAlreadyCompletedException",
                   f"The deployment {deployment.deployment_id} has already completed ({deployment.status}).")
    st = _cd_state(deployment)
    now = _now()
    deployment.status = "Stopped"
    deployment.complete_time = now
    st["lastUpdatedAt"] = now
    st["errorInformation"] = {"code": "MANUAL_STOP", "message": "The deployment was stopped by a user request."}
    for event in st["events"]:
        if event["status"] == "InProgress":
            event.update(status="Failed", endTime=now)
        elif event["status"] == "Pending":
            event["status"] = "Skipped"
    _cd_recount(deployment)
    auto_rollback = self._get_param("autoRollbackEnabled")
    message = "Deployment stopped."
    if auto_rollback:
        rollback_id = _cd_start_rollback(_cd_backend(self), deployment, "Deployment stopped by user; rolling back.")
        message = f"Deployment stopped; rollback deployment {rollback_id} started."
    return ActionResult({"status": "Succeeded", "statusMessage": message})


def _cd_same_revision(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if (a or {}).get("revisionType") != (b or {}).get("revisionType"):
        return False
    kind = a.get("revisionType")
    if kind == "AppSpecContent":
        return (a.get("appSpecContent") or {}).get("content") == (b.get("appSpecContent") or {}).get("content")
    if kind == "String":
        return (a.get("string") or {}).get("content") == (b.get("string") or {}).get("content")
    if kind == "S3":
        keys = ("bucket", "key", "bundleType", "version", "eTag")
        return all((a.get("s3Location") or {}).get(k) == (b.get("s3Location") or {}).get(k) for k in keys if (a.get("s3Location") or {}).get(k))
    return a == b


def _cd_get_application_revision(self: CodeDeployResponse) -> ActionResult:
    name = self._get_param("applicationName")
    if not name:
        raise _err("ApplicationNameRequiredException", "The minimum number of required application names was not specified.")
    revision = self._get_param("revision")
    if not revision:
        raise _err("RevisionRequiredException", "The revision ID was not specified.")
    backend = _cd_backend(self)
    backend.get_application(name)
    used = [d for d in backend.deployments.values() if d.application_name == name and _cd_same_revision(revision, d.revision)]
    if not used:
        raise _err("RevisionDoesNotExistException", "The named revision does not exist with the IAM user or Amazon Web Services account.")
    used.sort(key=lambda d: d.create_time)
    return ActionResult({
        "applicationName": name,
        "revision": used[-1].revision,
        "revisionInfo": {
            "description": used[-1].description,
            "deploymentGroups": sorted({d.deployment_group_name for d in used}),
            "firstUsedTime": used[0].create_time,
            "lastUsedTime": used[-1].create_time,
            "registerTime": used[0].create_time,
        },
    })


_orig_deployment_info_init = DeploymentInfo.__init__


def _deployment_info_init(self: DeploymentInfo, *args: Any, **kwargs: Any) -> None:
    """moto's deployment ids are UUIDs; CodeDeploy's look like d-A1B2C3D4E."""
    _orig_deployment_info_init(self, *args, **kwargs)
    self.deployment_id = "d-" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(9))


DeploymentInfo.__init__ = _deployment_info_init  # type: ignore[method-assign]

_orig_deployment_info = codedeploy_responses._deployment_info


def _cd_deployment_info(deployment: Any) -> dict[str, Any]:
    """moto's GetDeployment/BatchGetDeployments view plus the fields moto leaves empty."""
    info = _orig_deployment_info(deployment)
    st = getattr(deployment, "_tb", None)
    if st:
        if st["rollbackInfo"]:
            info["rollbackInfo"] = st["rollbackInfo"]
        if st["errorInformation"]:
            info["errorInformation"] = st["errorInformation"]
    if not info.get("rollbackInfo"):
        info.pop("rollbackInfo", None)
    if not info.get("errorInformation"):
        info.pop("errorInformation", None)
    revision = info.get("revision") or {}
    content = (revision.get("appSpecContent") or {}).get("content")
    if content is not None and not revision["appSpecContent"].get("sha256"):
        info["revision"] = {**revision, "appSpecContent": {**revision["appSpecContent"],
                                                           "sha256": hashlib.sha256(content.encode()).hexdigest()}}
    return info


codedeploy_responses._deployment_info = _cd_deployment_info
CodeDeployResponse.list_deployment_targets = _cd_list_deployment_targets  # type: ignore[attr-defined]
CodeDeployResponse.batch_get_deployment_targets = _cd_batch_get_deployment_targets  # type: ignore[attr-defined]
CodeDeployResponse.put_lifecycle_event_hook_execution_status = _cd_put_lifecycle_event_hook_execution_status  # type: ignore[attr-defined]
CodeDeployResponse.stop_deployment = _cd_stop_deployment  # type: ignore[attr-defined]
CodeDeployResponse.get_application_revision = _cd_get_application_revision  # type: ignore[attr-defined]

_orig_cd_list_deployments = CodeDeployResponse.list_deployments


def _cd_list_deployments(self: CodeDeployResponse) -> ActionResult:
    """moto compares ``createTimeRange`` with datetimes, but awsJson clients send epoch seconds:
    convert them first (else every filtered ListDeployments fails with a TypeError)."""
    time_range = self._get_param("createTimeRange")
    if isinstance(time_range, dict):
        converted = {k: _naive_utc(v) for k, v in time_range.items() if v is not None}
        original = self._get_param
        self._get_param = lambda name, default=None: converted if name == "createTimeRange" else original(name, default)  # type: ignore[method-assign]
    return _orig_cd_list_deployments(self)


CodeDeployResponse.list_deployments = _cd_list_deployments  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------
# ECS: service revisions and service deployments
# ---------------------------------------------------------------------------------------------

ECS_DEPLOYMENT_ACTIVE = {"PENDING", "IN_PROGRESS"}
ECS_DEPLOYMENT_STATUSES = {"PENDING", "SUCCESSFUL", "STOPPED", "STOP_REQUESTED", "IN_PROGRESS", "ROLLBACK_REQUESTED",
                           "ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"}
ECS_TERMINAL = {"SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"}


def _ecs_ext(backend: Any) -> dict[str, Any]:
    if not hasattr(backend, "_tb_ecs"):
        backend._tb_ecs = {"revisions": {}, "deployments": {}}
    return backend._tb_ecs


def _fake_digest(image: str) -> str:
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def ecs_new_revision(backend: Any, service: Any) -> dict[str, Any]:
    """A service revision snapshot of the service as it is now."""
    images = []
    try:
        task_def = backend.describe_task_definition(service.task_definition)
        for container in task_def.container_definitions:
            images.append({"containerName": container.get("name"), "image": container.get("image"),
                           "imageDigest": _fake_digest(container.get("image") or "")})
    except Exception:  # noqa: BLE001
        pass
    arn = (f"arn:aws:ecs:{service.region_name}:{backend.account_id}:service-revision/"
           f"{service.cluster_name}/{service.name}/{secrets.randbelow(9 * 10**18) + 10**18}")
    revision = {
        "serviceRevisionArn": arn,
        "serviceArn": service.arn,
        "clusterArn": service.cluster_arn,
        "taskDefinition": service.task_definition,
        "launchType": service.launch_type,
        "platformVersion": service.platform_version or ("LATEST" if service.launch_type == "FARGATE" else None),
        "platformFamily": "Linux" if service.launch_type == "FARGATE" else None,
        "loadBalancers": json.loads(json.dumps(service.load_balancers or [])),
        "networkConfiguration": service.network_configuration or None,
        "containerImages": images,
        "guardDutyEnabled": False,
        "createdAt": _now(),
    }
    revision = {k: v for k, v in revision.items() if v is not None}
    _ecs_ext(backend)["revisions"][arn] = revision
    return revision


def _rev_summary(service: Any, arn: str, running: bool) -> dict[str, Any]:
    count = service.desired_count or 0
    return {"arn": arn, "requestedTaskCount": count, "runningTaskCount": count if running else 0, "pendingTaskCount": 0}


def ecs_new_deployment(backend: Any, service: Any, source: dict[str, Any] | None, target: dict[str, Any], status: str) -> dict[str, Any]:
    now = _now()
    arn = (f"arn:aws:ecs:{service.region_name}:{backend.account_id}:service-deployment/"
           f"{service.cluster_name}/{service.name}/{secrets.token_hex(11)}")
    deployment_config = getattr(service, "deployment_configuration", None) or {}
    deployment = {
        "serviceDeploymentArn": arn,
        "serviceArn": service.arn,
        "clusterArn": service.cluster_arn,
        "createdAt": now,
        "startedAt": now,
        "updatedAt": now,
        "sourceServiceRevisions": [_rev_summary(service, source["serviceRevisionArn"], True)] if source else [],
        "targetServiceRevision": _rev_summary(service, target["serviceRevisionArn"], status == "SUCCESSFUL"),
        "status": status,
        "deploymentConfiguration": deployment_config or None,
        "deploymentCircuitBreaker": {"status": "MONITORING" if (deployment_config.get("deploymentCircuitBreaker") or {}).get("enable") else "DISABLED"},
        "alarms": {"status": "MONITORING" if (deployment_config.get("alarms") or {}).get("enable") else "DISABLED"},
    }
    if status in ECS_TERMINAL:
        deployment["finishedAt"] = now
    deployment = {k: v for k, v in deployment.items() if v is not None}
    ext = _ecs_ext(backend)
    ext["deployments"][arn] = deployment
    service.current_service_deployment = arn
    service.current_service_revisions = [deployment["targetServiceRevision"]] + (
        deployment["sourceServiceRevisions"] if status not in ECS_TERMINAL else [])
    return deployment


def ecs_set_deployment_status(deployment: dict[str, Any], status: str, reason: str | None = None, stage: str | None = None) -> None:
    now = _now()
    deployment["status"] = status
    deployment["updatedAt"] = now
    if reason:
        deployment["statusReason"] = reason
    if stage:
        deployment["lifecycleStage"] = stage
    if status in ECS_TERMINAL:
        deployment.setdefault("finishedAt", now)
        if status == "STOPPED":
            deployment.setdefault("stoppedAt", now)
    else:
        deployment.pop("finishedAt", None)
    if status.startswith("ROLLBACK") and deployment.get("sourceServiceRevisions"):
        deployment.setdefault("rollback", {"reason": reason or "Rollback requested", "startedAt": now,
                                           "serviceRevisionArn": deployment["sourceServiceRevisions"][0]["arn"]})


def _ecs_service_of(resp: EC2ContainerServiceResponse) -> Any:
    return resp.ecs_backend._get_service(resp._get_param("cluster") or "default", resp._get_param("service"))


def _ecs_list_service_deployments(self: EC2ContainerServiceResponse) -> ActionResult:
    if not self._get_param("service"):
        raise _err("InvalidParameterException", "service is required.")
    service = _ecs_service_of(self)
    statuses = self._get_param("status") or []
    created = self._get_param("createdAt") or {}
    before, after = _naive_utc(created.get("before")), _naive_utc(created.get("after"))
    items = [d for d in _ecs_ext(self.ecs_backend)["deployments"].values() if d["serviceArn"] == service.arn]
    if statuses:
        items = [d for d in items if d["status"] in statuses]
    if before:
        items = [d for d in items if d["createdAt"] <= before]
    if after:
        items = [d for d in items if d["createdAt"] >= after]
    items.sort(key=lambda d: d["createdAt"], reverse=True)
    offset = int(self._get_param("nextToken") or 0)
    limit = int(self._get_param("maxResults") or 20)
    brief_keys = ("serviceDeploymentArn", "serviceArn", "clusterArn", "startedAt", "createdAt", "finishedAt", "status", "statusReason")
    page = []
    for d in items[offset:offset + limit]:
        brief = {k: d[k] for k in brief_keys if k in d}
        brief["targetServiceRevisionArn"] = d["targetServiceRevision"]["arn"]
        page.append(brief)
    result: dict[str, Any] = {"serviceDeployments": page}
    if offset + limit < len(items):
        result["nextToken"] = str(offset + limit)
    return ActionResult(result)


def _ecs_describe_service_deployments(self: EC2ContainerServiceResponse) -> ActionResult:
    arns = self._get_param("serviceDeploymentArns") or []
    if not arns:
        raise _err("InvalidParameterException", "serviceDeploymentArns must not be empty.")
    known = _ecs_ext(self.ecs_backend)["deployments"]
    found = [known[a] for a in arns if a in known]
    failures = [{"arn": a, "reason": "MISSING"} for a in arns if a not in known]
    return ActionResult({"serviceDeployments": found, "failures": failures})


def _ecs_stop_service_deployment(self: EC2ContainerServiceResponse) -> ActionResult:
    arn = self._get_param("serviceDeploymentArn")
    stop_type = self._get_param("stopType") or "ROLLBACK"
    if stop_type not in ("ROLLBACK", "ABORT"):
        raise _err("InvalidParameterException", f"Invalid stopType {stop_type}: must be ROLLBACK or ABORT.")
    deployment = _ecs_ext(self.ecs_backend)["deployments"].get(arn)
    if deployment is None:
        raise _err("ServiceDeploymentNotFoundException", f"The service deployment {arn} was not found.")
    if deployment["status"] not in ECS_DEPLOYMENT_ACTIVE:
        raise _err("ConflictException",
                   f"The service deployment is in status {deployment['status']} and cannot be stopped.")
    if stop_type == "ROLLBACK":
        ecs_set_deployment_status(deployment, "ROLLBACK_REQUESTED", "Rollback requested by StopServiceDeployment")
    else:
        ecs_set_deployment_status(deployment, "STOP_REQUESTED", "Stop requested by StopServiceDeployment")
    return ActionResult({"serviceDeploymentArn": arn})


def _ecs_describe_service_revisions(self: EC2ContainerServiceResponse) -> ActionResult:
    arns = self._get_param("serviceRevisionArns") or []
    if not arns:
        raise _err("InvalidParameterException", "serviceRevisionArns must not be empty.")
    known = _ecs_ext(self.ecs_backend)["revisions"]
    return ActionResult({"serviceRevisions": [known[a] for a in arns if a in known],
                         "failures": [{"arn": a, "reason": "MISSING"} for a in arns if a not in known]})


_orig_ecs_create_service = EC2ContainerServiceResponse.create_service
_orig_ecs_update_service = EC2ContainerServiceResponse.update_service


def _ecs_create_service(self: EC2ContainerServiceResponse) -> ActionResult:
    result = _orig_ecs_create_service(self)
    service = result.result["service"]  # type: ignore[index]
    deployment_config = self._get_param("deploymentConfiguration")
    if deployment_config:
        service.deployment_configuration = deployment_config  # moto drops it; the serializer picks it up
    if (service.deployment_controller or {}).get("type", "ECS") == "ECS":
        revision = ecs_new_revision(self.ecs_backend, service)
        ecs_new_deployment(self.ecs_backend, service, None, revision, "SUCCESSFUL")
    return result


def _ecs_update_service(self: EC2ContainerServiceResponse) -> ActionResult:
    service = _ecs_service_of(self)
    new_task_def = self._get_param("taskDefinition")
    controller = (service.deployment_controller or {}).get("type", "ECS")
    if controller == "CODE_DEPLOY" and new_task_def and new_task_def != service.task_definition:
        raise _err("InvalidParameterException",
                   "Unable to update task definition on services with a CODE_DEPLOY deployment controller. "
                   "Use AWS CodeDeploy to trigger a new deployment.")
    old_task_def = service.task_definition
    ext = _ecs_ext(self.ecs_backend)
    previous = ext["deployments"].get(getattr(service, "current_service_deployment", None) or "")
    result = _orig_ecs_update_service(self)
    if controller == "ECS" and (service.task_definition != old_task_def or self._get_param("forceNewDeployment")):
        source = ext["revisions"].get(previous["targetServiceRevision"]["arn"]) if previous else None
        for d in ext["deployments"].values():
            if d["serviceArn"] == service.arn and d["status"] in ECS_DEPLOYMENT_ACTIVE:
                ecs_set_deployment_status(d, "STOPPED", "Superseded by a newer service deployment")
        target = ecs_new_revision(self.ecs_backend, service)
        deployment = ecs_new_deployment(self.ecs_backend, service, source, target, "IN_PROGRESS")
        deployment["lifecycleStage"] = "RECONCILE_SERVICE"
    return result


EC2ContainerServiceResponse.create_service = _ecs_create_service  # type: ignore[method-assign]
EC2ContainerServiceResponse.update_service = _ecs_update_service  # type: ignore[method-assign]
EC2ContainerServiceResponse.list_service_deployments = _ecs_list_service_deployments  # type: ignore[attr-defined]
EC2ContainerServiceResponse.describe_service_deployments = _ecs_describe_service_deployments  # type: ignore[attr-defined]
EC2ContainerServiceResponse.stop_service_deployment = _ecs_stop_service_deployment  # type: ignore[attr-defined]
EC2ContainerServiceResponse.describe_service_revisions = _ecs_describe_service_revisions  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# CodePipeline: job results, pipeline state
# ---------------------------------------------------------------------------------------------

JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FAILURE_TYPES = {"JobFailed", "ConfigurationError", "PermissionError", "RevisionOutOfSync",
                 "RevisionUnavailable", "SystemUnavailable"}


def _cp_jobs(resp: CodePipelineResponse) -> dict[str, Any]:
    backend = codepipeline_backends[resp.current_account][resp.region]
    if not hasattr(backend, "_tb_jobs"):
        backend._tb_jobs = {}
    return backend._tb_jobs


def _cp_report(resp: CodePipelineResponse, outcome: str, details: dict[str, Any]) -> EmptyResult:
    job_id = resp._get_param("jobId")
    if not job_id or not JOB_ID_RE.match(job_id):
        raise _err("ValidationException",
                   f"1 validation error detected: Value '{job_id}' at 'jobId' failed to satisfy constraint: "
                   "Member must satisfy regular expression pattern: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    jobs = _cp_jobs(resp)
    if job_id in jobs:
        raise _err("InvalidJobStateException", f"Job {job_id} is in state {jobs[job_id]['outcome']} and cannot be updated.")
    jobs[job_id] = {"outcome": outcome, "details": details, "at": _now()}
    return EmptyResult()


def _cp_put_job_success_result(self: CodePipelineResponse) -> EmptyResult:
    details = {k: self._get_param(k) for k in ("currentRevision", "continuationToken", "executionDetails", "outputVariables")}
    if details["continuationToken"] and details["outputVariables"]:
        raise _err("ValidationException", "outputVariables can only be set on the final success (without continuationToken).")
    return _cp_report(self, "Succeeded", details)


def _cp_put_job_failure_result(self: CodePipelineResponse) -> EmptyResult:
    failure = self._get_param("failureDetails") or {}
    if failure.get("type") not in FAILURE_TYPES or not failure.get("message"):
        raise _err("ValidationException", f"failureDetails needs a type in {sorted(FAILURE_TYPES)} and a message.")
    return _cp_report(self, "Failed", {"failureDetails": failure})


def _cp_get_pipeline_state(self: CodePipelineResponse) -> ActionResult:
    name = self._get_param("name")
    backend = codepipeline_backends[self.current_account][self.region]
    pipeline, _ = backend.get_pipeline(name)
    model = backend.pipelines[name]
    latest = list(model.executions.values())[-1] if model.executions else None
    stages = []
    for stage in pipeline["stages"]:
        state: dict[str, Any] = {
            "stageName": stage["name"],
            "inboundTransitionState": {"enabled": True},
            "actionStates": [{"actionName": a["name"]} for a in stage.get("actions", [])],
        }
        if latest is not None:
            state["latestExecution"] = {"pipelineExecutionId": latest.pipeline_execution_id, "status": latest.status}
            for action in state["actionStates"]:
                action["latestExecution"] = {"status": latest.status, "lastStatusChange": latest.last_update_time}
        stages.append(state)
    return ActionResult({"pipelineName": name, "pipelineVersion": pipeline.get("version", 1), "stageStates": stages,
                         "created": model._created, "updated": model._updated})


CodePipelineResponse.put_job_success_result = _cp_put_job_success_result  # type: ignore[attr-defined]
CodePipelineResponse.put_job_failure_result = _cp_put_job_failure_result  # type: ignore[attr-defined]
CodePipelineResponse.get_pipeline_state = _cp_get_pipeline_state  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Scenario seeding (test-only routes).  Uses real boto3 calls to this very server, marked with
# INTERNAL_HEADER so they are neither recorded nor faulted; extension state is set directly.
# ---------------------------------------------------------------------------------------------


class Seeder:
    def __init__(self, port: int) -> None:
        self.endpoint = f"http://127.0.0.1:{port}"
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the botocore models now (ec2's takes about a second) rather than in the first scenario."""
        for name in ("ec2", "elbv2", "ecs", "codedeploy"):
            self.client(name)

    def client(self, name: str) -> Any:
        with self._lock:
            if name not in self._clients:
                client = boto3.session.Session().client(
                    name, endpoint_url=self.endpoint, region_name=REGION,
                    aws_access_key_id="testbed", aws_secret_access_key="testbed",
                    config=botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=30,
                                                  max_pool_connections=32),
                )
                client.meta.events.register("before-sign.*.*", _mark_internal)
                self._clients[name] = client
            return self._clients[name]

    @staticmethod
    def _names(kind: str, name: str) -> dict[str, str]:
        """Resource names derived from (scenario kind, name): distinct names never collide."""
        if not name or not isinstance(name, str):
            raise ValueError("name (a unique string) is required")
        slug = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-").lower() or "x"
        h = hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:6]
        short = f"{slug[:17].rstrip('-')}-{h}"  # ELB / target group names: <= 32 chars, no "--"
        return {
            "slug": f"{slug[:60]}-{h}",
            "cluster": f"{kind}-{slug[:60]}-{h}",
            "lb": f"{kind}-{short}",
            "tg_blue": f"{kind}b-{short}",
            "tg_green": f"{kind}g-{short}",
        }

    def _network(self) -> tuple[str, list[str], str]:
        ec2 = self.client("ec2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        by_az: dict[str, str] = {}
        for subnet in subnets:
            by_az.setdefault(subnet["AvailabilityZone"], subnet["SubnetId"])
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                       {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
        return vpc, sorted(by_az.values())[:2], groups[0]["GroupId"]

    def _load_balancer(self, n: dict[str, str], container_port: int, dns_name: str | None) -> dict[str, Any]:
        elb = self.client("elbv2")
        vpc, subnets, sg = self._network()
        lb = elb.create_load_balancer(Name=n["lb"], Subnets=subnets, SecurityGroups=[sg], Scheme="internet-facing",
                                      Type="application", IpAddressType="ipv4")["LoadBalancers"][0]
        if dns_name:  # e.g. "localhost", so a client can really connect to the listener ports
            elbv2_backends[ACCOUNT][REGION].load_balancers[lb["LoadBalancerArn"]].dns_name = dns_name
            lb["DNSName"] = dns_name
        tgs = [
            elb.create_target_group(Name=n[key], Protocol="HTTP", Port=container_port, VpcId=vpc, TargetType="ip",
                                    HealthCheckPath="/")["TargetGroups"][0]
            for key in ("tg_blue", "tg_green")
        ]
        return {"lb": lb, "tgs": tgs, "subnets": subnets, "sg": sg}

    def _task_definitions(self, family: str, container: str, port: int, images: list[str]) -> list[str]:
        ecs = self.client("ecs")
        arns = []
        for image in images:
            arns.append(ecs.register_task_definition(
                family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
                executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole",
                containerDefinitions=[{"name": container, "image": image, "essential": True,
                                       "portMappings": [{"containerPort": port, "protocol": "tcp"}]}],
            )["taskDefinition"]["taskDefinitionArn"])
        return arns

    # -- CodeDeploy blue/green --------------------------------------------------------------

    def codedeploy(self, spec: dict[str, Any]) -> dict[str, Any]:
        n = self._names("cd", spec.get("name"))
        container = spec.get("container", "web")
        port = int(spec.get("container_port", 8080))
        prod_port, test_port = int(spec["prod_port"]), int(spec["test_port"])
        event = spec.get("lifecycle_event", "AfterAllowTestTraffic")
        if event not in ECS_LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycle_event must be one of {ECS_LIFECYCLE_EVENTS}")
        appspec_format = spec.get("appspec_format", "json")
        if appspec_format not in ("json", "yaml"):
            raise ValueError("appspec_format must be json or yaml")
        image_from = spec.get("image_from", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app:v1")
        image_to = spec.get("image_to", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app:v2")

        net = self._load_balancer(n, port, spec.get("lb_dns_name"))
        elb, ecs, cd = self.client("elbv2"), self.client("ecs"), self.client("codedeploy")
        lb_arn = net["lb"]["LoadBalancerArn"]
        tg_blue, tg_green = (tg["TargetGroupArn"] for tg in net["tgs"])
        prod = elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=prod_port,
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_blue}])["Listeners"][0]
        test = elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=test_port,
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_blue}])["Listeners"][0]
        cluster = n["cluster"]
        service_name = f"{n['slug']}-svc"
        ecs.create_cluster(clusterName=cluster)
        td_from, td_to = self._task_definitions(cluster, container, port, [image_from, image_to])
        ecs.create_service(
            cluster=cluster, serviceName=service_name, taskDefinition=td_from, desiredCount=2, launchType="FARGATE",
            deploymentController={"type": "CODE_DEPLOY"},
            networkConfiguration={"awsvpcConfiguration": {"subnets": net["subnets"], "securityGroups": [net["sg"]],
                                                          "assignPublicIp": "DISABLED"}},
            loadBalancers=[{"targetGroupArn": tg_blue, "containerName": container, "containerPort": port}],
        )
        application = f"AppECS-{cluster}"
        group = f"DgpECS-{cluster}"
        cd.create_application(applicationName=application, computePlatform="ECS")
        cd.create_deployment_group(
            applicationName=application, deploymentGroupName=group,
            deploymentConfigName="CodeDeployDefault.ECSAllAtOnce",
            serviceRoleArn=f"arn:aws:iam::{ACCOUNT}:role/ecsCodeDeployRole",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            blueGreenDeploymentConfiguration={
                "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 5},
                "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0},
            },
            autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]},
            loadBalancerInfo={"targetGroupPairInfoList": [{
                "targetGroups": [{"name": n["tg_blue"]}, {"name": n["tg_green"]}],
                "prodTrafficRoute": {"listenerArns": [prod["ListenerArn"]]},
                "testTrafficRoute": {"listenerArns": [test["ListenerArn"]]},
            }]},
            ecsServices=[{"serviceName": service_name, "clusterName": cluster}],
        )
        hook_function = f"CodeDeployHook_{n['slug']}"[:64]
        content = _appspec(appspec_format, td_to, container, port, event, hook_function)
        deployment_id = cd.create_deployment(
            applicationName=application, deploymentGroupName=group,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": content}},
            description=f"testbed scenario {spec.get('name')}",
        )["deploymentId"]
        deployment = codedeploy_backends[ACCOUNT][REGION].deployments[deployment_id]
        deployment._tb_previous_revision = {"revisionType": "AppSpecContent", "appSpecContent": {
            "content": _appspec(appspec_format, td_from, container, port, event, hook_function)}}
        previous_id = None
        if spec.get("previous_deployment"):
            # The release before this one: the old revision, deployed and Succeeded a day ago.
            previous_id = cd.create_deployment(
                applicationName=application, deploymentGroupName=group, revision=deployment._tb_previous_revision,
                description=f"testbed scenario {spec.get('name')} (previous release)",
            )["deploymentId"]
            previous = codedeploy_backends[ACCOUNT][REGION].deployments[previous_id]
            previous.create_time = _now() - dt.timedelta(days=1)
            previous.start_time = previous.create_time
            previous.complete_time = previous.create_time + dt.timedelta(minutes=10)
            previous.status = "Succeeded"
            _cd_state(previous)
        deployment._tb_listeners = {"prod": prod["ListenerArn"], "test": test["ListenerArn"],
                                    "blue": tg_blue, "green": tg_green}
        hook_id = cd_move_lifecycle(deployment, event)
        self.sync_codedeploy_listeners(deployment)
        return {
            **({"previousDeploymentId": previous_id} if previous_id else {}),
            "deploymentId": deployment_id,
            "hookExecutionId": hook_id,
            "application": application,
            "deploymentGroup": group,
            "cluster": cluster,
            "service": service_name,
            "loadBalancerArn": lb_arn,
            "loadBalancerDns": net["lb"]["DNSName"],
            "prodListenerArn": prod["ListenerArn"],
            "testListenerArn": test["ListenerArn"],
            "taskDefinitionFrom": td_from,
            "taskDefinitionTo": td_to,
        }

    def sync_codedeploy_listeners(self, deployment: Any) -> None:
        """After AllowTestTraffic the test listener serves green; after AllowTraffic, production does."""
        listeners = getattr(deployment, "_tb_listeners", None)
        if not listeners:
            return
        events = {e["lifecycleEventName"]: e["status"] for e in _cd_state(deployment)["events"]}
        elb = self.client("elbv2")
        for route, event in (("test", "AllowTestTraffic"), ("prod", "AllowTraffic")):
            tg = listeners["green"] if events[event] == "Succeeded" else listeners["blue"]
            elb.modify_listener(ListenerArn=listeners[route], DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])

    def codedeploy_lifecycle(self, spec: dict[str, Any]) -> dict[str, Any]:
        deployment_id = spec.get("deploymentId")
        deployment = codedeploy_backends[ACCOUNT][REGION].deployments.get(deployment_id)
        if deployment is None:
            raise LookupError(f"unknown deploymentId {deployment_id}")
        event = spec.get("lifecycleEventName")
        hook_id = cd_move_lifecycle(deployment, event)
        self.sync_codedeploy_listeners(deployment)
        return {"hookExecutionId": hook_id, "lifecycleEventName": event}

    # -- ECS native blue/green ----------------------------------------------------------------

    def ecs(self, spec: dict[str, Any]) -> dict[str, Any]:
        n = self._names("ecs", spec.get("name"))
        container = spec.get("container", "web")
        port = int(spec.get("container_port", 8080))
        prod_port, test_port = int(spec["prod_port"]), int(spec["test_port"])
        status = spec.get("deployment_status", "IN_PROGRESS")
        if status not in ECS_DEPLOYMENT_STATUSES:
            raise ValueError(f"deployment_status must be one of {sorted(ECS_DEPLOYMENT_STATUSES)}")
        image_from = spec.get("image_from", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app:v1")
        image_to = spec.get("image_to", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app:v2")

        net = self._load_balancer(n, port, spec.get("lb_dns_name"))
        elb, ecs = self.client("elbv2"), self.client("ecs")
        lb_arn = net["lb"]["LoadBalancerArn"]
        tg_blue, tg_green = (tg["TargetGroupArn"] for tg in net["tgs"])
        listeners, rules = {}, {}
        for route, listener_port, weights in (("prod", prod_port, (100, 0)), ("test", test_port, (0, 100))):
            listeners[route] = elb.create_listener(
                LoadBalancerArn=lb_arn, Protocol="HTTP", Port=listener_port,
                DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
            )["Listeners"][0]["ListenerArn"]
            rules[route] = elb.create_rule(
                ListenerArn=listeners[route], Priority=1,
                Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}],
                Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                    {"TargetGroupArn": tg_blue, "Weight": weights[0]}, {"TargetGroupArn": tg_green, "Weight": weights[1]}]}}],
            )["Rules"][0]["RuleArn"]
        cluster = n["cluster"]
        service_name = f"{n['slug']}-svc"
        role = f"arn:aws:iam::{ACCOUNT}:role/ecsInfrastructureRoleForLoadBalancers"
        ecs.create_cluster(clusterName=cluster)
        td_from, td_to = self._task_definitions(cluster, container, port, [image_from, image_to])
        strategy = spec.get("strategy", "BLUE_GREEN")
        if strategy not in ("ROLLING", "BLUE_GREEN", "LINEAR", "CANARY"):
            raise ValueError("strategy must be ROLLING, BLUE_GREEN, LINEAR or CANARY")
        load_balancer: dict[str, Any] = {"targetGroupArn": tg_blue, "containerName": container, "containerPort": port}
        if strategy != "ROLLING":
            load_balancer["advancedConfiguration"] = {"alternateTargetGroupArn": tg_green,
                                                      "productionListenerRule": rules["prod"],
                                                      "testListenerRule": rules["test"], "roleArn": role}
        service = ecs.create_service(
            cluster=cluster, serviceName=service_name, taskDefinition=td_from, desiredCount=2, launchType="FARGATE",
            deploymentController={"type": "ECS"},
            deploymentConfiguration={"strategy": "ROLLING", "maximumPercent": 200, "minimumHealthyPercent": 100,
                                     "deploymentCircuitBreaker": {"enable": True, "rollback": True}}
            if strategy == "ROLLING" else {
                "strategy": strategy, "bakeTimeInMinutes": 5, "maximumPercent": 200, "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "lifecycleHooks": [{
                    "targetType": "AWS_LAMBDA",
                    "hookTargetArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{n['slug']}-hook"[:140],
                    "roleArn": f"arn:aws:iam::{ACCOUNT}:role/ecsLifecycleHookRole",
                    "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
                }],
            },
            networkConfiguration={"awsvpcConfiguration": {"subnets": net["subnets"], "securityGroups": [net["sg"]],
                                                          "assignPublicIp": "DISABLED"}},
            loadBalancers=[load_balancer],
        )["service"]
        ecs.update_service(cluster=cluster, service=service_name, taskDefinition=td_to)  # -> service deployment
        backend = ecs_backends[ACCOUNT][REGION]
        moto_service = backend._get_service(cluster, service_name)
        deployment = _ecs_ext(backend)["deployments"][moto_service.current_service_deployment]
        ecs_set_deployment_status(deployment, status, spec.get("status_reason"),
                                  spec.get("lifecycle_stage", "POST_TEST_TRAFFIC_SHIFT" if status == "IN_PROGRESS" else None))
        return {
            "cluster": cluster,
            "service": service_name,
            "serviceArn": service["serviceArn"],
            "serviceDeploymentArn": deployment["serviceDeploymentArn"],
            "sourceServiceRevisionArn": deployment["sourceServiceRevisions"][0]["arn"],
            "targetServiceRevisionArn": deployment["targetServiceRevision"]["arn"],
            "loadBalancerArn": lb_arn,
            "loadBalancerDns": net["lb"]["DNSName"],
            "prodListenerArn": listeners["prod"],
            "testListenerArn": listeners["test"],
            "prodListenerRuleArn": rules["prod"],
            "testListenerRuleArn": rules["test"],
            "taskDefinitionFrom": td_from,
            "taskDefinitionTo": td_to,
        }

    def ecs_deployment_status(self, spec: dict[str, Any]) -> dict[str, Any]:
        arn = spec.get("serviceDeploymentArn")
        deployment = _ecs_ext(ecs_backends[ACCOUNT][REGION])["deployments"].get(arn)
        if deployment is None:
            raise LookupError(f"unknown serviceDeploymentArn {arn}")
        status = spec.get("status")
        if status not in ECS_DEPLOYMENT_STATUSES:
            raise ValueError(f"status must be one of {sorted(ECS_DEPLOYMENT_STATUSES)}")
        ecs_set_deployment_status(deployment, status, spec.get("statusReason"), spec.get("lifecycleStage"))
        ago = spec.get("finishedMinutesAgo")
        if ago is not None:
            if status not in ECS_TERMINAL:
                raise ValueError(f"finishedMinutesAgo needs a terminal status ({sorted(ECS_TERMINAL)})")
            deployment["finishedAt"] = _now() - dt.timedelta(minutes=float(ago))
        return {"serviceDeploymentArn": arn, "status": deployment["status"],
                "lifecycleStage": deployment.get("lifecycleStage"), "finishedAt": deployment.get("finishedAt")}

    # -- CodeDeploy deployment status, CloudWatch alarms (alarm-rollback scenarios) -------------

    def codedeploy_deployment(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Sets a deployment's status (moto's stay Created forever) and when it completed."""
        deployment_id = spec.get("deploymentId")
        deployment = codedeploy_backends[ACCOUNT][REGION].deployments.get(deployment_id)
        if deployment is None:
            raise LookupError(f"unknown deploymentId {deployment_id}")
        status = spec.get("status")
        statuses = {"Created", "Queued", "InProgress", "Baking", "Ready"} | COMPLETED_DEPLOYMENT
        if status not in statuses:
            raise ValueError(f"status must be one of {sorted(statuses)}")
        st = _cd_state(deployment)
        deployment.status = status
        now = _now()
        st["lastUpdatedAt"] = now
        if status in COMPLETED_DEPLOYMENT:
            deployment.complete_time = now - dt.timedelta(minutes=float(spec.get("completedMinutesAgo") or 0))
            final = {"Succeeded": "Succeeded", "Failed": "Failed", "Stopped": "Skipped"}[status]
            for event in st["events"]:
                if event["status"] in ("Pending", "InProgress"):
                    event["status"] = final
        else:
            deployment.complete_time = None
        _cd_recount(deployment)
        return {"deploymentId": deployment_id, "status": deployment.status,
                "completeTime": deployment.complete_time.isoformat() if deployment.complete_time else None}

    def cloudwatch_alarm(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Creates or updates a metric (or composite) alarm with tags, then sets its state."""
        name = spec.get("name")
        if not name or not isinstance(name, str):
            raise ValueError("name (the alarm name) is required")
        cw = self.client("cloudwatch")
        tags = [{"Key": k, "Value": v} for k, v in (spec.get("tags") or {}).items()]
        if spec.get("composite"):
            cw.put_composite_alarm(AlarmName=name, AlarmRule=spec.get("rule") or 'ALARM("other")', Tags=tags)
        else:
            cw.put_metric_alarm(AlarmName=name, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
                                Statistic="Sum", Period=int(spec.get("period", 60)), EvaluationPeriods=1, Threshold=5.0,
                                ComparisonOperator="GreaterThanThreshold", Tags=tags)
        state = spec.get("state", "ALARM")
        cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=spec.get("reason") or f"testbed set {state}")
        backend = cloudwatch_backends[ACCOUNT][REGION]
        return {"alarmName": name, "alarmArn": backend.alarms[name].alarm_arn, "state": backend.alarms[name].state_value}


# ---------------------------------------------------------------------------------------------
# CodePipeline actions (image gate, bake timer): input artifacts, ECR images with their scans,
# alarm states.  Seeding helpers behind /_testbed routes; ECR scan results are kept on moto's
# image objects, so DescribeImageScanFindings answers what a test seeded.
# ---------------------------------------------------------------------------------------------

_PIPELINE_KMS: dict[str, str] = {}


def _internal_client(name: str, **config: Any) -> Any:
    client = boto3.session.Session().client(
        name, endpoint_url=SEEDER_ENDPOINT[0], region_name=REGION,
        aws_access_key_id="testbed", aws_secret_access_key="testbed",
        config=botocore.config.Config(retries={"total_max_attempts": 1}, **config),
    )
    client.meta.events.register("before-sign.*.*", _mark_internal)
    return client


SEEDER_ENDPOINT: list[str] = [""]


def seed_pipeline_artifact(spec: dict[str, Any]) -> dict[str, Any]:
    """A zip (``files`` name -> text, deflated) or raw bytes (``raw_base64``) stored at
    ``bucket``/``key``; with ``kms`` true, encrypted SSE-KMS with a testbed key."""
    bucket, key = spec["bucket"], spec["key"]
    if spec.get("raw_base64") is not None:
        body = base64.b64decode(spec["raw_base64"])
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in (spec.get("files") or {}).items():
                z.writestr(name, text if isinstance(text, str) else json.dumps(text))
        body = buf.getvalue()
    s3 = _internal_client("s3", s3={"addressing_style": "path"})
    try:
        s3.create_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - already there
        if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
            raise
    extra: dict[str, Any] = {}
    if spec.get("kms"):
        if "arn" not in _PIPELINE_KMS:
            _PIPELINE_KMS["arn"] = _internal_client("kms").create_key(Description="testbed artifact key")["KeyMetadata"]["Arn"]
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": _PIPELINE_KMS["arn"]}
    s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    return {"bucket": bucket, "key": key, "size": len(body), "kmsKeyId": extra.get("SSEKMSKeyId")}


def seed_ecr_image(spec: dict[str, Any]) -> dict[str, Any]:
    """An image in ``repository`` (created with ``mutability``, default IMMUTABLE) under
    ``tags``, pushed ``pushed_days_ago`` days ago, with ``scan``: null (never scanned),
    ``{"status": "IN_PROGRESS"}``, or ``{"status": "COMPLETE", "findings": [{"name", "severity"}]}``
    (the default: complete, no findings)."""
    repo = spec["repository"]
    tags = spec.get("tags") or []
    if not tags:
        raise ValueError("tags (at least one) are required")
    ecr = _internal_client("ecr")
    try:
        ecr.create_repository(repositoryName=repo, imageTagMutability=spec.get("mutability", "IMMUTABLE"))
    except Exception as exc:  # noqa: BLE001
        if "RepositoryAlreadyExists" not in str(exc):
            raise
    layer = hashlib.sha256(f"{repo}:{tags}:{secrets.token_hex(8)}".encode()).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469,
                   "digest": "sha256:" + hashlib.sha256(layer.encode()).hexdigest()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2818413,
                    "digest": f"sha256:{layer}"}],
    })
    for tag in tags:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    repository = ecr_backends[ACCOUNT][REGION].repositories[repo]
    image = next(i for i in repository.images if i.image_manifest == manifest)
    if spec.get("pushed_days_ago") is not None:
        image.image_pushed_at = int(dt.datetime.now(dt.timezone.utc).timestamp() - float(spec["pushed_days_ago"]) * 86400)
    image._tb_scan = spec.get("scan", {"status": "COMPLETE", "findings": []})
    host = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    return {"repository": repo, "registryId": ACCOUNT, "digest": image.image_digest,
            "repositoryUri": f"{host}/{repo}", "tags": list(image.image_tags)}


def seed_alarm_state(spec: dict[str, Any]) -> dict[str, Any]:
    """SetAlarmState (which writes the history entry), without being recorded."""
    name, state = spec["name"], spec["state"]
    _internal_client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state,
                                                   StateReason=spec.get("reason") or f"testbed set {state}")
    return {"name": name, "state": state}


_orig_ecr_scan_findings = ECRBackend.describe_image_scan_findings


def _ecr_describe_image_scan_findings(self: ECRBackend, registry_id: str, repository_name: str,
                                      image_id: dict[str, Any]) -> dict[str, Any]:
    repo = self._get_repository(repository_name, registry_id)
    image = repo._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))
    if not hasattr(image, "_tb_scan"):
        return _orig_ecr_scan_findings(self, registry_id, repository_name, image_id)
    scan = image._tb_scan
    if scan is None:
        raise ECRScanNotFoundException(image_id=json.dumps(image_id), repository_name=repository_name,
                                       registry_id=repo.registry_id)
    status = scan.get("status", "COMPLETE")
    result: dict[str, Any] = {
        "registryId": repo.registry_id, "repositoryName": repository_name,
        "imageId": {"imageDigest": image.image_digest, "imageTag": image.image_tag},
        "imageScanStatus": {"status": status, "description": scan.get("description", f"testbed scan {status}")},
    }
    if status in ("COMPLETE", "ACTIVE"):
        findings = [{"name": f["name"], "severity": f.get("severity", "HIGH"),
                     "uri": f"https://nvd.nist.gov/vuln/detail/{f['name']}"} for f in scan.get("findings", [])]
        counts: dict[str, int] = {}
        for f in findings:
            counts[f["severity"]] = counts.get(f["severity"], 0) + 1
        result["imageScanFindings"] = {"imageScanCompletedAt": _now(), "vulnerabilitySourceUpdatedAt": _now(),
                                       "findings": findings, "findingSeverityCounts": counts}
    return result


ECRBackend.describe_image_scan_findings = _ecr_describe_image_scan_findings  # type: ignore[method-assign]


def _mark_internal(request: Any, **_: Any) -> None:
    request.headers[INTERNAL_HEADER] = "1"


def _appspec(fmt: str, task_definition: str, container: str, port: int, event: str, hook_function: str) -> str:
    """An ECS AppSpec in the documented shape, as JSON or YAML."""
    if fmt == "json":
        return json.dumps({
            "version": 0.0,
            "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": {
                "TaskDefinition": task_definition,
                "LoadBalancerInfo": {"ContainerName": container, "ContainerPort": port},
            }}}],
            "Hooks": [{event: hook_function}],
        }, indent=2)
    return (
        "version: 0.0\n"
        "Resources:\n"
        "  - TargetService:\n"
        "      Type: AWS::ECS::Service\n"
        "      Properties:\n"
        f'        TaskDefinition: "{task_definition}"\n'
        "        LoadBalancerInfo:\n"
        f'          ContainerName: "{container}"\n'
        f"          ContainerPort: {port}\n"
        "Hooks:\n"
        f'  - {event}: "{hook_function}"\n'
    )


# ---------------------------------------------------------------------------------------------
# The WSGI application: control routes, then record / fault / serve
# ---------------------------------------------------------------------------------------------


class TestbedApp:
    def __init__(self) -> None:
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.cbor_cloudwatch = CborCloudWatch()
        self.seeder: Seeder | None = None  # set once the port is known

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_testbed"):
            status, headers, body = self.control(environ, path)
        else:
            status, headers, body = self.aws(environ, path)
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        if not any(k.lower() == "content-length" for k, _ in headers):
            headers = headers + [("Content-Length", str(len(body)))]
        start_response(f"{status} {reason}", headers)
        return [body]

    # -- AWS API requests -------------------------------------------------------------------

    def aws(self, environ: dict[str, Any], path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        body = _read_body(environ)
        if environ.get("HTTP_" + INTERNAL_HEADER.upper().replace("-", "_")) or path.startswith("/moto-api"):
            return call_wsgi(self.moto, environ)
        info = classify(environ, body)
        service, operation = info["service"] or "unknown", info["operation"]
        target = (path + "?" + environ.get("QUERY_STRING", "")).encode()
        fault = STATE.take_fault(service, operation, body, target)
        if fault is not None:
            if fault["mode"] == "hang":
                STATE.release.wait(fault["hang_seconds"])  # woken early by DELETE /_testbed/faults
                _, code, message = _fault_error("internal_error", info["protocol"])
                status = 500
            else:
                status, code, message = _fault_error(fault["mode"], info["protocol"])
            status, headers, out = error_response(info, status, code, message)
            STATE.record(service, operation, info["params"], status, code)
            return status, headers, out
        if "HTTP_AUTHORIZATION" not in environ and info["protocol"] in ("json", "query") and service in SIGNING_BY_SERVICE:
            # moto routes by the SigV4 credential scope; an unsigned request would land in S3
            environ["HTTP_AUTHORIZATION"] = (
                f"AWS4-HMAC-SHA256 Credential=testbed/20200101/{REGION}/{SIGNING_BY_SERVICE[service]}/aws4_request, "
                "SignedHeaders=host, Signature=0")
        try:
            if info["protocol"] == "cbor" and service == "cloudwatch":
                status, headers, out, code = self.cbor_cloudwatch(self.moto, environ, info, body)
            else:
                status, headers, out = call_wsgi(self.moto, environ)
                code = error_code_of(status, headers, out)
        except NotImplementedError as exc:
            code = "NotImplemented"
            status, headers, out = error_response(info, 501, code, f"testbed: moto does not implement {service}.{operation} ({exc})")
        except Exception as exc:  # noqa: BLE001 - moto bug: answer in protocol, keep serving
            LOG.error("moto failed on %s.%s:\n%s", service, operation, traceback.format_exc())
            code = "InternalFailure"
            status, headers, out = error_response(info, 500, code, f"testbed: moto raised {type(exc).__name__}: {exc}")
        STATE.record(service, operation, info["params"], status, code)
        return status, headers, out

    # -- /_testbed control routes -------------------------------------------------------------

    def control(self, environ: dict[str, Any], path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        raw = _read_body(environ)
        try:
            spec = json.loads(raw) if raw.strip() else {}
            route = (method, path.rstrip("/"))
            if route == ("GET", "/_testbed/health"):
                return _json(200, {"status": "ok"})
            if route == ("GET", "/_testbed/calls"):
                return _json(200, self.calls(query))
            if route == ("DELETE", "/_testbed/calls"):
                with STATE.lock:
                    n = len(STATE.calls)
                    STATE.calls = []
                return _json(200, {"cleared": n})
            if route == ("POST", "/_testbed/faults"):
                return _json(200, STATE.add_fault(spec))
            if route == ("GET", "/_testbed/faults"):
                with STATE.lock:
                    return _json(200, [dict(f) for f in STATE.faults])
            if route == ("DELETE", "/_testbed/faults"):
                return _json(200, {"cleared": STATE.clear_faults()})
            if route == ("POST", "/_testbed/reset"):
                from moto.moto_api._internal.models import moto_api_backend

                moto_api_backend.reset()
                STATE.clear_faults()
                with STATE.lock:
                    STATE.calls = []
                return _json(200, {"status": "ok"})
            assert self.seeder is not None
            if route == ("POST", "/_testbed/scenarios/codedeploy"):
                return _json(200, self.seeder.codedeploy(spec))
            if route == ("POST", "/_testbed/codedeploy/lifecycle"):
                return _json(200, self.seeder.codedeploy_lifecycle(spec))
            if route == ("POST", "/_testbed/scenarios/ecs"):
                return _json(200, self.seeder.ecs(spec))
            if route == ("POST", "/_testbed/ecs/service-deployment"):
                return _json(200, self.seeder.ecs_deployment_status(spec))
            if route == ("POST", "/_testbed/codedeploy/deployment"):
                return _json(200, self.seeder.codedeploy_deployment(spec))
            if route == ("POST", "/_testbed/cloudwatch/alarm"):
                return _json(200, self.seeder.cloudwatch_alarm(spec))
            if route == ("POST", "/_testbed/codepipeline/artifact"):
                return _json(200, seed_pipeline_artifact(spec))
            if route == ("POST", "/_testbed/ecr/image"):
                return _json(200, seed_ecr_image(spec))
            if route == ("POST", "/_testbed/cloudwatch/alarm-state"):
                return _json(200, seed_alarm_state(spec))
            return _json(404, {"error": f"no route {method} {path}"})
        except KeyError as exc:
            return _json(400, {"error": f"missing field {exc}"})
        except (ValueError, TypeError) as exc:
            return _json(400, {"error": f"{type(exc).__name__}: {exc}"})
        except LookupError as exc:
            return _json(404, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - e.g. a name reused: moto's AlreadyExists
            if "AlreadyExist" in str(exc) or "Duplicate" in str(exc):
                return _json(409, {"error": f"scenario name already used? {type(exc).__name__}: {exc}"})
            LOG.error("control route %s failed:\n%s", path, traceback.format_exc())
            return _json(500, {"error": f"{type(exc).__name__}: {exc}"})

    @staticmethod
    def calls(query: dict[str, str]) -> list[dict[str, Any]]:
        with STATE.lock:
            calls = list(STATE.calls)
        if "service" in query:
            calls = [c for c in calls if c["service"] == query["service"]]
        if "operation" in query:
            calls = [c for c in calls if c["operation"] == query["operation"]]
        if "since" in query:
            calls = [c for c in calls if c["seq"] > int(query["since"])]
        if "contains" in query:
            calls = [c for c in calls if query["contains"] in json.dumps(c["params"])]
        return calls


def _json(status: int, doc: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps(doc, default=str).encode()


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the whole request body once and put it back for moto."""
    if "testbed.body" in environ:
        return environ["testbed.body"]
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    body = b""
    if stream is not None:
        if length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):
            body = stream.read()
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["testbed.body"] = body
    return body


# ---------------------------------------------------------------------------------------------
# Process
# ---------------------------------------------------------------------------------------------


class QuietHandler(MotoRequestHandler):
    verbose = False

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        if self.verbose:
            super().log_request(*args, **kwargs)

    def log_error(self, *args: Any, **kwargs: Any) -> None:
        if self.verbose:
            super().log_error(*args, **kwargs)


def _watch_stdin() -> None:
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except Exception:  # noqa: BLE001
        pass
    LOG.info("stdin closed: exiting")
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--no-stdin-watchdog", action="store_true",
                        help="do not exit on stdin EOF (for running it by hand in the background)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="testbed: %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    QuietHandler.verbose = args.verbose

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))

    app = TestbedApp()
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=QuietHandler)
    server.daemon_threads = True
    port = server.server_port
    app.seeder = Seeder(port)
    SEEDER_ENDPOINT[0] = f"http://127.0.0.1:{port}"
    threading.Thread(target=app.seeder.warm_up, name="warm-up", daemon=True).start()
    sys.stdout.write(f"TESTBED_READY port={port}\n")
    sys.stdout.flush()
    if not args.no_stdin_watchdog:
        threading.Thread(target=_watch_stdin, name="stdin-watchdog", daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
