"""Stage 7, offline evaluation: holdout metrics, the dummy baseline, the winner, the gate."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

# What one model said about some rows (labels at the decision threshold for binary,
# probabilities in the schema's class order, or regression values): what the bootstrap scores.
from mlcycle.domain.bootstrap import Comparison
from mlcycle.domain.bootstrap import Scores as Predictions
from mlcycle.domain.decision import ThresholdChoice, constraint_text
from mlcycle.domain.features import model_input
from mlcycle.errors import GateError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import METRICS, Algorithm, DecisionPolicy, GatePolicy, Task


@dataclass
class GateCheck:
    name: str  # "baseline", "threshold" or "production"
    passed: bool
    detail: str


@dataclass
class GateVerdict:
    """Whether the winner may be registered; `reason` is one human sentence."""

    passed: bool
    reason: str
    checks: list[GateCheck] = field(default_factory=list)


def holdout_metrics(
    task: Task,
    y_true: Any,
    predictions: Any,
    probabilities: Any | None,
    classes: Sequence[str] | None,
    positive_class: str | None,
) -> dict[str, float]:
    """Every metric of `mlcycle.spec.METRICS` that applies to the task, as plain floats.

    `probabilities` has one column per entry of `classes`, in that order. A metric that is
    undefined on this holdout (roc_auc when y_true has a single class) is left out rather
    than reported as NaN.
    """
    if task is Task.REGRESSION:
        yt = np.asarray(y_true, dtype="float64")
        yp = np.asarray(predictions, dtype="float64")
        return {
            "rmse": float(math.sqrt(mean_squared_error(yt, yp))),
            "mae": float(mean_absolute_error(yt, yp)),
            "r2": float(r2_score(yt, yp)),
        }
    if not classes or probabilities is None:
        raise GateError("classification metrics need the classes and the probabilities")
    labels = list(classes)
    yt = np.asarray(y_true, dtype=object).astype(str)
    yp = np.asarray(predictions, dtype=object).astype(str)
    proba = np.asarray(probabilities, dtype="float64")
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" is expected on small holdouts
        warnings.simplefilter("ignore", UserWarning)
        out = {
            "accuracy": float(accuracy_score(yt, yp)),
            "balanced_accuracy": float(balanced_accuracy_score(yt, yp)),
            "log_loss": float(log_loss(yt, proba, labels=labels)),
        }
    if task is Task.BINARY:
        positive = positive_class if positive_class is not None else labels[-1]
        scores = dict(pos_label=positive, average="binary", zero_division=0)
        out["f1"] = float(f1_score(yt, yp, **scores))
        out["precision"] = float(precision_score(yt, yp, **scores))
        out["recall"] = float(recall_score(yt, yp, **scores))
        is_positive, p_positive = yt == positive, proba[:, labels.index(positive)]
        out["brier"] = float(brier_score_loss(is_positive, p_positive))
        auc = _binary_auc(is_positive, p_positive)
        if auc is not None:
            out["pr_auc"] = float(average_precision_score(is_positive, p_positive))
    else:
        out["f1"] = float(f1_score(yt, yp, average="macro", zero_division=0))
        # one-vs-rest macro over the classes present in y_true: an absent class has no AUC
        aucs = [_binary_auc(yt == c, proba[:, i]) for i, c in enumerate(labels)]
        defined = [a for a in aucs if a is not None]
        auc = float(np.mean(defined)) if defined else None
    if auc is not None:
        out["roc_auc"] = auc
    return out


def _binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    if is_positive.all() or not is_positive.any():
        return None
    return float(roc_auc_score(is_positive, scores))


def predict(
    model: Any, X: pd.DataFrame, schema: ResolvedSchema, threshold: float | None = None
) -> Predictions:
    """A fitted estimator on transformed X, or a serving Pipeline on the raw curated X. A
    binary model decides at `threshold` (None: the estimator's own argmax)."""
    if isinstance(model, Pipeline):
        X = model_input(X, schema)[list(schema.features)]
    if not schema.is_classification:
        return Predictions(None, None, np.asarray(model.predict(X), dtype="float64"))
    probabilities = aligned_proba(model.predict_proba(X), model.classes_, schema.classes)
    if schema.task is Task.BINARY and threshold is not None:
        classes = list(schema.classes or [])
        positive = schema.positive_class or classes[-1]
        negative = classes[1 - classes.index(positive)]
        p = probabilities[:, classes.index(positive)]
        labels = np.where(p >= threshold, positive, negative).astype(object)
    else:
        labels = np.asarray(model.predict(X)).astype(str).astype(object)
    return Predictions(labels, probabilities)


def prediction_metrics(
    predictions: Predictions, y: Any, schema: ResolvedSchema
) -> dict[str, float]:
    if not schema.is_classification:
        return holdout_metrics(schema.task, y, predictions.values, None, None, None)
    return holdout_metrics(
        schema.task,
        y,
        predictions.labels,
        predictions.probabilities,
        schema.classes,
        schema.positive_class,
    )


def score_model(
    model: Any, X: pd.DataFrame, y: Any, schema: ResolvedSchema, threshold: float | None = None
) -> dict[str, float]:
    """Holdout metrics of a fitted estimator on transformed X, or of a serving Pipeline on
    the raw curated X, binary labels at `threshold`."""
    return prediction_metrics(predict(model, X, schema, threshold), y, schema)


def aligned_proba(proba: Any, model_classes: Any, classes: list[str] | None) -> np.ndarray:
    """Probability columns in the schema's class order (a class unseen in training: 0)."""
    proba = np.asarray(proba, dtype="float64")
    if classes is None:
        return proba
    index = {str(c): i for i, c in enumerate(model_classes)}
    out = np.zeros((proba.shape[0], len(classes)))
    for j, c in enumerate(classes):
        if c in index:
            out[:, j] = proba[:, index[c]]
    return out


def baseline_metrics(y_train: Any, y_holdout: Any, schema: ResolvedSchema) -> dict[str, float]:
    """Metrics of the trivial model (class prior / train mean) on the holdout; the winner
    must beat it."""
    dummy: DummyClassifier | DummyRegressor
    if schema.is_classification:
        dummy = DummyClassifier(strategy="prior")
    else:
        dummy = DummyRegressor(strategy="mean")
    dummy.fit(np.zeros((len(y_train), 1)), np.asarray(y_train))
    return score_model(dummy, pd.DataFrame(np.zeros((len(y_holdout), 1))), y_holdout, schema)


def pick_winner(results: Mapping[Algorithm, Mapping[str, float]], primary_metric: str) -> Algorithm:
    """The candidate with the best primary metric; ties go to the earlier candidate."""
    larger = larger_is_better(primary_metric)
    best: Algorithm | None = None
    best_value = 0.0
    for algorithm, metrics in results.items():
        value = metrics.get(primary_metric)
        if value is None or math.isnan(value):
            continue
        if best is None or (value > best_value if larger else value < best_value):
            best, best_value = algorithm, value
    if best is None:
        raise GateError(f"no candidate has a {primary_metric} on the holdout")
    return best


def gate(
    *,
    primary_metric: str,
    winner_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    threshold: float | None,
    production_metrics: Mapping[str, float] | None,
    production_version: str | int | None = None,
    comparison: Comparison | None = None,
    policy: GatePolicy | None = None,
    decision_checks: Sequence[GateCheck] = (),
    fairness_checks: Sequence[GateCheck] = (),
    recent_check: GateCheck | None = None,
) -> GateVerdict:
    """Release gate: beat the dummy baseline, reach the threshold (if set), meet the
    decision's constraints, and be at least as good as production on the same holdout (if
    there is one): by the point estimates, or with `policy.confidence` by the paired
    bootstrap `comparison`; and stay within the fairness limits (`fairness_checks`, from
    `mlcycle.domain.fairness.gate_checks`); a retraining run must also be at least as good
    as production on the recent labeled traffic neither trained on (`recent_check`). A
    missing production metric fails closed: pass `production_metrics=None` when there is
    nothing to compare."""
    larger = larger_is_better(primary_metric)
    value = winner_metrics.get(primary_metric)
    if value is None:
        raise GateError(f"the winner has no {primary_metric} on the holdout")
    m, v = primary_metric, _fmt(value)
    checks: list[GateCheck] = []

    base = baseline_metrics.get(primary_metric)
    if base is None:
        checks.append(GateCheck("baseline", False, f"has no baseline {m} to compare with"))
    else:
        ok = value > base if larger else value < base
        text = "beats" if ok else "does not beat"
        checks.append(GateCheck("baseline", ok, f"{text} the baseline {_fmt(base)}"))

    if threshold is not None:
        ok = value >= threshold if larger else value <= threshold
        if ok:
            detail = f"reaches the threshold {_fmt(threshold)}"
        else:
            detail = f"is {'below' if larger else 'above'} the threshold {_fmt(threshold)}"
        checks.append(GateCheck("threshold", ok, detail))

    if production_metrics is not None:
        name = "production" if production_version is None else f"production v{production_version}"
        prod = production_metrics.get(primary_metric)
        if prod is None:
            checks.append(
                GateCheck("production", False, f"cannot be compared with {name}, which has no {m}")
            )
        elif recent_check is not None and comparison is not None:
            checks.append(_no_worse_check(prod, name, comparison))
        else:
            checks.append(_production_check(value, prod, larger, name, comparison, policy))

    if recent_check is not None:
        checks.append(recent_check)
    checks.extend(decision_checks)
    checks.extend(fairness_checks)
    failed = [c for c in checks if not c.passed]
    shown = failed or checks
    return GateVerdict(
        passed=not failed, reason=f"{m} {v} {_join(c.detail for c in shown)}", checks=checks
    )


def _production_check(
    value: float,
    prod: float,
    larger: bool,
    name: str,
    comparison: Comparison | None,
    policy: GatePolicy | None,
) -> GateCheck:
    interval = ""
    if comparison is not None:
        interval = (
            f" (paired difference {comparison.difference:+.3f}, {comparison.level:.0%} "
            f"interval {comparison.low:+.3f} to {comparison.high:+.3f})"
        )
    if policy is not None and policy.confidence is not None and comparison is not None:
        ok = comparison.probability >= policy.confidence
        detail = (
            f"{'is' if ok else 'is not'} better than {name} at {_fmt(prod)} by at least "
            f"{policy.min_improvement:g} with probability {comparison.probability:.2f} "
            f"(required {policy.confidence:g}){interval}"
        )
        return GateCheck("production", ok, detail)
    ok = value >= prod if larger else value <= prod
    text = "matches" if value == prod else ("beats" if ok else "is worse than")
    return GateCheck("production", ok, f"{text} {name} at {_fmt(prod)}{interval}")


def _no_worse_check(prod: float, name: str, comparison: Comparison) -> GateCheck:
    """A retraining run on the holdout production was judged on: not credibly worse (the
    paired interval reaches zero); where it must be better is the recent traffic."""
    ok = comparison.high >= 0
    return GateCheck(
        "production",
        ok,
        f"{'is no worse than' if ok else 'is worse than'} {name} at {_fmt(prod)} on the holdout "
        f"(paired difference {comparison.difference:+.3f}, {comparison.level:.0%} interval "
        f"{comparison.low:+.3f} to {comparison.high:+.3f})",
    )


def recent_check(
    comparison: Comparison, rows: int, production: str, policy: GatePolicy | None = None
) -> GateCheck:
    """The retraining rule: on the latest labeled traffic, held back from training, the
    challenger is at least as good as production (point estimates, interval shown), or with
    `policy.confidence` better with that probability."""
    if policy is not None and policy.confidence is not None:
        ok = comparison.probability >= policy.confidence
    elif larger_is_better(comparison.metric):
        ok = comparison.challenger >= comparison.reference
    else:
        ok = comparison.challenger <= comparison.reference
    same = comparison.challenger == comparison.reference
    text = "matches" if same else ("beats" if ok else "is not better than")
    return GateCheck(
        "retraining",
        ok,
        f"on the {rows} most recent labeled requests (held back from training) {text} "
        f"{production}: {_fmt(comparison.challenger)} against {_fmt(comparison.reference)} "
        f"(paired difference {comparison.difference:+.3f}, {comparison.level:.0%} interval "
        f"{comparison.low:+.3f} to {comparison.high:+.3f})",
    )


def decision_checks(
    choice: ThresholdChoice | None, holdout: Mapping[str, float], policy: DecisionPolicy
) -> list[GateCheck]:
    """The decision's constraints, where the spec sets any: reachable on the training folds,
    and met on the holdout at the chosen threshold."""
    wanted = constraint_text(policy)
    if choice is None or not wanted:
        return []
    if not choice.feasible:
        return [
            GateCheck(
                "decision",
                False,
                f"has no threshold with {wanted} on the training folds (at "
                f"{choice.threshold:.3f}: precision {choice.precision:.3f}, recall "
                f"{choice.recall:.3f})",
            )
        ]
    misses = [
        f"{name} {holdout.get(name, 0.0):.3f} is below {limit:g}"
        for name, limit in (("precision", policy.min_precision), ("recall", policy.min_recall))
        if limit is not None and holdout.get(name, 0.0) < limit
    ]
    at = f"at threshold {choice.threshold:.3f} on the holdout"
    if misses:
        return [GateCheck("decision", False, f"misses {wanted} {at}: {'; '.join(misses)}")]
    return [GateCheck("decision", True, f"meets {wanted} {at}")]


def serving_pipeline(transformer: Any, estimator: Any) -> Pipeline:
    """The fitted transformer and estimator as one Pipeline over the raw curated columns.

    No refit: Pipeline only calls fit when asked, so predict runs the fitted steps as they
    are. Feed it `model_input(df, schema)`.
    """
    return Pipeline([("transform", transformer), ("model", estimator)])


def larger_is_better(metric: str) -> bool:
    if metric not in METRICS:
        raise GateError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
    return METRICS[metric][1]


def _fmt(x: float) -> str:
    return f"{x:.3f}" if x == 0 or abs(x) >= 0.001 else f"{x:.3g}"


def _join(parts: Any) -> str:
    items = list(parts)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + (", and " if len(items) > 2 else " and ") + items[-1]
