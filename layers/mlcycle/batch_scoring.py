"""Batch scoring wired to the lake and registry: the steps of the scoring state machine.

An upload to `score/<dataset>/<file>` starts one scoring run (`start_scoring`). The plan reads the
file once and writes it back as Parquet chunks with a JSON manifest of them (`plan_scoring`); a
Distributed Map reads the manifest and scores each chunk in its own invocation with the
dataset's production version, pinned by the plan (`score_part`); the finish step writes the
summary, and a CSV of the predictions when the upload was CSV (`finish_scoring`).

    predictions/dataset=<name>/run=<id>/part-NNNNN.parquet   one row per scored input row
    predictions/dataset=<name>/run=<id>/_summary.json        rows, quarantined, version, parts
    predictions/dataset=<name>/run=<id>/_predictions.csv     when the upload was CSV
    quarantine/dataset=<name>/run=<id>/part-NNNNN.parquet    rows that could not be scored

Names starting with `_` are skipped by Athena, Glue and Spark readers of the Parquet parts.
"""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from mlcycle.adapters.executions import start_once
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry, now_iso
from mlcycle.context import RunContext, Source
from mlcycle.domain import scoring
from mlcycle.domain.tables import read_upload
from mlcycle.errors import BadInputError
from mlcycle.lake_layout import TRANSIENT_TAG, Zone, file_name, run_prefix, version_prefix
from mlcycle.serving.manifest import MANIFEST_FILE, ONNX_FILE
from mlcycle.serving.model import LoadedModel, load_model, parse_manifest
from mlcycle.spec import dataset_name
from mlcycle.stages import execution_name  # the pipeline's naming: one run per version

DEFAULT_CHUNK_ROWS = 200_000  # ~25 MB of features per invocation for the sample's shape
SUMMARY_FILE = "_summary.json"
CSV_FILE = "_predictions.csv"
CHUNKS_FILE = "chunks.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ScoringSettings(_Model):
    """The scoring functions' environment."""

    chunk_rows: int = Field(DEFAULT_CHUNK_ROWS, alias="SCORING_CHUNK_ROWS", gt=0)
    onnx_threads: int = Field(1, alias="ORT_INTRA_OP_THREADS", gt=0)


class Chunk(_Model):
    part: int
    key: str  # the chunk's Parquet, in the runs zone
    first_row: int  # 1-based row number of its first row in the upload
    rows: int


class ScoringPlan(_Model):
    dataset: str
    run_id: str
    model_version: int
    format: str  # csv or parquet, as read
    rows: int
    parts: int
    chunks_key: str  # the JSON array of `Chunk`s the Distributed Map reads
    predictions_prefix: str
    quarantine_prefix: str
    started_at: str


class PartResult(_Model):
    part: int
    rows: int
    scored: int
    quarantined: int
    unknown_categories: int = 0
    predictions_key: str
    quarantine_key: str | None = None


class ScorePartEvent(_Model):
    chunk: Chunk
    plan: ScoringPlan


class FinishEvent(_Model):
    run_id: str
    source: Source
    plan: ScoringPlan
    parts: list[PartResult]


class ScoringSummary(_Model):
    dataset: str
    run_id: str
    model_version: int
    source: Source
    format: str
    rows: int
    scored: int
    quarantined: int
    unknown_categories: int
    parts: list[str]  # s3:// URIs of the prediction parts, in row order
    quarantine: list[str]
    csv_uri: str | None = None
    summary_uri: str
    started_at: str
    finished_at: str


def start_scoring(
    sfn: Any,
    state_machine_arn: str,
    *,
    bucket: str,
    key: str,
    version: str | None,
    size: int | None,
) -> dict[str, Any]:
    """Start the scoring run of one uploaded object version; a repeated event starts nothing."""
    source = Source(bucket=bucket, key=key, version_id=version, size=size)
    context = RunContext(run_id=execution_name(bucket, key, version), source=source)
    return start_once(sfn, state_machine_arn, context)


def production_version(registry: Registry, dataset: str) -> int:
    """The version the endpoint serves to everyone (a canary is not used for batch)."""
    release = registry.get_release(dataset) or {}
    version = release.get("production_version")
    if version is None:
        raise BadInputError(
            f"no version of {dataset!r} is released to production: nothing to score with"
        )
    return int(version)


def plan_scoring(
    ctx: RunContext, lake: Lake, registry: Registry, *, chunk_rows: int
) -> ScoringPlan:
    """Read the upload once, check it against the production model, write it as chunks."""
    started_at = now_iso()
    dataset = dataset_name(ctx.source.key)
    version = production_version(registry, dataset)
    manifest = parse_manifest(
        lake.get_bytes(lake.uri(version_prefix(dataset, version) + MANIFEST_FILE)),
        name=dataset,
        version=version,
    )
    data = lake.get_bytes(
        f"s3://{ctx.source.bucket}/{ctx.source.key}", version_id=ctx.source.version_id
    )
    upload = read_upload(data, file_name(ctx.source.key), dictionary_encode=True)
    del data
    table = upload.table
    missing = scoring.missing_features(manifest, table.column_names)
    if missing:
        raise BadInputError(
            f"{file_name(ctx.source.key)} lacks features of {dataset!r} version {version}: "
            f"{', '.join(missing)}"
        )
    work = run_prefix(Zone.RUNS, dataset, ctx.run_id) + "scoring/"
    chunks: list[dict[str, Any]] = []
    for part, offset in enumerate(range(0, table.num_rows, chunk_rows)):
        key = f"{work}chunk-{part:05d}.parquet"
        _put_transient_parquet(lake, key, table.slice(offset, chunk_rows))
        rows = min(chunk_rows, table.num_rows - offset)
        chunks.append(Chunk(part=part, key=key, first_row=offset + 1, rows=rows).model_dump())
    chunks_key = work + CHUNKS_FILE
    lake.put_json(chunks_key, chunks)
    return ScoringPlan(
        dataset=dataset,
        run_id=ctx.run_id,
        model_version=version,
        format=upload.format,
        rows=table.num_rows,
        parts=len(chunks),
        chunks_key=chunks_key,
        predictions_prefix=run_prefix(Zone.PREDICTIONS, dataset, ctx.run_id),
        quarantine_prefix=run_prefix(Zone.QUARANTINE, dataset, ctx.run_id),
        started_at=started_at,
    )


