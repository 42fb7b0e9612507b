"""The problem spec: the one document a data scientist writes to drive the lifecycle."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlcycle.errors import SpecError


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"
    AUTO = "auto"


class ColumnType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    DATETIME = "datetime"


class Algorithm(StrEnum):
    LINEAR = "linear"  # logistic regression or ridge, by task
    RANDOM_FOREST = "random_forest"
    HIST_GRADIENT_BOOSTING = "hist_gradient_boosting"


# metric name -> (tasks it applies to, True when larger is better)
# Binary label metrics are at the model's decision threshold, of its positive class.
METRICS: dict[str, tuple[frozenset[Task], bool]] = {
    "accuracy": (frozenset({Task.BINARY, Task.MULTICLASS}), True),
    "balanced_accuracy": (frozenset({Task.BINARY, Task.MULTICLASS}), True),
    "f1": (frozenset({Task.BINARY, Task.MULTICLASS}), True),
    "precision": (frozenset({Task.BINARY}), True),
    "recall": (frozenset({Task.BINARY}), True),
    "roc_auc": (frozenset({Task.BINARY, Task.MULTICLASS}), True),
    "pr_auc": (frozenset({Task.BINARY}), True),
    "log_loss": (frozenset({Task.BINARY, Task.MULTICLASS}), False),
    "brier": (frozenset({Task.BINARY}), False),
    "rmse": (frozenset({Task.REGRESSION}), False),
    "mae": (frozenset({Task.REGRESSION}), False),
    "r2": (frozenset({Task.REGRESSION}), True),
}

# The metrics of predicted probabilities; the others score labels.
PROBABILITY_METRICS = frozenset({"roc_auc", "pr_auc", "log_loss", "brier"})

DEFAULT_PRIMARY_METRIC: dict[Task, str] = {
    Task.BINARY: "roc_auc",
    Task.MULTICLASS: "balanced_accuracy",
    Task.REGRESSION: "rmse",
}


class MonitoringLimits(BaseModel):
    """Limits the monitor holds production to; the metrics stage copies them into the contract."""

    model_config = ConfigDict(extra="forbid")

    psi_threshold: float = Field(0.2, gt=0, description="PSI above which a feature has drifted")
    ks_threshold: float | None = Field(
        0.15,
        gt=0,
        le=1,
        description="numeric and date features: a KS statistic above this drifts the feature "
        "too, when chance alone would not reach it at the window's size (null: PSI only)",
    )
    categorical_distance_threshold: float | None = Field(
        0.15,
        gt=0,
        le=1,
        description="categorical features: the same with the total variation distance of the "
        "category shares (null: PSI only)",
    )
    max_drifted_features: int = Field(
        1, ge=0, description="alarm when more features than this have drifted"
    )
    prediction_psi_threshold: float = Field(0.2, gt=0)
    min_samples: int = Field(100, ge=1, description="smallest window the monitor judges")

    def drift_rule(self) -> str:
        """`PSI above 0.2, KS above 0.15 or category distance above 0.15`: when a feature
        drifts, for alarm descriptions and cards."""
        parts = [f"PSI above {self.psi_threshold:g}"]
        if self.ks_threshold is not None:
            parts.append(f"KS above {self.ks_threshold:g}")
        if self.categorical_distance_threshold is not None:
            parts.append(f"category distance above {self.categorical_distance_threshold:g}")
        return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


class ReleasePolicy(BaseModel):
    """How a model that passed its gate reaches production: canary first, then judged."""

    model_config = ConfigDict(extra="forbid")

    canary_weight: float = Field(0.1, gt=0, lt=1, description="share of traffic to the canary")
    bake_seconds: int = Field(600, ge=1, le=86_400, description="each wait before judging")
    min_requests: int = Field(50, ge=1, description="canary traffic needed to judge it")
    max_waits: int = Field(3, ge=1, le=48, description="bake periods to wait for that traffic")
    max_error_rate_increase: float = Field(0.01, ge=0, le=1)
    max_latency_ratio: float = Field(1.5, gt=1)
    max_prediction_psi: float = Field(0.2, gt=0)
    approval: Literal["none", "required"] = Field(
        "none", description="required: a person approves a model that passed its gate first"
    )
    approval_timeout_hours: float = Field(
        72, gt=0, le=24 * 30, description="an approval not given in time is a rejection"
    )


RetrainingSource = Literal["upload", "labeled_traffic"]


def _both_sources() -> list[RetrainingSource]:
    return ["upload", "labeled_traffic"]


class RetrainingPolicy(BaseModel):
    """What a retraining run (started by a drift or quality alarm) learns from."""

    model_config = ConfigDict(extra="forbid")

    sources: list[RetrainingSource] = Field(default_factory=_both_sources, min_length=1)
    window_days: int = Field(30, ge=1, le=365, description="labeled traffic this recent only")
    max_traffic_share: float = Field(
        0.5, gt=0, le=1, description="of the training rows, at most this share from traffic"
    )
    min_new_labels: int = Field(
        50, ge=1, description="fewer labeled requests since production's training: no retrain"
    )
    recent_fraction: float = Field(
        0.3, gt=0, lt=1, description="the latest labeled traffic held back to judge both models"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RetrainingPolicy:
        if len(set(self.sources)) != len(self.sources):
            raise ValueError("retraining.sources: a source is listed twice")
        if "upload" not in self.sources:
            raise ValueError(
                "retraining.sources: the upload is the base every retraining run starts from"
            )
        return self


class FairnessPolicy(BaseModel):
    """Which columns describe groups of people, and how unequal the model may treat them."""

    model_config = ConfigDict(extra="forbid")

    sensitive_features: list[str] = Field(min_length=1)
    # The group every other is compared with (Clarify's facet "a"); default: the largest.
    reference_groups: dict[str, str] = Field(default_factory=dict)
    # Bin edges for a numeric sensitive feature (age: [25, 45, 65]); default: its quartiles.
    bins: dict[str, list[float]] = Field(default_factory=dict)
    exclude_from_features: bool = Field(
        True, description="keep sensitive features out of the model's inputs (always evaluated)"
    )
    min_group_size: int = Field(30, ge=1, description="smaller groups are reported, never gated on")
    min_disparate_impact: float | None = Field(0.8, gt=0, le=1)
    max_equal_opportunity_difference: float | None = Field(0.1, ge=0, le=1)
    max_accuracy_difference: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> FairnessPolicy:
        if len(set(self.sensitive_features)) != len(self.sensitive_features):
            raise ValueError("fairness.sensitive_features: a column is listed twice")
        for field, names in (("reference_groups", self.reference_groups), ("bins", self.bins)):
            unknown = sorted(set(names) - set(self.sensitive_features))
            if unknown:
                raise ValueError(
                    f"fairness.{field}: {unknown} are not among the sensitive_features"
                )
        for name, edges in self.bins.items():
            if not edges or sorted(set(edges)) != list(edges):
                raise ValueError(f"fairness.bins.{name}: edges must be increasing, e.g. [25, 45]")
        return self


class ModelCardInfo(BaseModel):
    """What only people know about a model, for its model card (the run fills in the rest)."""

    model_config = ConfigDict(extra="forbid")

    owner: str | None = None
    description: str | None = None
    business_problem: str | None = None
    stakeholders: str | None = None
    purpose: str | None = None
    intended_uses: list[str] = Field(default_factory=list)
    out_of_scope_uses: list[str] = Field(default_factory=list)
    risk_rating: Literal["low", "medium", "high", "unknown"] = "unknown"
    risk_rating_reason: str | None = None
    ethical_considerations: str | None = None
    caveats: str | None = None


class Objective(StrEnum):
    """What a binary model's decision threshold is tuned for."""

    F1 = "f1"  # F1 of the positive class
    BALANCED_ACCURACY = "balanced_accuracy"
    COST = "cost"  # the lowest expected cost per decision, from `costs`


