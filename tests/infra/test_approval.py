"""Approval in the synthesized template: a callback task between registration and release
that only a decision or its deadline ends, and an audit trail no role can rewrite."""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture(scope="module")
def states(definition: dict[str, Any]) -> dict[str, Any]:
    return dict(definition["States"])


def _by_function(states: dict[str, Any], function: str) -> tuple[str, dict[str, Any]]:
    return next(
        (name, s)
        for name, s in states.items()
        if s.get("Resource") == function or s.get("Parameters", {}).get("FunctionName") == function
    )


def test_only_a_model_that_needs_approval_waits_and_then_goes_to_the_release(
    states: dict[str, Any],
) -> None:
    register_name, register = _by_function(states, "register_model")
    choice = states[register["Next"]]
    assert choice["Type"] == "Choice"
    (required,) = choice["Choices"]
    assert (required["Variable"], required["StringEquals"]) == (
        "$.registration.approval",
        "required",
    )
    release_name, _ = _by_function(states, "release_model")
    assert choice["Default"] == release_name
    wait_name, wait = _by_function(states, "request_approval")
    assert required["Next"] == wait_name
    assert wait["Next"] == release_name
    assert register_name != wait_name


def test_the_wait_is_a_callback_with_the_specs_deadline(states: dict[str, Any]) -> None:
    _, wait = _by_function(states, "request_approval")
    assert wait["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert wait["Parameters"]["Payload"] == {"token.$": "$$.Task.Token", "run.$": "$"}
    assert wait["TimeoutSecondsPath"] == "$.registration.approval_timeout_seconds"
    assert wait["ResultPath"] == "$.approval"
    # A timeout is the reviewers' answer: never retried (that would ask again), but caught
    # into a rejection that the release stage records.
    retried = {e for r in wait["Retry"] for e in r["ErrorEquals"]}
    assert "States.Timeout" not in retried
    timeout, anything = wait["Catch"]
    assert timeout["ErrorEquals"] == ["States.Timeout"]
    timed_out = states[timeout["Next"]]
    assert timed_out["Type"] == "Pass"
    assert timed_out["Result"]["decision"] == "timed_out"
    assert timed_out["ResultPath"] == "$.approval"
    assert timed_out["Next"] == wait["Next"]
    assert anything["ErrorEquals"] == ["States.ALL"]


def test_a_run_may_wait_for_the_longest_approval_the_spec_allows(
    definition: dict[str, Any],
) -> None:
    assert definition["TimeoutSeconds"] >= 30 * 86_400


def test_requests_go_to_an_encrypted_topic_that_only_the_request_function_publishes_to(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    (topic_id,) = [
        k
        for k, r in resources.items()
        if r["Type"] == "AWS::SNS::Topic" and k.startswith("PipelineApprovalRequests")
    ]
    assert "KmsMasterKeyId" in resources[topic_id]["Properties"]
    publishers = [
        k
        for k, r in resources.items()
        if r["Type"] == "AWS::IAM::Policy"
        for statement in r["Properties"]["PolicyDocument"]["Statement"]
        if "sns:Publish" in json.dumps(statement["Action"])
        and statement["Resource"] == {"Ref": topic_id}
    ]
    assert len(publishers) == 1
    assert publishers[0].startswith("PipelineRequestApprovalRole")


def test_no_role_that_writes_the_registry_may_rewrite_the_audit_trail(
    template: dict[str, Any],
) -> None:
    writers = 0
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        statements = resource["Properties"]["PolicyDocument"]["Statement"]
        allowed = {
            a
            for s in statements
            if s["Effect"] == "Allow"
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        if "dynamodb:UpdateItem" not in allowed:
            continue
        writers += 1
        (deny,) = [s for s in statements if s["Effect"] == "Deny"]
        assert set(deny["Action"]) == {"dynamodb:UpdateItem", "dynamodb:DeleteItem"}
        assert deny["Condition"] == {
            "ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["AUDIT#*"]}
        }
    assert writers >= 6  # define_problem, register, request_approval, release, judge, failure
