"""Fairness across groups: how the model's decisions and errors differ between the groups of
each sensitive feature, on the holdout at the model's decision threshold.

Per group, fairlearn's `MetricFrame` measures count, base rate, selection rate, true and
false positive rates and accuracy (regression: mean target, mean prediction, MAE). Each group
d is then compared with its feature's reference group a under SageMaker Clarify's names and
definitions: before training CI = (n_a - n_d) / (n_a + n_d) and DPL = q_a - q_d (positive
label proportions); after training DI = q'_d / q'_a and DPPL = q'_a - q'_d (predicted positive
proportions), recall difference RD = TPR_a - TPR_d (equal opportunity), FPR_a - FPR_d, and
AD = ACC_a - ACC_d. Differences are reference minus group throughout.

The gate holds the spec's limits two-sided, since the positive class may be the favourable
outcome or the unfavourable one: DI within [limit, 1 / limit], |RD| and |AD| at most theirs.
Multiclass models are gated on the accuracy difference only (selection rates are reported per
class); regression is reported, never gated. Groups smaller than `min_group_size` (or
compared with a reference that small) are reported with `small: true` and never gated on. A
measure that is undefined (DI when the reference selects no one, RD when a group has no
positives) is null with a note saying why, and is not gated on either.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    mean_prediction,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, mean_absolute_error

from mlcycle.domain.evaluate import GateCheck
from mlcycle.errors import BadInputError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, FairnessPolicy, Task

MISSING = "(missing)"  # the group of rows without a value
QUARTILES = (0.25, 0.5, 0.75)  # a numeric feature's default bin edges, on the training rows
EDGE_DIGITS = 4  # significant digits of a default edge (34.5, not 34.49999)

Json = dict[str, Any]


@dataclass(frozen=True)
class Grouping:
    """How one sensitive feature's values become groups, fixed once on the training rows so
    the evaluation and the monitor name the same groups."""

    feature: str
    bins: list[float] | None  # numeric: interior edges; None: each category is a group
    reference_group: str

    def labels(self, values: Any) -> np.ndarray:
        return group_labels(values, self.bins)

    def to_json(self) -> Json:
        return {"feature": self.feature, "bins": self.bins, "reference_group": self.reference_group}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Grouping:
        bins = data.get("bins")
        return cls(
            str(data["feature"]),
            [float(e) for e in bins] if bins is not None else None,
            str(data["reference_group"]),
        )


def bin_label(index: int, edges: Sequence[float]) -> str:
    """The stated range of bin `index` among len(edges) + 1: "< 25", "[25, 45)", ">= 65"."""
    if index == 0:
        return f"< {edges[0]:g}"
    if index == len(edges):
        return f">= {edges[-1]:g}"
    return f"[{edges[index - 1]:g}, {edges[index]:g})"


def describe(feature: str, group: str) -> str:
    """A group in words: "sex=female", "age in [25, 45)", "age < 25", "age >= 65"."""
    if group.startswith(("< ", ">= ")):
        return f"{feature} {group}"
    if group.startswith("[") and group.endswith(")"):
        return f"{feature} in {group}"
    return f"{feature}={group}"


def group_labels(values: Any, bins: Sequence[float] | None) -> np.ndarray:
    """Each value's group as a string: its category, or its bin's range when `bins` are given;
    a missing value is the group "(missing)"."""
    series = pd.Series(values).reset_index(drop=True)
    present = series.notna().to_numpy()
    out = np.full(len(series), MISSING, dtype=object)
    if bins is None:
        out[present] = series[present].map(str).to_numpy()
        return out
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    present = ~np.isnan(numbers)
    edges = np.asarray(bins, dtype="float64")
    names = np.asarray([bin_label(i, bins) for i in range(len(bins) + 1)], dtype=object)
    out[present] = names[np.searchsorted(edges, numbers[present], side="right")]
    return out


def groupings(
    train_rows: pd.DataFrame, schema: ResolvedSchema, policy: FairnessPolicy
) -> dict[str, Grouping]:
    """Each sensitive feature's bins (the spec's, else the training quartiles) and reference
    group (the spec's, else the largest group of the training rows)."""
    out: dict[str, Grouping] = {}
    for name in policy.sensitive_features:
        if name not in train_rows.columns:
            raise BadInputError(
                f"fairness.sensitive_features: {name!r} is not a column of the curated data"
            )
        kind = schema.sensitive.get(name) or schema.features.get(name)
        bins: list[float] | None = None
        if kind is ColumnType.NUMERIC:
            bins = policy.bins.get(name) or _quartile_edges(train_rows[name])
        labels = group_labels(train_rows[name], bins)
        reference = policy.reference_groups.get(name)
        if reference is None:
            reference = _largest(labels)
        elif reference not in set(labels):
            known = ", ".join(repr(g) for g in _ordered(labels, bins))
            raise BadInputError(
                f"fairness.reference_groups.{name}: {reference!r} is not a group of {name!r} "
                f"in the training rows; its groups are {known}"
            )
        out[name] = Grouping(name, bins, reference)
    return out


def _quartile_edges(values: pd.Series) -> list[float]:
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype="float64")
    if not len(numbers):
        return [0.0]
    edges = [float(f"{q:.{EDGE_DIGITS}g}") for q in np.quantile(numbers, QUARTILES)]
    return sorted(set(edges))


