from __future__ import annotations

from typing import Any

import pytest

from mlcycle.domain.canary import CanaryPolicy, judge, version_stats
from mlcycle.serving.release import Release


def _records(version: int, n: int, *, errors: int = 0, latency: float = 5.0, label: str = "no"):
    ok: list[dict[str, Any]] = [
        {
            "model_version": version,
            "status": "ok",
            "latency_ms": latency,
            "prediction": {"label": label},
        }
        for _ in range(n - errors)
    ]
    return ok + [{"model_version": version, "status": "error"} for _ in range(errors)]


POLICY = CanaryPolicy(min_requests=50, max_waits=2)


def test_a_healthy_canary_is_promoted() -> None:
    records = _records(1, 900) + _records(2, 100)
    verdict = judge(version_stats(records, 2), version_stats(records, 1), POLICY, waits_so_far=0)
    assert verdict.decision == "promote"
    assert verdict.prediction_psi == pytest.approx(0.0, abs=1e-9)


def test_rising_errors_roll_the_canary_back_and_say_why() -> None:
    records = _records(1, 900, errors=1) + _records(2, 100, errors=8)
    verdict = judge(version_stats(records, 2), version_stats(records, 1), POLICY, waits_so_far=0)
    assert verdict.decision == "rollback"
    assert "error rate 8.0% against production's 0.1%" in verdict.reason


def test_slower_or_differently_predicting_canaries_are_rolled_back() -> None:
    slow = _records(1, 900) + _records(2, 100, latency=20.0)
    verdict = judge(version_stats(slow, 2), version_stats(slow, 1), POLICY, waits_so_far=0)
    assert verdict.decision == "rollback"
    assert "p99 latency 20.0 ms" in verdict.reason
    shifted = _records(1, 900, label="no") + _records(2, 100, label="yes")
    verdict = judge(version_stats(shifted, 2), version_stats(shifted, 1), POLICY, waits_so_far=0)
    assert verdict.decision == "rollback"
    assert "prediction distribution PSI" in verdict.reason


def test_batch_scored_rows_are_not_production_traffic_for_the_canary() -> None:
    live = _records(1, 900) + _records(2, 100)
    batch = [
        {**r, "latency_ms": None, "batch": {"run_id": "r"}} for r in _records(1, 5000, label="yes")
    ]
    stats = version_stats(live + batch, 1)
    assert stats.requests == 900
    assert stats.prediction_shares == {"no": 1.0}


def test_too_little_traffic_waits_then_promotes_on_offline_evidence() -> None:
    records = _records(1, 100) + _records(2, 10)
    canary, production = version_stats(records, 2), version_stats(records, 1)
    assert judge(canary, production, POLICY, waits_so_far=0).decision == "wait"
    assert judge(canary, production, POLICY, waits_so_far=1).decision == "wait"
    final = judge(canary, production, POLICY, waits_so_far=2)
    assert final.decision == "promote"
    assert "offline evaluation alone" in final.reason


def test_routing_is_stable_per_client_and_matches_the_weight() -> None:
    release = Release(production=1, canary=2, canary_weight=0.1)
    routed = [release.version_for(f"client-{i}") for i in range(20_000)]
    assert routed.count(2) / len(routed) == pytest.approx(0.1, abs=0.01)
    assert all(release.version_for(f"client-{i}") == routed[i] for i in range(500))
    assert Release(production=1).version_for("anyone") == 1
    assert release.version_for(None) == 1
