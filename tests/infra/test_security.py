"""What a security reviewer checks first: findings, encryption, wildcards, least privilege."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

# The only actions AWS offers without resource-level permissions that the stack uses.
ACTIONS_WITHOUT_RESOURCES = {
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData",  # limited to the mlcycle namespace by a condition
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
}


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy":
            documents = [resource["Properties"]["PolicyDocument"]]
        elif resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])]
        else:
            continue
        found += [(logical_id, s) for d in documents for s in d["Statement"]]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == kind}


def test_cdk_nag_reports_no_unacknowledged_finding_and_every_acknowledgement_has_a_reason(
    assembly: Path,
) -> None:
    report = json.loads((assembly / "validation-report.json").read_text())
    (nag,) = report["pluginReports"]
    assert nag["pluginName"] == "AwsSolutions"
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    assert nag["suppressedViolations"], "the report should list what was acknowledged"
    for violation in nag["suppressedViolations"]:
        assert len(violation["reason"]) > 40, violation["ruleName"]


def test_cfn_lint_finds_nothing(assembly: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            str(assembly / "mlcycle-dev.template.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_iam_statement_uses_a_wildcard_action(template: dict[str, Any]) -> None:
    for logical_id, statement in _statements(template):
        for action in _as_list(statement["Action"]):
            assert "*" not in action, (logical_id, action)


def test_resource_star_only_for_actions_that_have_no_resource_level_permissions(
    template: dict[str, Any],
) -> None:
    for logical_id, statement in _statements(template):
        if "*" in _as_list(statement.get("Resource")):
            assert set(_as_list(statement["Action"])) <= ACTIONS_WITHOUT_RESOURCES, logical_id


def _policy_of(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    return [
        s
        for logical_id, s in _statements(template)
        if logical_id.startswith(role_prefix) and "DefaultPolicy" in logical_id
    ]


def _object_prefixes(statements: list[dict[str, Any]], action: str) -> set[str]:
    prefixes = set()
    for statement in statements:
        if action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                prefixes.add(resource["Fn::Join"][1][-1].strip("/*"))
    return prefixes


@pytest.mark.parametrize(
    ("role", "reads", "writes"),
    [
        ("PipelineCollectDataRole", {"landing"}, {"raw", "runs"}),
        ("PipelineProcessDataRole", {"raw", "runs"}, {"curated", "runs", "quarantine"}),
        ("PipelineTrainModelRole", {"features", "runs"}, {"models"}),
        ("EndpointPredictRole", {"models"}, {"capture"}),
        # the model card goes beside the evaluation report
        ("PipelineRegisterModelRole", {"runs", "models"}, {"models", "reports"}),
        ("PipelineRequestApprovalRole", set(), {"runs"}),
        # the stages that end a run rewrite reports/index.html
        ("PipelineReleaseModelRole", {"runs", "reports"}, {"reports"}),
        ("PipelineJudgeCanaryRole", {"capture", "runs", "reports"}, {"runs", "reports"}),
        # retraining reads what production saw and keeps the traffic it learns from
        ("MonitoringRetrainRole", {"landing", "specs", "capture", "labels"}, {"raw"}),
    ],
)
def test_each_function_reaches_only_its_own_zones(
    template: dict[str, Any], role: str, reads: set[str], writes: set[str]
) -> None:
    statements = _policy_of(template, role)
    assert statements, role
    assert _object_prefixes(statements, "s3:GetObject") == reads
    assert _object_prefixes(statements, "s3:PutObject") == writes


def test_data_and_logs_are_encrypted_with_the_rotating_customer_key(
    template: dict[str, Any],
) -> None:
    (key_id, key), *others = _of_type(template, "AWS::KMS::Key").items()
    assert not others
    assert key["EnableKeyRotation"] is True
    key_arn = {"Fn::GetAtt": [key_id, "Arn"]}
    (table,) = _of_type(template, "AWS::DynamoDB::Table").values()
    assert table["SSESpecification"]["KMSMasterKeyId"] == key_arn
    log_groups = _of_type(template, "AWS::Logs::LogGroup").values()
    assert log_groups
    assert all(group["KmsKeyId"] == key_arn for group in log_groups)
    for bucket in _of_type(template, "AWS::S3::Bucket").values():
        (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"aws:kms", "AES256"}
        assert bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True


def test_events_that_cannot_start_a_run_are_kept_in_a_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    (queue_id,) = _of_type(template, "AWS::SQS::Queue")
    for rule in _of_type(template, "AWS::Events::Rule").values():  # uploads, schedule, alarms
        (target,) = rule["Targets"]
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    invoke_configs = _of_type(template, "AWS::Lambda::EventInvokeConfig").values()
    assert len(invoke_configs) == 2  # the pipeline's trigger and batch scoring's
    for invoke_config in invoke_configs:
        destination = invoke_config["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination == {"Fn::GetAtt": [queue_id, "Arn"]}
