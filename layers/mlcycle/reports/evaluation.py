"""The evaluation page: `render_evaluation(doc)` draws `evaluation.json` alone, one section
per question a reviewer asks (did it pass, which candidate and how sure, where is the
threshold, where does it err, what does it rely on, is it better than production, is the
served graph the evaluated model).

`evaluation_context(doc)` is the whole of the logic: it turns the JSON into plain values and
PNG data URIs, and says in a sentence what is absent; the template only lays them out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mlcycle.domain.model_card import sample_sentence
from mlcycle.reports import figures as f
from mlcycle.reports.explanations import explanations_context
from mlcycle.reports.fairness import fairness_context
from mlcycle.reports.render import fmt, render

Json = dict[str, Any]
MAX_IMPORTANCE_BARS = 40  # beyond that the plot is a wall; the table below lists them all
_LOWER_IS_BETTER = ("loss", "error", "rmse", "mae", "mse", "mape", "brier", "cost")


def render_evaluation(doc: Json) -> str:
    """The self-contained page (inline CSS, inline PNG, no script) for one evaluation.json."""
    return render("evaluation.html", **evaluation_context(doc))


def evaluation_context(doc: Json) -> Json:
    task = doc["task"]
    return {
        "title": f"{doc['dataset']}: model evaluation",
        "doc": doc,
        "cards": _cards(doc),
        "sample": " ".join(sample_sentence(doc.get("sample"))),
        "gate": _gate(doc),
        "candidates": _candidates(doc),
        "decision": _decision(doc) if task == "binary" else None,
        "decision_note": _decision_note(doc),
        "errors": _errors(doc),
        "importance": _importance(doc),
        "explanations": explanations_context(doc),
        "fairness": fairness_context(doc),
        "production": _production(doc),
        "recent": _recent(doc),
        "serving": _serving(doc),
    }


# --------------------------------------------------------------------------------- parts


def _cards(doc: Json) -> list[tuple[str, str, str]]:
    passed = doc["gate"]["passed"]
    return [
        ("dataset", str(doc["dataset"]), ""),
        ("run", str(doc["run_id"]), ""),
        ("task", str(doc["task"]), ""),
        ("target", str(doc["target"]), ""),
        ("winner", str(doc["winner"]), ""),
        ("holdout rows", f"{doc['holdout_rows']:,}", ""),
        ("gate", "PASSED" if passed else "REJECTED", "pass" if passed else "fail"),
    ]


def _gate(doc: Json) -> Json:
    gate = doc["gate"]
    return {
        "passed": bool(gate["passed"]),
        "reason": str(gate.get("reason") or ""),
        "checks": [
            {
                "name": str(c["name"]),
                "passed": bool(c["passed"]),
                "detail": str(c.get("detail", "")),
            }
            for c in gate.get("checks") or []
        ],
        "min_improvement": gate.get("min_improvement"),
        "confidence": gate.get("confidence"),
    }


def greater_is_better(doc: Json, metric: str) -> bool:
    """The primary metric's direction is in the document; others follow their name."""
    if metric == doc["primary_metric"]:
        return bool(doc["greater_is_better"])
    return not any(word in metric.lower() for word in _LOWER_IS_BETTER)


def _candidates(doc: Json) -> Json:
    cands = doc["candidates"]
    primary = doc["primary_metric"]
    names: list[str] = []
    for c in cands:  # primary first, then in the order the candidates report them
        for name in c["metrics"]:
            if name not in names:
                names.append(name)
    names.sort(key=lambda n: n != primary)
    baseline = doc.get("baseline") or {}
    rows = []
    for name in names:
        cells = [_interval(c["metrics"].get(name)) for c in cands]
        values = [cell["value"] for cell in cells if cell["value"] is not None]
        best = (max if greater_is_better(doc, name) else min)(values) if values else None
        for cell in cells:
            cell["best"] = len(cands) > 1 and cell["value"] is not None and cell["value"] == best
        rows.append(
            {
                "metric": name,
                "primary": name == primary,
                "direction": "higher is better"
                if greater_is_better(doc, name)
                else "lower is better",
                "cells": cells,
                "baseline": baseline.get(name),
            }
        )
    searches = [c.get("search") or {} for c in cands]
    return {
        "columns": [
            {"algorithm": str(c["algorithm"]), "winner": bool(c.get("winner"))} for c in cands
        ],
        "rows": rows,
        "has_baseline": bool(baseline),
        "fit_seconds": [c.get("fit_seconds") for c in cands],
        "trials": [
            f"{len(s.get('trials') or [])} / {s['planned']}" if "planned" in s else ""
            for s in searches
        ],
        "stopped": [_stopped(s) for s in searches],
        "search_seconds": [s.get("seconds") for s in searches],
        "thresholds": [c.get("threshold") for c in cands],
        "has_threshold": any(c.get("threshold") is not None for c in cands),
        "params": [
            [(str(k), _json_value(v)) for k, v in (c.get("params") or {}).items()] for c in cands
        ],
        "trial_plots": [p for p in (_trials_plot(c) for c in cands) if p],
        "search_note": _search_note(searches),
    }


