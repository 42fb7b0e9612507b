"""Model monitoring: a window of live data against the training baseline, with no AWS.

- `feature_drift`: per feature PSI against the baseline's bins (the alert statistic), a
  Kolmogorov-Smirnov effect size for numeric/datetime features, Cramér's V for categorical
  ones, missing and unknown-category rates; a summary with the alarm decision.
- `prediction_drift` / `prediction_baseline`: PSI of the predictions against the holdout's.
- `live_quality`: the evaluation metrics on predictions joined with late labels.

The baseline is `features.drift_baseline` (deciles and category shares), optionally
extended by `extend_baseline` with a per-feature quantile grid (a finer KS) and the
prediction summary; the monitor works without the extension, with a coarser KS estimate.

Why PSI alerts and KS only informs: with tens of thousands of rows a KS (or chi-square) test
rejects for differences nobody cares about, so p-values are not reported; the KS statistic
itself is a sample-size-free effect size and is kept for the report.

PSI here includes a missing-value bin: the shares compared are those of every row (each bin's
share of the non-missing rows scaled by the present rate, then the missing rate), so a rising
missing rate drifts a feature just like a shifted distribution does. With equal missing rates
it equals the PSI of the non-missing shares up to that scaling.

Performance: each numeric column is sorted once (numpy's sort beats a binary search per value
by several times), then the decile bins (`bin_fractions`' bins, one binary search per edge)
and the KS points are read off the sorted values; each
categorical column is counted once with `value_counts` and only the distinct values are
turned into strings. Only the feature columns are read; nothing copies the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.domain.evaluate import holdout_metrics
from mlcycle.domain.features import (
    MISSING_CATEGORY,
    OTHER_CATEGORY,
    bin_fractions,
    model_input,
    numeric_values,
    psi,
)
from mlcycle.errors import BadInputError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import METRICS, PROBABILITY_METRICS, ColumnType, MonitoringLimits, Task

QUANTILE_POINTS = 1001  # grid 0, 0.001, ..., 1: KS resolution about 0.001, ~20 KB JSON/feature
DECILES = np.linspace(0.1, 0.9, 9)  # the interior cut points `drift_baseline` uses
MIN_LABELS = 30  # fewer joined labels than this give no live metric
_EPOCH = pd.Timestamp("1970-01-01")

Json = dict[str, Any]


# --- results -----------------------------------------------------------------------------


@dataclass
class FeatureDrift:
    """One feature of one window. `bins`/`reference`/`current` are the shares PSI compared
    (every row, the last bin being the missing values), so the report can plot them."""

    name: str
    type: str
    psi: float
    drifted: bool
    n: int  # current non-missing values
    missing_rate: float
    baseline_missing_rate: float
    ks: float | None = None  # numeric/datetime: KS statistic against the baseline CDF
    ks_grid: int | None = None  # points of the baseline CDF it was estimated on
    mean: float | None = None  # numeric/datetime (datetimes in days since epoch)
    baseline_mean: float | None = None
    cramers_v: float | None = None  # categorical: effect size of the 2 x k shares table
    unknown_rate: float | None = None  # categorical: share of values the baseline does not list
    unknown_exact: bool | None = None  # False: the baseline lists only the top categories
    bins: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    current: list[float] = field(default_factory=list)


@dataclass
class PredictionDrift:
    """Predicted class shares (classification) or predicted values per baseline decile bin
    (regression) in the window against the holdout's."""

    task: str
    n: int
    psi: float
    drifted: bool | None  # None when no threshold was given
    ks: float | None = None  # regression only
    mean: float | None = None
    baseline_mean: float | None = None
    bins: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    current: list[float] = field(default_factory=list)

    def to_json(self) -> Json:
        return _clean(asdict(self))


@dataclass
class DriftResult:
    """One monitoring window. `to_json()` is the report's and the metrics' input."""

    sample_size: int
    baseline_row_count: int
    enough_samples: bool
    alarm: bool
    reasons: list[str]  # one sentence per alarm cause, or why there is none
    n_drifted: int
    drifted_features: list[str]
    features: list[FeatureDrift]
    limits: Json
    prediction: PredictionDrift | None = None
    live: Json | None = None  # `live_quality(...)`, attached by the caller when labels exist

    def to_json(self) -> Json:
        """A JSON-safe dict: plain floats, no NaN or infinity (None instead)."""
        return _clean(asdict(self))


