"""Retraining: a drift or quality alarm entering ALARM starts a run on the dataset's latest
upload plus the labeled traffic production saw since, unless nothing is new."""

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlcycle import retraining
from mlcycle.runtime import client, lake, logger, registry, settings, stage_handler


class AlarmStateChange(BaseModel):
    """The parts of EventBridge's "CloudWatch Alarm State Change" event this reads."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    source: str
    detail_type: str = Field(alias="detail-type")
    detail: dict[str, Any]


def _notify(subject: str, message: str) -> None:
    client("sns").publish(
        TopicArn=os.environ["NOTIFICATIONS_TOPIC_ARN"], Subject=subject, Message=message
    )


@stage_handler("retrain", event_model=AlarmStateChange)
def lambda_handler(event: AlarmStateChange) -> dict[str, Any]:
    state_machine_arn = settings().state_machine_arn
    if state_machine_arn is None:
        raise RuntimeError("STATE_MACHINE_ARN is not set on this function")
    result = retraining.retrain_on_alarm(
        event.detail, registry(), client("stepfunctions"), state_machine_arn, lake(), _notify
    )
    logger.info("retraining", extra={"retrain": result})
    return result
