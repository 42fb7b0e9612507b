"""Labeled traffic: what production saw, joined with the labels that arrived later.

Captured requests (one instance each) joined by request id with their late labels are rows
of the dataset like an upload's: the instance's fields plus the target. A retraining run
learns from the older part of that traffic and holds the most recent part back, so that the
challenger and the production model are both judged on data neither trained on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlcycle.schema import ResolvedSchema

Json = dict[str, Any]

TIME_COLUMN = "__captured_at__"
REQUEST_COLUMN = "__request_id__"


@dataclass
class LabeledTraffic:
    """The joined rows (the instance's fields, the target, time and request id), oldest
    first, and what was left out and why."""

    rows: pd.DataFrame
    requests: int  # served requests in the window
    unlabeled: int  # served requests with no label yet
    multi_instance: int  # requests of several instances: one label cannot say which

    def summary(self) -> dict[str, Any]:
        times = self.rows[TIME_COLUMN]
        return {
            "rows": len(self.rows),
            "requests": self.requests,
            "unlabeled": self.unlabeled,
            "multi_instance_requests": self.multi_instance,
            "first_at": str(times.min()) if len(times) else None,
            "last_at": str(times.max()) if len(times) else None,
        }


def join_labels(
    records: Iterable[dict[str, Any]], labels: pd.DataFrame, target: str
) -> LabeledTraffic:
    """Served single-instance requests with a label, as rows with the `target` column."""
    served = [r for r in records if r.get("status", "ok") == "ok" and r.get("instance")]
    by_request: dict[str, list[dict[str, Any]]] = {}
    for record in served:
        by_request.setdefault(str(record["request_id"]), []).append(record)
    single = {rid: rs[0] for rid, rs in by_request.items() if len(rs) == 1}
    indexed = labels.assign(request_id=labels["request_id"].astype(str)).set_index("request_id")
    truth = indexed[~indexed.index.duplicated(keep="last")]["label"]
    labeled = [rid for rid in single if rid in truth.index and pd.notna(truth[rid])]
    rows = pd.DataFrame(
        [
            {
                **{k: v for k, v in single[rid]["instance"].items() if k != target},
                target: truth[rid],
                TIME_COLUMN: single[rid]["time"],
                REQUEST_COLUMN: rid,
            }
            for rid in labeled
        ],
        columns=None if labeled else [target, TIME_COLUMN, REQUEST_COLUMN],
    )
    if len(rows):
        rows = _uniform(rows)
        rows[TIME_COLUMN] = pd.to_datetime(rows[TIME_COLUMN], utc=True, format="ISO8601")
        rows = rows.sort_values([TIME_COLUMN, REQUEST_COLUMN], kind="stable", ignore_index=True)
    return LabeledTraffic(
        rows=rows,
        requests=len(by_request),
        unlabeled=sum(1 for rid in single if rid not in truth.index),
        multi_instance=len(by_request) - len(single),
    )


def _uniform(rows: pd.DataFrame) -> pd.DataFrame:
    """Columns of one type each, for Parquet: a column whose values mix types (a number sent
    as text by one client) becomes text; processing types it like an upload's."""
    for name in rows.columns:
        kinds = {type(v) for v in rows[name] if v is not None and not pd.isna(v)}
        if len(kinds) > 1 and not kinds <= {int, float}:
            rows[name] = rows[name].map(lambda v: None if v is None or pd.isna(v) else str(v))
    return rows


def split_recent(rows: pd.DataFrame, recent_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(older rows to learn from, the most recent `recent_fraction` held back), by time."""
    held = max(1, round(len(rows) * recent_fraction)) if len(rows) > 1 else 0
    cut = len(rows) - held
    return rows.iloc[:cut].reset_index(drop=True), rows.iloc[cut:].reset_index(drop=True)


def training_rows(rows: pd.DataFrame, schema: ResolvedSchema) -> tuple[pd.DataFrame, Json]:
    """Labeled traffic as rows the feature stage can learn from: the schema's features (a
    field the client did not send is missing) and a usable target; what was dropped, why."""
    target = rows[schema.target] if schema.target in rows else pd.Series(dtype=object)
    out = pd.DataFrame({name: rows.get(name) for name in schema.features}, index=rows.index)
    if schema.is_classification:
        labels = target.map(lambda v: None if v is None or pd.isna(v) else str(v))
        usable = labels.isin(schema.classes or [])
        out[schema.target] = labels
    else:
        values = pd.to_numeric(target, errors="coerce")
        usable = values.notna()
        out[schema.target] = values
    kept = out[usable.to_numpy()].reset_index(drop=True)
    summary = {
        "rows": len(kept),
        "unusable_labels": int((~usable).sum()),
        "fields_never_sent": sorted(n for n in schema.features if n not in rows.columns),
    }
    return kept, summary
