"""The evaluation page's explanations: Shapley contributions of the served model over the
holdout (the document's `explanations`, made by `mlcycle.domain.global_explanations`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps

from mlcycle.reports import figures as f
from mlcycle.reports.render import fmt, pct

Json = dict[str, Any]
MAX_BARS = 20
PER_CLASS_TOP = 3


def explanations_context(doc: Json) -> Json:
    """Share of attribution per feature, the summary plot, and the top features per class."""
    ex = doc.get("explanations")
    if not ex or not ex.get("features"):
        return {"plots": [], "note": "No explanations were recorded for this run.", "classes": []}
    features = ex["features"]
    shown = features[:MAX_BARS]
    shares = f.barh(
        [x["name"] for x in shown],
        [100 * x["share"] for x in shown],
        xlabel="share of attribution (% of the mean |contribution|)",
        width=4.6,
    )
    plots = [(shares, "share of attribution", "Mean absolute contribution per input feature.")]
    toward = ex.get("points_toward")
    summary = _summary_plot(
        ex.get("points") or {},
        f"contribution to P({toward})" if toward else "contribution",
    )
    if summary:
        plots.append(
            (
                summary,
                "contributions",
                "Each dot a holdout row: its contribution"
                + (f" toward {toward!r}" if toward else "")
                + ", coloured by the feature's value (blue low, red high; categories grey).",
            )
        )
    method = ", ".join(ex.get("method") or [])
    note = (
        f"Shapley values of the served ONNX graph's output ({ex.get('explained')}) for "
        f"{fmt(ex.get('rows'))} holdout rows against the version's background summary of "
        f"{fmt(ex.get('background_rows'))} training row(s) ({method}): the same values "
        "POST :explain answers. A one-hot group or a date's parts count as their one feature."
    )
    classes = [
        {
            "label": label,
            "rows": entry["rows"],
            "top": ", ".join(
                f"{name} {fmt(value, 3)}"
                for name, value in sorted(entry["features"].items(), key=lambda kv: -kv[1])[
                    :PER_CLASS_TOP
                ]
            ),
        }
        for label, entry in (ex.get("per_class") or {}).items()
    ]
    return {
        "plots": plots,
        "note": note,
        "classes": classes,
        "features": [{**x, "share_text": pct(x["share"])} for x in features],
    }


def _summary_plot(points: Json, xlabel: str) -> str | None:
    names = list(points)
    if not names:
        return None
    fig, ax = f.figure(4.6, max(2.0, 0.6 + 0.3 * len(names)))
    rng = np.random.default_rng(0)  # jitter only: the same page for the same document
    cmap = colormaps["coolwarm"]
    for row, name in enumerate(names):
        entry = points[name]
        x = np.asarray(entry["contributions"], dtype="float64")
        y = row + rng.uniform(-0.25, 0.25, len(x))
        values = entry["values"]
        if entry["kind"] == "categorical":
            ax.scatter(x, y, s=6, color=f.GREY, alpha=0.6, linewidths=0)
            continue
        numbers = np.array([np.nan if v is None else v for v in values], dtype="float64")
        low, high = np.nanpercentile(numbers, [5, 95]) if np.isfinite(numbers).any() else (0, 1)
        scaled = np.clip((numbers - low) / ((high - low) or 1.0), 0, 1)
        colors = [cmap(v) if np.isfinite(v) else f.GREY for v in scaled]
        ax.scatter(x, y, s=6, c=colors, alpha=0.7, linewidths=0)
    ax.set_yticks(np.arange(len(names)), [f.label(n) for n in names])
    ax.invert_yaxis()
    ax.axvline(0, color=f.GREY, linewidth=0.8)
    ax.set_xlabel(f.label(xlabel, 60), fontsize=f.FONT)
    return f.data_uri(fig)
