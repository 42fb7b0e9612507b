"""The batch trigger: an upload under score/<dataset>/ (an S3 event via EventBridge) starts one
scoring run with the dataset's production model."""

import os
from typing import Any

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from mlcycle import batch_scoring
from mlcycle.runtime import client, logger, stage_handler


@stage_handler("start_scoring", event_model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel) -> dict[str, Any]:
    obj = event.detail.object
    result = batch_scoring.start_scoring(
        client("stepfunctions"),
        os.environ["SCORING_STATE_MACHINE_ARN"],
        bucket=event.detail.bucket.name,
        key=obj.key,
        version=obj.version_id or obj.etag or None,
        size=int(obj.size) if obj.size is not None else None,
    )
    logger.info(
        "scoring started" if result["started"] else "duplicate event ignored",
        extra={"run": result},
    )
    return result