class Costs(BaseModel):
    """What each outcome of a decision costs (a gain is a negative cost)."""

    model_config = ConfigDict(extra="forbid")

    false_positive: float = 0.0
    false_negative: float = 0.0
    true_positive: float = 0.0
    true_negative: float = 0.0


class DecisionPolicy(BaseModel):
    """How a binary model turns its probability of the positive class into a label."""

    model_config = ConfigDict(extra="forbid")

    threshold: Literal["auto"] | float = Field(
        "auto", description="auto: tuned on out-of-fold predictions of the training split"
    )
    optimize: Objective = Objective.F1
    costs: Costs | None = None
    min_precision: float | None = Field(None, gt=0, le=1)
    min_recall: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> DecisionPolicy:
        if isinstance(self.threshold, float) and not 0.0 < self.threshold < 1.0:
            raise ValueError(
                f"decision.threshold: {self.threshold} must be between 0 and 1 (or auto)"
            )
        if self.optimize is Objective.COST and self.costs is None:
            raise ValueError("decision.costs: optimize: cost needs the costs of each outcome")
        if self.costs is not None and not any(self.costs.model_dump().values()):
            raise ValueError("decision.costs: every cost is 0, so every threshold is as good")
        return self


class SearchPolicy(BaseModel):
    """The hyperparameter search inside each training invocation."""

    model_config = ConfigDict(extra="forbid")

    # Sized for the bundled demo to stay near a minute: on it the search rarely beats the
    # defaults (bench/tuning.py), on other data it may; raise it in the spec.
    trials: int = Field(4, ge=1, le=200, description="configurations tried, defaults first")
    # Lambda stops a stage at 900 s: the search leaves room for loading, the refit and writes.
    budget_seconds: float = Field(300, gt=0, le=720, description="per candidate, never exceeded")
    cv_folds: int = Field(3, ge=2, le=10)
    max_rows: int = Field(
        50_000, ge=100, description="the search cross-validates on a sample of this many rows"
    )


