"""The audit trail: every stage change of a version, with time, actor and reason, append-only."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from mlcycle.adapters.registry import Registry, StageConflictError


def test_registration_and_each_stage_change_are_recorded_in_order(registry: Registry) -> None:
    version = registry.register(
        "churn", {"stage": "candidate", "stage_reason": "roc_auc 0.87", "run_id": "r1"}
    )
    registry.set_stage("churn", version, "pending_approval", "waiting until Friday")
    person = Registry(registry.dynamodb, registry.table, actor="arn:aws:iam::1:user/ana")
    person.set_stage("churn", version, "rejected", "uses zip code as a proxy for age")

    trail = registry.history("churn")
    assert [(r.get("previous_stage"), r["stage"]) for r in trail] == [
        (None, "candidate"),
        ("candidate", "pending_approval"),
        ("pending_approval", "rejected"),
    ]
    assert [r["actor"] for r in trail] == ["pipeline", "pipeline", "arn:aws:iam::1:user/ana"]
    assert trail[0]["reason"] == "registered: roc_auc 0.87"
    assert trail[2]["reason"] == "uses zip code as a proxy for age"
    assert {r["run_id"] for r in trail} == {"r1"}  # the version's run, unless the change names one
    assert [r["at"] for r in trail] == sorted(r["at"] for r in trail)
    entry = registry.get_version("churn", version)
    assert entry is not None
    assert (entry["stage"], entry["stage_reason"]) == ("rejected", trail[2]["reason"])
    assert registry.history("penguins") == []


def test_a_decision_recorded_for_a_person_names_both(registry: Registry) -> None:
    version = registry.register("churn", {"stage": "candidate"})
    registry.set_stage("churn", version, "approved", "looks right", actor="ana")
    (_, approved) = registry.history("churn")
    assert (approved["actor"], approved["recorded_by"]) == ("ana", "pipeline")


def test_audit_records_are_never_overwritten(registry: Registry) -> None:
    registry.register("churn", {"stage": "candidate"})
    (record,) = registry.history("churn")
    forged = registry._audit_item(
        "churn", 1, stage="production", previous=None, reason="x", run_id=None
    )
    forged["Put"]["Item"]["sk"] = {"S": record["sk"]}  # the key of the existing record
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        registry.dynamodb.transact_write_items(TransactItems=[forged])
    assert registry.history("churn") == [record]


def test_racing_stage_changes_each_record_the_stage_they_replaced(registry: Registry) -> None:
    version = registry.register("churn", {"stage": "candidate"})
    stages = [f"s{i}" for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(
            pool.map(lambda s: _try(lambda: registry.set_stage("churn", version, s, s)), stages)
        )
    trail = registry.history("churn")[1:]
    recorded = [r["stage"] for r in trail]
    assert sorted(recorded) == sorted(s for s, ok in zip(stages, outcomes, strict=True) if ok)
    # A chain: each change names the stage the one before it set, whatever order they won in
    # (a change is timed after it read the stage it replaces, so time order is commit order).
    chain = ["candidate", *recorded]
    assert [r["previous_stage"] for r in trail] == chain[:-1]
    entry = registry.get_version("churn", version)
    assert entry is not None
    assert entry["stage"] == chain[-1]


def _try(change: Callable[[], None]) -> bool:
    try:
        change()
    except StageConflictError:
        return False
    return True


def test_a_missing_version_has_no_stage_to_change(registry: Registry) -> None:
    with pytest.raises(StageConflictError, match="no version 4"):
        registry.set_stage("churn", 4, "production", "by hand")
    assert registry.history("churn") == []
