"""The synthesized stack deployed into moto: the seam, the trigger and duplicate events."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.awslambda.models import LambdaFunction

from mlcycle.local import lambda_seam
from mlcycle.local.assembly import load_template, project_root
from mlcycle.local.deployment import LocalDeployment, deploy
from mlcycle.local.runner import deliver_events
from tests.conftest import LIFECYCLE_STAGES

PIPELINE_STAGES = {
    *LIFECYCLE_STAGES,
    "record_failure",
    "start_run",
    "predict",
    "judge_canary",
    "request_approval",
    "monitor",
    "retrain",
    # many-part datasets
    "plan_parts",
    "collect_part",
    "process_part",
    "merge_parts",
    # batch scoring
    "start_scoring",
    "plan_scoring",
    "score_part",
    "finish_scoring",
}


def test_moto_still_runs_lambdas_through_the_replaced_method() -> None:
    # If moto renames or reshapes this method, the local runner would start needing docker.
    assert lambda_seam.seam_is_intact()
    parameters = list(inspect.signature(lambda_seam._original_invoke).parameters)
    assert parameters == ["self", "event"]
    assert "_invoke_lambda" in inspect.getsource(LambdaFunction.invoke)


@pytest.fixture
def deployment(aws: None, assembly: Path) -> LocalDeployment:
    lambda_seam.install()
    name, template = load_template(assembly)
    return deploy(name, template, root=project_root(), assembly=assembly)


def test_every_stage_is_deployed_with_its_handler_and_settings(
    deployment: LocalDeployment,
) -> None:
    assert {f.stage for f in deployment.functions.values()} == PIPELINE_STAGES
    environment = deployment.environment()
    assert environment["LAKE_BUCKET"] == deployment.lake_bucket
    assert environment["REGISTRY_TABLE"] == deployment.registry_table
    assert environment["STATE_MACHINE_ARN"] == deployment.state_machine_arn
    # one state machine per purpose; the pipeline's stays `state_machine_arn`
    assert set(deployment.state_machines) == {"pipeline", "scoring"}
    assert deployment.state_machines["pipeline"] == deployment.state_machine_arn
    assert environment["SCORING_STATE_MACHINE_ARN"] == deployment.state_machines["scoring"]
    definition = json.loads(
        boto3.client("stepfunctions").describe_state_machine(
            stateMachineArn=deployment.state_machine_arn
        )["definition"]
    )
    arns = {f.arn for f in deployment.functions.values()}
    # a callback task (.waitForTaskToken) names its function in its parameters
    invoked = {
        s.get("Parameters", {}).get("FunctionName", s["Resource"])
        for s in definition["States"].values()
        if s["Type"] == "Task"
    }
    assert invoked <= arns


def test_invocations_run_the_project_handler_in_process(deployment: LocalDeployment) -> None:
    start_run = next(f for f in deployment.functions.values() if f.stage == "start_run")
    response = boto3.client("lambda").invoke(
        FunctionName=start_run.name, Payload=json.dumps({"not": "an s3 event"}).encode()
    )
    error = json.loads(response["Payload"].read())
    # The handler's own parser rejected the event: proof it ran here, with a clear message.
    assert response["FunctionError"]
    assert error["errorType"] == "ValidationError"
    assert "detail" in error["errorMessage"]


def _executions(deployment: LocalDeployment) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    return sfn.list_executions(stateMachineArn=deployment.state_machine_arn)["executions"]


def test_an_upload_to_landing_starts_one_run_and_a_repeated_event_none(
    deployment: LocalDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in deployment.environment().items():
        monkeypatch.setenv(key, value)
    session = boto3.Session()
    s3 = session.client("s3")
    s3.put_object(Bucket=deployment.lake_bucket, Key="landing/churn.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=deployment.lake_bucket, Key="reports/other.csv", Body=b"a,b\n1,2\n")
    started = deliver_events(deployment, session)
    assert len(started) == 1
    assert started[0].split(":")[-1].startswith("churn-")

    # EventBridge delivers at least once: the same event again must not start a second run.
    version = s3.head_object(Bucket=deployment.lake_bucket, Key="landing/churn.csv")["VersionId"]
    event = {
        "version": "0",
        "id": "repeat",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "version": "0",
            "bucket": {"name": deployment.lake_bucket},
            "object": {"key": "landing/churn.csv", "size": 8, "version-id": version},
            "request-id": "r",
            "requester": "123456789012",
        },
    }
    start_run = next(f for f in deployment.functions.values() if f.stage == "start_run")
    response = session.client("lambda").invoke(
        FunctionName=start_run.name, Payload=json.dumps(event).encode()
    )
    result = json.loads(response["Payload"].read())
    assert result["execution_arn"] == started[0], (result, started)
    assert result["started"] is False
    assert result["execution_arn"] == started[0]
    assert len(_executions(deployment)) == 1