def _put_transient_parquet(lake: Lake, key: str, table: pa.Table) -> None:
    """A working copy: tagged for the lake's lifecycle rule to expire it."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    lake.s3.put_object(
        Bucket=lake.bucket,
        Key=key,
        Body=buffer.getvalue(),
        ContentType="application/vnd.apache.parquet",
        Tagging=f"{TRANSIENT_TAG}=true",
    )


_models: dict[tuple[str, int], LoadedModel] = {}  # per container: chunks of a run share one
_models_lock = threading.Lock()


def scoring_model(lake: Lake, dataset: str, version: int, *, threads: int = 1) -> LoadedModel:
    """The version's serving artifact, verified as the endpoint verifies it, once per container."""
    with _models_lock:
        model = _models.get((dataset, version))
        if model is None:
            prefix = version_prefix(dataset, version)
            manifest = parse_manifest(
                lake.get_bytes(lake.uri(prefix + MANIFEST_FILE)), name=dataset, version=version
            )
            onnx = lake.get_bytes(lake.uri(prefix + ONNX_FILE))
            model = load_model(manifest, onnx, threads=threads)
            _models.clear()  # one model at a time: a container scores one run's chunks
            _models[(dataset, version)] = model
        return model


def score_part(event: ScorePartEvent, lake: Lake, *, threads: int = 1) -> PartResult:
    """Score one chunk: its predictions part, and its quarantined rows if any."""
    plan, chunk = event.plan, event.chunk
    model = scoring_model(lake, plan.dataset, plan.model_version, threads=threads)
    table = pq.read_table(io.BytesIO(lake.get_bytes(lake.uri(chunk.key))))
    scored = scoring.score_chunk(model, table, first_row=chunk.first_row)
    name = f"part-{chunk.part:05d}.parquet"
    predictions_key = plan.predictions_prefix + name
    lake.put_parquet(predictions_key, scored.predictions)
    quarantine_key = None
    if scored.quarantine.num_rows:
        quarantine_key = plan.quarantine_prefix + name
        lake.put_parquet(quarantine_key, scored.quarantine)
    return PartResult(
        part=chunk.part,
        rows=table.num_rows,
        scored=scored.predictions.num_rows,
        quarantined=scored.quarantine.num_rows,
        unknown_categories=scored.unknown_categories,
        predictions_key=predictions_key,
        quarantine_key=quarantine_key,
    )


def finish_scoring(event: FinishEvent, lake: Lake) -> ScoringSummary:
    """The run's summary; a CSV of every part when the upload was CSV (written part by part
    to local disk, then uploaded: memory stays one part's)."""
    plan = event.plan
    parts = sorted(event.parts, key=lambda p: p.part)
    csv_uri = None
    if plan.format == "csv" and parts:
        csv_uri = _write_csv(lake, [p.predictions_key for p in parts], plan.predictions_prefix)
    summary_key = plan.predictions_prefix + SUMMARY_FILE
    summary = ScoringSummary(
        dataset=plan.dataset,
        run_id=plan.run_id,
        model_version=plan.model_version,
        source=event.source,
        format=plan.format,
        rows=plan.rows,
        scored=sum(p.scored for p in parts),
        quarantined=sum(p.quarantined for p in parts),
        unknown_categories=sum(p.unknown_categories for p in parts),
        parts=[lake.uri(p.predictions_key) for p in parts],
        quarantine=[lake.uri(p.quarantine_key) for p in parts if p.quarantine_key],
        csv_uri=csv_uri,
        summary_uri=lake.uri(summary_key),
        started_at=plan.started_at,
        finished_at=now_iso(),
    )
    lake.put_json(summary_key, summary.model_dump(mode="json"))
    return summary


def _write_csv(lake: Lake, keys: list[str], prefix: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CSV_FILE
        writer: pacsv.CSVWriter | None = None
        with path.open("wb") as sink:
            for key in keys:
                table = pq.read_table(io.BytesIO(lake.get_bytes(lake.uri(key))))
                if writer is None:
                    writer = pacsv.CSVWriter(sink, table.schema)
                writer.write_table(table)
            if writer is not None:
                writer.close()
        lake.s3.upload_file(
            str(path), lake.bucket, prefix + CSV_FILE, ExtraArgs={"ContentType": "text/csv"}
        )
    return lake.uri(prefix + CSV_FILE)


def read_predictions(lake: Lake, summary: ScoringSummary) -> pa.Table:
    """Every part of a run, in row order (for `mlcycle score --out` and tests)."""
    tables = [pq.read_table(io.BytesIO(lake.get_bytes(uri))) for uri in summary.parts]
    return pa.concat_tables(tables) if tables else pa.table({})


def summary_of(lake: Lake, uri: str) -> ScoringSummary:
    return ScoringSummary.model_validate(lake.get_json(uri))