class TrainingPolicy(BaseModel):
    """How many curated rows feature engineering and training may hold."""

    model_config = ConfigDict(extra="forbid")

    max_rows: int | None = Field(
        None,
        ge=1_000,
        description="past this many rows, train on a seeded sample stratified by the target; "
        "default: what the feature engineering function's memory holds",
    )


class GatePolicy(BaseModel):
    """How sure the gate must be that a challenger beats production."""

    model_config = ConfigDict(extra="forbid")

    min_improvement: float = Field(0.0, ge=0)
    confidence: float | None = Field(
        None, ge=0.5, lt=1, description="None: the point estimates decide"
    )


class ProblemSpec(BaseModel):
    """What to learn, from which columns, and how to judge it. Unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    dataset: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    target: str = Field(min_length=1)
    task: Task = Task.AUTO
    features: list[str] | None = Field(
        None, min_length=1, description="feature columns; inferred from the data when omitted"
    )
    column_types: dict[str, ColumnType] = Field(default_factory=dict)
    primary_metric: str | None = None
    threshold: float | None = Field(
        None, description="the primary metric a model must reach to be released"
    )
    candidates: list[Algorithm] = Field(default_factory=lambda: list(Algorithm), min_length=1)
    holdout_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    seed: int = 42
    positive_class: str | None = Field(
        None, description="binary tasks: the class scored as 1; default the minority class"
    )
    decision: DecisionPolicy = Field(default_factory=DecisionPolicy)
    search: SearchPolicy = Field(default_factory=SearchPolicy)
    training: TrainingPolicy = Field(default_factory=TrainingPolicy)
    gate: GatePolicy = Field(default_factory=GatePolicy)
    monitoring: MonitoringLimits = Field(default_factory=MonitoringLimits)
    release: ReleasePolicy = Field(default_factory=ReleasePolicy)
    retraining: RetrainingPolicy = Field(default_factory=RetrainingPolicy)
    fairness: FairnessPolicy | None = None
    card: ModelCardInfo = Field(default_factory=ModelCardInfo)

    @model_validator(mode="after")
    def _consistent(self) -> ProblemSpec:
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError("candidates: each algorithm may be listed once")
        if self.features is not None:
            if self.target in self.features:
                raise ValueError(f"features: the target {self.target!r} cannot be a feature")
            if len(set(self.features)) != len(self.features):
                raise ValueError("features: a column is listed twice")
        if self.fairness is not None and self.target in self.fairness.sensitive_features:
            raise ValueError(
                f"fairness.sensitive_features: the target {self.target!r} cannot be one"
            )
        if self.target in self.column_types:
            raise ValueError(f"column_types: the target {self.target!r} is typed by the task")
        if self.primary_metric is not None:
            if self.primary_metric not in METRICS:
                raise ValueError(
                    f"primary_metric: unknown metric {self.primary_metric!r}; "
                    f"choose one of {sorted(METRICS)}"
                )
            tasks, _ = METRICS[self.primary_metric]
            if self.task is not Task.AUTO and self.task not in tasks:
                raise ValueError(
                    f"primary_metric: {self.primary_metric!r} does not apply to a "
                    f"{self.task.value} task"
                )
        return self

    def metric_for(self, task: Task) -> str:
        """The primary metric for the resolved task."""
        if self.primary_metric is None:
            return DEFAULT_PRIMARY_METRIC[task]
        tasks, _ = METRICS[self.primary_metric]
        if task not in tasks:
            raise SpecError(
                f"primary_metric: {self.primary_metric!r} does not apply to the inferred "
                f"{task.value} task; set task or choose a {task.value} metric"
            )
        return self.primary_metric


def parse_spec(text: str | bytes, *, source: str = "spec") -> ProblemSpec:
    """Parse a YAML or JSON spec (JSON is YAML); errors name every offending field."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source} is not valid YAML or JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{source} must be a mapping of fields, got {type(data).__name__}")
    try:
        return ProblemSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source} is invalid: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "spec"
        message = err["msg"].removeprefix("Value error, ")
        if message.startswith((f"{field}:", f"{field}.")):
            parts.append(message)
        else:
            parts.append(f"{field}: {message}")
    return "; ".join(parts)


def dataset_name(key: str) -> str:
    """The dataset a landing key belongs to: its folder under landing/, else the file stem.

    `landing/penguins.csv` and `landing/penguins/2024-05.csv.gz` both belong to `penguins`.
    """
    parts = PurePosixPath(key).parts
    name = parts[1] if len(parts) > 2 else parts[-1].split(".", 1)[0]
    slug = "".join(c if c.isalnum() or c in "_-" else "-" for c in name.lower()).strip("-_")
    if not slug:
        raise SpecError(f"cannot derive a dataset name from the key {key!r}")
    return slug[:63]


def spec_to_json(spec: ProblemSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), indent=2)


ResolvedTask = Literal["binary", "multiclass", "regression"]