def _largest(labels: np.ndarray) -> str:
    named = labels[labels != MISSING]
    pool = named if len(named) else labels
    groups, counts = np.unique(pool.astype(str), return_counts=True)
    return str(groups[int(np.argmax(counts))])  # ties: the first name


def _ordered(labels: np.ndarray, bins: Sequence[float] | None) -> list[str]:
    """Groups in reading order: bins by range, categories largest first; "(missing)" last."""
    groups, counts = np.unique(labels.astype(str), return_counts=True)
    size = dict(zip(groups.tolist(), counts.tolist(), strict=True))
    if bins is not None:
        order = [bin_label(i, bins) for i in range(len(bins) + 1)]
        named = [g for g in order if g in size]
    else:
        named = sorted((g for g in size if g != MISSING), key=lambda g: (-size[g], g))
    return named + ([MISSING] if MISSING in size else [])


# -- the assessment --------------------------------------------------------------------------


def assess(
    rows: pd.DataFrame,
    y_true: Any,
    predicted: Any,
    schema: ResolvedSchema,
    policy: FairnessPolicy,
    groups: Mapping[str, Grouping],
) -> Json:
    """The fairness section of `evaluation.json`: per sensitive feature its groups, the
    measures of each group against the reference, and the limits it violates.

    `rows` carry the sensitive columns, `y_true` and `predicted` are row-aligned with them:
    labels (binary: at the decision threshold) or regression values."""
    task = schema.task
    features: Json = {}
    violations: list[Json] = []
    for name, grouping in groups.items():
        labels = grouping.labels(rows[name])
        frame = _by_group(task, y_true, predicted, labels, schema)
        section = _feature(name, grouping, frame, labels, task, policy, schema)
        features[name] = section
        violations.extend(section.pop("_violations"))
    return {
        "task": task.value,
        "positive_class": schema.positive_class if task is Task.BINARY else None,
        "features": features,
        "limits": {
            "min_disparate_impact": policy.min_disparate_impact,
            "max_equal_opportunity_difference": policy.max_equal_opportunity_difference,
            "max_accuracy_difference": policy.max_accuracy_difference,
            "min_group_size": policy.min_group_size,
        },
        "gated": _gated(task, policy),
        "violations": violations,
        "passed": not violations,
        "notes": _task_notes(task),
    }


def _gated(task: Task, policy: FairnessPolicy) -> list[str]:
    """The measures the gate holds to a limit for this task."""
    limits = {
        "DI": policy.min_disparate_impact,
        "recall_difference": policy.max_equal_opportunity_difference,
        "accuracy_difference": policy.max_accuracy_difference,
    }
    applies = {
        Task.BINARY: ("DI", "recall_difference", "accuracy_difference"),
        Task.MULTICLASS: ("accuracy_difference",),
    }.get(task, ())
    return [m for m in applies if limits[m] is not None]


