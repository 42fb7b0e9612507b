"""The training row budget, and a seeded stratified sample of the curated rows past it.

Feature engineering holds its rows in memory several times over (the split, the fitted
transformer's matrices, the Parquet buffers), so past a budget derived from the function's
memory it trains on a sample. Quotas are apportioned per part and per class from the counts
each part's processing recorded, so the sample is drawn one part at a time: memory holds one
part and the sample, never the whole dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Measured (docs/limits.md, bench/scale.py): feature engineering peaks at ~1.1 GB per million
# rows of the 13-column sample on top of ~400 MB of imports; wider tables cost in proportion.
MB_PER_MILLION_ROWS = 1_100
REFERENCE_COLUMNS = 13
IMPORTS_MB = 400
HEADROOM = 0.75  # of what is left: the estimate is linear, real peaks are not
ALL_ROWS = ""  # the one stratum of a regression


def row_budget(memory_mb: int, columns: int) -> int:
    """How many curated rows feature engineering can hold in `memory_mb` of function memory."""
    usable = max(memory_mb - IMPORTS_MB, 0) * HEADROOM
    per_million = MB_PER_MILLION_ROWS * max(columns, 1) / REFERENCE_COLUMNS
    return max(int(usable / per_million * 1_000_000), 1_000)


@dataclass(frozen=True)
class SamplePlan:
    """How many rows of each stratum (class) to keep from each part."""

    quotas: list[dict[str, int]]  # per part: stratum -> rows kept
    available: int
    kept: int
    max_rows: int
    stratified: bool

    @property
    def sampled(self) -> bool:
        return self.kept < self.available

    def describe(self, seed: int, target: str) -> dict[str, Any]:
        """What the report and the model card say about the rows the model learned from."""
        return {
            "sampled": self.sampled,
            "rows_available": self.available,
            "rows_used": self.kept,
            "max_rows": self.max_rows,
            "seed": seed,
            "stratified_by": target if self.stratified else None,
            "parts": len(self.quotas),
        }


def plan_sample(counts: list[dict[str, int]], max_rows: int, *, stratified: bool) -> SamplePlan:
    """Quotas for a sample of at most `max_rows` rows keeping each stratum's share.

    `counts` holds per part the rows of each stratum (a classification's labels, or
    `ALL_ROWS`). Largest-remainder rounding makes the quotas sum to `max_rows`, plus one row
    for a stratum that would round to none: a rare class is never sampled away.
    """
    available = sum(sum(part.values()) for part in counts)
    if available <= max_rows:
        return SamplePlan(
            [dict(part) for part in counts], available, available, max_rows, stratified
        )
    strata = sorted({s for part in counts for s in part})
    table = np.array([[part.get(s, 0) for s in strata] for part in counts], dtype=np.int64)
    per_stratum = _apportion(table.sum(axis=0), max_rows)
    per_stratum = np.maximum(per_stratum, (table.sum(axis=0) > 0).astype(np.int64))
    quotas = np.zeros_like(table)
    for j, quota in enumerate(per_stratum):
        quotas[:, j] = _apportion(table[:, j], int(quota))
    return SamplePlan(
        [
            {s: int(q) for s, q, n in zip(strata, row, held, strict=True) if n}
            for row, held in zip(quotas, table, strict=True)
        ],
        available,
        int(quotas.sum()),
        max_rows,
        stratified,
    )


def strata(frame: pd.DataFrame, target: str, *, stratified: bool) -> dict[str, int]:
    """Rows per stratum of one part (the counts `plan_sample` takes)."""
    if not stratified:
        return {ALL_ROWS: len(frame)}
    counts = frame[target].astype("string").value_counts(dropna=True)
    return {str(k): int(v) for k, v in counts.items()}


def take(
    frame: pd.DataFrame,
    target: str,
    quota: dict[str, int],
    *,
    seed: int,
    part: int,
    stratified: bool,
) -> pd.DataFrame:
    """The part's rows of its quota, drawn without replacement, in their original order."""
    if sum(quota.values()) >= len(frame):
        return frame
    rng = np.random.default_rng([seed, part])  # one stream per part: parts draw independently
    labels = (
        frame[target].astype("string").fillna("").to_numpy(dtype=object)
        if stratified
        else np.full(len(frame), ALL_ROWS, dtype=object)
    )
    chosen = [
        rng.choice(np.flatnonzero(labels == stratum), size=n, replace=False)
        for stratum, n in sorted(quota.items())
        if n
    ]
    positions = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
    return frame.iloc[positions].reset_index(drop=True)


def _apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to `weights` summing to `total` (largest remainder), each at
    most its weight."""
    weights = np.asarray(weights, dtype=np.int64)
    whole = int(weights.sum())
    if whole == 0 or total <= 0:
        return np.zeros_like(weights)
    total = min(total, whole)
    exact = weights * total / whole
    floor = np.floor(exact).astype(np.int64)
    short = total - int(floor.sum())
    order = np.argsort(-(exact - floor), kind="stable")
    floor[order[:short]] += 1
    return np.minimum(floor, weights)