def _interval(m: Json | None) -> Json:
    m = m or {}
    return {"value": m.get("value"), "low": m.get("low"), "high": m.get("high")}


def _stopped(search: Json) -> str:
    stopped = search.get("stopped")
    if stopped == "budget":
        return f"time budget ({fmt(search.get('budget_seconds'), 3)} s)"
    if stopped == "trials":
        return "all planned trials"
    return str(stopped or "")


def _search_note(searches: list[Json]) -> str:
    folds = {int(s["cv_folds"]) for s in searches if s.get("cv_folds")}
    metrics = {str(s.get("metric")) for s in searches if s.get("metric")}
    if not folds or not metrics:
        return ""
    return (
        f"Each trial is scored by {'/'.join(sorted(metrics))} in "
        f"{'/'.join(str(x) for x in sorted(folds))}-fold cross-validation on the training split; "
        "the best trial's parameters are refit on the whole training split."
    )


def _json_value(v: Any) -> str:
    if isinstance(v, float):
        return fmt(v)
    if v is None:
        return "null"
    return str(v)


def _decision_note(doc: Json) -> str:
    if doc["task"] == "binary":
        return "" if doc.get("decision") else "No decision record: the threshold is 0.5."
    if doc["task"] == "multiclass":
        return "No threshold to choose: a multiclass model predicts its most probable class."
    return "No threshold to choose: a regression model's prediction is used as it is."


def _decision(doc: Json) -> Json | None:
    d = doc.get("decision")
    if not d:
        return None
    costs = d.get("costs") or {}
    constraints = [
        (name.replace("_", " "), d[name])
        for name in ("min_precision", "min_recall")
        if d.get(name) is not None
    ]
    return {
        "positive_class": str(d["positive_class"]),
        "positive_class_reason": str(d.get("positive_class_reason") or ""),
        "threshold": d["threshold"],
        "threshold_source": str(d.get("threshold_source") or ""),
        "optimize": str(d["optimize"]),
        "costs": [(k.replace("_", " "), v) for k, v in costs.items()],
        "expected_cost": _interval(d["expected_cost"]) if d.get("expected_cost") else None,
        "constraints": constraints,
        "plot": _threshold_plot(d),
    }


