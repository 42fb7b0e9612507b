"""Approval: a model that passed its gate waits here for a person (the state machine's
`.waitForTaskToken` task); this records the request and notifies the reviewers."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict

from mlcycle import approval
from mlcycle.context import RunContext
from mlcycle.runtime import client, lake, metrics, registry, stage_handler


class ApprovalRequest(BaseModel):
    """The task's payload: the token that answers the wait, and the run that waits."""

    model_config = ConfigDict(extra="ignore")

    token: str
    run: RunContext


def _notify(subject: str, message: str) -> None:
    client("sns").publish(
        TopicArn=os.environ["APPROVAL_TOPIC_ARN"], Subject=subject, Message=message
    )


@stage_handler("request_approval", event_model=ApprovalRequest)
def lambda_handler(event: ApprovalRequest) -> dict[str, Any]:
    result = approval.request_approval(event.run, lake(), registry(), event.token, _notify)
    metrics.add_metric(name="ApprovalsRequested", unit=MetricUnit.Count, value=1)
    return result
