"""Lifecycle stages 1-8 (and the failure path and the trigger) wired to the lake and registry;
stage 9 lives in `mlcycle.release` and `mlcycle.monitoring`.

Each function reads its inputs through the adapters, calls one pure domain function, writes
the outputs and returns the small result the state machine stores in the run context.
Handlers are thin wrappers around these; integration tests call them directly under moto.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pandas as pd

from mlcycle.adapters.catalog import Catalog
from mlcycle.adapters.executions import start_once
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry, now_iso
from mlcycle.cards import model_card_uris, write_model_card
from mlcycle.context import (
    CollectResult,
    ExploreResult,
    FeaturesResult,
    MetricsResult,
    ProblemResult,
    ProcessResult,
    RegisterResult,
    RunContext,
    Source,
    required,
)
from mlcycle.domain import (
    explore,
    fairness,
    features,
    process,
    profile_parts,
    sampling,
    tables,
    traffic,
)
from mlcycle.domain.metrics import evaluation_contract
from mlcycle.errors import SpecError
from mlcycle.lake_index import publish_index
from mlcycle.lake_layout import (
    MARKER,
    Zone,
    file_name,
    is_marker,
    is_part,
    run_prefix,
    s3_uri,
    split_uri,
    version_prefix,
)
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.manifest import BACKGROUND_FILE, MANIFEST_FILE, ONNX_FILE, Manifest
from mlcycle.spec import ProblemSpec, dataset_name
from mlcycle.spec_store import find_spec

TARGET_COLUMN = "__target__"  # the target's column in the feature matrices
TRAFFIC_ROWS = "labeled_traffic_rows.parquet"  # a retraining run's traffic, typed to learn from
PART_ERRORS = "part-errors/"  # a many-part run's parts that failed on their data, one document each


def _dt(ctx: RunContext) -> str:
    return required(ctx.problem, "define_problem").started_at[:10]


def run_key(ctx: RunContext, name: str) -> str:
    problem = required(ctx.problem, "define_problem")
    return run_prefix(Zone.RUNS, problem.dataset, ctx.run_id) + name


def run_spec(ctx: RunContext, lake: Lake) -> ProblemSpec:
    return ProblemSpec.model_validate(
        lake.get_json(required(ctx.problem, "define_problem").spec_uri)
    )


def run_schema(ctx: RunContext, lake: Lake) -> ResolvedSchema:
    return ResolvedSchema.model_validate(
        lake.get_json(required(ctx.process, "process_data").schema_uri)
    )


# -- 1. problem definition -------------------------------------------------------------------


def define_problem(ctx: RunContext, lake: Lake, registry: Registry) -> ProblemResult:
    """Find and validate the dataset's spec, freeze it for the run, open the run record."""
    dataset = dataset_name(ctx.source.key)
    spec = find_spec(lake, dataset)
    if spec.dataset != dataset:
        raise SpecError(
            f"dataset: the spec names {spec.dataset!r} but the upload belongs to {dataset!r}"
        )
    started_at = now_iso()
    problem = ProblemResult(
        dataset=dataset,
        spec_uri=lake.uri(run_prefix(Zone.RUNS, dataset, ctx.run_id) + "spec.json"),
        task=spec.task,
        target=spec.target,
        started_at=started_at,
    )
    lake.put_json(
        run_prefix(Zone.RUNS, dataset, ctx.run_id) + "spec.json", spec.model_dump(mode="json")
    )
    registry.put_run(
        dataset,
        ctx.run_id,
        {
            "status": "RUNNING",
            "started_at": started_at,
            "source": ctx.source.model_dump(),
            "target": spec.target,
        },
    )
    return problem


# -- 2. data collection ----------------------------------------------------------------------


