"""The failure path: quarantine the upload with the reason and mark the run FAILED."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import stages
from mlcycle.context import RunContext
from mlcycle.runtime import lake, logger, metrics, registry, stage_handler


@stage_handler("record_failure")
def lambda_handler(run: RunContext) -> dict[str, Any]:
    failure = stages.record_failure(run, lake(), registry())
    logger.error("run failed", extra={"failure": failure})
    metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=1)
    return failure
