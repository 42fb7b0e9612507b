"""Drift statistics, pure numpy: the bins PSI compares, the baseline CDF and the
Kolmogorov-Smirnov statistic read off it, the total variation distance and Cramér's V, and
the level chance alone gives an effect size at a window's size. `monitor.feature_drift`
composes them; nothing here knows about frames, schemas or limits.

Value bins. A numeric feature whose training values are few integers (counts, ratings) ties
at the decile cut points, so deciles lump values together (Poisson(1): bins 0, 1 and "2 or
more") and PSI misses mass moving inside a lump. `features.drift_baseline` stores the value
distribution of such a feature (`values`, `value_fractions`); it is then binned by value:
one bin per training value, adjacent values merged until a bin holds `MIN_VALUE_BIN_SHARE`
of training and, in a small window, `MIN_BIN_ROWS` expected rows (`value_bin_share`), and an
`__other__` bin (training share 0) for any value training never had. Why merge: a bin of
share e that a window happens to miss costs e * ln(e / 1e-4) of PSI on its own (0.1 for 2%),
so with one bin per value, however rare, the 99th percentile of PSI in no-drift windows of
100 rows is 0.19-0.45 on Poisson-like counts, against 0.07-0.20 by deciles (4,000 training
rows, 1,000 windows each). Merged, the bundled churn data's three such features stay at
0.126 (deciles 0.175) at 100 rows and 0.072 (0.057) at 300 (bench/drift_sensitivity.py).

Effect sizes. The KS statistic (numbers and dates) and the total variation distance over the
PSI bins (categories: half the summed absolute share differences, the largest share of rows
that would have to change bin) do not grow with the row count, so they can alert where PSI
is weak: KS on a distribution shifted inside a decile, the distance on mass moving between
two large categories (50/50 to 65/35 is PSI 0.09, distance 0.15). In a small window they are
noisy, so an effect size only counts above its `chance_level`: the value it exceeds with
probability 0.001 when nothing changed (KS: Kolmogorov's limit, c(0.001) * sqrt(1/n + 1/m),
conservative for ties; distance: by Cauchy-Schwarz at most half the square root of the
chi-square statistic over the effective size, whose 0.999 quantile bounds it). P-values are
not reported: with many rows they reject for differences nobody cares about.

The thresholds (`MonitoringLimits.ks_threshold`, `categorical_distance_threshold`, 0.15 by
default) sit at or a little before the point where decile PSI reaches 0.2 on the shifts PSI
sees well: that is KS 0.18-0.19 for normal, lognormal and exponential location or scale
shifts, and distance 0.12-0.22 for categories (later the larger the categories: at distance
0.15 two 50/50 categories are at PSI 0.09). Without drift, churn windows of 300 to 10,000
rows reach KS 0.105 and distance 0.125 at most, below their chance levels and 0.15.

Cramér's V is kept for the report, not for alerts: over a window of n rows and a baseline of
m it scales with sqrt(n m) / (n + m), so the same change reads smaller in a smaller window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from mlcycle.spec import ColumnType

QUANTILE_POINTS = 1001  # grid 0, 0.001, ..., 1: KS resolution about 0.001, ~20 KB JSON/feature
MIN_VALUE_BIN_SHARE = 0.05  # value bins: rarer adjacent training values share a bin
MIN_BIN_ROWS = 10  # ... and, in a small window, values expected fewer times than this
CHANCE_ALPHA = 0.001  # an effect size counts above what chance exceeds this rarely
_KS_C = math.sqrt(-math.log(CHANCE_ALPHA / 2) / 2)  # Kolmogorov's c(alpha): 1.95
_EPOCH = pd.Timestamp("1970-01-01")


# --- bins --------------------------------------------------------------------------------


def sorted_bin_fractions(sorted_values: np.ndarray, edges: list[float]) -> list[float]:
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


def value_bin_share(n: int) -> float:
    """The least training share of a value bin in a window of `n` values: 5%, and in a
    small window enough for `MIN_BIN_ROWS` of its rows (a bin of share e that the window
    misses costs e * ln(e / 1e-4) of PSI: 0.31 for 5%, likely at 100 rows, not at 200)."""
    return max(MIN_VALUE_BIN_SHARE, MIN_BIN_ROWS / n) if n > 0 else MIN_VALUE_BIN_SHARE


def value_groups(
    fractions: Sequence[float], min_share: float = MIN_VALUE_BIN_SHARE
) -> list[list[int]]:
    """The value bins as lists of indices into the (ascending) training values: from the
    smallest value up, values join a bin until it holds `min_share` of the training rows; a
    last bin short of it joins the one before."""
    groups: list[list[int]] = []
    current: list[int] = []
    share = 0.0
    for i, f in enumerate(fractions):
        current.append(i)
        share += float(f)
        if share >= min_share:
            groups.append(current)
            current, share = [], 0.0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def value_reference(fractions: Sequence[float], groups: list[list[int]]) -> list[float]:
    """The training share of each value bin, then of `__other__` (0 up to rounding)."""
    f = np.asarray(fractions, dtype="float64")
    shares = [float(f[g].sum()) for g in groups]
    return [*shares, max(0.0, 1.0 - float(f.sum()))]


def value_fractions_of(
    sorted_values: np.ndarray, values: Sequence[float], groups: list[list[int]]
) -> list[float]:
    """The share of the sorted finite current values in each value bin, then the share that
    is no training value at all (`__other__`); two binary searches per training value."""
    n = sorted_values.size
    if n == 0:
        return [0.0] * (len(groups) + 1)
    v = np.asarray(values, dtype="float64")
    counts = np.searchsorted(sorted_values, v, side="right") - np.searchsorted(
        sorted_values, v, side="left"
    )
    shares = [float(counts[g].sum()) / n for g in groups]
    return [*shares, float(n - counts.sum()) / n]


def value_labels(values: Sequence[float], groups: list[list[int]]) -> list[str]:
    """A bin's values as text: `3`, `4 to 6` (consecutive integers) or `10, 20, 50`."""
    labels = []
    for g in groups:
        ints = [round(float(values[i])) for i in g]
        if len(ints) == 1:
            labels.append(str(ints[0]))
        elif ints == list(range(ints[0], ints[-1] + 1)):
            labels.append(f"{ints[0]} to {ints[-1]}")
        else:
            labels.append(", ".join(str(i) for i in ints))
    return labels


