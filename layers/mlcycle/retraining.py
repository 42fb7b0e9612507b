"""Retraining on an alarm: which dataset the alarm is about, and the data to train on."""

from __future__ import annotations

import hashlib
from typing import Any

from mlcycle.adapters.registry import Registry
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
    """Start one run on the dataset's latest data; the same alarm transition starts one only."""
    dataset = alarm_dataset(detail)
    run = registry.latest_run(dataset, status="SUCCEEDED")
    if run is None or not run.get("source"):
        raise NothingToRetrainError(f"{dataset!r} has no successful run to retrain from")
    transition = f"{detail.get('alarmName')}@{detail.get('state', {}).get('timestamp')}"
    name = f"{dataset}-retrain-{hashlib.sha256(transition.encode()).hexdigest()[:12]}"
    context = RunContext(run_id=name, source=Source.model_validate(run["source"]))
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=name,
            input=context.model_dump_json(exclude_none=True),
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        return {"started": False, "run_id": name, "dataset": dataset}
    return {
        "started": True,
        "run_id": name,
        "dataset": dataset,
        "execution_arn": response["executionArn"],
        "reason": detail.get("state", {}).get("reason"),
    }
