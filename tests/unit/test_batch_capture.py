"""Batch-scored rows as capture records: the endpoint's record for the same row, request ids
to label by, and a seeded sample whose size over a run is exact."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from mlcycle.domain import batch_capture, scoring
from mlcycle.spec import Task
from tests.unit.test_batch_scoring import endpoint, instances, model, rows
from tests.unit.test_export import _one_openmp_thread  # noqa: F401


@pytest.mark.parametrize(
    ("total", "chunk", "wanted"), [(10_000_000, 200_000, 10_000), (1234, 100, 50), (90, 40, 500)]
)
def test_the_runs_sample_is_spread_over_its_chunks_and_adds_up_exactly(
    total: int, chunk: int, wanted: int
) -> None:
    quotas = [
        batch_capture.capture_quota(offset, min(chunk, total - offset), total, wanted)
        for offset in range(0, total, chunk)
    ]
    assert sum(quotas) == min(wanted, total)
    share = min(wanted, total) * chunk / total
    assert all(abs(q - share) < 1 for q in quotas[:-1])  # in proportion to the rows


def test_the_sample_is_seeded_by_run_and_part() -> None:
    first = batch_capture.capture_mask(200_000, 200, run_id="r", part=3)
    assert first.sum() == 200
    assert np.array_equal(first, batch_capture.capture_mask(200_000, 200, run_id="r", part=3))
    assert not np.array_equal(first, batch_capture.capture_mask(200_000, 200, run_id="r", part=4))
    assert batch_capture.capture_mask(5, 10, run_id="r", part=0).tolist() == [True] * 5


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION])
def test_a_captured_row_is_the_endpoints_record_of_that_request(task: Task) -> None:
    loaded = model(task, 0.4 if task is Task.BINARY else None)
    frame = rows(task)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    scored = scoring.score_chunk(loaded, table, first_row=101, run_id="demo-r1")
    predictions = scored.predictions
    assert predictions.column("request_id").to_pylist()[:2] == ["demo-r1:101", "demo-r1:102"]
    picked = [3, 17, 40]
    at = datetime(2024, 6, 30, 2, tzinfo=UTC)
    records = batch_capture.capture_records(
        table.take(picked),
        predictions.take(picked),
        loaded.manifest,
        at=at,
        run_id="demo-r1",
        sample_rate=0.25,
    )
    answers = endpoint(loaded, frame)
    sent = instances(frame)
    for record, i in zip(records, picked, strict=True):
        assert record["prediction"] == answers[i]  # the same JSON :predict answers
        assert record["request_id"] == f"demo-r1:{101 + i}"
        assert {k: record["instance"][k] for k in sent[i]} == sent[i]  # as a client sends it
        assert record["instance"]["id"] == frame["id"][i]  # every column but the target
        assert (record["model"], record["model_version"], record["status"]) == ("demo", 3, "ok")
        assert record["time"] == "2024-06-30T02:00:00.000+00:00"
        assert record["batch"] == {"run_id": "demo-r1", "row": 101 + i, "sample_rate": 0.25}
    lines = gzip.decompress(batch_capture.encode(records)).decode().splitlines()
    assert [json.loads(line) for line in lines] == records
