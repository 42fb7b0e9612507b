"""The run context: the only document passed between states (ids and S3 URIs, never data).

Each stage returns its own result model; the state machine stores it under the stage's key
(`ResultPath`), so a stage reads what earlier stages produced from the context it receives.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from mlcycle.spec import Algorithm, Task

# An execution whose input has this key starts at the approval wait (the state machine's first
# Choice): how a local run waiting for approval continues in a later process.
RESUME_KEY = "resume_at_approval"


class _Model(BaseModel):
    # Step Functions adds keys of its own (errors, Map items); stages ignore what they don't read.
    model_config = ConfigDict(extra="ignore")


class Source(_Model):
    """The uploaded object that started the run."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None


class TrafficSource(_Model):
    """Labeled production traffic a retraining run learns from, beside the upload: the older
    rows train (with the upload's), the most recent are held back to judge both models."""

    uri: str  # Parquet: the instances' fields, the target, capture time and request id
    recent_uri: str | None  # the held-back slice; None when too little traffic to hold back
    rows: int
    recent_rows: int
    first_at: str | None
    last_at: str | None
    requests: int  # served requests in the window, labeled or not
    unlabeled: int
    since: str  # traffic from this time on (the upload's, or the window's start)


class ProblemResult(_Model):
    dataset: str
    spec_uri: str  # the validated spec, frozen for this run
    task: Task  # as written in the spec; may still be AUTO
    target: str
    started_at: str


class CollectResult(_Model):
    raw_uri: str
    raw_version_id: str | None
    lineage_uri: str
    sha256: str
    rows: int
    format: str
    notes: list[str] = Field(default_factory=list)
    # a many-part run: its folder's parts by name, size and ETag (mlcycle.parts.fingerprint)
    parts_fingerprint: str | None = None


class ProcessResult(_Model):
    curated_uri: str  # one Parquet file; a many-part run's prefix holding one per part
    schema_uri: str
    task: Task
    rows: int
    features: int
    rejected_rows: int
    rejected_uri: str | None = None
    duplicates_dropped: int = 0
    notes: list[str] = Field(default_factory=list)
    # a retraining run: its labeled traffic typed by the schema (uri, rows, what was dropped)
    traffic: dict[str, Any] | None = None
    # a many-part run: how many parts, and the prefix of their documents (one per part: what
    # was read and curated, the rows per class, the part's mergeable profile)
    parts: int = 1
    parts_uri: str | None = None


class MetricsResult(_Model):
    contract_uri: str
    primary_metric: str
    greater_is_better: bool
    threshold: float | None


class ExploreResult(_Model):
    profile_uri: str
    report_uri: str
    warnings: int


class FeaturesResult(_Model):
    prefix: str
    train_uri: str
    holdout_uri: str
    holdout_rows_uri: str  # the holdout before transformation, for end-to-end scoring
    transformer_uri: str
    baseline_uri: str
    train_rows: int
    holdout_rows: int
    candidates: list[Algorithm]
    # a retraining run: the labeled traffic rows added to training, and those left out
    traffic: dict[str, Any] | None = None
    # the rows learned from: all curated rows, or a seeded stratified sample past the budget
    sample: dict[str, Any] | None = None


class CandidateResult(_Model):
    algorithm: Algorithm
    model_uri: str
    fit_seconds: float
    params: dict[str, Any]
    search_uri: str | None = None  # the trials and (binary) the threshold's tuning curve
    cv_score: float | None = None  # the primary metric on out-of-fold predictions
    trials: int = 1
    search_seconds: float = 0.0
    threshold: float | None = None  # binary: the decision threshold tuned for this model


class Gate(_Model):
    passed: bool
    reason: str


class EvaluateResult(_Model):
    evaluation_uri: str
    report_uri: str | None = None  # evaluation.html in the reports zone
    winner: Algorithm
    metrics: dict[str, float]
    intervals: dict[str, list[float]] = Field(default_factory=dict)  # metric -> [low, high]
    threshold: float | None = None  # binary: the winner's decision threshold
    gate: Gate
    pipeline_uri: str
    onnx_uri: str  # the winner as one ONNX graph, parity-checked on the whole holdout
    manifest_uri: str  # its draft serving manifest (version 0 until registration)
    monitor_baseline_uri: str  # what the monitor compares live traffic with
    production_version: int | None = None
    # what the winner relies on most: [{"name", "share"}], from explanations of the holdout
    top_features: list[dict[str, Any]] = Field(default_factory=list)
    # the background summary explanations are measured against (None: a run from before them)
    background_uri: str | None = None


class RegisterResult(_Model):
    model_version: int
    stage: str
    # "required": the state machine waits for a person before the release (only for a model
    # that passed its gate); the wait ends as a rejection after `approval_timeout_seconds`.
    approval: Literal["none", "required"] = "none"
    approval_timeout_seconds: int = 72 * 3600


class ApprovalDecision(_Model):
    """What a person decided about a model waiting for approval (the wait's task output)."""

    decision: Literal["approved", "rejected", "timed_out"]
    actor: str = "unknown"
    reason: str = ""
    decided_at: str | None = None


class ReleaseResult(_Model):
    action: Literal["done", "canary"]  # "canary": the state machine bakes, then judges again
    model_version: int
    stage: str  # production, canary, rejected or rolled_back
    production_version: int | None
    reason: str
    bake_seconds: int | None = None
    started_at: str | None = None  # when the canary began taking traffic
    waits: int = 0


class StageError(_Model):
    """What Step Functions' Catch puts under `$.error`."""

    Error: str
    Cause: str | None = None


class RunContext(_Model):
    run_id: str
    source: Source
    traffic: TrafficSource | None = None  # a retraining run's labeled traffic
    problem: ProblemResult | None = None
    collect: CollectResult | None = None
    process: ProcessResult | None = None
    metrics: MetricsResult | None = None
    explore: ExploreResult | None = None
    features: FeaturesResult | None = None
    candidates: list[CandidateResult] | None = None
    evaluate: EvaluateResult | None = None
    registration: RegisterResult | None = None
    approval: ApprovalDecision | None = None
    release: ReleaseResult | None = None
    failed_stage: str | None = None
    error: StageError | None = None


class TrainEvent(_Model):
    """One item of the training Map: a candidate algorithm and the run it belongs to."""

    algorithm: Algorithm
    run: RunContext


T = TypeVar("T")


def required(value: T | None, stage: str) -> T:
    """An earlier stage's result, or a clear error when the state machine skipped that stage."""
    if value is None:
        raise ValueError(f"the {stage} stage has not produced a result for this run")
    return value
