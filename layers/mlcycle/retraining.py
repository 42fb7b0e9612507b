"""Retraining on an alarm: which dataset the alarm is about, and the data to train on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlcycle.adapters.executions import start_once
from mlcycle.adapters.registry import Registry, now_iso
from mlcycle.context import RunContext, Source
from mlcycle.errors import MlcycleError


class NothingToRetrainError(MlcycleError):
    """The alarm names no dataset, or the dataset has no successful run to retrain from."""


def alarm_dataset(detail: dict[str, Any]) -> str:
    """The `dataset` dimension of the alarm's metric (every model alarm carries one)."""
    for metric in detail.get("configuration", {}).get("metrics", []):
        dimensions = metric.get("metricStat", {}).get("metric", {}).get("dimensions", {})
        if dimensions.get("dataset"):
            return str(dimensions["dataset"])
    raise NothingToRetrainError(f"alarm {detail.get('alarmName')!r} names no dataset")


def retrain_on_alarm(
    detail: dict[str, Any], registry: Registry, sfn: Any, state_machine_arn: str
) -> dict[str, Any]:
    """Start one run on the dataset's latest data; alarms of the same hour start one only."""
    dataset = alarm_dataset(detail)
    run = registry.latest_run(dataset, status="SUCCEEDED")
    if run is None or not run.get("source"):
        raise NothingToRetrainError(f"{dataset!r} has no successful run to retrain from")
    # The latest version of the latest upload's key: the newest data, not a pinned version.
    source = Source.model_validate({**run["source"], "version_id": None, "etag": None})
    # Alarms firing together (drift, prediction drift, quality) start one run per hour.
    at = datetime.fromisoformat(str(detail.get("state", {}).get("timestamp") or now_iso()))
    name = f"{dataset}-retrain-{at.astimezone(UTC):%Y%m%d%H}"
    context = RunContext(run_id=name, source=source)
    started = start_once(sfn, state_machine_arn, context)
    return {**started, "dataset": dataset, "reason": detail.get("state", {}).get("reason")}