# --- baseline extension (the training side stores these) ---------------------------------


def quantile_grid(values: Any, points: int = QUANTILE_POINTS) -> list[float]:
    """`points` evenly spaced quantiles (0 and 1 included) of the non-missing values: the
    baseline CDF the KS estimate interpolates. Empty when there is no value."""
    arr = np.asarray(values, dtype="float64")
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return []
    return [float(v) for v in np.quantile(arr, np.linspace(0.0, 1.0, points))]


def prediction_baseline(predictions: Any, task: Task | str) -> Json:
    """The summary `prediction_drift` compares a window with, built from the holdout
    predictions of the released model (JSON-safe).

    Classification: `classes` and their `shares`. Regression: decile `edges` and
    `fractions` (as `drift_baseline` bins a numeric feature), a `quantiles` grid and `mean`.
    """
    task = Task(task)
    out: Json = {"task": task.value}
    if task is Task.REGRESSION:
        finite = _sorted_finite(_as_float(predictions))
        edges = _deciles(finite)
        out.update(
            row_count=int(finite.size),
            edges=edges,
            fractions=bin_fractions(finite, edges),
            quantiles=quantile_grid(finite),
            mean=_num(finite.mean()) if finite.size else None,
        )
    else:
        counts = _value_counts(pd.Series(np.asarray(predictions, dtype=object)))
        total = int(counts.sum())
        out.update(
            row_count=total,
            classes=[str(c) for c in counts.index],
            shares=[int(v) / total for v in counts.to_numpy()] if total else [],
        )
    return out


def extend_baseline(
    baseline: Json,
    train: pd.DataFrame,
    schema: ResolvedSchema,
    *,
    holdout_predictions: Any | None = None,
) -> Json:
    """A copy of `features.drift_baseline(train, schema)` with what the monitor adds:
    `columns[<numeric or datetime feature>]["quantiles"]` (`quantile_grid` of the same values
    the deciles came from) and, with `holdout_predictions`, `predictions`
    (`prediction_baseline`). Older baselines without them still work."""
    out = {**baseline, "columns": {k: dict(v) for k, v in baseline["columns"].items()}}
    # the values drift_baseline binned (model_input's float32 rounding, naive UTC dates);
    # the categorical columns are left out, their string mapping is the slow part
    numeric = {c: k for c, k in schema.features.items() if k is not ColumnType.CATEGORICAL}
    data = model_input(train[list(numeric)], schema.model_copy(update={"features": numeric}))
    for col in numeric:
        if col in out["columns"]:
            out["columns"][col]["quantiles"] = quantile_grid(numeric_values(data[col]))
    if holdout_predictions is not None:
        out["predictions"] = prediction_baseline(holdout_predictions, schema.task)
    return out


# --- feature drift -----------------------------------------------------------------------


