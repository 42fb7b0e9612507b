"""Fairness on live traffic: the selection-rate measures of `mlcycle.domain.fairness` per
sensitive feature over the captured requests (which keep the sensitive fields the model
ignores), against the groups evaluation fixed; and, once late labels have arrived, the whole
label-based assessment on the labelled requests.

The evaluation puts `monitor_reference(section)` in the monitor baseline: each feature's bins
and reference group, the holdout's selection rates, the limits. The monitor publishes the
worst judged group's disparate impact folded onto (0, 1] (min(DI, 1/DI), since the gate holds
DI two-sided), so one alarm below `min_disparate_impact` watches both directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count, mean_prediction, selection_rate

from mlcycle.domain import fairness
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import FairnessPolicy, Task

Json = dict[str, Any]
MIN_LABELLED = 30  # labelled live rows below which the label-based measures are not computed


def monitor_reference(section: Mapping[str, Any] | None) -> Json | None:
    """What the monitor needs of the evaluation's fairness section (None: no fairness)."""
    if not section:
        return None
    return {
        "task": section["task"],
        "positive_class": section.get("positive_class"),
        "limits": dict(section["limits"]),
        "features": {
            name: {
                "bins": feature["bins"],
                "reference_group": feature["reference_group"],
                "holdout": {
                    g["group"]: {"count": g["count"], "selection_rate": g.get("selection_rate")}
                    for g in feature["groups"]
                },
            }
            for name, feature in section["features"].items()
        },
    }


def from_records(
    served: Sequence[Mapping[str, Any]],
    predicted: Any,
    truth: pd.DataFrame | None,
    schema: ResolvedSchema,
    reference: Mapping[str, Any],
) -> Json:
    """The live fairness of captured records (each with `instance` and `request_id`), their
    predictions in the same order, and late labels (`request_id`, `label`) if any."""
    names = list(reference["features"])
    rows = pd.DataFrame([dict(r["instance"]) for r in served]).reindex(columns=names)
    out = live(rows, predicted, schema, reference)
    absent = [n for n in names if len(rows) and rows[n].isna().all()]
    if absent:
        out["notes"].append(
            f"no request in the window carried {', '.join(map(repr, absent))}: every row is "
            "in its group (missing)"
        )
    if truth is None or not len(truth) or not len(rows):
        out["labelled"] = None
        out["labelled_note"] = "no late labels for the window's requests yet"
        return out
    window = rows.assign(
        __request_id=[str(r["request_id"]) for r in served],
        __predicted=np.asarray(predicted, dtype=object),
    )
    joined = window.merge(
        truth.rename(columns={"request_id": "__request_id", "label": "__label"}),
        on="__request_id",
    )
    joined = joined[joined["__label"].notna()]
    if len(joined) < MIN_LABELLED:
        out["labelled"] = None
        out["labelled_note"] = (
            f"{len(joined)} labelled rows, fewer than {MIN_LABELLED}: the label-based "
            "measures wait for more"
        )
        return out
    y = joined["__label"].astype(str) if schema.is_classification else joined["__label"]
    out["labelled"] = fairness.assess(
        joined,
        y.to_numpy(),
        joined["__predicted"].to_numpy(),
        schema,
        _policy(reference),
        _groupings(reference),
    )
    out["labelled_note"] = f"{len(joined):,} labelled rows"
    return out


def live(
    rows: pd.DataFrame, predicted: Any, schema: ResolvedSchema, reference: Mapping[str, Any]
) -> Json:
    """Per sensitive feature and group: rows and selection rate (multiclass: one per class;
    regression: mean prediction), and each group's DI and DPPL against the reference."""
    limits = dict(reference["limits"])
    min_size = int(limits.get("min_group_size") or 1)
    task = schema.task
    features: Json = {}
    violations: list[Json] = []
    worst: Json | None = None
    for name, grouping in _groupings(reference).items():
        labels = grouping.labels(rows[name]) if len(rows) else np.asarray([], dtype=object)
        section = _feature(name, grouping, labels, predicted, schema, reference, min_size)
        features[name] = section
        for m in section["measures"]:
            di = m.get("DI")
            if di is None or m["small"]:
                continue
            folded = min(di, 1 / di) if di > 0 else 0.0
            if worst is None or folded < worst["value"]:
                worst = {"feature": name, "group": m["group"], "DI": di, "value": folded}
            low = limits.get("min_disparate_impact")
            if low is not None and folded < low:
                who = f"{fairness.describe(name, m['group'])} vs {grouping.reference_group}"
                side = f"below {low:g}" if di < 1 else f"above {1 / low:.3g} (1/{low:g})"
                violations.append(
                    {
                        "feature": name,
                        "group": m["group"],
                        "measure": "DI",
                        "value": di,
                        "limit": low,
                        "reason": f"live disparate impact of {who} is {di:.3f}, {side}",
                    }
                )
    return {
        "rows": len(rows),
        "task": task.value,
        "positive_class": schema.positive_class if task is Task.BINARY else None,
        "limits": limits,
        "features": features,
        "worst_disparate_impact": worst,
        "violations": violations,
        "notes": [],
    }


