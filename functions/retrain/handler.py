"""Retraining: a drift or quality alarm entering ALARM starts a run on the dataset's latest
data (the upload of its latest successful run)."""

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from mlcycle import retraining
from mlcycle.runtime import client, logger, registry, settings, stage_handler


@stage_handler("retrain", event_model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel) -> dict[str, Any]:
    state_machine_arn = settings().state_machine_arn
    if state_machine_arn is None:
        raise RuntimeError("STATE_MACHINE_ARN is not set on this function")
    result = retraining.retrain_on_alarm(
        event.detail, registry(), client("stepfunctions"), state_machine_arn
    )
    logger.info("retraining", extra={"retrain": result})
    return result