def feature_drift(
    current: pd.DataFrame,
    baseline: Json,
    schema: ResolvedSchema,
    limits: MonitoringLimits,
    *,
    predictions: Any | None = None,
    prediction_summary: Json | None = None,
) -> DriftResult:
    """Compare a window of live feature rows with the training baseline.

    A feature has drifted when its PSI exceeds `limits.psi_threshold`. The window alarms when
    more than `limits.max_drifted_features` features drifted, or when the prediction PSI
    exceeds `limits.prediction_psi_threshold` (only with `predictions` and a prediction
    summary: `prediction_summary`, else the baseline's `predictions` entry). A window smaller
    than `limits.min_samples` is measured but never alarms.
    """
    missing = [c for c in schema.features if c not in current.columns]
    if missing:
        raise BadInputError(f"the monitored data lacks the feature columns {missing}")
    unknown = [c for c in schema.features if c not in baseline.get("columns", {})]
    if unknown:
        raise BadInputError(f"the drift baseline has no entry for the features {unknown}")

    n_ref = int(baseline.get("row_count", 0))
    results = [
        _feature(name, kind, current[name], baseline["columns"][name], n_ref, limits.psi_threshold)
        for name, kind in schema.features.items()
    ]
    summary = prediction_summary or baseline.get("predictions")
    prediction = None
    reasons: list[str] = []
    if predictions is not None:
        if summary is None:
            reasons.append("no prediction baseline is stored: prediction drift is not measured")
        else:
            prediction = prediction_drift(
                predictions, summary, summary.get("task", schema.task), limits=limits
            )

    n = len(current)
    drifted = [f.name for f in results if f.drifted]
    enough = n >= limits.min_samples
    causes = []
    if len(drifted) > limits.max_drifted_features:
        causes.append(
            f"{len(drifted)} features drifted (PSI > {limits.psi_threshold:g}), more than the "
            f"{limits.max_drifted_features} allowed: {', '.join(drifted)}"
        )
    if prediction is not None and prediction.drifted:
        causes.append(
            f"the predictions drifted: PSI {prediction.psi:.3f} > "
            f"{limits.prediction_psi_threshold:g}"
        )
    if not enough:
        reasons.append(
            f"only {n} rows in the window, fewer than the {limits.min_samples} the monitor "
            "needs to judge: no alarm"
        )
    elif not causes:
        reasons.append(f"{len(drifted)} of {len(results)} features drifted: within limits")
    reasons += causes
    return DriftResult(
        sample_size=n,
        baseline_row_count=int(baseline.get("row_count", 0)),
        enough_samples=enough,
        alarm=enough and bool(causes),
        reasons=reasons,
        n_drifted=len(drifted),
        drifted_features=drifted,
        features=results,
        limits=limits.model_dump(),
        prediction=prediction,
    )


def _feature(
    name: str, kind: ColumnType, s: pd.Series, base: Json, n_ref: int, threshold: float
) -> FeatureDrift:
    n_rows = len(s)
    base_missing = float(base.get("missing_rate", 0.0))
    if kind is ColumnType.CATEGORICAL:
        return _categorical(name, s, base, base_missing, n_ref, threshold)
    finite = _sorted_finite(_feature_values(s, kind))  # sorted once: bins and KS read it
    missing_rate = 1.0 - finite.size / n_rows if n_rows else 0.0
    edges = list(base.get("edges", []))
    current = _with_missing(_sorted_bin_fractions(finite, edges), missing_rate)
    reference = _with_missing(base.get("fractions", [0.0] * (len(edges) + 1)), base_missing)
    value = psi(reference, current)
    cdf = _baseline_cdf(base)
    ks = _ks(finite, cdf) if cdf is not None and finite.size else None
    return FeatureDrift(
        name=name,
        type=kind.value,
        psi=value,
        drifted=value > threshold,
        n=int(finite.size),
        missing_rate=missing_rate,
        baseline_missing_rate=base_missing,
        ks=ks,
        ks_grid=cdf.x.size if cdf is not None else None,
        mean=_num(finite.mean()) if finite.size else None,
        baseline_mean=base.get("mean"),
        bins=[*_bin_labels(edges, kind), MISSING_CATEGORY],
        reference=reference,
        current=current,
    )


def _categorical(
    name: str, s: pd.Series, base: Json, base_missing: float, n_ref: int, threshold: float
) -> FeatureDrift:
    n_rows = len(s)
    categories = list(base.get("frequencies", {}))
    counts = _value_counts(s)
    present = int(counts.sum())
    known = counts.reindex(categories, fill_value=0).to_numpy(dtype="float64")
    # as `features.category_fractions`: shares of the listed categories, then `__other__`
    # (which takes the categories training never saw)
    shares = [*(known / present), max(0.0, 1.0 - known.sum() / present)] if present else []
    if not present:
        shares = [0.0] * (len(categories) + 1)
    missing_rate = 1.0 - present / n_rows if n_rows else 0.0
    current = _with_missing(shares, missing_rate)
    base_shares = [*base.get("frequencies", {}).values(), base.get(OTHER_CATEGORY, 0.0)]
    reference = _with_missing(base_shares, base_missing)
    value = psi(reference, current)
    unknown_rate = shares[-1] if present else None
    return FeatureDrift(
        name=name,
        type=ColumnType.CATEGORICAL.value,
        psi=value,
        drifted=value > threshold,
        n=present,
        missing_rate=missing_rate,
        baseline_missing_rate=base_missing,
        cramers_v=_cramers_v(reference, n_ref, current, n_rows),
        unknown_rate=unknown_rate,
        unknown_exact=float(base.get(OTHER_CATEGORY, 0.0)) == 0.0,
        bins=[*categories, OTHER_CATEGORY, MISSING_CATEGORY],
        reference=reference,
        current=current,
    )


