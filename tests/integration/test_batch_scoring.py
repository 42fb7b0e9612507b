"""Batch scoring's steps over the lake and registry (moto): plan, each chunk, finish."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
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
from mlcycle.domain import scoring
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
    lake: Lake, registry: Registry, ctx: RunContext, chunk_rows: int
) -> tuple[ScoringPlan, list[Chunk], ScoringSummary]:
    plan = batch_scoring.plan_scoring(ctx, lake, registry, chunk_rows=chunk_rows)
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
    whole = scoring.score_chunk(model(Task.BINARY, 0.4), table, first_row=1).predictions
    assert batch_scoring.read_predictions(lake, summary).equals(whole)


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
    assert text.splitlines()[0].split(",")[:3] == ['"row"', '"id"', '"label"']
    assert len(text.splitlines()) == 1 + len(frame) - 2
    quarantine = pa.concat_tables(
        pq.read_table(io.BytesIO(lake.get_bytes(uri))) for uri in summary.quarantine
    )
    assert quarantine.column("row").to_pylist() == [8, 71]  # one in each of two chunks
    assert quarantine.column("id").to_pylist() == [frame["id"][7], frame["id"][70]]


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
