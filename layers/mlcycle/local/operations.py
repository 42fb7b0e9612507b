"""Day-2 operations on a local lake: traffic, the monitor, alarms, retraining, the registry.

CloudWatch in moto stores alarms but never evaluates them, and EventBridge in moto delivers
only to SQS; so, as the runner does for uploads, these evaluate the synthesized alarm
definitions against the metrics the monitor published and route each state change through
the synthesized rules, whose targets then run in-process.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlcycle.adapters.registry import Registry
from mlcycle.lake_layout import Zone
from mlcycle.local.runner import (
    LocalAws,
    ProgressCallback,
    RunOutcome,
    deliver_events,
    follow_execution,
    local_aws,
    write_outcome,
)
from mlcycle.local.serve import api_event
from mlcycle.local.template import ACCOUNT_ID, REGION
from mlcycle.serving import runtime as serving_runtime

_COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


@dataclass
class AlarmState:
    name: str
    state: str  # ALARM or OK
    value: float | None
    threshold: float
    reason: str


@dataclass
class MonitorOutcome:
    dataset: str
    out_dir: Path
    summary: dict[str, Any]
    alarms: list[AlarmState] = field(default_factory=list)
    retraining: list[RunOutcome] = field(default_factory=list)
    # what the latest alarm's retraining decided (started, or skipped and why)
    retraining_decision: dict[str, Any] | None = None


def send_traffic(
    aws: LocalAws,
    dataset: str,
    rows: pd.DataFrame,
    *,
    client_key: str = "local",
    statuses: list[int] | None = None,
) -> list[str]:
    """One predict request per row, through the deployed predict function; the capture is
    flushed to the lake at the end. Returns each request's id (for labels). Any answer but
    200 raises, unless `statuses` is given to collect the status codes."""
    request_ids = []
    for start, row in enumerate(rows.to_dict(orient="records")):
        instance = {k: (None if pd.isna(v) else _jsonable(v)) for k, v in row.items()}
        event = api_event(
            "POST",
            f"/v1/models/{dataset}:predict",
            json.dumps({"instances": [instance]}),
            headers={"content-type": "application/json", "x-client-id": f"{client_key}-{start}"},
        )
        response = aws.invoke("predict", event)
        if statuses is not None:
            statuses.append(response["statusCode"])
        elif response["statusCode"] != 200:
            raise RuntimeError(
                f"the endpoint answered {response['statusCode']}: {response['body']}"
            )
        request_ids.append(event["requestContext"]["requestId"])
    current = serving_runtime.current()
    if current is not None:
        current.flush()
    return request_ids


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def upload_labels(
    aws: LocalAws, dataset: str, request_ids: list[str], labels: Iterable[Any]
) -> str:
    """Ground truth arriving later, as a user would upload it: CSV of request_id,label."""
    frame = pd.DataFrame({"request_id": request_ids, "label": list(labels)})
    key = f"{Zone.LABELS.prefix}dataset={dataset}/{uuid.uuid4().hex}.csv"
    aws.session.client("s3").put_object(
        Bucket=aws.deployment.lake_bucket, Key=key, Body=frame.to_csv(index=False).encode()
    )
    return key


def evaluate_alarms(aws: LocalAws, *, now: datetime) -> list[AlarmState]:
    """Evaluate the template's alarms on the mlcycle namespace against the published metrics,
    and route every one that fires through the synthesized rules, as CloudWatch would."""
    cloudwatch = aws.session.client("cloudwatch")
    events = aws.session.client("events")
    states = []
    for logical_id, resource in aws.template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = resource["Properties"]
        if alarm.get("Namespace") != "mlcycle" or "Dimensions" not in alarm:
            continue  # AWS's own metrics: nothing publishes them locally
        name = alarm.get("AlarmName") or f"{aws.deployment.stack_name}-{logical_id}"
        dimensions = alarm["Dimensions"]
        datapoints = cloudwatch.get_metric_statistics(
            Namespace=alarm["Namespace"],
            MetricName=alarm["MetricName"],
            Dimensions=dimensions,
            StartTime=now - timedelta(seconds=int(alarm["Period"])),
            EndTime=now + timedelta(minutes=1),
            Period=int(alarm["Period"]),
            Statistics=[alarm["Statistic"]],
        )["Datapoints"]
        value = datapoints[-1][alarm["Statistic"]] if datapoints else None
        fires = value is not None and _COMPARE[alarm["ComparisonOperator"]](
            value, float(alarm["Threshold"])
        )
        reason = (
            f"{alarm['MetricName']} {alarm['Statistic']} {value} against threshold "
            f"{alarm['Threshold']} ({alarm['ComparisonOperator']})"
            if value is not None
            else "no data (treated as not breaching)"
        )
        state = AlarmState(
            name, "ALARM" if fires else "OK", value, float(alarm["Threshold"]), reason
        )
        states.append(state)
        if fires:
            events.put_events(Entries=[_state_change(name, alarm, dimensions, reason, now)])
    return states


def _state_change(
    name: str, alarm: dict[str, Any], dimensions: list[dict[str, str]], reason: str, now: datetime
) -> dict[str, Any]:
    detail = {
        "alarmName": name,
        "state": {"value": "ALARM", "reason": reason, "timestamp": now.isoformat()},
        "previousState": {"value": "OK"},
        "configuration": {
            "description": alarm.get("AlarmDescription", ""),
            "metrics": [
                {
                    "id": "m1",
                    "metricStat": {
                        "metric": {
                            "namespace": alarm["Namespace"],
                            "name": alarm["MetricName"],
                            "dimensions": {d["Name"]: d["Value"] for d in dimensions},
                        },
                        "period": int(alarm["Period"]),
                        "stat": alarm["Statistic"],
                    },
                    "returnData": True,
                }
            ],
        },
    }
    return {
        "Source": "aws.cloudwatch",
        "DetailType": "CloudWatch Alarm State Change",
        "Detail": json.dumps(detail),
        "Resources": [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"],
    }


def monitor_local(
    out_dir: Path,
    dataset: str,
    *,
    current: pd.DataFrame | None = None,
    labels: pd.Series | None = None,
    on_stage: ProgressCallback | None = None,
    bake_seconds: int | None = 2,
) -> MonitorOutcome:
    """Optionally send `current` as traffic (with `labels` arriving later), run the monitor,
    evaluate the alarms and follow any retraining run they start."""
    with local_aws(out_dir) as aws:
        if current is not None:
            request_ids = send_traffic(aws, dataset, current)
            if labels is not None:
                upload_labels(aws, dataset, request_ids, labels)
        if bake_seconds is not None:
            _shorten_bake(aws, dataset, bake_seconds)
        summary = aws.invoke("monitor", {"dataset": dataset})[dataset]
        now = datetime.now(UTC)
        outcome = MonitorOutcome(dataset, out_dir, summary, evaluate_alarms(aws, now=now))
        fired = any(a.state == "ALARM" for a in outcome.alarms)
        for execution_arn in deliver_events(aws.deployment, aws.session):
            outcome.retraining.append(
                follow_execution(aws.deployment, aws.session, execution_arn, dataset, on_stage)
            )
        if fired:
            registry = Registry(aws.session.client("dynamodb"), aws.deployment.registry_table)
            outcome.retraining_decision = registry.get_retraining(dataset)
    for run in outcome.retraining:
        write_outcome(run, out_dir)
    return outcome


def _shorten_bake(aws: LocalAws, dataset: str, seconds: int) -> None:
    """Locally nobody waits ten minutes for a canary: bake the retrained model briefly."""
    s3 = aws.session.client("s3")
    key = f"{Zone.SPECS.prefix}{dataset}.yaml"
    document = yaml.safe_load(
        s3.get_object(Bucket=aws.deployment.lake_bucket, Key=key)["Body"].read()
    )
    document["release"] = {
        **(document.get("release") or {}),
        "bake_seconds": seconds,
        "max_waits": 1,
    }
    s3.put_object(
        Bucket=aws.deployment.lake_bucket, Key=key, Body=yaml.safe_dump(document).encode()
    )
