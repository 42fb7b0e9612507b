"""The trigger: an upload under landing/ (an S3 event via EventBridge) starts one run."""

from typing import Any

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from mlcycle import stages
from mlcycle.runtime import client, logger, settings, stage_handler


@stage_handler("start_run", event_model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel) -> dict[str, Any]:
    obj = event.detail.object
    state_machine_arn = settings().state_machine_arn
    if state_machine_arn is None:
        raise RuntimeError("STATE_MACHINE_ARN is not set on this function")
    size = int(obj.size) if obj.size is not None else None
    result = stages.start_run(
        client("stepfunctions"),
        state_machine_arn,
        bucket=event.detail.bucket.name,
        key=obj.key,
        version=obj.version_id or obj.etag or None,
        size=size,
    )
    if result["started"]:
        logger.info("run started", extra={"run": result})
    else:
        logger.info(result.get("ignored", "duplicate event ignored"), extra={"run": result})
    return result
