"""Uploads at once, and releases racing each other: nothing lost, nothing overwritten."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.context import (
    EvaluateResult,
    Gate,
    ProblemResult,
    ProcessResult,
    RegisterResult,
    RunContext,
    Source,
)
from mlcycle.local.runner import deliver_events, follow_execution, local_aws
from mlcycle.release import ReleaseConflictError, start_release
from mlcycle.samples import customer_churn
from tests.reliability.conftest import QUICK_SPEC


def _upload_at_once(
    out: Path, uploads: dict[str, bytes], specs: dict[str, str]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Put every spec, then every upload, then deliver the events: the runs overlap (moto runs
    each execution on its own thread). Returns the outcomes and the registry's items."""
    with local_aws(out) as aws:
        s3 = aws.session.client("s3")
        bucket = aws.deployment.lake_bucket
        for dataset, spec in specs.items():
            s3.put_object(Bucket=bucket, Key=f"specs/{dataset}.yaml", Body=spec.encode())
        for key, body in uploads.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        arns = deliver_events(aws.deployment, aws.session)
        assert len(arns) == len(uploads)
        outcomes = [
            # an execution is named <dataset>-<digest of the object version>
            follow_execution(aws.deployment, aws.session, arn, arn.split(":")[-1][:-17], None)
            for arn in arns
        ]
        registry = Registry(aws.session.client("dynamodb"), aws.deployment.registry_table)
        versions = {d: registry.list_versions(d) for d in specs}
        releases = {d: registry.get_release(d) for d in specs}
    return outcomes, [versions, releases]


def _csv(rows: int, seed: int) -> bytes:
    return customer_churn(rows, seed=seed).to_csv(index=False).encode()


@pytest.mark.slow
def test_two_datasets_uploaded_at_once_both_complete(tmp_path: Path) -> None:
    uploads = {"landing/alpha.csv": _csv(200, 1), "landing/beta.csv": _csv(200, 2)}
    specs = {d: f"dataset: {d}\n{QUICK_SPEC}" for d in ("alpha", "beta")}
    outcomes, (versions, releases) = _upload_at_once(tmp_path, uploads, specs)
    assert [o.status for o in outcomes] == ["SUCCEEDED", "SUCCEEDED"], [o.error for o in outcomes]
    for dataset in ("alpha", "beta"):
        assert [v["version"] for v in versions[dataset]] == [1]
        assert versions[dataset][0]["lineage"]["source"]["key"] == f"landing/{dataset}.csv"
        assert releases[dataset]["production_version"] == 1


@pytest.mark.slow
def test_two_versions_of_one_dataset_at_once_get_distinct_ordered_versions(
    tmp_path: Path,
) -> None:
    uploads = {"landing/churn/a.csv": _csv(200, 1), "landing/churn/b.csv": _csv(200, 2)}
    outcomes, (versions, releases) = _upload_at_once(
        tmp_path, uploads, {"churn": f"dataset: churn\n{QUICK_SPEC}"}
    )
    assert [v["version"] for v in versions["churn"]] == [1, 2]  # never one number twice
    created = [v["created_at"] for v in versions["churn"]]
    assert created == sorted(created)
    assert {v["lineage"]["source"]["key"] for v in versions["churn"]} == set(uploads)
    release = releases["churn"]
    assert release.get("canary_version") is None  # no release left half done
    assert release["production_version"] in (1, 2)
    # Both SUCCEEDED, whichever released first.
    assert all(
        o.status == "SUCCEEDED" or o.error["type"] == "ConditionalCheckFailedException"
        for o in outcomes
    ), [o.error for o in outcomes]