def _task_notes(task: Task) -> list[str]:
    if task is Task.MULTICLASS:
        return [
            "multiclass: selection rates are reported per class; only the accuracy difference "
            "is gated"
        ]
    if task is Task.REGRESSION:
        return ["regression: mean prediction and error per group are reported, never gated"]
    return []


def _metrics(task: Task, classes: Sequence[str]) -> dict[str, Callable[..., float]]:
    if task is Task.REGRESSION:
        return {
            "count": count,
            "mean_target": _mean_target,
            "mean_prediction": mean_prediction,
            "mae": mean_absolute_error,
        }
    if task is Task.MULTICLASS:
        out: dict[str, Callable[..., float]] = {"count": count, "accuracy": accuracy_score}
        for c in classes:
            out[f"base_rate:{c}"] = partial(_base_rate, label=c)
            out[f"selection_rate:{c}"] = partial(selection_rate, pos_label=c)
        return out
    return {
        "count": count,
        "positives": _positives,
        "base_rate": _mean_target,
        "selection_rate": selection_rate,
        "true_positive_rate": true_positive_rate,
        "false_positive_rate": false_positive_rate,
        "accuracy": accuracy_score,
    }


def _mean_target(y_true: Any, y_pred: Any) -> float:
    return float(np.mean(np.asarray(y_true, dtype="float64")))


def _positives(y_true: Any, y_pred: Any) -> float:
    return float(np.sum(np.asarray(y_true)))


def _base_rate(y_true: Any, y_pred: Any, *, label: str) -> float:
    return float(np.mean(np.asarray(y_true) == label))


def metric_frame(
    task: Task, y_true: Any, predicted: Any, labels: np.ndarray, schema: ResolvedSchema
) -> MetricFrame:
    """fairlearn's MetricFrame of the task's per-group metrics; binary on 0/1 indicators of
    the positive class."""
    yt, yp = _encoded(task, y_true, predicted, schema)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a group without positives: TPR is handled below
        return MetricFrame(
            metrics=_metrics(task, schema.classes or []),
            y_true=yt,
            y_pred=yp,
            sensitive_features=pd.Series(labels, name="group"),
        )


def _encoded(
    task: Task, y_true: Any, predicted: Any, schema: ResolvedSchema
) -> tuple[np.ndarray, np.ndarray]:
    if task is Task.REGRESSION:
        return np.asarray(y_true, dtype="float64"), np.asarray(predicted, dtype="float64")
    yt = np.asarray(y_true, dtype=object).astype(str)
    yp = np.asarray(predicted, dtype=object).astype(str)
    if task is Task.MULTICLASS:
        return yt, yp
    positive = schema.positive_class or (schema.classes or ["1"])[-1]
    return (yt == positive).astype(int), (yp == positive).astype(int)


def _by_group(
    task: Task, y_true: Any, predicted: Any, labels: np.ndarray, schema: ResolvedSchema
) -> pd.DataFrame:
    return metric_frame(task, y_true, predicted, labels, schema).by_group


def _feature(
    name: str,
    grouping: Grouping,
    frame: pd.DataFrame,
    labels: np.ndarray,
    task: Task,
    policy: FairnessPolicy,
    schema: ResolvedSchema,
) -> Json:
    reference = grouping.reference_group
    notes: list[str] = []
    by_row = frame.to_dict(orient="index")
    groups = [
        _group(g, by_row[g], task, policy, schema, g == reference)
        for g in _ordered(labels, grouping.bins)
    ]
    by_name = {g["group"]: g for g in groups}
    ref = by_name.get(reference)
    measures: list[Json] = []
    violations: list[Json] = []
    if ref is None:
        notes.append(f"the reference group {reference!r} has no holdout rows: nothing compared")
    else:
        if ref["small"]:
            notes.append(
                f"the reference group {reference!r} has {ref['count']} rows, fewer than "
                f"{policy.min_group_size}: nothing is gated on this feature"
            )
        for group in groups:
            if group["group"] == reference:
                continue
            measure = _measure(group, ref, task)
            measure["small"] = bool(group["small"] or ref["small"])
            measures.append(measure)
            if not measure["small"]:
                violations.extend(_violations(name, reference, measure, task, policy))
    return {
        "reference_group": reference,
        "bins": grouping.bins,
        "kind": "numeric" if grouping.bins is not None else "categorical",
        "groups": groups,
        "measures": measures,
        "between_groups": _between_groups(frame, groups, task),
        "passed": not violations,
        "notes": notes,
        "_violations": violations,
    }