def decile_labels(edges: list[float], kind: ColumnType) -> list[str]:
    """`< e0`, `[e0, e1)`, ..., `≥ e_last` (dates as dates)."""
    if not edges:
        return ["all"]
    if kind is ColumnType.DATETIME:
        text = [str((_EPOCH + pd.to_timedelta(e, unit="D")).date()) for e in edges]
    else:
        text = [f"{e:.4g}" for e in edges]
    inner = [f"[{a}, {b})" for a, b in pairwise(text)]
    return [f"< {text[0]}", *inner, f"≥ {text[-1]}"]


# --- baseline CDF and KS -----------------------------------------------------------------


@dataclass
class Cdf:
    """The baseline CDF as nodes: F(x) exactly at each node (`left`: the share below x,
    else the share at or below x); `interpolate`: linear in between is a fair model (a fine
    grid; between deciles it is not, the tails are far from linear); `below`: a step CDF
    (a discrete feature's values), F just below each node, which makes KS exact."""

    x: np.ndarray
    p: np.ndarray
    left: np.ndarray  # bool per node
    interpolate: bool
    below: np.ndarray | None = None


def baseline_cdf(base: dict[str, Any]) -> Cdf | None:
    """From the training values when the baseline has them (exact), else from the stored
    quantile grid, else from the deciles."""
    values = base.get("values")
    if values:
        x = np.asarray(values, dtype="float64")
        p = np.minimum(np.cumsum(np.asarray(base["value_fractions"], dtype="float64")), 1.0)
        return Cdf(x, p, np.zeros(x.size, dtype=bool), False, below=np.r_[0.0, p[:-1]])
    q = base.get("quantiles")
    if q:
        x = np.asarray(q, dtype="float64")
        p = np.linspace(0.0, 1.0, x.size)
        # a repeated quantile (a discrete feature) keeps its largest p: F just after the jump
        last = np.r_[np.flatnonzero(np.diff(x) > 0), x.size - 1]
        return Cdf(x[last], p[last], np.zeros(last.size, dtype=bool), interpolate=True)
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
    return Cdf(x, p, left, interpolate=False)


def ks_statistic(sorted_current: np.ndarray, cdf: Cdf) -> float:
    """sup |F_current - F_baseline|. A step baseline: at and just below each node, which is
    exact (between two nodes the baseline is flat and the current CDF rises). A fine grid:
    the nodes (exact comparisons there) and ~1000 quantiles of the current values that fall
    between nodes (baseline interpolated), so that current mass packed between two nodes is
    seen too. On deciles only the nodes count: a lower bound, never a spurious value."""
    n = sorted_current.size
    at_nodes = np.where(
        cdf.left,
        np.searchsorted(sorted_current, cdf.x, side="left"),
        np.searchsorted(sorted_current, cdf.x, side="right"),
    )
    worst = float(np.max(np.abs(at_nodes / n - cdf.p)))
    if cdf.below is not None:
        just_below = np.searchsorted(sorted_current, cdf.x, side="left") / n
        return max(worst, float(np.max(np.abs(just_below - cdf.below))))
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


# --- distances and chance ----------------------------------------------------------------


def total_variation(reference: Sequence[float], current: Sequence[float]) -> float:
    """Half the summed absolute share differences over the same bins: the share of rows
    that would have to change bin (0 to 1, whatever the row counts)."""
    return 0.5 * float(np.sum(np.abs(np.asarray(current) - np.asarray(reference))))


def cramers_v(reference: list[float], n_ref: int, current: list[float], n_cur: int) -> float | None:
    """Cramér's V of the 2 x k table baseline-vs-window counts over the same bins as PSI; the
    baseline counts are rebuilt from its shares and row count."""
    if not n_ref or not n_cur:
        return None
    table = np.vstack([np.asarray(reference) * n_ref, np.asarray(current) * n_cur])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    value = math.sqrt(stat / table.sum())
    return value if math.isfinite(value) else None


def ks_chance_level(n: int, n_ref: float) -> float | None:
    """The KS statistic two samples of `n` and `n_ref` values from one distribution exceed
    with probability `CHANCE_ALPHA` (asymptotically; ties only lower it)."""
    if n <= 0:
        return None
    return _KS_C * math.sqrt(1.0 / n + (1.0 / n_ref if n_ref > 0 else 0.0))


def distance_chance_level(reference: Sequence[float], n: int, n_ref: float) -> float | None:
    """A bound on the total variation distance a window of `n` rows drawn from the
    `reference` shares (of `n_ref` rows) exceeds with probability at most about
    `CHANCE_ALPHA`: sum |a - e| <= sqrt(sum (a - e)^2 / e), and that sum times the effective
    size 1 / (1/n + 1/n_ref) is a chi-square statistic with k - 1 degrees of freedom."""
    if n <= 0:
        return None
    k = int(np.count_nonzero(np.asarray(reference, dtype="float64") > 0))
    scale = 1.0 / n + (1.0 / n_ref if n_ref > 0 else 0.0)
    return 0.5 * math.sqrt(float(chi2.isf(CHANCE_ALPHA, max(1, k - 1))) * scale)
