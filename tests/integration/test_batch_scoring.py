"""Batch scoring's steps over the lake and registry (moto): plan, each chunk, finish."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mlcycle import batch_scoring
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.batch_scoring import (
    Chunk,
    FinishEvent,
    ScorePartEvent,
    ScoringPlan,
    ScoringSummary,
)
from mlcycle.context import RunContext, Source
from mlcycle.domain import scoring, upload_stream
from mlcycle.domain.tables import read_upload
from mlcycle.errors import BadInputError
from mlcycle.lake_layout import version_prefix
from mlcycle.serving.manifest import MANIFEST_FILE, ONNX_FILE
from mlcycle.spec import Algorithm, Task
from tests.unit.test_batch_scoring import model, rows
from tests.unit.test_export import _one_openmp_thread, fitted  # noqa: F401

DATASET = "demo"  # the unit tests' model is of the dataset "demo", version 3


@pytest.fixture
def released(lake: Lake, registry: Registry) -> None:
    loaded = model(Task.BINARY, 0.4)
    _, onnx = fitted(Task.BINARY, Algorithm.HIST_GRADIENT_BOOSTING)
    prefix = version_prefix(DATASET, 3)
    lake.put_bytes(prefix + ONNX_FILE, onnx)
    lake.put_json(prefix + MANIFEST_FILE, loaded.manifest.to_json())
    registry.set_release(DATASET, production_version=3, expected_production=None)


def _upload(lake: Lake, name: str, data: bytes) -> RunContext:
    key = f"score/{DATASET}/{name}"
    version = lake.s3.put_object(Bucket=lake.bucket, Key=key, Body=data)["VersionId"]
    source = Source(bucket=lake.bucket, key=key, version_id=version)
    return RunContext(run_id=f"{DATASET}-{name.split('.')[0]}", source=source)


def _run(
    lake: Lake, registry: Registry, ctx: RunContext, chunk_rows: int, capture_rows: int = 10_000
) -> tuple[ScoringPlan, list[Chunk], ScoringSummary]:
    plan = batch_scoring.plan_scoring(
        ctx, lake, registry, chunk_rows=chunk_rows, capture_rows=capture_rows
    )
    chunks = [Chunk(**c) for c in lake.get_json(lake.uri(plan.chunks_key))]
    parts = [batch_scoring.score_part(ScorePartEvent(chunk=c, plan=plan), lake) for c in chunks]
    event = FinishEvent(run_id=ctx.run_id, source=ctx.source, plan=plan, parts=parts)
    return plan, chunks, batch_scoring.finish_scoring(event, lake)


@pytest.mark.usefixtures("released")
def test_a_parquet_upload_is_planned_into_chunks_and_scored_in_order(
    lake: Lake, registry: Registry
) -> None:
    frame = rows(Task.BINARY)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    ctx = _upload(lake, "customers.parquet", buffer.getvalue())
    plan, chunks, summary = _run(lake, registry, ctx, chunk_rows=50)

    assert plan.model_version == 3
    assert plan.format == "parquet"
    assert [c.first_row for c in chunks] == list(range(1, len(frame) + 1, 50))
    assert sum(c.rows for c in chunks) == len(frame)
    tags = lake.s3.get_object_tagging(Bucket=lake.bucket, Key=chunks[0].key)["TagSet"]
    assert tags == [{"Key": "mlcycle-transient", "Value": "true"}]  # the lake expires them
    assert summary.rows == summary.scored == len(frame)
    assert summary.quarantined == 0
    assert summary.csv_uri is None  # Parquet in, Parquet out only
    assert len(summary.parts) == len(chunks)
    assert all("/predictions/dataset=demo/run=demo-customers/part-" in u for u in summary.parts)
    stored = json.loads(lake.get_bytes(summary.summary_uri))
    assert stored["scored"] == len(frame)
    # chunked and scored apart, the parts equal one chunk of everything
    whole = scoring.score_chunk(
        model(Task.BINARY, 0.4), table, first_row=1, run_id=ctx.run_id
    ).predictions
    got = batch_scoring.read_predictions(lake, summary)
    assert got.drop_columns(["captured"]).equals(whole)
    assert got.column("request_id").to_pylist()[:2] == ["demo-customers:1", "demo-customers:2"]
    # fewer rows than SCORING_CAPTURE_ROWS: every row is captured, one object per chunk
    assert got.column("captured").to_pylist() == [True] * len(frame)
    assert (summary.captured, summary.capture_rate) == (len(frame), 1.0)
    assert len(_captured(lake)) == len(chunks)


@pytest.mark.usefixtures("released")
def test_a_gzip_csv_upload_gets_a_csv_of_its_predictions_and_its_bad_rows_quarantined(
    lake: Lake, registry: Registry
) -> None:
    frame = rows(Task.BINARY).astype({"x1": object})
    frame.loc[[7, 70], "x1"] = "oops"
    data = gzip.compress(frame.to_csv(index=False).encode())
    ctx = _upload(lake, "customers.csv.gz", data)
    _, _, summary = _run(lake, registry, ctx, chunk_rows=64)
    assert (summary.quarantined, summary.scored) == (2, len(frame) - 2)
    assert summary.csv_uri is not None
    text = lake.get_bytes(summary.csv_uri).decode()
    header = text.splitlines()[0].split(",")
    assert header[:4] == ['"row"', '"request_id"', '"id"', '"label"']
    assert header[-2:] == ['"model_version"', '"captured"']
    assert len(text.splitlines()) == 1 + len(frame) - 2
    quarantine = pa.concat_tables(
        pq.read_table(io.BytesIO(lake.get_bytes(uri))) for uri in summary.quarantine
    )
    assert quarantine.column("row").to_pylist() == [8, 71]  # one in each of two chunks
    assert quarantine.column("id").to_pylist() == [frame["id"][7], frame["id"][70]]


@pytest.mark.usefixtures("released")
def test_a_semicolon_cp1252_csv_is_streamed_and_a_bad_value_past_its_head_quarantined(
    lake: Lake, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_stream, "HEAD_BYTES", 2048)  # the types come from ~30 rows
    frame = rows(Task.BINARY)
    frame["id"] = [f"Café {i}" for i in range(len(frame))]
    late = len(frame) - 5

    def csv(f: pd.DataFrame) -> bytes:
        text = f.to_csv(index=False, sep=";", decimal=",", date_format="%Y-%m-%dT%H:%M:%S")
        return text.encode("cp1252")

    lines = csv(frame).split(b"\n")
    fields = lines[late + 1].split(b";")
    lines[late + 1] = b";".join([fields[0], b"oops", *fields[2:]])
    data = b"\n".join(lines)
    assert len(data) > 4 * 2048
    ctx = _upload(lake, "customers.csv", data)
    plan, chunks, summary = _run(lake, registry, ctx, chunk_rows=64)
    assert (plan.format, plan.rows, len(chunks)) == ("csv", len(frame), -(-len(frame) // 64))
    assert (summary.quarantined, summary.scored) == (1, len(frame) - 1)
    (uri,) = summary.quarantine
    quarantined = pq.read_table(io.BytesIO(lake.get_bytes(uri))).to_pylist()
    assert quarantined == [
        {
            "row": late + 1,
            "id": f"Café {late}",
            "reason": "x1: expected a number, got string 'oops'",
        }
    ]
    # every other row is scored as the whole clean file reads, decimal commas included
    clean = read_upload(csv(frame), "customers.csv").table
    expected = scoring.score_chunk(model(Task.BINARY, 0.4), clean, first_row=1, run_id=ctx.run_id)
    kept = pc.not_equal(expected.predictions.column("row"), late + 1)
    got = batch_scoring.read_predictions(lake, summary).drop_columns(["captured"])
    assert got.equals(expected.predictions.filter(kept))


@pytest.mark.usefixtures("released")
def test_a_run_captures_a_seeded_sample_of_its_rows_once(lake: Lake, registry: Registry) -> None:
    frame = rows(Task.BINARY)
    ctx = _upload(lake, "sample.csv", frame.to_csv(index=False).encode())
    plan, chunks, summary = _run(lake, registry, ctx, chunk_rows=64, capture_rows=40)
    assert (plan.capture_rows, summary.captured) == (40, 40)
    assert summary.capture_rate == pytest.approx(40 / len(frame))
    predictions = batch_scoring.read_predictions(lake, summary)
    flagged = predictions.filter(predictions.column("captured"))
    captured = _captured(lake)
    assert sorted(captured) == [
        f"capture/dataset=demo/dt={plan.started_at[:10]}/batch-demo-sample-{p:05d}.jsonl.gz"
        for p in range(len(chunks))
    ]
    records = [r for key in sorted(captured) for r in captured[key]]
    assert [r["request_id"] for r in records] == flagged.column("request_id").to_pylist()
    assert [r["instance"]["id"] for r in records] == flagged.column("id").to_pylist()
    assert {r["batch"]["sample_rate"] for r in records} == {plan.capture_rate}
    # a retried chunk writes the same rows to the same object
    again = batch_scoring.score_part(ScorePartEvent(chunk=chunks[1], plan=plan), lake)
    assert again.captured == len(captured[sorted(captured)[1]])
    assert batch_scoring.capture_key(plan, 1) == sorted(captured)[1]
    assert _captured(lake)[sorted(captured)[1]] == captured[sorted(captured)[1]]


def _captured(lake: Lake) -> dict[str, list[dict[str, Any]]]:
    """The capture zone's objects and their records."""
    return {
        key: [json.loads(line) for line in gzip.decompress(lake.get_bytes(lake.uri(key))).split()]
        for key in lake.keys(f"capture/dataset={DATASET}/")
    }


def test_nothing_is_scored_without_a_production_version(lake: Lake, registry: Registry) -> None:
    ctx = _upload(lake, "customers.csv", b"x1,x2\n1,2\n")
    with pytest.raises(BadInputError, match="no version of 'demo' is released"):
        batch_scoring.plan_scoring(ctx, lake, registry, chunk_rows=10)


@pytest.mark.usefixtures("released")
def test_a_file_missing_a_feature_fails_the_plan_naming_it(lake: Lake, registry: Registry) -> None:
    ctx = _upload(
        lake, "partial.csv", rows(Task.BINARY).drop(columns=["color"]).to_csv(index=False).encode()
    )
    with pytest.raises(BadInputError, match="lacks features of 'demo' version 3: color"):
        batch_scoring.plan_scoring(ctx, lake, registry, chunk_rows=10)
