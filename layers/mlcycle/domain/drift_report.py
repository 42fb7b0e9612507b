"""The monitor's HTML report: one self-contained page drawn from `DriftResult.to_json()` alone
(inline CSS, plots as inline base64 PNG, no external resource), so the page can be rebuilt
from the stored JSON at any time."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from mlcycle.domain.explore import (
    _BLUE,
    _CSS,
    _GREY,
    _ORANGE,
    _card,
    _figure,
    _fmt,
    _img,
    _label,
    _pct,
    _png,
)

Json = dict[str, Any]
MAX_PLOTTED_BINS = 25  # categorical features: the largest bins, the rest summed as one bar
MAX_ATTRIBUTION_ROWS = 20  # features in the attribution table (the moved ones always)

_EXTRA_CSS = """
.state{border-radius:6px;padding:10px 14px;margin:12px 0;font-weight:600}
.state.alarm{background:#f9d0d0;color:#8a1c1c} .state.ok{background:#d7f0dc;color:#1d5e2c}
.state.idle{background:#e8eaee;color:#444} .state ul{margin:6px 0 0;font-weight:400}
tr.drifted td{background:#fff4e5}
.state.moved{background:#fff4e5;color:#6b4300;font-weight:400}
"""


def render_drift_report(result_json: Json, *, title: str) -> str:
    """The page: alarm state, summary cards, the feature table, prediction drift, live
    quality and one section per feature with its reference-vs-window plot."""
    e = html.escape
    r = result_json
    features = sorted(r["features"], key=lambda f: -(f["psi"] or 0.0))  # worst first
    prediction, live = r.get("prediction"), r.get("live")
    if not r["enough_samples"]:
        state, word = "idle", "not judged"
    else:
        state, word = ("alarm", "ALARM") if r["alarm"] else ("ok", "OK")
    reasons = "".join(f"<li>{e(str(x))}</li>" for x in r["reasons"])
    limits = r.get("limits", {})
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}{_EXTRA_CSS}</style></head><body><main>",
        f"<h1>{e(title)}</h1>",
        f'<p class="muted">a window of {r["sample_size"]:,} rows against a training baseline '
        f"of {r['baseline_row_count']:,} rows; {e(_drift_rule(limits))}</p>",
        f'<div class="state {state}">{word}<ul>{reasons}</ul></div>',
        '<div class="cards">',
        _card("rows", f"{r['sample_size']:,}"),
        _card("drifted features", f"{r['n_drifted']} of {len(features)}"),
    ]
    if prediction:
        parts.append(_card("prediction PSI", _fmt(prediction["psi"])))
    if live and live.get("value") is not None:
        parts.append(_card(f"live {live['primary_metric']}", _fmt(live["value"])))
    estimate = r.get("performance_estimate")
    if estimate and estimate.get("value") is not None:
        parts.append(_card(f"estimated {estimate['metric']}", _fmt(estimate["value"])))
    worst = (r.get("fairness") or {}).get("worst_disparate_impact")
    if worst:
        parts.append(_card("worst disparate impact", _fmt(worst["DI"])))
    parts.append(_card("alarm", "yes" if r["alarm"] else "no"))
    parts.append("</div>")

    parts.append("<h2>Features</h2>")
    parts.append(_features_table(features))
    parts.append(
        '<p class="muted">PSI over the baseline bins plus a missing-value bin (alerts use it); '
        "numbers with few integer values are binned by value (rare neighbouring values share a "
        "bin, values training never had are __other__), others by training deciles; "
        "KS: the Kolmogorov-Smirnov statistic against the baseline CDF, an effect size; "
        "distance: the total variation distance of the category shares, the share of rows "
        "that changed bin; an effect size drifts a feature above its limit and above what "
        "chance alone reaches at the window's size; Cramér's V of the training-vs-window "
        "category table (it shrinks with the window, so it does not alert); unknown: share of "
        "values the baseline does not list (* the baseline lists only the top categories).</p>"
    )

    if prediction:
        parts.append("<h2>Prediction drift</h2>")
        rows = [("task", prediction["task"]), ("predictions", f"{prediction['n']:,}")]
        rows += [("PSI", _fmt(prediction["psi"]))]
        if prediction.get("ks") is not None:
            rows.append(("KS", _fmt(prediction["ks"])))
        if prediction.get("drifted") is not None:
            rows.append(("drifted", "yes" if prediction["drifted"] else "no"))
        parts.append(_section("prediction", "predictions", rows, prediction))

    if live:
        parts.append("<h2>Live quality</h2>")
        if live.get("metrics"):
            cells = "".join(
                f"<tr><th>{e(k)}</th><td class=n>{e(_fmt(v))}</td></tr>"
                for k, v in live["metrics"].items()
            )
            parts.append(f"<table style='width:auto'>{cells}</table>")
        note = f"{live.get('n_labels', 0):,} labelled predictions"
        if live.get("reason"):
            note += f"; {live['reason']}"
        parts.append(f'<p class="muted">{e(note)}</p>')

    if estimate:
        parts.append("<h2>Estimated performance, before the labels</h2>")
        parts.append(_estimate_section(estimate, live))

    if r.get("fairness"):
        parts.append("<h2>Fairness across groups, live</h2>")
        parts.append(_fairness_section(r["fairness"]))

    parts.append("<h2>What the model relies on, live against training</h2>")
    parts.append(_attribution_section(r.get("attribution"), r.get("attribution_note")))

    parts.append("<h2>Feature details</h2>")
    for i, f in enumerate(features):
        parts.append(_section(f"feat-{i}", f["name"], _feature_stats(f), f))
    parts.append("</main></body></html>")
    return "\n".join(parts)


_STATISTICS = {"psi": "PSI", "ks": "KS", "distance": "distance"}


def _drift_rule(limits: Json) -> str:
    """The sentence that says when a feature drifts, from the window's limits."""
    rule = f"a feature drifts when its PSI exceeds {_fmt(limits.get('psi_threshold'))}"
    effects = []
    if limits.get("ks_threshold") is not None:
        effects.append(f"KS {_fmt(limits['ks_threshold'])} for numbers and dates")
    if limits.get("categorical_distance_threshold") is not None:
        distance = _fmt(limits["categorical_distance_threshold"])
        effects.append(f"category distance {distance}")
    if effects:
        rule += (
            f", or when an effect size exceeds its limit ({', '.join(effects)}) and what "
            "chance alone reaches at this window's size"
        )
    return rule


def _by(f: Json) -> str:
    """`PSI`, `KS`, `PSI and distance`: what drifted a feature (older results: PSI)."""
    names = [_STATISTICS.get(s, s) for s in f.get("drifted_by") or ["psi"]]
    return " and ".join(names)


def _features_table(features: list[Json]) -> str:
    e = html.escape
    rows = []
    for i, f in enumerate(features):
        unknown = _pct(f.get("unknown_rate"))
        if unknown and f.get("unknown_exact") is False:
            unknown += "*"
        badge = f'<span class="badge bad">drifted: {e(_by(f))}</span>' if f["drifted"] else ""
        rows.append(
            f'<tr class="{"drifted" if f["drifted"] else ""}">'
            f'<td><a href="#feat-{i}">{e(f["name"])}</a></td><td>{e(f["type"])}</td>'
            f"<td class=n>{_fmt(f['psi'])}</td><td class=n>{_fmt(f.get('ks'))}</td>"
            f"<td class=n>{_fmt(f.get('distance'))}</td>"
            f"<td class=n>{_fmt(f.get('cramers_v'))}</td>"
            f"<td class=n>{_pct(f['missing_rate'])} "
            f"<span class=muted>({_pct(f['baseline_missing_rate'])})</span></td>"
            f"<td class=n>{unknown}</td><td>{badge}</td></tr>"
        )
    head = (
        "<tr><th>feature</th><th>type</th><th>PSI</th><th>KS</th><th>distance</th>"
        "<th>Cramér's V</th>"
        "<th>missing (training)</th><th>unknown</th><th></th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _attribution_section(a: Json | None, note: str | None) -> str:
    """The shares of attribution, training against live: a sentence naming the features
    whose share moved, and a table (the most relied-on live first, the moved ones marked)."""
    e = html.escape
    if not a:
        return f'<p class="muted">{e(note or "no attribution baseline for this version")}</p>'
    by_name = {f["name"]: f for f in a["features"]}
    moved = [by_name[name] for name in a["moved"] if name in by_name]
    limit = f"{100 * float(a.get('min_change') or 0.0):.3g} points"  # 0.1 -> "10 points"
    if moved:
        said = "; ".join(
            f"{e(f['name'])}'s share of attribution moved from "
            f"{_pct(f['reference'])} to {_pct(f['live'])}"
            for f in moved
        )
        sentence = f'<div class="state moved">{said}.</div>'
    else:
        sentence = (
            f"<p>No feature's share of attribution moved by {e(limit)} or more "
            "between training and the window.</p>"
        )
    shown = a["features"][:MAX_ATTRIBUTION_ROWS]
    shown += [f for f in moved if f not in shown]
    rows = []
    for f in shown:
        badge = '<span class="badge bad">moved</span>' if f["moved"] else ""
        rows.append(
            f'<tr class="{"drifted" if f["moved"] else ""}"><td>{e(f["name"])}</td>'
            f"<td class=n>{_pct(f['reference'])}</td><td class=n>{_pct(f['live'])}</td>"
            f"<td class=n>{_pct(f['change'])}</td><td>{badge}</td></tr>"
        )
    head = (
        "<tr><th>feature</th><th>training share</th><th>live share</th><th>change</th>"
        "<th></th></tr>"
    )
    more = len(a["features"]) - len(shown)
    rest = f" ({more} more features with smaller shares not listed)" if more > 0 else ""
    explained = f"{a.get('rows', 0):,} window rows"
    if a.get("window_rows") and a["window_rows"] != a.get("rows"):
        explained = f"{a.get('rows', 0):,} of the window's {a['window_rows']:,} rows (seeded)"
    caption = (
        f"A feature's share of attribution: its mean absolute Shapley contribution over the "
        f"rows divided by the sum over the features; live over {explained}, training over "
        f"{a.get('reference_rows', 0):,} holdout rows, both against the version's background. "
        f"A feature moved when its share changed by {limit} or more{rest}."
    )
    return (
        f"{sentence}<table style='width:auto'>{head}{''.join(rows)}</table>"
        f'<p class="muted">{e(caption)}</p>'
    )


def _estimate_section(est: Json, live: Json | None) -> str:
    """The metrics expected from the calibrated probabilities (CBPE), the realized live
    metric beside them once labels arrived, and the assumptions the estimate rests on."""
    e = html.escape
    if est.get("value") is None:
        return f'<p class="muted">not estimated: {e(str(est.get("reason")))}</p>'
    realized = (live or {}).get("metrics") or {}
    interval = est.get("interval") or [None, None]
    level = f"{100 * float(est.get('level') or 0.95):.0f}%"
    head = (
        f"<tr><th>metric</th><th>estimated</th><th>{level} interval</th>"
        "<th>realized (labelled rows)</th></tr>"
    )
    rows = [
        f"<tr><th>{e(est['metric'])}</th><td class=n>{_fmt(est['value'])}</td>"
        f"<td class=n>{_fmt(interval[0])} to {_fmt(interval[1])}</td>"
        f"<td class=n>{_fmt(realized.get(est['metric']))}</td></tr>"
    ]
    for name, value in (est.get("metrics") or {}).items():
        if name != est["metric"]:
            rows.append(
                f"<tr><td>{e(name)}</td><td class=n>{_fmt(value)}</td><td></td>"
                f"<td class=n>{_fmt(realized.get(name))}</td></tr>"
            )
    labelled = est.get("labelled")
    how = ", ".join(f"{k}: {v}" for k, v in (est.get("calibration") or {}).items())
    note = (
        f"Expected over the window's {est['rows']:,} rows from the model's probabilities, "
        f"calibrated on the holdout ({how}); the interval is the realized metric's spread "
        "over labels drawn from them."
    )
    if labelled:
        note += (
            f" On the {labelled['rows']:,} labelled rows: estimated {_fmt(labelled['estimated'])}, "
            f"realized {_fmt(labelled['realized'])}."
        )
    assumed = "".join(f"<li>{e(a)}</li>" for a in est.get("assumptions") or [])
    return (
        f"<table style='width:auto'>{head}{''.join(rows)}</table>"
        f'<p class="muted">{e(note)}</p><p>It assumes:</p><ul>{assumed}</ul>'
    )


def _fairness_section(fair: Json) -> str:
    """Per sensitive feature the window's groups: rows, selection rate (and the holdout's),
    DI and DPPL against the reference; the worst DI, the violated limits, the labelled part."""
    e = html.escape
    if not fair.get("features"):
        return f'<p class="muted">{e(str(fair.get("note") or "not measured"))}</p>'
    parts = []
    worst, low = fair.get("worst_disparate_impact"), fair["limits"].get("min_disparate_impact")
    if fair.get("violations"):
        items = "".join(f"<li>{e(v['reason'])}</li>" for v in fair["violations"])
        parts.append(f'<div class="state alarm">Outside the fairness limits<ul>{items}</ul></div>')
    elif worst is not None:
        limit = f" (limit {_fmt(low)})" if low is not None else ""
        parts.append(
            f'<div class="state ok">worst disparate impact {_fmt(worst["DI"])}: '
            f"{e(worst['feature'])}={e(worst['group'])}{limit}</div>"
        )
    for name, feature in fair["features"].items():
        measures = {m["group"]: m for m in feature["measures"]}
        rows = []
        for g in feature["groups"]:
            m = measures.get(g["group"], {})
            small = ' <span class="badge">small</span>' if g["small"] else ""
            ref = " (reference)" if g["group"] == feature["reference_group"] else ""
            rate = g.get("selection_rate", g.get("mean_prediction"))
            rows.append(
                f"<tr><td>{e(g['group'])}{ref}{small}</td><td class=n>{g['count']:,}</td>"
                f"<td class=n>{_fmt(rate)}</td>"
                f"<td class=n>{_fmt(g.get('holdout_selection_rate'))}</td>"
                f"<td class=n>{_fmt(m.get('DI'))}</td><td class=n>{_fmt(m.get('DPPL'))}</td></tr>"
            )
        head = (
            f"<tr><th>{e(name)}</th><th>rows</th><th>selection rate</th><th>on the holdout</th>"
            "<th>DI</th><th>DPPL</th></tr>"
        )
        parts.append(f"<table style='width:auto'>{head}{''.join(rows)}</table>")
    labelled = fair.get("labelled")
    note = fair.get("labelled_note") or ""
    if labelled:
        diffs = [
            f"{e(feat_name)}={e(m['group'])}: recall difference "
            f"{_fmt(m.get('recall_difference'))}, accuracy difference "
            f"{_fmt(m.get('accuracy_difference'))}"
            for feat_name, feature in labelled["features"].items()
            for m in feature["measures"]
        ]
        parts.append(f"<p>On the labelled rows: {'; '.join(diffs)}.</p>")
    notes = [str(n).rstrip(".") + "." for n in [*fair.get("notes", []), note] if n]
    caption = (
        "DI = the group's selection rate over the reference's; DPPL = the reference's minus "
        "the group's; small groups are reported, never judged. " + " ".join(notes)
    )
    parts.append(f'<p class="muted">{e(caption)}</p>')
    return "".join(parts)


def _feature_stats(f: Json) -> list[tuple[str, str]]:
    rows = [
        ("type", f["type"]),
        ("values in window", f"{f['n']:,}"),
        ("PSI", _fmt(f["psi"])),
        ("drifted", f"yes, by {_by(f)}" if f["drifted"] else "no"),
        ("missing", f"{_pct(f['missing_rate'])} (training {_pct(f['baseline_missing_rate'])})"),
    ]
    binning = f.get("binning")
    if binning == "values":
        rows.append(
            ("bins", "by value (rare neighbours merged; __other__: values not in training)")
        )
    elif binning == "deciles":
        rows.append(("bins", "training deciles"))
    if f.get("ks") is not None:
        how = (
            f"exact, {f.get('ks_grid')} training values"
            if binning == "values"
            else f"{f.get('ks_grid')}-point baseline CDF"
        )
        rows.append(("KS", f"{_fmt(f['ks'])} ({how})"))
    if f.get("distance") is not None:
        rows.append(("distance", _fmt(f["distance"])))
    if f.get("chance_level") is not None:
        rows.append(("chance level", f"{_fmt(f['chance_level'])} (p 0.001 at this window size)"))
    if f.get("mean") is not None or f.get("baseline_mean") is not None:
        rows.append(("mean", f"{_fmt(f.get('mean'))} (training {_fmt(f.get('baseline_mean'))})"))
    if f.get("cramers_v") is not None:
        rows.append(("Cramér's V", _fmt(f["cramers_v"])))
    if f.get("unknown_rate") is not None:
        unknown = "values not in training" if binning == "values" else "unknown categories"
        rows.append((unknown, _pct(f["unknown_rate"])))
    return rows


def _section(anchor: str, name: str, stats: list[tuple[str, str]], shares: Json) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td class=n>{e(v)}</td></tr>" for k, v in stats)
    plot = _shares_plot(shares["bins"], shares["reference"], shares["current"])
    img = _img(plot, name) if plot else '<p class="muted">nothing to plot</p>'
    return (
        f'<section class="column" id="{e(anchor)}"><div class="stats"><h3>{e(name)}</h3>'
        f"<table>{rows}</table></div><div>{img}</div></section>"
    )


def _shares_plot(bins: list[str], reference: list[float], current: list[float]) -> str | None:
    """Training and window shares side by side per bin (horizontal, first bin on top)."""
    if not bins or len(bins) != len(reference) or len(bins) != len(current):
        return None
    labels = list(bins)
    ref = np.asarray([x or 0.0 for x in reference], dtype="float64")
    cur = np.asarray([x or 0.0 for x in current], dtype="float64")
    if len(labels) > MAX_PLOTTED_BINS:
        keep = np.sort(np.argsort(-np.maximum(ref, cur), kind="stable")[: MAX_PLOTTED_BINS - 1])
        rest = np.setdiff1d(np.arange(len(labels)), keep)
        labels = [labels[i] for i in keep] + [f"({rest.size} more)"]
        ref = np.r_[ref[keep], ref[rest].sum()]
        cur = np.r_[cur[keep], cur[rest].sum()]
    fig, ax = _figure(max(2.5, 0.6 + 0.28 * len(labels)))
    pos = np.arange(len(labels))
    ax.barh(pos - 0.2, 100 * ref, height=0.4, color=_GREY, label="training")
    ax.barh(pos + 0.2, 100 * cur, height=0.4, color=_BLUE, label="window")
    moved = np.abs(cur - ref) >= 0.05  # mark the bins that moved by 5 points or more
    for p in pos[moved]:
        ax.axhspan(p - 0.45, p + 0.45, color=_ORANGE, alpha=0.12, lw=0)
    ax.set_yticks(pos, [_label(str(v)) for v in labels])
    ax.invert_yaxis()
    ax.set_xlabel("% of rows", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return _png(fig)
