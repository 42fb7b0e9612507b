"""The evaluation page's fairness section: per sensitive feature its groups, the measures of
each group against the reference with the spec's limits, and one plot (the document's
`fairness`, made by `mlcycle.domain.fairness`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlcycle.reports import figures as f
from mlcycle.reports.render import fmt

Json = dict[str, Any]

# (key, heading) of the group table's rate columns and the measure table's columns, by task
GROUP_COLUMNS = {
    "binary": [
        ("base_rate", "base rate"),
        ("selection_rate", "selection rate"),
        ("true_positive_rate", "TPR"),
        ("false_positive_rate", "FPR"),
        ("accuracy", "accuracy"),
    ],
    "multiclass": [("accuracy", "accuracy")],
    "regression": [
        ("mean_target", "mean target"),
        ("mean_prediction", "mean prediction"),
        ("mae", "MAE"),
    ],
}
MEASURE_COLUMNS = {
    "binary": [
        ("CI", "CI"),
        ("DPL", "DPL"),
        ("DI", "DI"),
        ("DPPL", "DPPL"),
        ("recall_difference", "recall difference"),
        ("fpr_difference", "FPR difference"),
        ("accuracy_difference", "accuracy difference"),
    ],
    "multiclass": [("CI", "CI"), ("accuracy_difference", "accuracy difference")],
    "regression": [
        ("CI", "CI"),
        ("mean_target_difference", "mean target difference"),
        ("mean_prediction_difference", "mean prediction difference"),
        ("mae_difference", "MAE difference"),
    ],
}
CAPTIONS = {
    "binary": "Per group; the dashed line is the reference group's selection rate, the dotted "
    "lines the band of selection rates its disparate-impact limit allows; small groups pale.",
    "multiclass": "Accuracy per group; the dashed line is the reference group's; small groups "
    "pale.",
    "regression": "Mean target and mean prediction per group; the dashed line is the reference "
    "group's mean target; small groups pale.",
}
EXPLAINED = (
    "Each group d against the reference group a, as SageMaker Clarify defines them: CI = "
    "(n_a - n_d) / (n_a + n_d) and DPL = q_a - q_d (positive labels) before training; DI = "
    "q'_d / q'_a and DPPL = q'_a - q'_d (positive predictions at the decision threshold), the "
    "recall difference TPR_a - TPR_d (equal opportunity), FPR_a - FPR_d and the accuracy "
    "difference ACC_a - ACC_d after it. Differences are the reference minus the group."
)


def fairness_context(doc: Json) -> Json:
    """Plain values for the template; `present` False with a sentence when there is none."""
    section = doc.get("fairness")
    if not section or not section.get("features"):
        return {
            "present": False,
            "note": "No fairness assessment: the spec names no sensitive features "
            "(fairness.sensitive_features).",
        }
    task = str(section.get("task") or doc["task"])
    limits = section.get("limits") or {}
    gated = set(section.get("gated") or [])
    violated = {(v["feature"], v["group"], v["measure"]) for v in section.get("violations") or []}
    features = [
        _feature(name, feature, task, limits, gated, violated)
        for name, feature in section["features"].items()
    ]
    return {
        "present": True,
        "gated": bool(gated),
        "passed": bool(section.get("passed")),
        "basis": "at the model's decision threshold"
        if task == "binary"
        else "by the label the model predicts"
        if task == "multiclass"
        else "by the value the model predicts",
        "violations": [str(v.get("reason", "")) for v in section.get("violations") or []],
        "limits": _limits(limits, gated),
        "notes": [str(n) for n in section.get("notes") or []],
        "explained": EXPLAINED if task == "binary" else _explained(task),
        "positive_class": section.get("positive_class"),
        "features": features,
    }


def _explained(task: str) -> str:
    if task == "multiclass":
        return (
            "Each group d against the reference group a: CI = (n_a - n_d) / (n_a + n_d) and the "
            "accuracy difference ACC_a - ACC_d; selection rates are the share of the group "
            "predicted as each class."
        )
    return (
        "Each group d against the reference group a: CI = (n_a - n_d) / (n_a + n_d), and the "
        "reference's mean target, mean prediction and MAE minus the group's."
    )


def _limits(limits: Json, gated: set[str]) -> list[str]:
    out = []
    di = limits.get("min_disparate_impact")
    if "DI" in gated and di is not None:
        out.append(f"DI within [{fmt(di, 3)}, {fmt(1 / di, 3)}]")
    eo = limits.get("max_equal_opportunity_difference")
    if "recall_difference" in gated and eo is not None:
        out.append(f"|recall difference| at most {fmt(eo, 3)}")
    acc = limits.get("max_accuracy_difference")
    if "accuracy_difference" in gated and acc is not None:
        out.append(f"|accuracy difference| at most {fmt(acc, 3)}")
    size = limits.get("min_group_size")
    if size is not None:
        out.append(f"groups under {size} rows are reported, never gated on")
    return out


def _feature(
    name: str,
    feature: Json,
    task: str,
    limits: Json,
    gated: set[str],
    violated: set[tuple[str, str, str]],
) -> Json:
    reference = str(feature["reference_group"])
    groups = feature.get("groups") or []
    columns = GROUP_COLUMNS.get(task, [])
    classes: list[str] = []
    if task == "multiclass" and groups:
        classes = list((groups[0].get("selection_rates") or {}).keys())
    rows = [
        {
            "group": str(g["group"]),
            "count": g["count"],
            "small": bool(g.get("small")),
            "reference": str(g["group"]) == reference,
            "cells": [g.get(key) for key, _ in columns]
            + [(g.get("selection_rates") or {}).get(c) for c in classes],
        }
        for g in groups
    ]
    measure_columns = MEASURE_COLUMNS.get(task, [])
    measures = []
    for m in feature.get("measures") or []:
        group = str(m["group"])
        small = bool(m.get("small"))
        cells = []
        for key, _ in measure_columns:
            value = m.get(key)
            state = ""
            if key in gated and value is not None and not small:
                state = "bad" if (name, group, key) in violated else "ok"
            cells.append({"value": value, "state": state})
        measures.append(
            {"group": group, "small": small, "cells": cells, "notes": m.get("notes") or []}
        )
    bins = feature.get("bins")
    return {
        "name": name,
        "reference": reference,
        "caption": CAPTIONS.get(task, ""),
        "passed": bool(feature.get("passed", True)),
        "bins": ", ".join(fmt(e) for e in bins) if bins else None,
        "group_headings": [h for _, h in columns] + [f"selected as {c}" for c in classes],
        "groups": rows,
        "measure_headings": [
            (h, _limit_text(key, limits) if key in gated else "") for key, h in measure_columns
        ],
        "measures": measures,
        "notes": [str(n) for n in feature.get("notes") or []],
        "between": [
            (k.replace("_", " "), v) for k, v in (feature.get("between_groups") or {}).items()
        ],
        "plot": _plot(name, reference, groups, task, limits),
    }


def _limit_text(key: str, limits: Json) -> str:
    if key == "DI":
        di = limits.get("min_disparate_impact")
        return f"[{fmt(di, 3)}, {fmt(1 / di, 3)}]" if di else ""
    limit = {
        "recall_difference": limits.get("max_equal_opportunity_difference"),
        "accuracy_difference": limits.get("max_accuracy_difference"),
    }.get(key)
    return f"±{fmt(limit, 3)}" if limit is not None else ""


def _plot(name: str, reference: str, groups: list[Json], task: str, limits: Json) -> str | None:
    """Selection rate and TPR per group (regression: mean target and mean prediction;
    multiclass: accuracy), the reference's value dashed, small groups paler."""
    if not groups:
        return None
    if task == "binary":
        series = [
            ("selection_rate", "selection rate", f.BLUE),
            ("true_positive_rate", "TPR", f.ORANGE),
        ]
        xlabel = "share of the group"
    elif task == "multiclass":
        series = [("accuracy", "accuracy", f.BLUE)]
        xlabel = "accuracy"
    else:
        series = [
            ("mean_target", "mean target", f.GREY),
            ("mean_prediction", "mean prediction", f.BLUE),
        ]
        xlabel = "value"
    labels = [
        f"{g['group']}{' (reference)' if g['group'] == reference else ''}"
        f"{' (small)' if g.get('small') else ''}"
        for g in groups
    ]
    fig, ax = f.figure(5.2, max(2.0, 0.8 + 0.32 * len(groups) * len(series) / 1.5))
    pos = np.arange(len(groups))
    height = 0.8 / len(series)
    for i, (key, text, color) in enumerate(series):
        values = [g.get(key) for g in groups]
        bars = ax.barh(
            pos + (i - (len(series) - 1) / 2) * height,
            [np.nan if v is None else v for v in values],
            height=height,
            color=color,
            label=text,
        )
        for bar, g in zip(bars, groups, strict=True):
            if g.get("small"):
                bar.set_alpha(0.35)
    ref = next((g for g in groups if g["group"] == reference), None)
    first = series[0][0]
    if ref is not None and ref.get(first) is not None:
        ax.axvline(ref[first], color=f.GREY, linestyle="--", linewidth=1)
        di = limits.get("min_disparate_impact")
        if task == "binary" and di:
            for x in (ref[first] * di, min(ref[first] / di, 1.0)):
                ax.axvline(x, color=f.RED, linestyle=":", linewidth=1)
    ax.set_yticks(pos, [f.label(t, 32) for t in labels])
    ax.invert_yaxis()
    ax.legend(
        fontsize=f.FONT, frameon=False, loc="lower left", bbox_to_anchor=(0, 1), ncol=len(series)
    )
    ax.set_xlabel(f.label(f"{xlabel} by {name}", 60), fontsize=f.FONT)
    return f.data_uri(fig)