def collect_data(ctx: RunContext, lake: Lake) -> CollectResult:
    """Check the upload is a readable table and copy it, unchanged, to the raw zone."""
    problem = required(ctx.problem, "define_problem")
    source = ctx.source
    data = lake.get_bytes(s3_uri(source.bucket, source.key), version_id=source.version_id)
    read = tables.read_upload(data, file_name(source.key))
    sha256 = hashlib.sha256(data).hexdigest()
    raw_key = run_prefix(Zone.RAW, problem.dataset, ctx.run_id, dt=_dt(ctx)) + file_name(source.key)
    copy_source: dict[str, str] = {"Bucket": source.bucket, "Key": source.key}
    if source.version_id:
        copy_source["VersionId"] = source.version_id
    copied = lake.s3.copy_object(
        Bucket=lake.bucket,
        Key=raw_key,
        CopySource=copy_source,
    )
    lineage = {
        "source": source.model_dump(),
        "sha256": sha256,
        "bytes": len(data),
        "rows": read.table.num_rows,
        "columns": read.table.column_names,
        "format": read.format,
        "compression": read.compression,
        "delimiter": read.delimiter,
        "encoding": read.encoding,
        "raw_uri": lake.uri(raw_key),
        "raw_version_id": copied.get("VersionId"),
        "collected_at": now_iso(),
        "notes": read.notes,
    }
    if ctx.traffic is not None:  # a retraining run also learns from labeled traffic
        lineage["traffic"] = ctx.traffic.model_dump()
    return CollectResult(
        raw_uri=lake.uri(raw_key),
        raw_version_id=copied.get("VersionId"),
        lineage_uri=lake.put_json(run_key(ctx, "lineage.json"), lineage),
        sha256=sha256,
        rows=read.table.num_rows,
        format=read.format,
        notes=read.notes,
    )


# -- 3. processing and storage ---------------------------------------------------------------


def process_data(ctx: RunContext, lake: Lake, catalog: Catalog | None = None) -> ProcessResult:
    """Resolve the schema, clean and type the rows, store curated Parquet, quarantine rejects;
    with a catalog, the run's Parquet becomes a partition of the dataset's Glue table."""
    problem = required(ctx.problem, "define_problem")
    collected = required(ctx.collect, "collect_data")
    data = lake.get_bytes(collected.raw_uri, version_id=collected.raw_version_id)
    table = tables.read_table(data, file_name(collected.raw_uri), dictionary_encode=True)
    processed = process.curate(table, run_spec(ctx, lake))
    schema = processed.schema
    curated_key = run_prefix(Zone.CURATED, problem.dataset, ctx.run_id, dt=_dt(ctx))
    rejected_uri = None
    if processed.rejected.num_rows:
        rejected_uri = lake.put_parquet(
            run_prefix(Zone.QUARANTINE, problem.dataset, ctx.run_id) + "rejected_rows.parquet",
            processed.rejected,
        )
    result = ProcessResult(
        curated_uri=lake.put_bytes(
            curated_key + "part-0000.parquet",
            process.parquet_bytes(processed.curated),
            content_type="application/vnd.apache.parquet",
        ),
        schema_uri=lake.put_json(run_key(ctx, "schema.json"), schema.model_dump(mode="json")),
        task=schema.task,
        rows=processed.curated.num_rows,
        features=len(schema.features),
        rejected_rows=processed.rejected.num_rows,
        rejected_uri=rejected_uri,
        duplicates_dropped=processed.duplicates_dropped,
        notes=processed.notes,
    )
    if catalog is not None:
        catalog.register_run(
            problem.dataset, _dt(ctx), ctx.run_id, processed.curated.schema, schema
        )
    return finish_processing(ctx, lake, result, schema)


