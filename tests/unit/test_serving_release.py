"""The release pointer cache: read once per TTL, failures remembered, stale kept on outage."""

from __future__ import annotations

from typing import Any

import pytest

from mlcycle.serving.errors import ModelNotFoundError, ModelUnavailableError, NoReleaseError
from mlcycle.serving.release import ModelCache


class Registry:
    def __init__(self, items: dict[str, dict[str, Any]]) -> None:
        self.items = items  # pk -> RELEASE item (or {} for registered, unreleased)
        self.reads = 0
        self.down = False

    def get_item(self, TableName: str, Key: dict[str, Any]) -> dict[str, Any]:
        self.reads += 1
        if self.down:
            raise ConnectionError("DynamoDB is unreachable")
        item = self.items.get(Key["pk"]["S"])
        return {"Item": item} if item else {}

    def query(self, **kwargs: Any) -> dict[str, Any]:
        pk = kwargs["ExpressionAttributeValues"][":pk"]["S"]
        return {"Items": [{"pk": {"S": pk}}] if pk in self.items else []}


class Lake:
    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        raise ConnectionError(f"no {Key}")


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def cache(registry: Registry, clock: Clock, failures: list[Any] | None = None) -> ModelCache:
    return ModelCache(
        dynamodb=registry,
        s3=Lake(),
        table="t",
        bucket="b",
        ttl=30,
        clock=clock,
        on_load_failure=lambda *args: (failures if failures is not None else []).append(args),
    )


def test_unknown_and_unreleased_models_are_told_apart_and_remembered() -> None:
    registry, clock = Registry({"MODEL#draft": {}}), Clock()
    models = cache(registry, clock)
    with pytest.raises(ModelNotFoundError, match="'nope'"):
        models.get("nope")
    with pytest.raises(NoReleaseError):
        models.get("draft")
    reads = registry.reads
    with pytest.raises(ModelNotFoundError):
        models.get("nope")
    assert registry.reads == reads  # within the TTL: no second read
    clock.now = 31
    with pytest.raises(ModelNotFoundError):
        models.get("nope")
    assert registry.reads == reads + 1


def test_the_client_is_identified_only_during_a_canary() -> None:
    asked: list[str] = []

    def client() -> str:
        asked.append("asked")
        return "caller"

    registry, clock = Registry({"MODEL#churn": {"production_version": {"N": "4"}}}), Clock()
    models = cache(registry, clock)
    with pytest.raises(ModelUnavailableError, match="version 4"):  # Lake holds no artifact
        models.get("churn", client)
    assert asked == []
    registry.items["MODEL#churn"] = {
        "production_version": {"N": "4"},
        "canary_version": {"N": "5"},
        "canary_weight": {"N": "1"},
    }
    clock.now = 31
    with pytest.raises(ModelUnavailableError, match="version 5"):
        models.get("churn", client)
    assert asked == ["asked"]


def test_an_invalid_name_never_reaches_the_registry() -> None:
    registry = Registry({})
    with pytest.raises(ModelNotFoundError):
        cache(registry, Clock()).get("../etc/passwd")
    assert registry.reads == 0


def test_a_load_failure_is_reported_once_per_ttl() -> None:
    item = {"production_version": {"N": "4"}}
    registry, clock, failures = Registry({"MODEL#churn": item}), Clock(), []
    models = cache(registry, clock, failures)
    for _ in range(3):
        with pytest.raises(ModelUnavailableError, match=r"manifest\.json"):
            models.get("churn")
    assert len(failures) == 1
    clock.now = 31
    with pytest.raises(ModelUnavailableError):
        models.get("churn")
    assert len(failures) == 2


def test_registry_outage_without_a_known_version_is_503() -> None:
    registry = Registry({})
    registry.down = True
    with pytest.raises(ModelUnavailableError, match="cannot read the release"):
        cache(registry, Clock()).get("churn")