# --- prediction drift --------------------------------------------------------------------


def prediction_drift(
    current_predictions: Any,
    baseline_summary: Json,
    task: Task | str,
    *,
    limits: MonitoringLimits | None = None,
) -> PredictionDrift:
    """PSI of the window's predictions against `prediction_baseline(...)`; `drifted` uses
    `limits.prediction_psi_threshold` when `limits` is given."""
    task = Task(task)
    if task is Task.REGRESSION:
        finite = _sorted_finite(_as_float(current_predictions))
        edges = list(baseline_summary.get("edges", []))
        reference = list(baseline_summary.get("fractions", [0.0] * (len(edges) + 1)))
        current = _sorted_bin_fractions(finite, edges)
        cdf = _baseline_cdf(baseline_summary)
        extra: Json = {
            "ks": _ks(finite, cdf) if cdf is not None and finite.size else None,
            "mean": _num(finite.mean()) if finite.size else None,
            "baseline_mean": baseline_summary.get("mean"),
        }
        labels = _bin_labels(edges, ColumnType.NUMERIC)
        n = int(finite.size)
    else:
        classes = [str(c) for c in baseline_summary.get("classes", [])]
        counts = _value_counts(pd.Series(np.asarray(current_predictions, dtype=object)))
        n = int(counts.sum())
        known = counts.reindex(classes, fill_value=0).to_numpy(dtype="float64")
        # a class the holdout never predicted lands in one extra bin
        current = (
            [*(known / n), max(0.0, 1.0 - known.sum() / n)] if n else [0.0] * (len(classes) + 1)
        )
        reference = [*baseline_summary.get("shares", []), 0.0]
        labels, extra = [*classes, OTHER_CATEGORY], {}
    value = psi(reference, current)
    drifted = None if limits is None else value > limits.prediction_psi_threshold
    return PredictionDrift(
        task=task.value,
        n=n,
        psi=value,
        drifted=drifted,
        bins=labels,
        reference=[float(x) for x in reference],
        current=current,
        **extra,
    )


# --- live quality ------------------------------------------------------------------------