@pytest.fixture
def releases_meet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each first release (no production yet) waits for the other before it writes: both have
    read the pointer by then, so the race is certain rather than a matter of timing."""
    real = Registry.set_release
    meet = threading.Barrier(2, timeout=60)

    def set_release(self: Registry, dataset: str, **kwargs: Any) -> None:
        if kwargs.get("expected_production") is None:
            meet.wait()
        real(self, dataset, **kwargs)

    monkeypatch.setattr(Registry, "set_release", set_release)


@pytest.mark.slow
def test_two_first_releases_of_one_dataset_at_once_both_succeed(
    tmp_path: Path, releases_meet: None
) -> None:
    uploads = {"landing/churn/a.csv": _csv(200, 1), "landing/churn/b.csv": _csv(200, 2)}
    outcomes, (versions, _) = _upload_at_once(
        tmp_path, uploads, {"churn": f"dataset: churn\n{QUICK_SPEC}"}
    )
    assert [v["version"] for v in versions["churn"]] == [1, 2]
    assert [o.status for o in outcomes] == ["SUCCEEDED", "SUCCEEDED"], [o.error for o in outcomes]


# --- the release pointer under racing writers (adapter level) --------------------------------


def _race(workers: list[Callable[[], None]]) -> list[str]:
    """Run the workers at once; each outcome is "ok" or the error code it raised."""
    barrier = threading.Barrier(len(workers))
    results: list[str] = [""] * len(workers)

    def run(i: int) -> None:
        barrier.wait()
        try:
            workers[i]()
            results[i] = "ok"
        except ClientError as error:
            results[i] = error.response["Error"]["Code"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_only_one_of_racing_first_releases_wins(registry: Registry) -> None:
    results = _race(
        [
            lambda v=v: registry.set_release(
                "churn", production_version=v, expected_production=None
            )  # type: ignore[misc]
            for v in range(1, 9)
        ]
    )
    assert results.count("ok") == 1
    assert results.count("ConditionalCheckFailedException") == 7
    winner = results.index("ok") + 1
    assert registry.get_release("churn")["production_version"] == winner


def test_only_one_of_racing_canaries_starts(registry: Registry) -> None:
    registry.set_release("churn", production_version=1, expected_production=None)
    results = _race(
        [
            lambda v=v: registry.start_canary("churn", version=v, weight=0.1, expected_production=1)  # type: ignore[misc]
            for v in range(2, 10)
        ]
    )
    assert results.count("ok") == 1
    assert results.count("ConditionalCheckFailedException") == 7
    release = registry.get_release("churn")
    assert release is not None
    assert release["canary_version"] == results.index("ok") + 2
    assert release["production_version"] == 1  # production untouched by the canaries


def test_a_canary_cannot_start_after_production_moved(registry: Registry) -> None:
    registry.set_release("churn", production_version=1, expected_production=None)
    registry.set_release("churn", production_version=2, expected_production=1)
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        registry.start_canary("churn", version=3, weight=0.1, expected_production=1)
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        registry.set_release("churn", production_version=3, expected_production=1)
    release = registry.get_release("churn")
    assert release is not None
    assert release["production_version"] == 2


def test_versions_allocated_by_racing_registrations_are_unique(registry: Registry) -> None:
    allocated: list[int] = []
    lock = threading.Lock()

    def register(i: int) -> None:
        version = registry.register("churn", {"stage": "candidate", "run_id": f"run-{i}"})
        with lock:
            allocated.append(version)

    assert _race([lambda i=i: register(i) for i in range(12)]) == ["ok"] * 12  # type: ignore[misc]
    assert sorted(allocated) == list(range(1, 13))
    runs = {v["version"]: v["run_id"] for v in registry.list_versions("churn")}
    assert len(set(runs.values())) == 12


def _release_context(lake: Lake, version: int) -> RunContext:
    spec_key = f"runs/dataset=churn/run=run-v{version}/spec.json"
    lake.put_json(spec_key, {"dataset": "churn", "target": "churned"})
    return RunContext(
        run_id=f"run-v{version}",
        source=Source(bucket="lake", key="landing/churn.csv", version_id=None, size=1),
        problem=ProblemResult(
            dataset="churn",
            spec_uri=lake.uri(spec_key),
            task="binary",
            target="churned",
            started_at="2026-01-01T00:00:00+00:00",
        ),
        process=ProcessResult.model_construct(task="binary"),
        registration=RegisterResult(model_version=version, stage="candidate"),
        # only the gate is read when releasing
        evaluate=EvaluateResult.model_construct(gate=Gate(passed=True, reason="better")),
    )


def test_a_release_during_a_canary_raises_and_changes_nothing(
    lake: Lake, registry: Registry
) -> None:
    for _ in range(3):
        registry.register("churn", {"stage": "candidate"})
    registry.set_release("churn", production_version=1, expected_production=None)
    started = start_release(_release_context(lake, 2), lake, registry)
    assert (started.action, started.stage) == ("canary", "canary")
    before = registry.get_release("churn")

    with pytest.raises(ReleaseConflictError, match="v2 of churn is being released as a canary"):
        start_release(_release_context(lake, 3), lake, registry)
    assert registry.get_release("churn") == before
    assert before is not None
    assert (before["production_version"], before["canary_version"]) == (1, 2)
    assert registry.get_version("churn", 3)["stage"] == "candidate"