def finish_processing(
    ctx: RunContext, lake: Lake, result: ProcessResult, schema: ResolvedSchema
) -> ProcessResult:
    """Type a retraining run's labeled traffic by the schema, and keep the stage's notes."""
    if ctx.traffic is not None:
        # A retraining run's labeled traffic, in the schema resolved from the upload: it
        # trains beside the upload's training rows, never in the holdout (which stays the
        # split production was judged on, so the comparison is like for like).
        rows, result.traffic = traffic.training_rows(lake.get_parquet(ctx.traffic.uri), schema)
        result.traffic["uri"] = lake.put_parquet(run_key(ctx, TRAFFIC_ROWS), rows)
    # What was coerced, dropped or quarantined, kept beside the schema for whoever asks later.
    lake.put_json(run_key(ctx, "processing.json"), result.model_dump(mode="json"))
    return result


def part_documents(lake: Lake, processed: ProcessResult) -> list[dict[str, Any]]:
    """A many-part run's per-part documents, in part order (none for a one-file run)."""
    if processed.parts_uri is None:
        return []
    _, prefix = split_uri(processed.parts_uri)
    return lake.get_json_under(prefix)


# -- 4. metrics definition -------------------------------------------------------------------


def define_metrics(ctx: RunContext, lake: Lake) -> MetricsResult:
    contract = evaluation_contract(run_spec(ctx, lake), run_schema(ctx, lake))
    return MetricsResult(
        contract_uri=lake.put_json(run_key(ctx, "metrics.json"), contract),
        primary_metric=contract["primary_metric"],
        greater_is_better=contract["greater_is_better"],
        threshold=contract["threshold"],
    )


# -- 5. exploration --------------------------------------------------------------------------


def explore_data(ctx: RunContext, lake: Lake) -> ExploreResult:
    """Profile the curated rows; a many-part run merges its parts' profiles instead of
    reading every part."""
    problem = required(ctx.problem, "define_problem")
    schema = run_schema(ctx, lake)
    processed = required(ctx.process, "process_data")
    if processed.parts_uri is not None:
        partials = [doc["profile"] for doc in part_documents(lake, processed)]
        profile = profile_parts.merge_profiles(partials, schema)
    else:
        profile = explore.profile(lake.get_parquet(processed.curated_uri), schema)
    prefix = run_prefix(Zone.REPORTS, problem.dataset, ctx.run_id)
    html = explore.render_html(profile, title=f"{problem.dataset}: data profile ({ctx.run_id})")
    return ExploreResult(
        profile_uri=lake.put_json(prefix + "profile.json", profile),
        report_uri=lake.put_text(prefix + "profile.html", html, content_type="text/html"),
        warnings=len(profile.get("warnings", [])),
    )


# -- 6. feature engineering ------------------------------------------------------------------


def _with_target(matrix: pd.DataFrame, target: pd.Series) -> pd.DataFrame:
    return matrix.assign(**{TARGET_COLUMN: target.to_numpy()})