def live_quality(
    predictions: Any,
    labels: Any,
    task: Task | str,
    classes: Sequence[str] | None,
    positive_class: str | None,
    primary_metric: str,
    *,
    probabilities: Any | None = None,
    min_labels: int = MIN_LABELS,
) -> Json:
    """The evaluation metrics on predictions already joined with their late labels.

    Pairs with a missing label or prediction are dropped, as are (classification) labels or
    predictions outside `classes`. Without `probabilities` (one column per class, in
    `classes` order) the probability metrics (log_loss, roc_auc) are not computed. With
    fewer than `min_labels` pairs there is no metric, and `reason` says why.
    """
    task = Task(task)
    if primary_metric not in METRICS or task not in METRICS[primary_metric][0]:
        raise BadInputError(f"{primary_metric!r} is not a {task.value} metric")
    pred = pd.Series(np.asarray(predictions, dtype=object))
    label = pd.Series(np.asarray(labels, dtype=object))
    if len(pred) != len(label):
        raise BadInputError(f"{len(pred)} predictions but {len(label)} labels: join them first")
    keep = (pred.notna() & label.notna()).to_numpy()
    proba = None if probabilities is None else np.asarray(probabilities, dtype="float64")
    dropped = {"missing": int((~keep).sum()), "unknown_class": 0}
    label_only: list[str] = []
    if task is not Task.REGRESSION:
        if not classes:
            raise BadInputError("classification needs its classes to score live predictions")
        known = set(classes)
        in_classes = (pred.map(str).isin(known) & label.map(str).isin(known)).to_numpy()
        dropped["unknown_class"] = int((keep & ~in_classes).sum())
        keep = keep & in_classes
        if proba is None:
            label_only = sorted(PROBABILITY_METRICS)
    n = int(keep.sum())
    out: Json = {
        "n_labels": n,
        "dropped": dropped,
        "primary_metric": primary_metric,
        "value": None,
        "metrics": {},
        "reason": None,
    }
    if n < min_labels:
        out["reason"] = f"only {n} labelled predictions; at least {min_labels} are needed"
        return out
    if task is Task.REGRESSION:
        metrics = holdout_metrics(
            task, _as_float(label[keep]), _as_float(pred[keep]), None, None, None
        )
    else:
        y, p = label[keep].map(str).to_numpy(), pred[keep].map(str).to_numpy()
        if proba is None:
            # one-hot stand-ins let holdout_metrics score the label metrics; the probability
            # metrics they would give are meaningless and are dropped below
            proba_in = p[:, None] == np.asarray(list(classes or []), dtype=object)[None, :]
            metrics = holdout_metrics(
                task, y, p, proba_in.astype("float64"), classes, positive_class
            )
        else:
            metrics = holdout_metrics(task, y, p, proba[keep], classes, positive_class)
    metrics = {k: v for k, v in metrics.items() if k not in label_only and math.isfinite(v)}
    out["metrics"] = metrics
    out["value"] = metrics.get(primary_metric)
    if out["value"] is None:
        out["reason"] = (
            f"{primary_metric} needs the predicted probabilities"
            if primary_metric in label_only
            else f"{primary_metric} is undefined on these labels (a single class?)"
        )
    return out


# --- helpers -----------------------------------------------------------------------------


def _feature_values(s: pd.Series, kind: ColumnType) -> np.ndarray:
    """Floats as the baseline binned them; datetimes captured as text are parsed first."""
    if kind is ColumnType.DATETIME and not pd.api.types.is_datetime64_any_dtype(s.dtype):
        s = pd.to_datetime(s, errors="coerce", utc=True).dt.tz_localize(None)
    return numeric_values(s)


def _as_float(values: Any) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )


def _value_counts(s: pd.Series) -> pd.Series:
    """Counts of the non-missing values keyed by `str(value)` (as `model_input` maps them);
    only the distinct values are stringified, which is what keeps 1M rows fast."""
    counts = s.value_counts(dropna=True, sort=False)
    counts.index = counts.index.map(str)
    if counts.index.has_duplicates:  # 1 and "1" are one category
        counts = counts.groupby(level=0, sort=False).sum()
    return counts.sort_values(ascending=False, kind="stable")


def _sorted_finite(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]  # a fresh array: sorting it in place copies nothing
    finite.sort()
    return finite


def _sorted_bin_fractions(sorted_values: np.ndarray, edges: list[float]) -> list[float]:
    """`features.bin_fractions` for sorted finite values (same bins, closed on the left),
    read off with one binary search per edge instead of one per value: at a million rows
    the per-value search is most of the monitor's time and grows faster than linearly (the
    values stop fitting in the cache). Tests pin it to `bin_fractions`."""
    n = sorted_values.size
    if n == 0:
        return [0.0] * (len(edges) + 1)
    below = np.searchsorted(sorted_values, np.asarray(edges, dtype="float64"), side="left")
    counts = np.diff(np.r_[0, below, n])
    return [float(c) / n for c in counts]


def _deciles(sorted_finite: np.ndarray) -> list[float]:
    # the cut points `features.drift_baseline` uses, so prediction bins read the same way
    if sorted_finite.size == 0:
        return []
    return [float(v) for v in np.unique(np.quantile(sorted_finite, DECILES))]


def _with_missing(shares: Sequence[float], missing_rate: float) -> list[float]:
    present = 1.0 - missing_rate
    return [float(x) * present for x in shares] + [float(missing_rate)]


