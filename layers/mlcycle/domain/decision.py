"""Decisions for binary tasks: the threshold that turns a probability into a label.

A model ranks; a threshold decides. `choose_threshold` tunes it on out-of-fold predictions of
the training split (never on the holdout, which stays the honest estimate) for the spec's
objective, within its precision and recall constraints. Every consumer of a model version
decides with `decide` and the version's threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix_at_thresholds

from mlcycle.spec import Costs, DecisionPolicy, Objective

CURVE_POINTS = 200  # thresholds kept for the report's plot


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    source: str  # how it was chosen, one sentence
    objective: float  # the objective at the threshold, on the predictions it was tuned on
    precision: float
    recall: float
    feasible: bool = True  # False: no threshold met the constraints (the gate rejects)
    curve: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "source": self.source,
            "objective": self.objective,
            "precision": self.precision,
            "recall": self.recall,
            "feasible": self.feasible,
            "curve": self.curve,
        }


def decide(positive_probability: Any, threshold: float) -> np.ndarray:
    """True where the model decides for the positive class."""
    return np.asarray(positive_probability, dtype="float64") >= threshold


def expected_cost(costs: Costs, tn: Any, fp: Any, fn: Any, tp: Any) -> Any:
    """Mean cost per decision of a confusion matrix (or arrays of them)."""
    n = np.asarray(tn) + np.asarray(fp) + np.asarray(fn) + np.asarray(tp)
    total = (
        costs.true_negative * np.asarray(tn)
        + costs.false_positive * np.asarray(fp)
        + costs.false_negative * np.asarray(fn)
        + costs.true_positive * np.asarray(tp)
    )
    return total / n


def _rates(tn: np.ndarray, fp: np.ndarray, fn: np.ndarray, tp: np.ndarray) -> dict[str, Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "balanced_accuracy": (recall + specificity) / 2,
    }


def _objective(policy: DecisionPolicy, rates: dict[str, Any], counts: tuple[Any, ...]) -> Any:
    """Larger is better: the cost objective is the negated expected cost."""
    if policy.optimize is Objective.COST:
        assert policy.costs is not None  # the spec's validator makes sure
        return -expected_cost(policy.costs, *counts)
    return rates[policy.optimize.value]


def choose_threshold(
    is_positive: Any, positive_probability: Any, policy: DecisionPolicy, *, tuned_on: str
) -> ThresholdChoice:
    """The spec's threshold, or the one that does best on these predictions.

    Among the thresholds that meet `min_precision` and `min_recall`, the one with the best
    objective; it is placed halfway to the next lower score, which splits the predictions
    it was tuned on the same way and leaves a margin on both sides for new data.
    """
    y = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(positive_probability, dtype="float64")
    tn, fp, fn, tp, thresholds = confusion_matrix_at_thresholds(y, scores)
    # Row 0 flags nothing (a threshold above every score), so every threshold has its counts.
    tn, fp = np.r_[tn[0] + fp[0], tn], np.r_[0, fp]
    fn, tp = np.r_[fn[0] + tp[0], fn], np.r_[0, tp]
    thresholds = np.r_[np.inf, thresholds]
    counts = (tn, fp, fn, tp)
    rates = _rates(*counts)
    objective = _objective(policy, rates, counts)
    feasible = np.ones(len(thresholds), dtype=bool)
    if policy.min_precision is not None:
        feasible &= rates["precision"] >= policy.min_precision
    if policy.min_recall is not None:
        feasible &= rates["recall"] >= policy.min_recall
    name = _objective_name(policy)
    if not isinstance(policy.threshold, str):
        threshold = float(policy.threshold)
        i = _index_at(thresholds, threshold)
        source = "set in the spec"
    else:
        pool = np.flatnonzero(feasible) if feasible.any() else np.arange(len(thresholds))
        i = int(pool[np.argmax(objective[pool])])
        if i == 0:  # flag nothing: just above the top score
            threshold = float(min(np.nextafter(thresholds[1], np.inf), 1.0))
        else:  # halfway to the next lower score (0 flags everything)
            lower = float(thresholds[i + 1]) if i + 1 < len(thresholds) else 0.0
            threshold = float(min(max((float(thresholds[i]) + lower) / 2, 0.0), 1.0))
        source = f"auto: best {name} on {tuned_on}"
    value = float(objective[i])
    if policy.optimize is Objective.COST:
        value = -value  # reported as the cost it is
    return ThresholdChoice(
        threshold=threshold,
        source=source,
        objective=value,
        precision=float(rates["precision"][i]),
        recall=float(rates["recall"][i]),
        feasible=bool(feasible[i]),
        curve=_curve(thresholds, objective, rates, policy),
    )


def constraint_text(policy: DecisionPolicy) -> str:
    parts = []
    if policy.min_precision is not None:
        parts.append(f"precision >= {policy.min_precision:g}")
    if policy.min_recall is not None:
        parts.append(f"recall >= {policy.min_recall:g}")
    return " and ".join(parts)


def _objective_name(policy: DecisionPolicy) -> str:
    return "expected cost" if policy.optimize is Objective.COST else policy.optimize.value


def _index_at(thresholds: np.ndarray, threshold: float) -> int:
    """The position in the decreasing `thresholds` whose counts hold at `threshold`: the
    lowest score at or above it, or row 0 (flag nothing, at +inf) when no score is."""
    return int(np.flatnonzero(thresholds >= threshold)[-1])


def _curve(
    thresholds: np.ndarray, objective: Any, rates: dict[str, Any], policy: DecisionPolicy
) -> dict[str, list[float]]:
    finite = np.isfinite(thresholds)
    keep = np.flatnonzero(finite)
    if keep.size > CURVE_POINTS:
        keep = keep[np.linspace(0, keep.size - 1, CURVE_POINTS).round().astype(int)]
    sign = -1.0 if policy.optimize is Objective.COST else 1.0
    return {
        "thresholds": [float(v) for v in thresholds[keep]],
        "objective": [float(v) for v in sign * np.asarray(objective)[keep]],
        "precision": [float(v) for v in rates["precision"][keep]],
        "recall": [float(v) for v in rates["recall"][keep]],
    }