def _errors(doc: Json) -> Json:
    """The winner on the holdout: where it errs. Plots drawn only from what is present."""
    task = doc["task"]
    plots: list[tuple[str, str, str]] = []
    per_class: list[Json] = []
    notes: list[str] = []
    if task in ("binary", "multiclass"):
        curves = doc.get("curves") or {}
        if not curves:
            notes.append("No holdout curves were recorded for the winner.")
        cm = curves.get("confusion_matrix")
        op = curves.get("operating_point")
        if cm:
            at = f" at the threshold {fmt(op['threshold'], 3)}" if op else ""
            plots.append(
                (
                    f.heatmap(cm["counts"], cm["labels"], xlabel="predicted", ylabel="true"),
                    "confusion matrix",
                    f"Confusion matrix{at}: counts and the share of each true class's rows.",
                )
            )
        if curves.get("roc"):
            plots.append(
                (
                    _roc_plot(curves["roc"], op),
                    "ROC curve",
                    "ROC curve; the dot is the operating point.",
                )
            )
        if curves.get("pr"):
            plots.append(
                (
                    _pr_plot(curves["pr"], op),
                    "precision-recall curve",
                    "Precision against recall; the dashed line is the prevalence (a random model).",
                )
            )
        if curves.get("calibration"):
            plots.append(
                (
                    _calibration_plot(curves["calibration"]),
                    "calibration curve",
                    "Observed share of positives per bin of predicted probability; the bars count "
                    "the rows per bin.",
                )
            )
        if curves.get("gains"):
            plots.append(
                (
                    _gains_plot(curves["gains"], curves.get("pr"), op),
                    "cumulative gains",
                    "Share of all positives found when targeting the highest-scored rows first.",
                )
            )
        for name, m in (curves.get("per_class") or {}).items():
            per_class.append(
                {
                    "name": str(name),
                    **{k: m.get(k) for k in ("precision", "recall", "f1", "support")},
                }
            )
    else:
        reg = doc.get("regression")
        if not reg or not reg.get("actual"):
            notes.append("No holdout predictions were recorded for the winner.")
        else:
            actual = np.asarray(reg["actual"], dtype="float64")
            predicted = np.asarray(reg["predicted"], dtype="float64")
            target = str(doc["target"])
            plots.append(
                (
                    _actual_plot(actual, predicted, target),
                    "predicted against actual",
                    f"Predicted against actual ({len(actual):,} holdout rows); on the diagonal a "
                    "prediction is exact.",
                )
            )
            plots.append(
                (
                    _residual_plot(actual, predicted),
                    "residuals against predicted",
                    "Residual (actual - predicted) against the prediction: a pattern means a bias.",
                )
            )
            hist = reg.get("residual_histogram") or {}
            uri = f.stairs(
                hist.get("edges") or [],
                hist.get("counts") or [],
                xlabel="residual (actual - predicted)",
                width=3.3,
                height=3.0,
            )
            if uri:
                plots.append(
                    (uri, "residual distribution", "Distribution of the residuals on the holdout.")
                )
    return {"plots": plots, "per_class": per_class, "notes": notes}


def _importance(doc: Json) -> Json:
    imp = doc.get("importance") or {}
    feats = sorted(imp.get("features") or [], key=lambda x: -(x.get("mean") or 0.0))
    if not feats:
        return {"plot": None, "features": [], "note": "No importance was recorded.", "shown": 0}
    shown = feats[:MAX_IMPORTANCE_BARS]
    metric = str(imp.get("metric", ""))
    plot = f.barh(
        [x["name"] for x in shown],
        [x.get("mean") or 0.0 for x in shown],
        xerr=[x.get("std") or 0.0 for x in shown],
        colors=[f.BLUE if (x.get("mean") or 0.0) >= 0 else f.ORANGE for x in shown],
        xlabel=f"drop in {metric} when the feature is shuffled",
        width=6.0,
    )
    note = (
        f"Permutation importance on {fmt(imp.get('rows'))} holdout rows: each input feature is "
        f"shuffled {fmt(imp.get('repeats'))} times and the loss of {metric} is averaged (bars: "
        "mean, whiskers: standard deviation). A feature near zero can still matter when another "
        "feature carries the same information."
    )
    if imp.get("method") not in (None, "permutation"):
        note = f"Method: {imp['method']}. " + note
    return {"plot": plot, "features": feats, "note": note, "shown": len(shown)}


def _production(doc: Json) -> Json:
    prod = doc.get("production") or {}
    primary = doc["primary_metric"]
    winner = next((c for c in doc["candidates"] if c["algorithm"] == doc["winner"]), None)
    challenger = ((winner or {}).get("metrics") or {}).get(primary, {}).get("value")
    if prod.get("version") is None:
        return {"version": None, "note": "No model in production: nothing to compare."}
    comp = prod.get("comparison")
    reference = (prod.get("metrics") or {}).get(primary)
    out: Json = {
        "version": prod["version"],
        "metric": primary,
        "challenger": comp["challenger"] if comp else challenger,
        "reference": comp["reference"] if comp else reference,
        "comparison": None,
        "note": "",
        "min_improvement": doc["gate"].get("min_improvement"),
        "confidence": doc["gate"].get("confidence"),
    }
    if comp:
        out["comparison"] = {
            "metric": str(comp.get("metric", primary)),
            "difference": comp.get("difference"),
            "low": comp.get("low"),
            "high": comp.get("high"),
            "probability": comp.get("probability"),
            "min_improvement": comp.get("min_improvement"),
            "level": comp.get("level"),
            "replicates": comp.get("replicates"),
        }
    else:
        out["note"] = (
            f"Version {prod['version']} is in production, but no paired comparison on this "
            "holdout was recorded."
        )
    return out


