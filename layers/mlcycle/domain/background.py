"""The background summary of the training rows that explanations are measured against.

Stored with the model version as JSON (`mlcycle.serving.explain.Background`):

    {"rows": [{feature: value, ...}, ...], "weights": [w, ...],
     "method": "kmeans-medoids" | "all", "source_rows": n}

Values are in the request's JSON form (numbers, ISO-8601 dates, category strings, null), so
the endpoint turns them into graph inputs exactly as it does a request. The rows are real
training rows: k-means on a standardized encoding of the features (numbers and dates scaled,
a missing indicator each, categories one-hot), then per cluster the member nearest its
centre, weighted by the cluster's share of the rows. A real row keeps every value valid and
mixed types intact (a centroid would have a fractional category). Fewer training rows than
`rows`: all of them, equal weights. Identical rows are merged, their weights added.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from mlcycle.spec import ColumnType

MAX_CLUSTER_ROWS = 20_000  # k-means runs on a seeded sample of this many rows at most
MAX_ONE_HOT = 20  # categories one-hot encoded per column for the distance (most frequent)


def background_summary(
    frame: pd.DataFrame, features: Mapping[str, ColumnType], *, rows: int, seed: int
) -> dict[str, Any]:
    """At most `rows` weighted training rows summarizing `frame` (see the module docstring)."""
    if rows < 1:
        raise ValueError(f"a background needs at least one row, got {rows}")
    if frame.empty:
        raise ValueError("a background needs at least one training row")
    names = list(features)
    data = frame[names].reset_index(drop=True)
    if len(data) <= rows:
        return _document(data, features, np.arange(len(data)), np.ones(len(data)), "all", len(data))
    rng = np.random.default_rng(seed)
    sample = (
        np.sort(rng.choice(len(data), MAX_CLUSTER_ROWS, replace=False))
        if len(data) > MAX_CLUSTER_ROWS
        else np.arange(len(data))
    )
    matrix = _encode(data.iloc[sample], features)
    k = min(rows, len(np.unique(matrix, axis=0)))
    kmeans = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(matrix)
    chosen, weights = [], []
    for cluster in range(k):
        members = np.flatnonzero(kmeans.labels_ == cluster)
        if not len(members):
            continue
        distance = ((matrix[members] - kmeans.cluster_centers_[cluster]) ** 2).sum(axis=1)
        chosen.append(sample[members[int(np.argmin(distance))]])
        weights.append(float(len(members)))
    return _document(
        data, features, np.asarray(chosen), np.asarray(weights), "kmeans-medoids", len(data)
    )


def _encode(data: pd.DataFrame, features: Mapping[str, ColumnType]) -> np.ndarray:
    """Rows as float vectors where a unit is a standard deviation, a missing value or a
    different category."""
    parts: list[np.ndarray] = []
    for name, kind in features.items():
        s = data[name]
        if kind is ColumnType.CATEGORICAL:
            present = s.notna().to_numpy()
            values = s.astype(str).to_numpy(dtype=object)
            values[~present] = None
            top = pd.Series(values[present]).value_counts().index[:MAX_ONE_HOT]
            for category in top:
                parts.append((values == category).astype(float) / math.sqrt(2.0))
            parts.append(pd.isna(values).astype(float))
            continue
        x = _numbers(s, kind)
        missing = np.isnan(x)
        if missing.all():
            continue
        centre, scale = np.nanmean(x), np.nanstd(x)
        parts.append(np.where(missing, 0.0, (x - centre) / (scale if scale > 0 else 1.0)))
        if missing.any():
            parts.append(missing.astype(float))
    if not parts:
        return np.zeros((len(data), 1))
    return np.column_stack(parts)


def _numbers(s: pd.Series, kind: ColumnType) -> np.ndarray:
    if kind is ColumnType.DATETIME:
        dt = pd.to_datetime(s, errors="coerce")
        if isinstance(dt.dtype, pd.DatetimeTZDtype):
            dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
        return ((dt - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(
            dtype="float64", na_value=np.nan
        )
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _document(
    data: pd.DataFrame,
    features: Mapping[str, ColumnType],
    chosen: np.ndarray,
    weights: np.ndarray,
    method: str,
    source_rows: int,
) -> dict[str, Any]:
    merged: dict[str, int] = {}
    out_rows: list[dict[str, Any]] = []
    out_weights: list[float] = []
    for position, weight in zip(chosen.tolist(), weights.tolist(), strict=True):
        row = {
            name: _json_value(data[name].iloc[position], kind) for name, kind in features.items()
        }
        key = repr(sorted(row.items()))
        if key in merged:
            out_weights[merged[key]] += weight
            continue
        merged[key] = len(out_rows)
        out_rows.append(row)
        out_weights.append(weight)
    total = sum(out_weights)
    return {
        "rows": out_rows,
        "weights": [w / total for w in out_weights],
        "method": method,
        "source_rows": source_rows,
    }


def request_rows(frame: pd.DataFrame, features: Mapping[str, ColumnType]) -> list[dict[str, Any]]:
    """Rows of `frame` as the endpoint receives instances: one JSON-able dict per row."""
    columns = {name: frame[name].tolist() for name in features}
    return [
        {name: _json_value(columns[name][i], kind) for name, kind in features.items()}
        for i in range(len(frame))
    ]


def _json_value(value: Any, kind: ColumnType) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if kind is ColumnType.CATEGORICAL:
        return str(value)
    if kind is ColumnType.DATETIME:
        moment = pd.Timestamp(value)
        if moment.tzinfo is not None:
            moment = moment.tz_convert("UTC").tz_localize(None)
        moment = moment.round("us")
        if moment == moment.normalize():
            return moment.date().isoformat()
        return moment.to_pydatetime().isoformat()
    number = float(value)
    return number if math.isfinite(number) else None
