"""Batch scoring wired to the lake and registry: the steps of the scoring state machine.

An upload to `score/<dataset>/<file>` starts one scoring run (`start_scoring`). The plan streams
the file once and writes it back as Parquet chunks with a JSON manifest of them (`plan_scoring`);
a Distributed Map reads the manifest and scores each chunk in its own invocation with the
dataset's production version, pinned by the plan (`score_part`), capturing a sample of its rows
for the monitor (`domain.batch_capture`); the finish step writes the summary, and a CSV of the
predictions when the upload was CSV (`finish_scoring`).

    predictions/dataset=<name>/run=<id>/part-NNNNN.parquet   one row per scored input row
    predictions/dataset=<name>/run=<id>/_summary.json        rows, quarantined, version, parts
    predictions/dataset=<name>/run=<id>/_predictions.csv     when the upload was CSV
    quarantine/dataset=<name>/run=<id>/part-NNNNN.parquet    rows that could not be scored
    capture/dataset=<name>/dt=<day>/batch-<run>-NNNNN.jsonl.gz   the chunk's captured rows

Names starting with `_` are skipped by Athena, Glue and Spark readers of the Parquet parts.
"""

from __future__ import annotations

import io
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from mlcycle.adapters.executions import start_once
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry, now_iso
from mlcycle.context import RunContext, Source
from mlcycle.domain import batch_capture, scoring
from mlcycle.domain.batch_capture import CAPTURED_COLUMN, DEFAULT_CAPTURE_ROWS
from mlcycle.domain.upload_stream import open_upload
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
    # rows of a run captured for the monitor (a seeded sample); 0 captures none
    capture_rows: int = Field(DEFAULT_CAPTURE_ROWS, alias="SCORING_CAPTURE_ROWS", ge=0)
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
    started_at: str  # also the time of the run's captured records
    capture_rows: int = 0  # the run's sample for the monitor: min(SCORING_CAPTURE_ROWS, rows)

    @property
    def capture_rate(self) -> float:
        return self.capture_rows / self.rows if self.rows else 0.0


class PartResult(_Model):
    part: int
    rows: int
    scored: int
    quarantined: int
    unknown_categories: int = 0
    predictions_key: str
    quarantine_key: str | None = None
    captured: int = 0  # its key is `capture_key(plan, part)`: the state stays small


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
    captured: int = 0  # rows written to the capture zone for the monitor
    capture_rate: float = 0.0  # the share of the run's rows sampled for it
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
    ctx: RunContext,
    lake: Lake,
    registry: Registry,
    *,
    chunk_rows: int,
    capture_rows: int = DEFAULT_CAPTURE_ROWS,
) -> ScoringPlan:
    """Stream the upload once, check it against the production model, write it as chunks.

    The object is downloaded to a temporary file first (Lambda's /tmp, up to 10 GB): Parquet
    needs random access to its footer, a CSV found not to be UTF-8 past its head is read
    again, and the transfer manager downloads it in parallel ranged GETs. Memory stays one
    chunk's (`domain.upload_stream`)."""
    started_at = now_iso()
    dataset = dataset_name(ctx.source.key)
    version = production_version(registry, dataset)
    manifest = parse_manifest(
        lake.get_bytes(lake.uri(version_prefix(dataset, version) + MANIFEST_FILE)),
        name=dataset,
        version=version,
    )
    name = file_name(ctx.source.key)
    work = run_prefix(Zone.RUNS, dataset, ctx.run_id) + "scoring/"
    chunks: dict[int, Chunk] = {}  # by part: a read restarted in another encoding rewrites them
    with tempfile.TemporaryDirectory(prefix="mlcycle-plan-") as folder:
        path = Path(folder) / "upload"
        extra = {"VersionId": ctx.source.version_id} if ctx.source.version_id else None
        lake.s3.download_file(ctx.source.bucket, ctx.source.key, str(path), ExtraArgs=extra)
        upload = open_upload(path, name, chunk_rows=chunk_rows)
        missing = scoring.missing_features(manifest, upload.columns)
        if missing:
            raise BadInputError(
                f"{name} lacks features of {dataset!r} version {version}: {', '.join(missing)}"
            )
        for offset, table in upload.chunks():
            part = offset // chunk_rows
            key = f"{work}chunk-{part:05d}.parquet"
            _put_transient_parquet(lake, key, table)
            chunks[part] = Chunk(part=part, key=key, first_row=offset + 1, rows=table.num_rows)
    ordered = [chunks[part] for part in sorted(chunks)]
    rows = sum(c.rows for c in ordered)
    chunks_key = work + CHUNKS_FILE
    lake.put_json(chunks_key, [c.model_dump() for c in ordered])
    return ScoringPlan(
        dataset=dataset,
        run_id=ctx.run_id,
        model_version=version,
        format=upload.format,
        rows=rows,
        parts=len(ordered),
        chunks_key=chunks_key,
        predictions_prefix=run_prefix(Zone.PREDICTIONS, dataset, ctx.run_id),
        quarantine_prefix=run_prefix(Zone.QUARANTINE, dataset, ctx.run_id),
        started_at=started_at,
        capture_rows=min(capture_rows, rows),
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
    """Score one chunk: its predictions part, its quarantined rows if any, and its share of
    the run's captured sample."""
    plan, chunk = event.plan, event.chunk
    model = scoring_model(lake, plan.dataset, plan.model_version, threads=threads)
    table = pq.read_table(io.BytesIO(lake.get_bytes(lake.uri(chunk.key))))
    scored = scoring.score_chunk(model, table, first_row=chunk.first_row, run_id=plan.run_id)
    predictions, captured = _capture(lake, plan, chunk, model, table, scored)
    name = f"part-{chunk.part:05d}.parquet"
    predictions_key = plan.predictions_prefix + name
    lake.put_parquet(predictions_key, predictions)
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
        captured=captured,
    )