@dataclass
class _Cdf:
    """The baseline CDF as nodes: F(x) exactly at each node (`left`: the share below x,
    else the share at or below x); `interpolate`: linear in between is a fair model (a fine
    grid; between deciles it is not, the tails are far from linear)."""

    x: np.ndarray
    p: np.ndarray
    left: np.ndarray  # bool per node
    interpolate: bool


def _baseline_cdf(base: Json) -> _Cdf | None:
    """From the stored quantile grid when there is one, else from the deciles."""
    q = base.get("quantiles")
    if q:
        x = np.asarray(q, dtype="float64")
        p = np.linspace(0.0, 1.0, x.size)
        # a repeated quantile (a discrete feature) keeps its largest p: F just after the jump
        last = np.r_[np.flatnonzero(np.diff(x) > 0), x.size - 1]
        return _Cdf(x[last], p[last], np.zeros(last.size, dtype=bool), interpolate=True)
    if base.get("min") is None or base.get("max") is None:
        return None
    # bins are closed on the left, so the cumulative decile share at edge e is exactly the
    # share below e; the minimum has nothing below it, the maximum everything at or below
    edges = np.asarray(base.get("edges", []), dtype="float64")
    below = np.cumsum(base.get("fractions", [1.0]))[:-1]
    lo = [] if edges.size and edges[0] <= base["min"] else [base["min"]]
    x = np.asarray([*lo, *edges, base["max"]], dtype="float64")
    p = np.asarray([*([0.0] * len(lo)), *below, 1.0], dtype="float64")
    left = np.ones(x.size, dtype=bool)
    left[-1] = False
    return _Cdf(x, p, left, interpolate=False)


def _ks(sorted_current: np.ndarray, cdf: _Cdf) -> float:
    """sup |F_current - F_baseline| over the baseline nodes (exact comparisons there) and,
    on a fine grid, ~1000 quantiles of the current values that fall between nodes (baseline
    interpolated), so that current mass packed between two nodes is seen too. On deciles
    only the nodes count: a lower bound, never a spurious value."""
    n = sorted_current.size
    at_nodes = np.where(
        cdf.left,
        np.searchsorted(sorted_current, cdf.x, side="left"),
        np.searchsorted(sorted_current, cdf.x, side="right"),
    )
    worst = float(np.max(np.abs(at_nodes / n - cdf.p)))
    if not cdf.interpolate:
        return worst
    step = max(1, n // QUANTILE_POINTS)
    z = np.unique(np.r_[sorted_current[::step], sorted_current[-1]])
    z = z[~np.isin(z, cdf.x)]
    if z.size:
        f_cur = np.searchsorted(sorted_current, z, side="right") / n
        f_base = np.interp(z, cdf.x, cdf.p, left=0.0, right=1.0)
        worst = max(worst, float(np.max(np.abs(f_cur - f_base))))
    return worst


def _cramers_v(
    reference: list[float], n_ref: int, current: list[float], n_cur: int
) -> float | None:
    """Cramér's V of the 2 x k table baseline-vs-window counts over the same bins as PSI; the
    baseline counts are rebuilt from its shares and row count."""
    if not n_ref or not n_cur:
        return None
    table = np.vstack([np.asarray(reference) * n_ref, np.asarray(current) * n_cur])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    chi2 = float(np.sum((table - expected) ** 2 / expected))
    return _num(math.sqrt(chi2 / table.sum()))


def _bin_labels(edges: list[float], kind: ColumnType) -> list[str]:
    if not edges:
        return ["all"]
    if kind is ColumnType.DATETIME:
        text = [str((_EPOCH + pd.to_timedelta(e, unit="D")).date()) for e in edges]
    else:
        text = [f"{e:.4g}" for e in edges]
    inner = [f"[{a}, {b})" for a, b in pairwise(text)]
    return [f"< {text[0]}", *inner, f"≥ {text[-1]}"]


def _num(x: Any) -> float | None:
    f = float(x)
    return f if math.isfinite(f) else None


def _clean(obj: Any) -> Any:
    """Plain JSON types, NaN and infinity as None (recursively)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _num(obj)
    return obj