def _group(
    name: str,
    row: Mapping[Any, Any],
    task: Task,
    policy: FairnessPolicy,
    schema: ResolvedSchema,
    reference: bool,
) -> Json:
    n = int(row["count"])
    out: Json = {"group": name, "count": n, "small": n < policy.min_group_size}
    out["reference"] = reference
    if task is Task.REGRESSION:
        out.update({k: _num(row[k]) for k in ("mean_target", "mean_prediction", "mae")})
        return out
    if task is Task.MULTICLASS:
        classes = schema.classes or []
        out["accuracy"] = _num(row["accuracy"])
        out["base_rates"] = {c: _num(row[f"base_rate:{c}"]) for c in classes}
        out["selection_rates"] = {c: _num(row[f"selection_rate:{c}"]) for c in classes}
        return out
    positives = int(row["positives"])
    out["positives"] = positives
    for key in ("base_rate", "selection_rate", "accuracy"):
        out[key] = _num(row[key])
    # fairlearn says 0 where the rate has no denominator; it is undefined
    out["true_positive_rate"] = _num(row["true_positive_rate"]) if positives else None
    out["false_positive_rate"] = _num(row["false_positive_rate"]) if positives < n else None
    return out


def _measure(d: Json, a: Json, task: Task) -> Json:
    """Group d against the reference a, in Clarify's terms (differences are a - d)."""
    n_a, n_d = a["count"], d["count"]
    out: Json = {"group": d["group"], "CI": (n_a - n_d) / (n_a + n_d)}
    notes: list[str] = []
    if task is Task.REGRESSION:
        for key in ("mean_target", "mean_prediction", "mae"):
            out[f"{key}_difference"] = _diff(a[key], d[key])
        out["notes"] = notes
        return out
    if task is Task.MULTICLASS:
        out["accuracy_difference"] = _diff(a["accuracy"], d["accuracy"])
        out["DPPL"] = {
            c: _diff(a["selection_rates"][c], d["selection_rates"][c]) for c in a["selection_rates"]
        }
        out["notes"] = notes
        return out
    out["DPL"] = _diff(a["base_rate"], d["base_rate"])
    out["DPPL"] = _diff(a["selection_rate"], d["selection_rate"])
    if a["selection_rate"]:
        out["DI"] = d["selection_rate"] / a["selection_rate"]
    else:
        out["DI"] = None
        notes.append(
            f"DI is undefined: the reference group {a['group']!r} has a selection rate of 0"
        )
    out["recall_difference"] = _diff(a["true_positive_rate"], d["true_positive_rate"])
    for who in (a, d):
        if who["true_positive_rate"] is None:
            notes.append(f"recall difference is undefined: {who['group']!r} has no positive labels")
    out["fpr_difference"] = _diff(a["false_positive_rate"], d["false_positive_rate"])
    for who in (a, d):
        if who["false_positive_rate"] is None:
            notes.append(f"FPR difference is undefined: {who['group']!r} has no negative labels")
    out["accuracy_difference"] = _diff(a["accuracy"], d["accuracy"])
    out["notes"] = notes
    return out


