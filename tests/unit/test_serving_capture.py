"""The capture buffer: flush by size, by age, on demand; a failed put never loses a request."""

from __future__ import annotations

import gzip
import json

from mlcycle.serving.capture import CaptureBuffer


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        return self.now


class Store:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.failing = False

    def put(self, key: str, body: bytes) -> None:
        if self.failing:
            raise ConnectionError("S3 is down")
        self.objects[key] = body

    def records(self) -> list[dict[str, object]]:
        return [
            json.loads(line)
            for body in self.objects.values()
            for line in gzip.decompress(body).splitlines()
        ]


def add(buffer: CaptureBuffer, n: int, model: str = "churn") -> None:
    buffer.add(
        request_id="r1",
        model=model,
        version=2,
        instances=[{"x": i} for i in range(n)],
        predictions=[{"value": float(i)} for i in range(n)],
    )


def test_flushes_when_full_not_before() -> None:
    store, clock = Store(), Clock()
    buffer = CaptureBuffer(store.put, max_records=3, max_seconds=60, clock=clock)
    add(buffer, 2)
    assert buffer.maybe_flush() is None
    add(buffer, 1)
    result = buffer.maybe_flush()
    assert result is not None
    assert result.written == 3
    (key,) = store.objects
    assert key.startswith("capture/dataset=churn/dt=2026-01-01/")
    assert key.endswith(".jsonl.gz")
    assert store.records()[0] == {
        "time": "2026-01-01T00:00:00.000+00:00",
        "request_id": "r1",
        "model": "churn",
        "model_version": 2,
        "status": "ok",
        "latency_ms": None,
        "instance": {"x": 0},
        "prediction": {"value": 0.0},
    }
    assert len(buffer) == 0


def test_a_failed_request_is_captured_as_an_error_of_its_version() -> None:
    store = Store()
    buffer = CaptureBuffer(store.put, max_records=10, clock=lambda: 1_767_225_600.0)
    buffer.add_failure(request_id="r9", model="churn", version=3)
    buffer.flush()
    (record,) = store.records()
    assert (record["model_version"], record["status"], record["instance"]) == (3, "error", None)


def test_flushes_when_old() -> None:
    store, clock = Store(), Clock()
    buffer = CaptureBuffer(store.put, max_records=100, max_seconds=60, clock=clock)
    add(buffer, 1)
    clock.now += 59
    assert buffer.maybe_flush() is None
    clock.now += 1
    assert buffer.maybe_flush() is not None
    assert len(store.objects) == 1


def test_one_object_per_dataset() -> None:
    store = Store()
    buffer = CaptureBuffer(store.put, clock=Clock())
    add(buffer, 1, "churn")
    add(buffer, 1, "penguins")
    assert buffer.flush().written == 2
    assert sorted(k.split("/")[1] for k in store.objects) == ["dataset=churn", "dataset=penguins"]


def test_failed_flush_keeps_records_and_retries_later() -> None:
    store, clock = Store(), Clock()
    buffer = CaptureBuffer(store.put, max_records=2, max_seconds=60, max_buffered=5, clock=clock)
    store.failing = True
    add(buffer, 2)
    result = buffer.maybe_flush()
    assert result is not None
    assert (result.failed, result.written) == (2, 0)
    assert "S3 is down" in result.errors[0]
    assert len(buffer) == 2
    add(buffer, 4)
    assert buffer.maybe_flush() is None  # backs off: no S3 call on every request
    clock.now += 60
    result = buffer.maybe_flush()
    assert result is not None
    assert result.dropped == 1  # capped at max_buffered, the oldest go first
    store.failing = False
    clock.now += 60
    result = buffer.maybe_flush()
    assert result is not None
    assert result.written == 5
    assert [r["instance"] for r in store.records()] == [
        {"x": 1},
        {"x": 0},
        {"x": 1},
        {"x": 2},
        {"x": 3},
    ]
