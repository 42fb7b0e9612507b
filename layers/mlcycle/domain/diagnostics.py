"""Stage 7, what the evaluation page plots: the winner's curves on the holdout, and which
input features it relies on. Plain JSON values, so the page is drawn from the JSON alone."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from mlcycle.domain.evaluate import larger_is_better, predict, prediction_metrics
from mlcycle.domain.features import model_input
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import Task

CURVE_POINTS = 500  # points kept per curve: enough for a plot, small in JSON
CALIBRATION_BINS = 10
SCATTER_POINTS = 2_000
RESIDUAL_BINS = 30
IMPORTANCE_REPEATS = 5
IMPORTANCE_ROWS = 10_000  # permutation importance scores a sample of this many holdout rows

Json = dict[str, Any]


def classification_curves(
    y_true: Any,
    labels: Any,
    probabilities: np.ndarray,
    schema: ResolvedSchema,
    threshold: float | None,
) -> Json:
    """Confusion matrix (rows true, columns predicted); binary: ROC and precision-recall
    with the operating point, calibration and cumulative gains of the positive class."""
    classes = list(schema.classes or [])
    y = np.asarray(y_true, dtype=object).astype(str)
    predicted = np.asarray(labels, dtype=object).astype(str)
    out: Json = {
        "confusion_matrix": {
            "labels": classes,
            "counts": confusion_matrix(y, predicted, labels=classes).tolist(),
        }
    }
    if schema.task is Task.MULTICLASS:
        precision, recall, f1, support = precision_recall_fscore_support(
            y, predicted, labels=classes, zero_division=0
        )
        out["per_class"] = {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        }
        return out
    positive = schema.positive_class or classes[-1]
    is_positive = y == positive
    p = np.asarray(probabilities, dtype="float64")[:, classes.index(positive)]
    if is_positive.all() or not is_positive.any():
        return out  # no curve is defined on a holdout with one class
    fpr, tpr, _ = roc_curve(is_positive, p)
    precision_c, recall_c, _ = precision_recall_curve(is_positive, p)
    out["roc"] = {
        **_thin({"fpr": fpr, "tpr": tpr}),
        "auc": float(roc_auc_score(is_positive, p)),
    }
    out["pr"] = {
        **_thin({"recall": recall_c[::-1], "precision": precision_c[::-1]}),
        "average_precision": float(average_precision_score(is_positive, p)),
        "prevalence": float(is_positive.mean()),
    }
    if threshold is not None:
        flagged = p >= threshold
        tp = int((flagged & is_positive).sum())
        fp = int((flagged & ~is_positive).sum())
        out["operating_point"] = {
            "threshold": float(threshold),
            "tpr": tp / int(is_positive.sum()),
            "fpr": fp / int((~is_positive).sum()),
            "recall": tp / int(is_positive.sum()),
            "precision": tp / (tp + fp) if tp + fp else 0.0,
        }
    out["calibration"] = _calibration(is_positive, p)
    order = np.argsort(-p, kind="stable")
    found = np.concatenate([[0.0], np.cumsum(is_positive[order]) / is_positive.sum()])
    targeted = np.arange(len(p) + 1) / len(p)
    out["gains"] = _thin({"fraction_targeted": targeted, "fraction_positives": found})
    return out


def _calibration(is_positive: np.ndarray, p: np.ndarray) -> Json:
    """Reliability per quantile bin of the predicted probability (as sklearn's
    `calibration_curve(strategy="quantile")`), with how many rows each bin holds."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, CALIBRATION_BINS + 1)))
    bins = np.clip(np.searchsorted(edges[1:-1], p, side="right"), 0, max(len(edges) - 2, 0))
    size = max(len(edges) - 1, 1)
    counts = np.bincount(bins, minlength=size)
    predicted = np.bincount(bins, weights=p, minlength=size)
    positive = np.bincount(bins, weights=is_positive.astype("float64"), minlength=size)
    used = counts > 0
    return {
        "mean_predicted": [float(v) for v in predicted[used] / counts[used]],
        "fraction_positive": [float(v) for v in positive[used] / counts[used]],
        "counts": [int(c) for c in counts[used]],
    }


def regression_diagnostics(y_true: Any, predicted: Any, *, seed: int) -> Json:
    """Predicted against actual (a seeded sample of rows) and the residuals' histogram."""
    y = np.asarray(y_true, dtype="float64")
    yhat = np.asarray(predicted, dtype="float64")
    rows = np.arange(len(y))
    if len(rows) > SCATTER_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, SCATTER_POINTS, replace=False))
    counts, edges = np.histogram(y - yhat, bins=RESIDUAL_BINS)
    return {
        "actual": [float(v) for v in y[rows]],
        "predicted": [float(v) for v in yhat[rows]],
        "residual_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def importance(
    pipeline: Any,
    holdout_rows: pd.DataFrame,
    schema: ResolvedSchema,
    metric: str,
    *,
    threshold: float | None,
    seed: int,
) -> Json:
    """Permutation importance of every input feature, on the serving pipeline over the raw
    columns (a one-hot group or a date's parts move together): how much the metric drops
    when that feature's values are shuffled among the holdout rows."""
    X = model_input(holdout_rows, schema)[list(schema.features)]
    y = holdout_rows[schema.target]
    rows = min(len(X), IMPORTANCE_ROWS)
    sign = 1.0 if larger_is_better(metric) else -1.0

    def score(model: Any, X_: pd.DataFrame, y_: Any) -> float:
        value = prediction_metrics(predict(model, X_, schema, threshold), y_, schema).get(metric)
        return sign * (value if value is not None else np.nan)

    scorer: Callable[..., float] = score
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = permutation_importance(
            pipeline,
            X,
            y,
            scoring=scorer,
            n_repeats=IMPORTANCE_REPEATS,
            random_state=seed,
            max_samples=rows / len(X),
        )
    features = [
        {
            "name": name,
            "mean": float(result.importances_mean[i]),
            "std": float(result.importances_std[i]),
        }
        for i, name in enumerate(X.columns)
    ]
    features.sort(key=lambda f: -f["mean"])
    return {
        "method": "permutation",
        "metric": metric,
        "repeats": IMPORTANCE_REPEATS,
        "rows": rows,
        "features": features,
    }


def _thin(columns: dict[str, Any]) -> dict[str, list[float]]:
    """At most CURVE_POINTS evenly spaced points of equally long columns, ends kept."""
    n = len(next(iter(columns.values())))
    keep = np.arange(n)
    if n > CURVE_POINTS:
        keep = np.unique(np.linspace(0, n - 1, CURVE_POINTS).round().astype(int))
    return {
        k: [float(v) for v in np.asarray(col, dtype="float64")[keep]] for k, col in columns.items()
    }