def _violations(
    feature: str, reference: str, measure: Json, task: Task, policy: FairnessPolicy
) -> list[Json]:
    who = f"{describe(feature, measure['group'])} vs {reference}"
    out: list[Json] = []

    def add(name: str, value: float, limit: float, reason: str) -> None:
        out.append(
            {
                "feature": feature,
                "group": measure["group"],
                "reference_group": reference,
                "measure": name,
                "value": value,
                "limit": limit,
                "reason": reason,
            }
        )

    di, low = measure.get("DI"), policy.min_disparate_impact
    if task is Task.BINARY and di is not None and low is not None:
        if di < low:
            add("DI", di, low, f"disparate impact of {who} is {di:.3f}, below {low:g}")
        elif di > 1 / low:
            above = f"above {1 / low:.3g} (1/{low:g})"
            add("DI", di, low, f"disparate impact of {who} is {di:.3f}, {above}")
    equal_opportunity = "recall difference (equal opportunity)"
    limits = (
        ("recall_difference", policy.max_equal_opportunity_difference, equal_opportunity),
        ("accuracy_difference", policy.max_accuracy_difference, "accuracy difference"),
    )
    for key, limit, words in limits:
        if key == "recall_difference" and task is not Task.BINARY:
            continue
        value = measure.get(key)
        if value is not None and limit is not None and abs(value) > limit:
            add(key, value, limit, f"{words} of {who} is {value:+.3f}, beyond ±{limit:g}")
    return out


def _between_groups(frame: pd.DataFrame, groups: list[Json], task: Task) -> Json:
    """fairlearn's own summaries over the groups large enough to judge: the smallest
    selection-rate ratio and the largest gaps between any two groups."""
    judged = [g for g in groups if not g["small"]]
    if len(judged) < 2 or task is Task.REGRESSION:
        return {}
    names = [g["group"] for g in judged]
    sub = frame.loc[names]
    if task is Task.MULTICLASS:
        return {"accuracy_difference": _num(sub["accuracy"].max() - sub["accuracy"].min())}
    out: Json = {
        "selection_rate_ratio": _ratio(sub["selection_rate"]),
        "selection_rate_difference": _num(
            sub["selection_rate"].max() - sub["selection_rate"].min()
        ),
        "accuracy_difference": _num(sub["accuracy"].max() - sub["accuracy"].min()),
    }
    tpr = [g["true_positive_rate"] for g in judged]
    out["true_positive_rate_difference"] = (
        _num(max(tpr) - min(tpr)) if all(t is not None for t in tpr) else None
    )
    return out


def _ratio(rates: pd.Series) -> float | None:
    high = float(rates.max())
    return _num(float(rates.min()) / high) if high > 0 else None


def _diff(a: float | None, d: float | None) -> float | None:
    return None if a is None or d is None else a - d


def _num(x: Any) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


# -- the gate and the registry ----------------------------------------------------------------


def gate_checks(section: Mapping[str, Any] | None) -> list[GateCheck]:
    """The fairness limits as one gate check (none when nothing is gated)."""
    if not section or not section.get("gated"):
        return []
    violations = section.get("violations") or []
    if violations:
        reasons = "; ".join(v["reason"] for v in violations)
        return [GateCheck("fairness", False, f"fails fairness: {reasons}")]
    names = ", ".join(section["features"])
    return [GateCheck("fairness", True, f"meets the fairness limits on {names}")]


def registry_summary(section: Mapping[str, Any] | None) -> Json | None:
    """The registry entry's compact fairness: per feature the measures and the verdict."""
    if not section:
        return None
    keep = (
        *("group", "small", "CI", "DPL", "DI", "DPPL", "recall_difference", "fpr_difference"),
        *("accuracy_difference", "mean_prediction_difference", "mae_difference"),
    )
    return {
        "passed": section["passed"],
        "limits": dict(section["limits"]),
        "violations": [v["reason"] for v in section["violations"]],
        "features": {
            name: {
                "reference_group": feature["reference_group"],
                "passed": feature["passed"],
                "measures": [
                    {k: m[k] for k in keep if k in m and not isinstance(m[k], dict)}
                    | {"count": _count(feature, m["group"])}
                    for m in feature["measures"]
                ],
            }
            for name, feature in section["features"].items()
        },
    }


def _count(feature: Mapping[str, Any], group: str) -> int:
    return next(int(g["count"]) for g in feature["groups"] if g["group"] == group)
