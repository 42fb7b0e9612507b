"""Retraining on an alarm (moto): learn from the labeled traffic since the upload, or, with
nothing new since production's training, train nothing and say so."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pandas as pd
import pytest
import yaml

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.context import RunContext
from mlcycle.parts import fingerprint, list_parts
from mlcycle.retraining import retrain_on_alarm

UPLOAD = b"x,plan,churned\n1,basic,no\n2,pro,yes\n"
ALARM = {
    "alarmName": "mlcycle-dev-retrain-churn-drift",
    "state": {
        "value": "ALARM",
        "reason": "3 features drifted",
        "timestamp": "2026-12-01T10:05:00+00:00",
    },
    "configuration": {
        "metrics": [{"metricStat": {"metric": {"dimensions": {"dataset": "churn"}}}}]
    },
}


@pytest.fixture
def world(lake: Lake, registry: Registry) -> dict[str, Any]:
    s3 = lake.s3
    s3.put_object(
        Bucket="lake",
        Key="specs/churn.yaml",
        Body=yaml.safe_dump(
            {"dataset": "churn", "target": "churned", "retraining": {"min_new_labels": 4}}
        ).encode(),
    )
    s3.put_object(Bucket="lake", Key="landing/churn.csv", Body=UPLOAD)
    trained = datetime.now(UTC) - timedelta(hours=2)
    registry.put_run(
        "churn",
        "run-1",
        {
            "status": "SUCCEEDED",
            "started_at": (trained - timedelta(minutes=5)).isoformat(),
            "finished_at": trained.isoformat(),
            "source": {"bucket": "lake", "key": "landing/churn.csv"},
        },
    )
    registry.register(
        "churn",
        {
            "stage": "production",
            "created_at": trained.isoformat(timespec="seconds"),
            "lineage": {
                "source": {"bucket": "lake", "key": "landing/churn.csv"},
                "sha256": hashlib.sha256(UPLOAD).hexdigest(),
            },
        },
    )
    registry.set_release("churn", production_version=1, expected_production=None)
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="pipeline",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/pipeline",
    )["stateMachineArn"]
    return {"sfn": sfn, "machine": machine, "notified": []}


def _traffic(lake: Lake, n: int, *, labeled: bool = True) -> None:
    now = datetime.now(UTC)
    lines = [
        json.dumps(
            {
                "time": (now - timedelta(minutes=n - i)).isoformat(timespec="milliseconds"),
                "request_id": f"req-{i}",
                "model": "churn",
                "model_version": 1,
                "status": "ok",
                "instance": {"x": i, "plan": "basic"},
                "prediction": {"label": "no"},
            }
        )
        for i in range(n)
    ]
    key = f"capture/dataset=churn/dt={now.date().isoformat()}/part.jsonl.gz"
    lake.put_bytes(key, gzip.compress("\n".join(lines).encode()))
    if labeled:
        labels = pd.DataFrame(
            {
                "request_id": [f"req-{i}" for i in range(n)],
                "label": ["yes" if i % 2 else "no" for i in range(n)],
            }
        )
        lake.put_bytes("labels/dataset=churn/late.csv", labels.to_csv(index=False).encode())


def _retrain(world: dict[str, Any], lake: Lake, registry: Registry) -> dict[str, Any]:
    return retrain_on_alarm(
        ALARM,
        registry,
        world["sfn"],
        world["machine"],
        lake,
        lambda subject, message: world["notified"].append((subject, message)),
    )


def test_nothing_new_trains_nothing_records_why_and_tells_a_person(
    world: dict[str, Any], lake: Lake, registry: Registry
) -> None:
    _traffic(lake, 10, labeled=False)  # traffic, but no labels yet
    result = _retrain(world, lake, registry)
    assert result["skipped"] is True
    assert result["reason"] == (
        "retraining skipped: no new data since v1 (the same upload, 0 labeled requests since, "
        "4 needed)"
    )
    assert registry.get_retraining("churn")["status"] == "skipped"
    ((subject, message),) = world["notified"]
    assert subject == "mlcycle: churn alarm, retraining skipped"
    assert "mlcycle-dev-retrain-churn-drift fired: 3 features drifted" in message
    executions = world["sfn"].list_executions(stateMachineArn=world["machine"])["executions"]
    assert executions == []


def test_labeled_traffic_since_production_starts_a_run_that_learns_from_it(
    world: dict[str, Any], lake: Lake, registry: Registry
) -> None:
    _traffic(lake, 10)
    result = _retrain(world, lake, registry)
    assert result["started"] is True
    assert result["traffic_rows"] == 7
    (execution,) = world["sfn"].list_executions(stateMachineArn=world["machine"])["executions"]
    described = world["sfn"].describe_execution(executionArn=execution["executionArn"])
    context = RunContext.model_validate_json(described["input"])
    assert context.run_id == "churn-retrain-2026120110"
    traffic = context.traffic
    assert traffic is not None
    assert (traffic.rows, traffic.recent_rows, traffic.requests, traffic.unlabeled) == (7, 3, 10, 0)
    older, recent = lake.get_parquet(traffic.uri), lake.get_parquet(str(traffic.recent_uri))
    assert list(older["x"]) == list(range(7))  # the oldest train, the newest judge
    assert list(recent["x"]) == [7, 8, 9]
    assert list(recent["churned"]) == ["yes", "no", "yes"]
    assert registry.get_retraining("churn")["status"] == "started"
    assert world["notified"] == []


def test_a_new_upload_retrains_even_without_labels(
    world: dict[str, Any], lake: Lake, registry: Registry
) -> None:
    lake.s3.put_object(Bucket="lake", Key="landing/churn.csv", Body=UPLOAD + b"3,pro,no\n")
    result = _retrain(world, lake, registry)
    assert result["started"] is True
    assert result["traffic_rows"] == 0


def test_a_folder_of_parts_is_new_only_when_its_parts_changed(
    world: dict[str, Any], lake: Lake, registry: Registry
) -> None:
    folder = "landing/churn/2026-12-01/"
    for name in ("part-00000.csv", "part-00001.csv"):
        lake.s3.put_object(Bucket="lake", Key=folder + name, Body=UPLOAD)
    lake.s3.put_object(Bucket="lake", Key=folder + "_SUCCESS", Body=b"")
    source = {"bucket": "lake", "key": folder + "_SUCCESS"}
    trained = datetime.now(UTC) - timedelta(hours=1)
    registry.put_run(
        "churn",
        "run-2",
        {
            "status": "SUCCEEDED",
            "started_at": (trained - timedelta(minutes=5)).isoformat(),
            "finished_at": trained.isoformat(),
            "source": source,
        },
    )
    registry.register(
        "churn",
        {
            "stage": "production",
            "created_at": trained.isoformat(timespec="seconds"),
            "lineage": {
                "source": source,
                "parts_fingerprint": fingerprint(list_parts(lake.s3, "lake", folder)),
            },
        },
    )
    registry.set_release("churn", production_version=2, expected_production=1)
    skipped = _retrain(world, lake, registry)
    assert skipped["skipped"] is True
    assert "the same upload" in skipped["reason"]
    # the same names, one part's content changed: its ETag says so
    lake.s3.put_object(Bucket="lake", Key=folder + "part-00001.csv", Body=UPLOAD + b"3,pro,no\n")
    started = _retrain(world, lake, registry)
    assert started["started"] is True