def _feature(
    name: str,
    grouping: fairness.Grouping,
    labels: np.ndarray,
    predicted: Any,
    schema: ResolvedSchema,
    reference: Mapping[str, Any],
    min_size: int,
) -> Json:
    task = schema.task
    by_group = _by_group(task, predicted, labels, schema) if len(labels) else pd.DataFrame()
    holdout = reference["features"][name].get("holdout") or {}
    groups = []
    for group in by_group.index.astype(str):
        row = by_group.loc[group]
        entry: Json = {"group": group, "count": int(row["count"])}
        entry["small"] = entry["count"] < min_size
        for key in by_group.columns:
            if key != "count":
                entry[key] = _num(row[key])
        if task is Task.BINARY:
            entry["holdout_selection_rate"] = (holdout.get(group) or {}).get("selection_rate")
        groups.append(entry)
    groups.sort(key=lambda g: (g["group"] == fairness.MISSING, -g["count"], g["group"]))
    ref = next((g for g in groups if g["group"] == grouping.reference_group), None)
    measures = [_measure(g, ref, task) for g in groups if ref is not None and g is not ref]
    return {
        "reference_group": grouping.reference_group,
        "bins": grouping.bins,
        "groups": groups,
        "measures": measures,
    }


def _by_group(task: Task, predicted: Any, labels: np.ndarray, schema: ResolvedSchema) -> Any:
    groups = pd.Series(labels, name="group")
    if task is Task.REGRESSION:
        values = np.asarray(predicted, dtype="float64")
        metrics: Json = {"count": count, "mean_prediction": mean_prediction}
    else:
        said = np.asarray(predicted, dtype=object).astype(str)
        if task is Task.BINARY:
            values = (said == (schema.positive_class or "")).astype(int)
            metrics = {"count": count, "selection_rate": selection_rate}
        else:
            values = said
            metrics = {"count": count}
            for c in schema.classes or []:
                metrics[f"selection_rate:{c}"] = _selected(c)
    # selection rates need no truth: fairlearn reads only y_pred
    return MetricFrame(
        metrics=metrics, y_true=values, y_pred=values, sensitive_features=groups
    ).by_group


def _selected(label: str) -> Any:
    def rate(y_true: Any, y_pred: Any) -> float:
        return float(selection_rate(y_true, y_pred, pos_label=label))

    return rate


def _measure(d: Json, a: Json, task: Task) -> Json:
    out: Json = {"group": d["group"], "small": bool(d["small"] or a["small"])}
    if task is Task.REGRESSION:
        out["mean_prediction_difference"] = _diff(a["mean_prediction"], d["mean_prediction"])
        return out
    if task is Task.MULTICLASS:
        out["DPPL"] = {
            k.split(":", 1)[1]: _diff(a[k], d[k]) for k in a if k.startswith("selection_rate:")
        }
        return out
    s_a, s_d = a["selection_rate"], d["selection_rate"]
    out["DPPL"] = _diff(s_a, s_d)
    out["DI"] = s_d / s_a if s_a else None
    if not s_a:
        out["note"] = (
            f"DI is undefined: the reference group {a['group']!r} has a selection rate of 0"
        )
    return out


def _groupings(reference: Mapping[str, Any]) -> dict[str, fairness.Grouping]:
    return {
        name: fairness.Grouping.from_json({"feature": name, **feature})
        for name, feature in reference["features"].items()
    }


def _policy(reference: Mapping[str, Any]) -> FairnessPolicy:
    limits = reference["limits"]
    return FairnessPolicy(
        sensitive_features=list(reference["features"]),
        min_group_size=int(limits.get("min_group_size") or 1),
        min_disparate_impact=limits.get("min_disparate_impact"),
        max_equal_opportunity_difference=limits.get("max_equal_opportunity_difference"),
        max_accuracy_difference=limits.get("max_accuracy_difference"),
    )


def _diff(a: float | None, d: float | None) -> float | None:
    return None if a is None or d is None else a - d


def _num(x: Any) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None
