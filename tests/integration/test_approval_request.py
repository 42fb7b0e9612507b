"""The approval request (moto): what the reviewers are told, what the version records, and a
second request for the same version (a resumed run) keeping its deadline and its silence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from functions.request_approval.handler import ApprovalRequest
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.approval import ApprovalError, pending_request, request_approval
from tests.conftest import ROOT

EVENT = ROOT / "events" / "request_approval" / "model-passed-gate.json"


@pytest.fixture
def request_event(registry: Registry) -> ApprovalRequest:
    event = ApprovalRequest.model_validate(json.loads(EVENT.read_text()))
    assert event.run.problem is not None
    registry.register(
        event.run.problem.dataset,
        {
            "stage": "candidate",
            "run_id": event.run.run_id,
            "artifacts": {"model_card_report_uri": "s3://lake/reports/x/model_card.html"},
        },
    )
    return event


def test_the_reviewers_are_told_what_waits_why_and_how_to_decide(
    request_event: ApprovalRequest, lake: Lake, registry: Registry
) -> None:
    told: list[tuple[str, str]] = []
    run = request_event.run
    before = datetime.now(UTC)
    answer = request_approval(run, lake, registry, "token-1", lambda s, m: told.append((s, m)))
    ((subject, message),) = told
    assert subject == "mlcycle: v1 of customer-churn waits for approval"
    assert "serves no traffic until a person decides" in message
    assert f"Evaluation report: {run.evaluate.report_uri}" in message  # type: ignore[union-attr]
    assert "Model card: s3://lake/reports/x/model_card.html" in message
    assert 'mlcycle approve customer-churn 1 --reason "..."' in message
    request = pending_request(registry, "customer-churn", 1)
    assert request["token"] == "token-1"
    assert request["run_id"] == run.run_id
    deadline = datetime.fromisoformat(request["expires_at"])
    assert deadline - before == pytest.approx(timedelta(hours=72), abs=timedelta(seconds=5))
    assert answer["expires_at"] == request["expires_at"]
    # the run context it waits with, for a later process to resume from
    assert lake.get_json(request["context_uri"])["run_id"] == run.run_id

    again = request_approval(run, lake, registry, "token-2", lambda s, m: told.append((s, m)))
    assert len(told) == 1  # asked again (a resumed run): nobody is told twice
    assert again["expires_at"] == request["expires_at"]  # and the deadline holds
    assert pending_request(registry, "customer-churn", 1)["token"] == "token-2"
    assert [r["stage"] for r in registry.history("customer-churn")] == [
        "candidate",
        "pending_approval",
        "pending_approval",
    ]


def test_only_a_waiting_version_can_be_decided(
    request_event: ApprovalRequest, registry: Registry
) -> None:
    with pytest.raises(ApprovalError, match=r"is candidate .*not waiting for approval"):
        pending_request(registry, "customer-churn", 1)
    with pytest.raises(ApprovalError, match="has no version 7"):
        pending_request(registry, "customer-churn", 7)
