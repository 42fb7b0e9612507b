"""The synthesized template: what `cdk deploy` would create, asserted by behaviour, not ids."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import LIFECYCLE_STAGES

STAGES = LIFECYCLE_STAGES


def _of_type(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def test_the_lake_bucket_is_versioned_private_encrypted_and_tls_only(
    template: dict[str, Any],
) -> None:
    (bucket,) = [b for b in _of_type(template, "AWS::S3::Bucket") if "VersioningConfiguration" in b]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert encryption["BucketKeyEnabled"] is True
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "lake/"
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-capture"]["Prefix"] == "capture/"
    assert rules["expire-reports"]["Prefix"] == "reports/"
    for policy in _of_type(template, "AWS::S3::BucketPolicy"):  # the lake's and the log bucket's
        denies = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)
    (notifications,) = _of_type(template, "Custom::S3BucketNotifications")
    assert notifications["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}


def test_the_registry_is_on_demand_with_point_in_time_recovery(template: dict[str, Any]) -> None:
    (table,) = _of_type(template, "AWS::DynamoDB::Table")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEType"] == "KMS"


def test_one_image_function_per_stage_from_one_image(template: dict[str, Any]) -> None:
    functions = [
        f for f in _of_type(template, "AWS::Lambda::Function") if f.get("PackageType") == "Image"
    ]
    commands = {f["ImageConfig"]["Command"][0] for f in functions}
    expected = {f"functions.{s}.handler.lambda_handler" for s in STAGES}
    assert commands == expected | {
        "functions.judge_canary.handler.lambda_handler",
        "functions.request_approval.handler.lambda_handler",
        "functions.monitor.handler.lambda_handler",
        "functions.retrain.handler.lambda_handler",
        "functions.record_failure.handler.lambda_handler",
        "functions.start_run.handler.lambda_handler",
        # many-part datasets
        "functions.plan_parts.handler.lambda_handler",
        "functions.collect_part.handler.lambda_handler",
        "functions.process_part.handler.lambda_handler",
        "functions.merge_parts.handler.lambda_handler",
        # batch scoring (infra/scoring.py)
        "functions.start_scoring.handler.lambda_handler",
        "functions.plan_scoring.handler.lambda_handler",
        "functions.score_part.handler.lambda_handler",
        "functions.finish_scoring.handler.lambda_handler",
    }
    images = {json.dumps(f["Code"]["ImageUri"]) for f in functions}
    assert len(images) == 1
    for function in functions:
        assert function["TracingConfig"] == {"Mode": "Active"}
        variables = function["Environment"]["Variables"]
        assert {"LAKE_BUCKET", "REGISTRY_TABLE", "POWERTOOLS_SERVICE_NAME"} <= set(variables)
    heavy = [f for f in functions if "train_model" in f["ImageConfig"]["Command"][0]]
    assert heavy[0]["MemorySize"] == 10240
    assert heavy[0]["Timeout"] == 900


def test_the_state_machine_chains_the_stages_in_lifecycle_order(definition: dict[str, Any]) -> None:
    states = definition["States"]
    # A new run starts at the first stage; only a run resumed at its approval skips to it.
    start = states[definition["StartAt"]]
    assert start["Type"] == "Choice"
    (resume,) = start["Choices"]
    assert resume == {"Variable": "$.resume_at_approval", "IsPresent": True, "Next": resume["Next"]}
    assert states[resume["Next"]]["Parameters"]["FunctionName"] == "request_approval"
    order, name = [], start["Default"]
    while True:
        state = states[name]
        if state["Type"] == "Map":
            processor = state["ItemProcessor"]
            order.append(processor["States"][processor["StartAt"]]["Resource"])
            assert state["ItemsPath"] == "$.features.candidates"
        elif state["Type"] == "Choice" and name == "Many parts?":
            (parts,) = state["Choices"]
            assert parts == {
                "Variable": "$.source.key",
                "StringMatches": "*/_SUCCESS",
                "Next": parts["Next"],
            }
            many_parts = parts["Next"]
            name = state["Default"]
            continue
        elif state["Type"] == "Choice":  # approval required? (tests/infra/test_approval.py)
            assert state["Choices"][0]["Variable"] == "$.registration.approval"
            name = state["Default"]
            continue
        else:
            order.append(state["Resource"])
        name = state["Next"]
        if states[name]["Type"] == "Choice" and name not in ("Approval required?", "Many parts?"):
            break
    assert order == STAGES
    # A many-part upload: plan, one child execution per part (collect, then process), merge,
    # then on as for one file.
    plan = states[many_parts]
    assert (plan["Resource"], plan["ResultPath"]) == ("plan_parts", "$.plan")
    per_part = states[plan["Next"]]
    assert per_part["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert per_part["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert per_part["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert per_part["MaxConcurrency"] > 1
    children = per_part["ItemProcessor"]["States"]
    first = children[per_part["ItemProcessor"]["StartAt"]]
    assert [first["Resource"], children[first["Next"]]["Resource"]] == [
        "collect_part",
        "process_part",
    ]
    merge = states[per_part["Next"]]
    assert (merge["Resource"], merge["ResultPath"]) == ("merge_parts", "$")
    assert states[merge["Next"]]["Resource"] == "define_metrics"
    # The release either ends, or loops: bake (a Wait), judge, and ask again.
    choice = states[name]
    assert states[choice["Default"]]["Type"] == "Succeed"
    (canary,) = choice["Choices"]
    assert canary == {
        "Variable": "$.release.action",
        "StringEquals": "canary",
        "Next": canary["Next"],
    }
    bake = states[canary["Next"]]
    assert (bake["Type"], bake["SecondsPath"]) == ("Wait", "$.release.bake_seconds")
    judge = states[bake["Next"]]
    assert (judge["Resource"], judge["ResultPath"], judge["Next"]) == (
        "judge_canary",
        "$.release",
        name,
    )


def test_every_stage_retries_transient_errors_and_catches_into_the_failure_path(
    definition: dict[str, Any],
) -> None:
    states = definition["States"]
    record_failure = next(n for n, s in states.items() if s.get("Resource") == "record_failure")
    assert states[states[record_failure]["Next"]]["Type"] == "Fail"
    for state in states.values():
        if state.get("Resource") in [*STAGES, "judge_canary"] or state["Type"] == "Map":
            if state["Type"] == "Task":
                retried = {e for retry in state["Retry"] for e in retry["ErrorEquals"]}
                assert "Lambda.TooManyRequestsException" in retried
                assert "States.Timeout" in retried
                # Domain errors (bad data, bad spec) must never be retried.
                assert "States.ALL" not in retried
            (catch,) = state["Catch"]
            assert catch["ErrorEquals"] == ["States.ALL"]
            marker = states[catch["Next"]]
            assert marker["Type"] == "Pass"
            assert marker["ResultPath"] == "$.failed_stage"
            assert marker["Next"] == record_failure


def test_uploads_to_landing_start_the_pipeline(template: dict[str, Any]) -> None:
    (rule,) = [
        r
        for r in _of_type(template, "AWS::Events::Rule")
        if "aws.s3" in str(r.get("EventPattern")) and "landing/" in str(r.get("EventPattern"))
    ]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "landing/"}]
    (target,) = rule["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4


def test_the_state_machines_are_traced_and_logged(template: dict[str, Any]) -> None:
    machines = _of_type(template, "AWS::StepFunctions::StateMachine")
    assert len(machines) == 2  # the lifecycle pipeline and batch scoring
    for machine in machines:
        assert machine["TracingConfiguration"] == {"Enabled": True}
        assert machine["LoggingConfiguration"]["Level"] == "ALL"
        assert machine["LoggingConfiguration"]["IncludeExecutionData"] is False
