"""Model monitoring: a window of live data against the training baseline, with no AWS.

- `feature_drift`: per feature PSI against the baseline's bins, a Kolmogorov-Smirnov effect
  size for numeric/datetime features, the total variation distance and Cramér's V for
  categorical ones, missing and unknown-value rates; a feature drifts when its PSI or its
  effect size (KS, distance) passes its limit, and says which; a summary with the alarm.
- `prediction_drift` / `prediction_baseline`: PSI of the predictions against the holdout's.
- `live_quality`: the evaluation metrics on predictions joined with late labels.

The baseline is `features.drift_baseline` (deciles, the values of a feature with few integer
values, category shares), optionally extended by `extend_baseline` with a per-feature
quantile grid (a finer KS) and the prediction summary; the monitor works without the
extension, with a coarser KS estimate. The statistics themselves (value bins, the baseline
CDF, KS, distances and their chance levels) are `mlcycle.domain.drift_stats`.

Why effect sizes and not p-values: with tens of thousands of rows a KS (or chi-square) test
rejects for differences nobody cares about, so p-values are not reported. The KS statistic
and the total variation distance do not grow with the row count; they alert where PSI is
weak (a shift inside a bin, mass moving between two large categories), and only above the
level chance reaches at the window's size, so a small window does not alarm on noise.

PSI here includes a missing-value bin: the shares compared are those of every row (each bin's
share of the non-missing rows scaled by the present rate, then the missing rate), so a rising
missing rate drifts a feature just like a shifted distribution does. With equal missing rates
it equals the PSI of the non-missing shares up to that scaling.

Performance: each numeric column is sorted once (numpy's sort beats a binary search per value
by several times), then the decile or value bins (binary searches per edge or value) and the
KS points are read off the sorted values; each
categorical column is counted once with `value_counts` and only the distinct values are
turned into strings. Only the feature columns are read; nothing copies the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.domain.drift_stats import (
    QUANTILE_POINTS,
    baseline_cdf,
    cramers_v,
    decile_labels,
    distance_chance_level,
    ks_chance_level,
    ks_statistic,
    sorted_bin_fractions,
    total_variation,
    value_bin_share,
    value_fractions_of,
    value_groups,
    value_labels,
    value_reference,
)
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

DECILES = np.linspace(0.1, 0.9, 9)  # the interior cut points `drift_baseline` uses
MIN_LABELS = 30  # fewer joined labels than this give no live metric

Json = dict[str, Any]


# --- results -----------------------------------------------------------------------------


@dataclass
class FeatureDrift:
    """One feature of one window. `bins`/`reference`/`current` are the shares PSI compared
    (every row, the last bin being the missing values), so the report can plot them.
    `drifted_by` names the statistics that passed their limit: "psi", "ks", "distance"."""

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
    distance: float | None = None  # categorical: total variation distance over the bins
    chance_level: float | None = None  # the effect size chance reaches at this size (p 0.001)
    binning: str = "deciles"  # numeric: "deciles" or "values"; categorical: "categories"
    drifted_by: list[str] = field(default_factory=list)
    unknown_rate: float | None = None  # share of values the baseline does not list
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

    A feature has drifted when its PSI exceeds `limits.psi_threshold`, or its effect size
    (KS for numbers and dates, the total variation distance for categories) exceeds
    `limits.ks_threshold` / `limits.categorical_distance_threshold` and its chance level at
    the window's size; `FeatureDrift.drifted_by` says which. The window alarms when
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
        _feature(name, kind, current[name], baseline["columns"][name], n_ref, limits)
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
    said = ", ".join(_why(f, limits) for f in results if f.drifted)
    enough = n >= limits.min_samples
    causes = []
    if len(drifted) > limits.max_drifted_features:
        causes.append(
            f"{len(drifted)} features drifted, more than the {limits.max_drifted_features} "
            f"allowed: {said}"
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
        which = f" ({said})" if said else ""
        reasons.append(f"{len(drifted)} of {len(results)} features drifted{which}: within limits")
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
    name: str, kind: ColumnType, s: pd.Series, base: Json, n_ref: int, limits: MonitoringLimits
) -> FeatureDrift:
    n_rows = len(s)
    base_missing = float(base.get("missing_rate", 0.0))
    if kind is ColumnType.CATEGORICAL:
        return _categorical(name, s, base, base_missing, n_ref, limits)
    finite = _sorted_finite(_feature_values(s, kind))  # sorted once: bins and KS read it
    missing_rate = 1.0 - finite.size / n_rows if n_rows else 0.0
    values = base.get("values") if kind is ColumnType.NUMERIC else None
    unseen: Json = {}
    if values:  # few integer values: one bin per value (rare neighbours merged), then unseen
        groups = value_groups(base["value_fractions"], value_bin_share(finite.size))
        shares = value_fractions_of(finite, values, groups)
        base_shares = value_reference(base["value_fractions"], groups)
        labels = [*value_labels(values, groups), OTHER_CATEGORY]
        unseen = {"unknown_rate": shares[-1] if finite.size else None, "unknown_exact": True}
    else:
        edges = list(base.get("edges", []))
        shares = sorted_bin_fractions(finite, edges)
        base_shares = base.get("fractions", [0.0] * (len(edges) + 1))
        labels = decile_labels(edges, kind)
    current = _with_missing(shares, missing_rate)
    reference = _with_missing(base_shares, base_missing)
    value = psi(reference, current)
    cdf = baseline_cdf(base)
    ks = ks_statistic(finite, cdf) if cdf is not None and finite.size else None
    chance = ks_chance_level(finite.size, n_ref * (1.0 - base_missing)) if ks is not None else None
    flags = _flags(value, limits.psi_threshold, ("ks", ks, limits.ks_threshold, chance))
    return FeatureDrift(
        name=name,
        type=kind.value,
        psi=value,
        drifted=bool(flags),
        n=int(finite.size),
        missing_rate=missing_rate,
        baseline_missing_rate=base_missing,
        ks=ks,
        ks_grid=cdf.x.size if cdf is not None else None,
        mean=_num(finite.mean()) if finite.size else None,
        baseline_mean=base.get("mean"),
        chance_level=chance,
        binning="values" if values else "deciles",
        drifted_by=flags,
        bins=[*labels, MISSING_CATEGORY],
        reference=reference,
        current=current,
        **unseen,
    )


def _categorical(
    name: str, s: pd.Series, base: Json, base_missing: float, n_ref: int, limits: MonitoringLimits
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
    distance = total_variation(reference, current) if n_rows else None
    chance = distance_chance_level(reference, n_rows, n_ref) if n_rows else None
    limit = limits.categorical_distance_threshold
    flags = _flags(value, limits.psi_threshold, ("distance", distance, limit, chance))
    return FeatureDrift(
        name=name,
        type=ColumnType.CATEGORICAL.value,
        psi=value,
        drifted=bool(flags),
        n=present,
        missing_rate=missing_rate,
        baseline_missing_rate=base_missing,
        cramers_v=cramers_v(reference, n_ref, current, n_rows),
        distance=distance,
        chance_level=chance,
        binning="categories",
        drifted_by=flags,
        unknown_rate=shares[-1] if present else None,
        unknown_exact=float(base.get(OTHER_CATEGORY, 0.0)) == 0.0,
        bins=[*categories, OTHER_CATEGORY, MISSING_CATEGORY],
        reference=reference,
        current=current,
    )


def _flags(
    psi_value: float,
    psi_threshold: float,
    effect: tuple[str, float | None, float | None, float | None],
) -> list[str]:
    """The statistics that drift a feature: PSI above its threshold; the effect size
    (`name`, value, threshold, chance level) above both its threshold and its chance level."""
    name, value, threshold, chance = effect
    flags = ["psi"] if psi_value > psi_threshold else []
    if value is not None and threshold is not None and value > max(threshold, chance or 0.0):
        flags.append(name)
    return flags


def _why(f: FeatureDrift, limits: MonitoringLimits) -> str:
    """`name (PSI 0.31 > 0.2, KS 0.24 > 0.15)`: what drifted a feature."""
    said = []
    if "psi" in f.drifted_by:
        said.append(f"PSI {f.psi:.3g} > {limits.psi_threshold:g}")
    if "ks" in f.drifted_by and f.ks is not None and limits.ks_threshold is not None:
        said.append(f"KS {f.ks:.3g} > {limits.ks_threshold:g}")
    limit = limits.categorical_distance_threshold
    if "distance" in f.drifted_by and f.distance is not None and limit is not None:
        said.append(f"distance {f.distance:.3g} > {limit:g}")
    return f"{f.name} ({', '.join(said)})"


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
        current = sorted_bin_fractions(finite, edges)
        cdf = baseline_cdf(baseline_summary)
        extra: Json = {
            "ks": ks_statistic(finite, cdf) if cdf is not None and finite.size else None,
            "mean": _num(finite.mean()) if finite.size else None,
            "baseline_mean": baseline_summary.get("mean"),
        }
        labels = decile_labels(edges, ColumnType.NUMERIC)
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


def _deciles(sorted_finite: np.ndarray) -> list[float]:
    # the cut points `features.drift_baseline` uses, so prediction bins read the same way
    if sorted_finite.size == 0:
        return []
    return [float(v) for v in np.unique(np.quantile(sorted_finite, DECILES))]


def _with_missing(shares: Sequence[float], missing_rate: float) -> list[float]:
    present = 1.0 - missing_rate
    return [float(x) * present for x in shares] + [float(missing_rate)]


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