def _recent(doc: Json) -> Json | None:
    """A retraining run's comparison with production on the held-back recent traffic."""
    recent = doc.get("recent")
    if not recent:
        return None
    comp = recent["comparison"]
    return {
        "metric": doc["primary_metric"],
        "version": recent["production_version"],
        "rows": recent["rows"],
        "first_at": str(recent.get("first_at") or "?")[:19],
        "last_at": str(recent.get("last_at") or "?")[:19],
        "challenger": comp["challenger"],
        "reference": comp["reference"],
        "difference": comp["difference"],
        "low": comp["low"],
        "high": comp["high"],
        "probability": comp["probability"],
        "passed": recent["passed"],
    }


def _serving(doc: Json) -> Json:
    parity = doc.get("parity") or {}
    onnx = doc.get("onnx") or {}
    diff, tol = parity.get("max_abs_diff"), parity.get("tolerance")
    return {
        "parity": parity or None,
        "within": diff is not None and tol is not None and diff <= tol,
        "onnx": onnx or None,
    }


# ---------------------------------------------------------------------------------- plots


def _small(width: float = 3.3, height: float = 3.0) -> tuple[Figure, Any]:
    return f.figure(width, height)


def _trials_plot(c: Json) -> tuple[str, str, str] | None:
    search = c.get("search") or {}
    trials = search.get("trials") or []
    if not trials:
        return None
    fig, ax = _small(3.3, 2.2)
    x = [t["trial"] for t in trials]
    y = [t["score"] for t in trials]
    ax.plot(x, y, "o-", color=f.BLUE, markersize=3, linewidth=1)
    best = search.get("best_trial")
    for t in trials:
        if t["trial"] == best:
            ax.plot([t["trial"]], [t["score"]], "*", color=f.ORANGE, markersize=10)
    ax.set_title(f.label(c["algorithm"], 40), fontsize=f.FONT)
    f.axis_labels(ax, "trial", f"cv {search.get('metric', '')}")
    if len(x) <= 12:
        ax.set_xticks(x)
    caption = f"{len(trials)} trials; the star is the best" + (
        " (the winner)" if c.get("winner") else ""
    )
    return f.data_uri(fig), f"search trials of {c['algorithm']}", caption