def curated_rows(
    lake: Lake, processed: ProcessResult, schema: ResolvedSchema, *, max_rows: int, seed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The curated rows to learn from, and what was kept of them: every row up to `max_rows`,
    past it a seeded sample stratified by the target (classification), drawn one part at a
    time so memory holds one part and the sample."""
    stratified = schema.is_classification
    docs = part_documents(lake, processed)
    if not docs:  # one file: read it, sample it if it must be
        frame = lake.get_parquet(processed.curated_uri)
        plan = sampling.plan_sample(
            [sampling.strata(frame, schema.target, stratified=stratified)],
            max_rows,
            stratified=stratified,
        )
        rows = sampling.take(
            frame, schema.target, plan.quotas[0], seed=seed, part=0, stratified=stratified
        )
        return rows, plan.describe(seed, schema.target)
    plan = sampling.plan_sample([doc["strata"] for doc in docs], max_rows, stratified=stratified)
    frames = [
        sampling.take(
            lake.get_parquet(lake.uri(doc["curated_key"])),
            schema.target,
            quota,
            seed=seed,
            part=doc["part"],
            stratified=stratified,
        )
        for doc, quota in zip(docs, plan.quotas, strict=True)
        if sum(quota.values())
    ]
    return pd.concat(frames, ignore_index=True), plan.describe(seed, schema.target)


def engineer_features(ctx: RunContext, lake: Lake, *, memory_mb: int) -> FeaturesResult:
    """Split, fit the transformer and write the matrices; past the row budget (the spec's
    `training.max_rows`, else what `memory_mb` holds) on a stratified sample."""
    problem = required(ctx.problem, "define_problem")
    spec, schema = run_spec(ctx, lake), run_schema(ctx, lake)
    processed = required(ctx.process, "process_data")
    max_rows = spec.training.max_rows or sampling.row_budget(
        memory_mb, len(schema.features) + len(schema.sensitive) + 1
    )
    frame, sample = curated_rows(lake, processed, schema, max_rows=max_rows, seed=spec.seed)
    extra = lake.get_parquet(processed.traffic["uri"]) if processed.traffic else None
    feature_set = features.engineer(
        frame,
        schema,
        holdout_fraction=spec.holdout_fraction,
        seed=spec.seed,
        extra_train=extra,
        max_extra_share=spec.retraining.max_traffic_share,
    )
    prefix = run_prefix(Zone.FEATURES, problem.dataset, ctx.run_id)
    lake.put_parquet(prefix + "train_rows.parquet", feature_set.train)
    lake.put_parquet(prefix + "holdout_rows.parquet", feature_set.holdout)
    return FeaturesResult(
        prefix=lake.uri(prefix),
        train_uri=lake.put_parquet(
            prefix + "train.parquet", _with_target(feature_set.X_train, feature_set.y_train)
        ),
        holdout_uri=lake.put_parquet(
            prefix + "holdout.parquet", _with_target(feature_set.X_holdout, feature_set.y_holdout)
        ),
        holdout_rows_uri=lake.uri(prefix + "holdout_rows.parquet"),
        transformer_uri=lake.put_artifact(prefix + "transformer.joblib", feature_set.transformer),
        baseline_uri=lake.put_json(prefix + "baseline.json", feature_set.baseline),
        train_rows=len(feature_set.train),
        holdout_rows=len(feature_set.holdout),
        candidates=spec.candidates,
        traffic=feature_set.extra,
        sample=sample,
    )


# -- 7. training and offline evaluation ------------------------------------------------------


def feature_matrix(lake: Lake, uri: str) -> tuple[pd.DataFrame, pd.Series]:
    frame = lake.get_parquet(uri)
    return frame.drop(columns=[TARGET_COLUMN]), frame[TARGET_COLUMN]


# -- 8. integration and deployment -----------------------------------------------------------


def register_model(
    ctx: RunContext, lake: Lake, registry: Registry, code_version: str
) -> RegisterResult:
    """Record the winner as a new registry version with its lineage; rejected if it failed."""
    problem = required(ctx.problem, "define_problem")
    evaluated = required(ctx.evaluate, "evaluate_models")
    collected = required(ctx.collect, "collect_data")
    schema = run_schema(ctx, lake)
    evaluation = lake.get_json(evaluated.evaluation_uri)  # for the entry and the card
    winner = next(
        c for c in required(ctx.candidates, "train_model") if c.algorithm == evaluated.winner
    )
    stage = "candidate" if evaluated.gate.passed else "rejected"
    onnx_bytes = lake.get_bytes(evaluated.onnx_uri)
    manifest = Manifest.from_json(lake.get_json(evaluated.manifest_uri))
    if hashlib.sha256(onnx_bytes).hexdigest() != manifest.onnx_sha256:
        raise ValueError(f"{evaluated.onnx_uri} is not the model evaluation checked for parity")
    entry: dict[str, Any] = {
        "stage": stage,
        "stage_reason": evaluated.gate.reason,
        "task": schema.task.value,
        "target": schema.target,
        "features": {name: kind.value for name, kind in schema.features.items()},
        "classes": schema.classes,
        "algorithm": str(evaluated.winner),
        "params": winner.params,
        "search": {
            "trials": winner.trials,
            "seconds": winner.search_seconds,
            "cv_score": winner.cv_score,
            "uri": winner.search_uri,
        },
        "metrics": evaluated.metrics,
        "intervals": evaluated.intervals,
        "positive_class": schema.positive_class,
        "threshold": evaluated.threshold,
        "top_features": evaluated.top_features,
        # per sensitive feature the measures against its reference group, and the verdict
        "fairness": fairness.registry_summary(evaluation.get("fairness")),
        "primary_metric": required(ctx.metrics, "define_metrics").primary_metric,
        "gate": evaluated.gate.model_dump(),
        "run_id": ctx.run_id,
        "lineage": {
            "source": ctx.source.model_dump(),
            "sha256": collected.sha256,
            "parts_fingerprint": collected.parts_fingerprint,
            "raw_uri": collected.raw_uri,
            "raw_version_id": collected.raw_version_id,
            "code_version": code_version,
            # a retraining run's second source: labeled traffic (rows and time range), and
            # what processing added of it to the upload's rows
            "traffic": {
                **ctx.traffic.model_dump(),
                "usable": required(ctx.process, "process_data").traffic,
                "trained_on": required(ctx.features, "engineer_features").traffic,
            }
            if ctx.traffic
            else None,
        },
        "onnx_sha256": manifest.onnx_sha256,
        "artifacts": {
            "pipeline_uri": evaluated.pipeline_uri,
            # the run's copies (immutable, same bytes); the served copies are under
            # version_prefix(dataset, version), written below once the version exists
            "onnx_uri": evaluated.onnx_uri,
            "manifest_uri": evaluated.manifest_uri,
            "transformer_uri": required(ctx.features, "engineer_features").transformer_uri,
            "baseline_uri": required(ctx.features, "engineer_features").baseline_uri,
            "monitor_baseline_uri": evaluated.monitor_baseline_uri,
            "background_uri": evaluated.background_uri,
            "evaluation_uri": evaluated.evaluation_uri,
            "report_uri": evaluated.report_uri,
            "profile_uri": required(ctx.explore, "explore_data").profile_uri,
            # the version's model card: its place is known now, it is written below
            **model_card_uris(lake, problem.dataset, ctx.run_id),
        },
    }
    version = registry.register(problem.dataset, entry)
    # The serving artifact the endpoint loads: the ONNX graph and the background summary its
    # explanations use, then its manifest (written last, so a manifest never points at a
    # missing file).
    served = replace(
        manifest,
        version=version,
        metrics=dict(evaluated.metrics),
        top_features=list(evaluated.top_features),
        model_card={
            "json": entry["artifacts"]["model_card_uri"],
            "html": entry["artifacts"]["model_card_report_uri"],
        },
    )
    prefix = version_prefix(problem.dataset, version)
    lake.put_bytes(prefix + ONNX_FILE, onnx_bytes, content_type="application/octet-stream")
    if evaluated.background_uri is not None:
        lake.put_bytes(
            prefix + BACKGROUND_FILE,
            lake.get_bytes(evaluated.background_uri),
            content_type="application/json",
        )
    # the card names the version, so it is written now; before the manifest, so a served
    # version always has one
    spec = run_spec(ctx, lake)
    write_model_card(ctx, lake, registry, version, spec=spec, schema=schema, evaluation=evaluation)
    lake.put_json(prefix + MANIFEST_FILE, served.to_json())
    release = spec.release
    return RegisterResult(
        model_version=version,
        stage=stage,
        approval="required" if evaluated.gate.passed and release.approval == "required" else "none",
        approval_timeout_seconds=round(release.approval_timeout_hours * 3600),
    )


# -- the failure path ------------------------------------------------------------------------


def _error_message(ctx: RunContext) -> tuple[str, str]:
    """(type, message) from what Step Functions caught; Lambda errors carry JSON causes."""
    error = ctx.error
    if error is None:
        return "RunFailed", "the run failed without an error record"
    try:
        cause = json.loads(error.Cause or "")
    except json.JSONDecodeError:
        return error.Error, error.Cause or error.Error
    if isinstance(cause, dict) and "errorMessage" in cause:
        return str(cause.get("errorType", error.Error)), str(cause["errorMessage"])
    return error.Error, error.Cause or error.Error


def record_failure(ctx: RunContext, lake: Lake, registry: Registry) -> dict[str, Any]:
    """Keep the upload in quarantine with the reason, and mark the run FAILED."""
    error_type, message = _error_message(ctx)
    stage = ctx.failed_stage or "unknown"
    try:
        dataset = dataset_name(ctx.source.key)
    except SpecError:
        dataset = "unknown"
    if is_marker(ctx.source.key):  # a many-part run: the parts that failed say why
        errors = run_prefix(Zone.RUNS, dataset, ctx.run_id) + PART_ERRORS
        failed = lake.get_json_under(errors)
        if failed:
            stage, error_type, message = (failed[0][k] for k in ("stage", "type", "message"))
            if len(failed) > 1:
                message += f" (and {len(failed) - 1} more part(s): {lake.uri(errors)})"
    prefix = run_prefix(Zone.QUARANTINE, dataset, ctx.run_id)
    copy_source: dict[str, str] = {"Bucket": ctx.source.bucket, "Key": ctx.source.key}
    if ctx.source.version_id:
        copy_source["VersionId"] = ctx.source.version_id
    quarantined = prefix + file_name(ctx.source.key)
    lake.s3.copy_object(Bucket=lake.bucket, Key=quarantined, CopySource=copy_source)
    if is_marker(ctx.source.key):  # a many-part upload: its parts are kept beside the marker
        folder = ctx.source.key[: -len(MARKER)]
        for key in lake.keys(folder):  # landing/ is a zone of the lake
            if key != ctx.source.key:
                lake.s3.copy_object(
                    Bucket=lake.bucket,
                    Key=prefix + key[len(folder) :],
                    CopySource={"Bucket": ctx.source.bucket, "Key": key},
                )
    error = {"stage": stage, "type": error_type, "message": message}
    lake.put_json(
        prefix + "error.json",
        {**error, "run_id": ctx.run_id, "source": ctx.source.model_dump(), "at": now_iso()},
    )
    registry.update_run(
        dataset,
        ctx.run_id,
        {
            "status": "FAILED",
            "finished_at": now_iso(),
            "source": ctx.source.model_dump(),
            "target": ctx.problem.target if ctx.problem else None,
            "task": ctx.process.task.value if ctx.process else None,
            "error": error,
            "quarantine_uri": lake.uri(quarantined),
        },
    )
    publish_index(lake, registry)
    return {"quarantine_uri": lake.uri(quarantined), **error}


# -- the trigger -----------------------------------------------------------------------------


def execution_name(bucket: str, key: str, version: str | None) -> str:
    """A deterministic execution name: the same object version always maps to the same run."""
    digest = hashlib.sha256(f"{bucket}/{key}#{version or ''}".encode()).hexdigest()[:16]
    return f"{dataset_name(key)}-{digest}"


def start_run(
    sfn: Any, state_machine_arn: str, bucket: str, key: str, version: str | None, size: int | None
) -> dict[str, Any]:
    """Start the run for one uploaded object version; a repeated event starts nothing new.

    A part file in a folder of parts starts nothing: the folder's `_SUCCESS` marker starts
    one run over all of them."""
    if is_part(key):
        return {
            "started": False,
            "ignored": f"{key} waits for a {MARKER} marker in its folder, which starts one "
            f"run over the folder's parts (a {MARKER} directly under landing/<dataset>/ "
            "is not read: parts go in a folder of their own)",
        }
    source = Source(bucket=bucket, key=key, version_id=version, size=size)
    context = RunContext(run_id=execution_name(bucket, key, version), source=source)
    return start_once(sfn, state_machine_arn, context)
