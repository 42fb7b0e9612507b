"""Batch scoring's construct: a Distributed Map fed by a JSON manifest, least-privilege roles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlcycle.local.template import Resolver
from tests.infra.test_security import _as_list, _object_prefixes, _policy_of


def _scoring_machine(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (logical_id, r["Properties"])
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and logical_id.startswith("Scoring")
    ]
    return found


@pytest.fixture(scope="module")
def scoring_definition(template: dict[str, Any]) -> dict[str, Any]:
    resolver = Resolver()
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            command = resource["Properties"].get("ImageConfig", {}).get("Command", ["-.-"])[0]
            resolver.define(logical_id, command, Arn=command.split(".")[1])
        if resource["Type"] == "AWS::S3::Bucket":
            resolver.define(logical_id, logical_id)
    _, machine = _scoring_machine(template)
    return dict(json.loads(resolver.resolve(machine["DefinitionString"])))


def test_plan_then_a_distributed_map_over_the_manifest_then_finish(
    scoring_definition: dict[str, Any],
) -> None:
    states = scoring_definition["States"]
    assert scoring_definition["StartAt"] == "Plan scoring"
    assert states["Plan scoring"]["Resource"] == "plan_scoring"
    assert states["Plan scoring"]["Next"] == "Score chunks"
    score = states["Score chunks"]
    assert score["Type"] == "Map"
    assert score["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    reader = score["ItemReader"]
    assert reader["Resource"].endswith(":states:::s3:getObject")
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"]["Key.$"] == "$.plan.chunks_key"
    assert reader["Parameters"]["Bucket"].startswith("LakeBucket")
    assert score["MaxConcurrency"] == 10  # always bounded: the config's scoring_max_concurrency
    assert score["ItemSelector"] == {"chunk.$": "$$.Map.Item.Value", "plan.$": "$.plan"}
    # what moto's interpreter does not run, and the design does without
    assert "ItemBatcher" not in score
    assert "ResultWriter" not in score
    (child,) = score["ItemProcessor"]["States"].values()
    assert child["Resource"] == "score_part"
    assert child["Retry"][0]["ErrorEquals"][0].startswith("Lambda.")
    assert score["Next"] == "Finish scoring"
    assert states["Finish scoring"]["Resource"] == "finish_scoring"


def test_uploads_to_score_start_a_scoring_run(template: dict[str, Any]) -> None:
    (rule,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and "score/" in json.dumps(r["Properties"])
    ]
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "score/"}]
    (target,) = rule["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("ScoringStartScoring")
    assert "DeadLetterConfig" in target
    machine_id, _ = _scoring_machine(template)
    (start,) = [
        r["Properties"]
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and logical_id.startswith("ScoringStartScoring")
    ]
    assert start["Environment"]["Variables"]["SCORING_STATE_MACHINE_ARN"] == {"Ref": machine_id}


@pytest.mark.parametrize(
    ("role", "reads", "writes"),
    [
        ("ScoringPlanScoringRole", {"score", "models"}, {"runs"}),
        ("ScoringScorePartRole", {"runs", "models"}, {"predictions", "quarantine", "capture"}),
        ("ScoringFinishScoringRole", {"predictions"}, {"predictions"}),
        ("ScoringStartScoringRole", set(), set()),
    ],
)
def test_each_scoring_function_reaches_only_its_own_zones(
    template: dict[str, Any], role: str, reads: set[str], writes: set[str]
) -> None:
    statements = _policy_of(template, role)
    assert statements, role
    assert _object_prefixes(statements, "s3:GetObject") == reads
    assert _object_prefixes(statements, "s3:PutObject") == writes
    assert not any("dynamodb:PutItem" in _as_list(s["Action"]) for s in statements)


def test_the_state_machine_reads_only_chunk_manifests_and_starts_only_scoring(
    template: dict[str, Any],
) -> None:
    machine_id, _ = _scoring_machine(template)
    statements = _policy_of(template, "ScoringStateMachineRole")
    assert _object_prefixes(statements, "s3:GetObject") == {"runs"}
    invoked = {
        json.dumps(resource)
        for s in statements
        if "lambda:InvokeFunction" in _as_list(s["Action"])
        for resource in _as_list(s["Resource"])
    }
    assert invoked
    assert all("Scoring" in resource for resource in invoked)
    (start,) = [
        s
        for s in _policy_of(template, "ScoringStartScoringRole")
        if "states:StartExecution" in _as_list(s["Action"])
    ]
    assert start["Resource"] == {"Ref": machine_id}


def test_chunks_are_tagged_transient_and_the_lake_expires_them(template: dict[str, Any]) -> None:
    (bucket,) = [
        r["Properties"]
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::S3::Bucket" and logical_id.startswith("LakeBucket")
    ]
    (rule,) = [
        r for r in bucket["LifecycleConfiguration"]["Rules"] if r["Id"] == "expire-transient"
    ]
    assert rule["TagFilters"] == [{"Key": "mlcycle-transient", "Value": "true"}]
    assert rule["ExpirationInDays"] == 7
    statements = _policy_of(template, "ScoringPlanScoringRole")
    assert _object_prefixes(statements, "s3:PutObjectTagging") == {"runs"}


def test_the_plan_has_room_in_tmp_for_the_upload_it_streams(template: dict[str, Any]) -> None:
    (plan,) = [
        r["Properties"]
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and logical_id.startswith("ScoringPlanScoring")
    ]
    assert plan["EphemeralStorage"] == {"Size": 10240}