def _threshold_plot(d: Json) -> str | None:
    curve = d.get("curve") or {}
    t = curve.get("thresholds") or []
    if not t:
        return None
    fig, ax = f.figure(5.5, 3.0)
    ax.plot(
        t,
        curve.get("precision") or [None] * len(t),
        "--",
        color=f.GREEN,
        linewidth=1,
        label="precision",
    )
    ax.plot(
        t, curve.get("recall") or [None] * len(t), "--", color=f.ORANGE, linewidth=1, label="recall"
    )
    objective = curve.get("objective") or []
    name = f.label(d["optimize"], 30)
    if d["optimize"] == "cost":  # a cost is on its own scale: give it its own axis
        ax2 = ax.twinx()
        f.style(ax2)
        ax2.spines["right"].set_visible(True)
        ax2.plot(t, objective, color=f.BLUE, linewidth=1.5, label="expected cost")
        ax2.set_ylabel("expected cost per decision", fontsize=f.FONT)
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    else:
        ax.plot(t, objective, color=f.BLUE, linewidth=1.5, label=name)
        handles = ax.get_legend_handles_labels()[0]
    ax.axvline(d["threshold"], color=f.RED, linewidth=1)
    ax.annotate(
        f"chosen {d['threshold']:.3g}",
        (d["threshold"], 0.0),
        xycoords=("data", "axes fraction"),
        xytext=(3, 3),
        textcoords="offset points",
        fontsize=f.FONT,
        color=f.RED,
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    f.axis_labels(ax, "threshold on the positive class's probability", "score")
    # above the axes, where no curve can hide it
    fig.legend(handles=handles, fontsize=f.FONT, loc="outside upper center", ncol=3, frameon=False)
    return f.data_uri(fig)


def _roc_plot(roc: Json, op: Json | None) -> str:
    fig, ax = _small()
    ax.plot([0, 1], [0, 1], "--", color=f.GREY, linewidth=0.8)
    ax.plot(roc["fpr"], roc["tpr"], color=f.BLUE, linewidth=1.5)
    if op and op.get("fpr") is not None:
        ax.plot([op["fpr"]], [op["tpr"]], "o", color=f.RED, markersize=5)
    ax.set_title(f"AUC {fmt(roc.get('auc'), 3)}", fontsize=f.FONT)
    _unit(ax)
    f.axis_labels(ax, "false positive rate", "true positive rate")
    return f.data_uri(fig)


def _pr_plot(pr: Json, op: Json | None) -> str:
    fig, ax = _small()
    if pr.get("prevalence") is not None:
        ax.axhline(pr["prevalence"], linestyle="--", color=f.GREY, linewidth=0.8)
    ax.plot(pr["recall"], pr["precision"], color=f.BLUE, linewidth=1.5, drawstyle="steps-post")
    if op and op.get("recall") is not None:
        ax.plot([op["recall"]], [op["precision"]], "o", color=f.RED, markersize=5)
    ax.set_title(f"average precision {fmt(pr.get('average_precision'), 3)}", fontsize=f.FONT)
    _unit(ax)
    f.axis_labels(ax, "recall", "precision")
    return f.data_uri(fig)


def _calibration_plot(cal: Json) -> str:
    fig = Figure(figsize=(3.3, 3.4), dpi=f.DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    for ax in (top, bottom):
        f.style(ax)
    top.plot([0, 1], [0, 1], "--", color=f.GREY, linewidth=0.8)
    top.plot(cal["mean_predicted"], cal["fraction_positive"], "o-", color=f.BLUE, markersize=3)
    _unit(top)
    top.set_ylabel("observed share positive", fontsize=f.FONT)
    counts = cal.get("counts") or []
    if counts:
        bottom.bar(cal["mean_predicted"], counts, width=0.05, color=f.GREY)
    bottom.set_ylabel("rows", fontsize=f.FONT)
    bottom.set_xlabel("mean predicted probability", fontsize=f.FONT)
    return f.data_uri(fig)


def _gains_plot(gains: Json, pr: Json | None, op: Json | None) -> str:
    fig, ax = _small()
    ax.plot([0, 1], [0, 1], "--", color=f.GREY, linewidth=0.8, label="random")
    ax.plot(
        gains["fraction_targeted"],
        gains["fraction_positives"],
        color=f.BLUE,
        linewidth=1.5,
        label="model",
    )
    prevalence = (pr or {}).get("prevalence")
    if op and prevalence is not None and op.get("tpr") is not None:
        # the share of rows the threshold flags: true positives plus false positives
        targeted = op["tpr"] * prevalence + op["fpr"] * (1 - prevalence)
        ax.plot([targeted], [op["tpr"]], "o", color=f.RED, markersize=5, label="threshold")
    _unit(ax)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    f.axis_labels(ax, "share of rows targeted", "share of positives found")
    return f.data_uri(fig)


def _actual_plot(actual: np.ndarray, predicted: np.ndarray, target: str) -> str:
    fig, ax = _small()
    ax.scatter(actual, predicted, s=6, alpha=0.5, color=f.BLUE, linewidths=0)
    finite = np.concatenate([actual, predicted])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        ax.plot([lo, hi], [lo, hi], "--", color=f.GREY, linewidth=0.8)
    f.axis_labels(ax, f"actual {f.label(target, 30)}", "predicted")
    return f.data_uri(fig)


def _residual_plot(actual: np.ndarray, predicted: np.ndarray) -> str:
    fig, ax = _small()
    ax.scatter(predicted, actual - predicted, s=6, alpha=0.5, color=f.BLUE, linewidths=0)
    ax.axhline(0, linestyle="--", color=f.GREY, linewidth=0.8)
    f.axis_labels(ax, "predicted", "residual")
    return f.data_uri(fig)


def _unit(ax: Any) -> None:
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
