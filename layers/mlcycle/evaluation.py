"""Stage 7b wired to the lake and registry: every candidate on the holdout with bootstrap
intervals, the winner, the paired comparison with production, the gate, the serving
artifact, and the evaluation report (`reports/.../evaluation.json` and `.html`)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.context import EvaluateResult, FeaturesResult, Gate, RunContext, required
from mlcycle.domain import bootstrap, diagnostics, export, fairness, live_fairness, monitor
from mlcycle.domain import evaluate as evaluation
from mlcycle.domain import performance_estimation as estimation
from mlcycle.domain.background import background_summary
from mlcycle.domain.decision import ThresholdChoice
from mlcycle.domain.evaluate import GateCheck, Predictions
from mlcycle.domain.global_explanations import (
    attribution_baseline,
    global_explanations,
    top_features,
)
from mlcycle.domain.traffic import TIME_COLUMN
from mlcycle.lake_layout import Zone, run_prefix
from mlcycle.reports import render_evaluation
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.manifest import BACKGROUND_FILE, MANIFEST_FILE, ONNX_FILE
from mlcycle.spec import METRICS, Algorithm, Costs, ProblemSpec, Task
from mlcycle.stages import TARGET_COLUMN, feature_matrix, run_key, run_schema, run_spec

REPLICATES = 1000  # bootstrap resamples of the holdout
LEVEL = 0.95  # the intervals' confidence level
# The background summary's rows (k-means medoids of the training rows). One row keeps the
# explanation of one churn instance exact and within the endpoint's budget (p50 <= 10 ms):
# measured with bench/explain.py on the churn forest, 1 row exact p50 8.3 ms, 8 rows sampled
# p50 24 ms (exact over 8 rows: 47 ms). Contributions are then measured against the most
# typical training row rather than the training distribution.
BACKGROUND_ROWS = 1


def evaluate_models(ctx: RunContext, lake: Lake, registry: Registry) -> EvaluateResult:
    """Score every candidate on the holdout, pick the winner, and judge it at the gate."""
    problem = required(ctx.problem, "define_problem")
    feature_uris = required(ctx.features, "engineer_features")
    primary = required(ctx.metrics, "define_metrics")
    spec, schema = run_spec(ctx, lake), run_schema(ctx, lake)
    X_holdout, y_holdout = feature_matrix(lake, feature_uris.holdout_uri)
    y_train = lake.get_parquet(feature_uris.train_uri, columns=[TARGET_COLUMN])[TARGET_COLUMN]
    candidates = {c.algorithm: c for c in required(ctx.candidates, "train_model")}
    models = {a: lake.get_artifact(c.model_uri) for a, c in candidates.items()}
    said = {
        a: evaluation.predict(models[a], X_holdout, schema, c.threshold)
        for a, c in candidates.items()
    }
    scores = {a: evaluation.prediction_metrics(p, y_holdout, schema) for a, p in said.items()}
    intervals = {a: _intervals(p, y_holdout, schema, spec) for a, p in said.items()}
    baseline = evaluation.baseline_metrics(y_train, y_holdout, schema)
    winner = evaluation.pick_winner(scores, primary.primary_metric)
    threshold = candidates[winner].threshold
    searches = {
        a: lake.get_json(c.search_uri) if c.search_uri else None for a, c in candidates.items()
    }
    choice = _choice(searches[winner])
    holdout_rows = lake.get_parquet(feature_uris.holdout_rows_uri)
    production_version, production_metrics, production_said = _production(
        problem.dataset, registry, lake, holdout_rows, schema
    )
    comparison = None
    if production_said is not None:
        comparison = bootstrap.paired_comparison(
            primary.primary_metric,
            schema.task,
            y_holdout.to_numpy(),
            said[winner],
            production_said,
            classes=schema.classes,
            positive_class=schema.positive_class,
            min_improvement=spec.gate.min_improvement,
            replicates=REPLICATES,
            level=LEVEL,
            seed=spec.seed,
        )
    fair = _fairness(spec, schema, lake, feature_uris, holdout_rows, y_holdout, said[winner])
    pipeline = evaluation.serving_pipeline(
        lake.get_artifact(feature_uris.transformer_uri), models[winner]
    )
    recent = _recent(ctx, lake, registry, schema, spec, primary.primary_metric, pipeline, threshold)
    verdict = evaluation.gate(
        primary_metric=primary.primary_metric,
        winner_metrics=scores[winner],
        baseline_metrics=baseline,
        threshold=primary.threshold,
        production_metrics=production_metrics,
        production_version=production_version,
        comparison=comparison,
        policy=spec.gate,
        decision_checks=evaluation.decision_checks(choice, scores[winner], spec.decision),
        fairness_checks=fairness.gate_checks(fair),
        recent_check=recent.check if recent else None,
    )
    # The serving artifact: one ONNX graph, proven on every holdout row before anything is
    # stored; a ParityError fails the run, so a model that fails parity is never registered.
    onnx_bytes = export.export_onnx(pipeline, schema)
    parity = export.check_parity(pipeline, onnx_bytes, holdout_rows, schema)
    onnx_sha256 = hashlib.sha256(onnx_bytes).hexdigest()
    draft = export.build_manifest(
        pipeline,
        onnx_bytes,
        schema,
        version=0,
        onnx_sha256=onnx_sha256,
        metrics=scores[winner],
        parity=parity,
        threshold=threshold,
    )
    prefix = run_prefix(Zone.MODELS, problem.dataset, ctx.run_id)
    pipeline_uri = lake.put_artifact(prefix + "pipeline.joblib", pipeline)
    onnx_uri = lake.put_bytes(
        prefix + ONNX_FILE, onnx_bytes, content_type="application/octet-stream"
    )
    manifest_uri = lake.put_json(prefix + MANIFEST_FILE, draft.to_json())
    # What the monitor compares live traffic with: the training baseline, finer quantiles,
    # and the distribution of this model's own decisions on the holdout.
    winner_said = said[winner]
    train_rows = lake.get_parquet(feature_uris.prefix + "train_rows.parquet")
    monitor_baseline = monitor.extend_baseline(
        lake.get_json(feature_uris.baseline_uri),
        train_rows,
        schema,
        holdout_predictions=winner_said.labels if schema.is_classification else winner_said.values,
    )
    # What the endpoint's explanations are measured against (`POST :explain`): a few weighted
    # training rows, beside the ONNX graph they explain; the same explainer over the holdout
    # says what the model relies on (the report, the registry, the monitor's reference).
    background = background_summary(
        train_rows, schema.features, rows=BACKGROUND_ROWS, seed=spec.seed
    )
    background_uri = lake.put_json(prefix + BACKGROUND_FILE, background)
    explained = global_explanations(
        onnx_bytes, draft, background, holdout_rows, schema, seed=spec.seed
    )
    monitor_baseline["attribution"] = attribution_baseline(explained)
    # the groups live traffic is judged by (the monitor's selection rates per group)
    monitor_baseline["fairness"] = live_fairness.monitor_reference(fair)
    # what the monitor estimates live performance with before labels arrive (CBPE): the
    # winner's probabilities calibrated on the holdout (None for regression)
    monitor_baseline["performance_estimation"] = estimation.calibration_reference(
        winner_said.probabilities, y_holdout.to_numpy(), schema, threshold, seed=spec.seed
    )
    monitor_baseline_uri = lake.put_json(prefix + "monitor_baseline.json", monitor_baseline)
    report: dict[str, Any] = {
        "dataset": problem.dataset,
        "run_id": ctx.run_id,
        "task": schema.task.value,
        "target": schema.target,
        "primary_metric": primary.primary_metric,
        "greater_is_better": primary.greater_is_better,
        "train_rows": feature_uris.train_rows,
        "holdout_rows": len(y_holdout),
        # all curated rows, or the seeded stratified sample past the training row budget
        "sample": feature_uris.sample,
        "classes": schema.classes,
        "confidence_level": LEVEL,
        "bootstrap": {"replicates": REPLICATES, "seed": spec.seed},
        "candidates": [
            _candidate(a, c, scores[a], intervals[a], searches[a], a == winner)
            for a, c in candidates.items()
        ],
        "winner": str(winner),
        "baseline": baseline,
        "importance": diagnostics.importance(
            pipeline,
            holdout_rows,
            schema,
            primary.primary_metric,
            threshold=threshold,
            seed=spec.seed,
        ),
        "explanations": explained,
        "production": {
            "version": production_version,
            "metrics": production_metrics,
            "comparison": comparison.to_json() if comparison else None,
        },
        "gate": {
            **asdict(verdict),
            "min_improvement": spec.gate.min_improvement,
            "confidence": spec.gate.confidence,
        },
        "parity": asdict(parity),
        "onnx": {"uri": onnx_uri, "bytes": len(onnx_bytes), "sha256": onnx_sha256},
    }
    if recent is not None:
        report["recent"] = recent.to_json()
    if schema.is_classification:
        assert winner_said.probabilities is not None
        report["curves"] = diagnostics.classification_curves(
            y_holdout, winner_said.labels, winner_said.probabilities, schema, threshold
        )
    else:
        report["regression"] = diagnostics.regression_diagnostics(
            y_holdout, winner_said.values, seed=spec.seed
        )
    if schema.task is Task.BINARY and choice is not None:
        report["decision"] = _decision(choice, schema, spec, said[winner], y_holdout)
    if fair is not None:
        report["fairness"] = fair
    reports = run_prefix(Zone.REPORTS, problem.dataset, ctx.run_id)
    lake.put_json(reports + "evaluation.json", report)
    report_uri = lake.put_text(
        reports + "evaluation.html", render_evaluation(report), content_type="text/html"
    )
    return EvaluateResult(
        evaluation_uri=lake.put_json(run_key(ctx, "evaluation.json"), report),
        report_uri=report_uri,
        winner=winner,
        metrics=scores[winner],
        intervals={name: [i.low, i.high] for name, i in intervals[winner].items()},
        threshold=threshold,
        gate=Gate(passed=verdict.passed, reason=verdict.reason),
        pipeline_uri=pipeline_uri,
        onnx_uri=onnx_uri,
        manifest_uri=manifest_uri,
        monitor_baseline_uri=monitor_baseline_uri,
        production_version=production_version,
        background_uri=background_uri,
        top_features=top_features(explained),
    )


def _intervals(
    predictions: Predictions, y: pd.Series, schema: ResolvedSchema, spec: ProblemSpec
) -> dict[str, bootstrap.Interval]:
    """Every metric of the task with its interval; the same seed gives every candidate the
    same resamples, so their intervals are comparable."""
    return bootstrap.metric_intervals(
        schema.task,
        y.to_numpy(),
        predictions,
        classes=schema.classes,
        positive_class=schema.positive_class,
        metrics=[name for name, (tasks, _) in METRICS.items() if schema.task in tasks],
        replicates=REPLICATES,
        level=LEVEL,
        seed=spec.seed,
    )


def _candidate(
    algorithm: Algorithm,
    candidate: Any,
    metrics: dict[str, float],
    intervals: dict[str, bootstrap.Interval],
    search: dict[str, Any] | None,
    winner: bool,
) -> dict[str, Any]:
    return {
        "algorithm": str(algorithm),
        "winner": winner,
        "fit_seconds": candidate.fit_seconds,
        "metrics": {
            name: intervals[name].to_json()
            if name in intervals
            else {"value": value, "low": value, "high": value}
            for name, value in metrics.items()
        },
        "params": candidate.params,
        "threshold": candidate.threshold,
        "search": {k: v for k, v in (search or {}).items() if k not in ("threshold", "status")},
    }


def _fairness(
    spec: ProblemSpec,
    schema: ResolvedSchema,
    lake: Lake,
    feature_uris: FeaturesResult,
    holdout_rows: pd.DataFrame,
    y: pd.Series,
    predictions: Predictions,
) -> dict[str, Any] | None:
    """The winner's fairness across the groups of each sensitive feature, on the holdout at
    its decision threshold; the groups (bins, reference) are fixed on the training rows."""
    if spec.fairness is None:
        return None
    train = lake.get_parquet(
        feature_uris.prefix + "train_rows.parquet", columns=spec.fairness.sensitive_features
    )
    groups = fairness.groupings(train, schema, spec.fairness)
    said = predictions.labels if schema.is_classification else predictions.values
    return fairness.assess(holdout_rows, y.to_numpy(), said, schema, spec.fairness, groups)


def _choice(search: dict[str, Any] | None) -> ThresholdChoice | None:
    if not search or not search.get("threshold"):
        return None
    return ThresholdChoice(**search["threshold"])


def _decision(
    choice: ThresholdChoice,
    schema: ResolvedSchema,
    spec: ProblemSpec,
    predictions: Predictions,
    y: pd.Series,
) -> dict[str, Any]:
    policy = spec.decision
    out: dict[str, Any] = {
        "positive_class": schema.positive_class,
        "positive_class_reason": schema.positive_class_reason or "set in the spec",
        "threshold": choice.threshold,
        "threshold_source": choice.source,
        "optimize": policy.optimize.value,
        "min_precision": policy.min_precision,
        "min_recall": policy.min_recall,
        "curve": choice.curve,
    }
    if policy.costs is not None:
        out["costs"] = policy.costs.model_dump()
        out["expected_cost"] = _expected_cost(
            policy.costs, y, predictions, str(schema.positive_class), spec.seed
        ).to_json()
    return out


def _expected_cost(
    costs: Costs, y: pd.Series, predictions: Predictions, positive: str, seed: int
) -> bootstrap.Interval:
    """The mean cost per decision on the holdout, with its interval over the same resamples
    as every other metric."""
    truth = y.astype(str).to_numpy() == positive
    flagged = np.asarray(predictions.labels, dtype=object).astype(str) == positive
    per_row = np.select(
        [truth & flagged, ~truth & flagged, truth & ~flagged],
        [costs.true_positive, costs.false_positive, costs.false_negative],
        costs.true_negative,
    )
    means = np.concatenate(
        [
            counts @ per_row / len(per_row)
            for counts in bootstrap.replicate_counts(len(per_row), REPLICATES, seed)
        ]
    )
    low, high = np.percentile(means, [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100])
    return bootstrap.Interval(float(per_row.mean()), float(low), float(high))


def _production(
    dataset: str, registry: Registry, lake: Lake, holdout: pd.DataFrame, schema: ResolvedSchema
) -> tuple[int | None, dict[str, float] | None, Predictions | None]:
    """The production model on this run's holdout, at its own threshold, so the comparison
    is like for like and paired row by row."""
    release = registry.get_release(dataset)
    if not release or release.get("production_version") is None:
        return None, None, None
    version = int(release["production_version"])
    entry = registry.get_version(dataset, version) or {}
    try:
        production = lake.get_artifact(entry["artifacts"]["pipeline_uri"])
        threshold = entry.get("threshold")
        said = evaluation.predict(
            production,
            holdout.drop(columns=[schema.target]),
            schema,
            float(threshold) if threshold is not None else None,
        )
    except (KeyError, ValueError):
        # The columns changed since production was trained, so it cannot score this holdout;
        # its own recorded metrics are the fairest comparison left.
        return version, dict(entry.get("metrics") or {}), None
    return version, evaluation.prediction_metrics(said, holdout[schema.target], schema), said


@dataclass
class RecentSlice:
    """Challenger and production on the latest labeled traffic, which neither trained on."""

    rows: int
    first_at: str | None
    last_at: str | None
    production_version: int
    challenger: dict[str, float]
    production: dict[str, float]
    comparison: bootstrap.Comparison
    check: GateCheck

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "production_version": self.production_version,
            "challenger": self.challenger,
            "production": self.production,
            "comparison": self.comparison.to_json(),
            "passed": self.check.passed,
            "detail": self.check.detail,
        }


def _recent(
    ctx: RunContext,
    lake: Lake,
    registry: Registry,
    schema: ResolvedSchema,
    spec: ProblemSpec,
    metric: str,
    pipeline: Any,
    threshold: float | None,
) -> RecentSlice | None:
    """A retraining run's second judgement: both models on the held-back recent traffic."""
    traffic = ctx.traffic
    dataset = required(ctx.problem, "define_problem").dataset
    release = registry.get_release(dataset) or {}
    if traffic is None or traffic.recent_uri is None or release.get("production_version") is None:
        return None
    version = int(release["production_version"])
    entry = registry.get_version(dataset, version) or {}
    rows = lake.get_parquet(traffic.recent_uri)
    truth = rows[schema.target]
    if schema.is_classification:  # a label the model does not know cannot be scored
        truth = truth.astype(str)
        rows, truth = (
            rows[truth.isin(schema.classes or [])],
            truth[truth.isin(schema.classes or [])],
        )
    if len(rows) < 2:
        return None
    # the features as the clients sent them (a field never sent is missing); `predict` types
    # them as the transformer expects
    frame = rows.reindex(columns=list(schema.features))
    production_threshold = entry.get("threshold")
    challenger = evaluation.predict(pipeline, frame, schema, threshold)
    production = evaluation.predict(
        lake.get_artifact(entry["artifacts"]["pipeline_uri"]),
        frame,
        schema,
        float(production_threshold) if production_threshold is not None else None,
    )
    y = truth.to_numpy()
    comparison = bootstrap.paired_comparison(
        metric,
        schema.task,
        y,
        challenger,
        production,
        classes=schema.classes,
        positive_class=schema.positive_class,
        min_improvement=0.0,
        replicates=REPLICATES,
        level=LEVEL,
        seed=spec.seed,
    )
    return RecentSlice(
        rows=len(rows),
        first_at=str(rows[TIME_COLUMN].min()) if TIME_COLUMN in rows else None,
        last_at=str(rows[TIME_COLUMN].max()) if TIME_COLUMN in rows else None,
        production_version=version,
        challenger=evaluation.prediction_metrics(challenger, truth, schema),
        production=evaluation.prediction_metrics(production, truth, schema),
        comparison=comparison,
        check=evaluation.recent_check(comparison, len(rows), f"production v{version}", spec.gate),
    )
