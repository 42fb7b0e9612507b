from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from mlcycle.adapters.registry import Registry


def test_versions_are_allocated_in_order_with_their_entries(registry: Registry) -> None:
    assert registry.latest_version("churn") == 0
    assert registry.register("churn", {"stage": "candidate", "metrics": {"roc_auc": 0.83}}) == 1
    assert registry.register("churn", {"stage": "rejected", "metrics": {"roc_auc": 0.51}}) == 2
    assert registry.register("penguins", {"stage": "candidate"}) == 1
    entry = registry.get_version("churn", 1)
    assert entry is not None
    assert entry["metrics"] == {"roc_auc": 0.83}
    assert [v["version"] for v in registry.list_versions("churn")] == [1, 2]


def test_concurrent_registrations_never_share_a_version(registry: Registry) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(lambda i: registry.register("churn", {"run": i}), range(16)))
    assert sorted(versions) == list(range(1, 17))
    runs = {v["run"] for v in registry.list_versions("churn")}
    assert runs == set(range(16))


def test_release_pointer_moves_only_from_the_version_it_was_read_at(registry: Registry) -> None:
    registry.set_release("churn", production_version=1, expected_production=None)
    registry.set_release("churn", production_version=2, expected_production=1)
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        # A second writer that read version 1 must not overwrite the release of version 2.
        registry.set_release("churn", production_version=3, expected_production=1)
    release = registry.get_release("churn")
    assert release is not None
    assert release["production_version"] == 2


def test_run_records_are_created_and_updated(registry: Registry) -> None:
    registry.put_run("churn", "run-1", {"status": "RUNNING", "target": "churned"})
    registry.update_run("churn", "run-1", {"status": "FAILED", "error": {"stage": "collect_data"}})
    record = registry.get_run("churn", "run-1")
    assert record is not None
    assert record["status"] == "FAILED"
    assert record["target"] == "churned"
    assert record["error"] == {"stage": "collect_data"}
