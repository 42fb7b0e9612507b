"""Stage 7, what the served model relies on across the holdout: the endpoint's own explainer
(`mlcycle.serving.explain`) over a seeded sample of holdout rows, summarized per feature.

The same Shapley values a client gets from `:explain`, so the report, the registry's top
features and the monitor's attribution baseline agree with the live answers by construction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlcycle.domain.background import request_rows
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.explain import Explainer
from mlcycle.serving.manifest import Manifest
from mlcycle.serving.model import load_model
from mlcycle.spec import ColumnType

ROWS = 200  # holdout rows explained
PLOTTED_FEATURES = 10  # features in the summary plot
TOP_FEATURES = 5  # kept in the registry entry


def global_explanations(
    onnx_bytes: bytes,
    manifest: Manifest,
    background: dict[str, Any],
    holdout_rows: pd.DataFrame,
    schema: ResolvedSchema,
    *,
    seed: int,
    rows: int = ROWS,
) -> dict[str, Any]:
    """Mean absolute contribution and share of attribution per feature over a sample of the
    holdout, per class of the explained label for classification, and for the most relied-on
    features each row's contribution against its value (the summary plot)."""
    model = load_model(manifest, onnx_bytes, threads=1)
    sample = holdout_rows.sample(min(rows, len(holdout_rows)), random_state=seed)
    instances = request_rows(sample, schema.features)
    batch = model.builder.build(instances)
    predictions = model.run(batch)
    explanations = Explainer.for_model(model, background).explain(batch.feeds, predictions)
    names = [f.name for f in manifest.features]
    matrix = np.array([[e.contributions[n] for n in names] for e in explanations])
    toward = matrix
    if manifest.task == "binary" and manifest.positive_class is not None:
        # P(negative) = 1 - P(positive): a "no" row's contributions are the negated ones
        # toward "yes", so the plot reads one way whatever label each row got
        sign = np.array([1.0 if e.label == manifest.positive_class else -1.0 for e in explanations])
        toward = matrix * sign[:, None]
    mean_abs = np.abs(matrix).mean(axis=0)
    total = float(mean_abs.sum())
    order = np.argsort(-mean_abs, kind="stable")
    features = [
        {
            "name": names[i],
            "mean_abs": float(mean_abs[i]),
            "share": float(mean_abs[i] / total) if total else 0.0,
        }
        for i in order
    ]
    out: dict[str, Any] = {
        "method": sorted({e.method for e in explanations}),
        "rows": len(explanations),
        "background_rows": len(background["rows"]),
        "explained": "the probability of the returned label"
        if schema.is_classification
        else "the prediction",
        "points_toward": manifest.positive_class if manifest.task == "binary" else None,
        "features": features,
        "points": {
            names[i]: _points(sample[names[i]], toward[:, i], schema.features[names[i]])
            for i in order[:PLOTTED_FEATURES]
        },
    }
    if schema.is_classification:
        labels = np.array([e.label for e in explanations], dtype=object)
        out["per_class"] = {
            str(label): {
                "rows": int((labels == label).sum()),
                "features": {
                    names[i]: float(np.abs(matrix[labels == label, i]).mean()) for i in order
                },
            }
            for label in sorted(set(labels.tolist()))
        }
    return out


def attribution_baseline(explained: dict[str, Any]) -> dict[str, Any]:
    """What the monitor compares live attribution with: each feature's share."""
    return {
        "rows": explained["rows"],
        "shares": {f["name"]: f["share"] for f in explained["features"]},
    }


def top_features(explained: dict[str, Any], n: int = TOP_FEATURES) -> list[dict[str, Any]]:
    return [{"name": f["name"], "share": round(f["share"], 4)} for f in explained["features"][:n]]


def _points(values: pd.Series, contributions: np.ndarray, kind: ColumnType) -> dict[str, Any]:
    """Each row's contribution and its value: a number for numeric and datetime features
    (dates as days since 1970), the category's text otherwise (None when missing)."""
    if kind is ColumnType.CATEGORICAL:
        shown: list[Any] = [None if pd.isna(v) else str(v) for v in values]
    elif kind is ColumnType.DATETIME:
        days = (pd.to_datetime(values) - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
        shown = [None if pd.isna(v) else float(v) for v in days]
    else:
        numbers = pd.to_numeric(values, errors="coerce")
        shown = [None if pd.isna(v) else float(v) for v in numbers]
    return {
        "kind": kind.value,
        "values": shown,
        "contributions": [float(c) for c in contributions],
    }