def capture_key(plan: ScoringPlan, part: int) -> str:
    """One object per chunk, named by run and part: a retried chunk overwrites its own (a
    second copy would make its request ids ambiguous to the label join)."""
    day = datetime.fromisoformat(plan.started_at).strftime("%Y-%m-%d")
    return (
        f"{Zone.CAPTURE.prefix}dataset={plan.dataset}/dt={day}/"
        f"batch-{plan.run_id}-{part:05d}.jsonl.gz"
    )


def _capture(
    lake: Lake,
    plan: ScoringPlan,
    chunk: Chunk,
    model: LoadedModel,
    table: pa.Table,
    scored: scoring.ScoredChunk,
) -> tuple[pa.Table, int]:
    """The predictions with their `captured` column; the rows written to the capture zone."""
    predictions = scored.predictions
    quota = batch_capture.capture_quota(
        chunk.first_row - 1, chunk.rows, plan.rows, plan.capture_rows
    )
    mask = batch_capture.capture_mask(
        predictions.num_rows, quota, run_id=plan.run_id, part=chunk.part
    )
    predictions = predictions.append_column(CAPTURED_COLUMN, pa.array(mask, pa.bool_()))
    if not mask.any():
        return predictions, 0
    picked = predictions.filter(pa.array(mask))
    manifest = model.manifest
    positions = pc.subtract(picked.column(scoring.ROW_COLUMN), pa.scalar(chunk.first_row))
    instances = table.select(batch_capture.instance_columns(manifest, table.column_names))
    records = batch_capture.capture_records(
        instances.take(positions),
        picked,
        manifest,
        at=datetime.fromisoformat(plan.started_at),
        run_id=plan.run_id,
        sample_rate=plan.capture_rate,
    )
    lake.s3.put_object(
        Bucket=lake.bucket,
        Key=capture_key(plan, chunk.part),
        Body=batch_capture.encode(records),
        ContentType="application/x-ndjson",
        ContentEncoding="gzip",
    )
    return predictions, len(records)


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
        captured=sum(p.captured for p in parts),
        capture_rate=plan.capture_rate,
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
