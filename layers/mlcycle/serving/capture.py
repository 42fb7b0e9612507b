"""Capture of every prediction to the lake's capture zone, buffered per container.

Each prediction becomes one JSON line:
`{"time", "request_id", "model", "model_version", "status": "ok", "latency_ms",
"instance": {...}, "prediction": {...}}`; a request the model failed to answer becomes one
line with `"status": "error"` and no instance (a canary is judged on both).
and a buffer is written as one gzip JSON-lines object,
`capture/dataset=<name>/dt=YYYY-MM-DD/<uuid>.jsonl.gz`, when it holds `max_records` records or
its oldest record is `max_seconds` old (checked after each request), or on `flush()`.

Why not Firehose (or an S3 put per request): the warm budget of a prediction is about three
times a bare `session.run`, a fraction of a millisecond; any per-request network call costs
tens of milliseconds. Buffering pays one S3 put per `max_records` predictions instead, on the
request that fills the buffer. Lambda freezes a container between requests, so a background
thread could not flush reliably either. The trade-off: when a container is recycled, up to
`max_seconds` or `max_records` of captured predictions are lost. Monitoring compares
distributions and joins labels on what it finds; a sample is enough, so that loss is accepted.

A failed flush never fails the request: its records stay buffered (up to `max_buffered`; the
oldest are dropped beyond that) and the next flush is tried after `max_seconds`.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlcycle.lake_layout import Zone

Put = Callable[[str, bytes], None]  # (key, body) -> None; raises on failure
# (time, request id, model, version, status, latency ms, instance, prediction)
_Record = tuple[float, str, str, int, str, float | None, Any, Any]


def capture_key(dataset: str, day: str) -> str:
    return f"{Zone.CAPTURE.prefix}dataset={dataset}/dt={day}/{uuid.uuid4().hex}.jsonl.gz"


@dataclass
class FlushResult:
    written: int = 0  # records
    keys: list[str] = field(default_factory=list)
    failed: int = 0  # records whose put failed (still buffered)
    dropped: int = 0  # records dropped because the buffer was full
    errors: list[str] = field(default_factory=list)


class CaptureBuffer:
    def __init__(
        self,
        put: Put,
        *,
        max_records: int = 500,
        max_seconds: float = 60.0,
        max_buffered: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.put = put
        self.max_records = max_records
        self.max_seconds = max_seconds
        self.max_buffered = max_buffered or 10 * max_records
        self.clock = clock
        # Records are kept as tuples and serialized at flush: the request path only appends.
        self._records: list[_Record] = []
        self._oldest: float | None = None
        self._retry_at = 0.0
        self._dropped = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._records)

    def add(
        self,
        *,
        request_id: str,
        model: str,
        version: int,
        instances: list[Any],
        predictions: list[Any],
        latency_ms: float | None = None,
    ) -> None:
        now = self.clock()
        with self._lock:
            if self._oldest is None:
                self._oldest = now
            self._records.extend(
                (now, request_id, model, version, "ok", latency_ms, instance, prediction)
                for instance, prediction in zip(instances, predictions, strict=True)
            )

    def add_failure(self, *, request_id: str, model: str, version: int) -> None:
        """A request this version failed to answer (counted against it when judged)."""
        now = self.clock()
        with self._lock:
            if self._oldest is None:
                self._oldest = now
            self._records.append((now, request_id, model, version, "error", None, None, None))

    def due(self) -> bool:
        if not self._records:
            return False
        now = self.clock()
        if now < self._retry_at:
            return False
        assert self._oldest is not None
        return len(self._records) >= self.max_records or now - self._oldest >= self.max_seconds

    def maybe_flush(self) -> FlushResult | None:
        """Flush if the buffer is full or old enough; None when nothing was due."""
        return self.flush() if self.due() else None

    def flush(self) -> FlushResult:
        """Write every buffered record, one object per (dataset, day)."""
        with self._lock:
            records, self._records, self._oldest = self._records, [], None
        result = FlushResult()
        groups: dict[tuple[str, str], list[_Record]] = {}
        for record in records:
            day = datetime.fromtimestamp(record[0], UTC).strftime("%Y-%m-%d")
            groups.setdefault((record[2], day), []).append(record)
        kept: list[_Record] = []
        for (dataset, day), group in groups.items():
            key = capture_key(dataset, day)
            try:
                self.put(key, _encode(group))
            except Exception as error:
                result.failed += len(group)
                result.errors.append(f"{key}: {error}")
                kept.extend(group)
            else:
                result.written += len(group)
                result.keys.append(key)
        if kept:
            with self._lock:
                self._records = kept + self._records
                overflow = len(self._records) - self.max_buffered
                if overflow > 0:
                    del self._records[:overflow]
                    result.dropped = overflow
                self._oldest = self._records[0][0]
                self._retry_at = self.clock() + self.max_seconds
        return result


def _encode(records: list[_Record]) -> bytes:
    lines = [
        json.dumps(
            {
                "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
                "request_id": request_id,
                "model": model,
                "model_version": version,
                "status": status,
                "latency_ms": latency_ms,
                "instance": instance,
                "prediction": prediction,
            },
            separators=(",", ":"),
            allow_nan=True,  # a NaN cannot reach here (validation refuses it), but never fail
        )
        for at, request_id, model, version, status, latency_ms, instance, prediction in records
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)
