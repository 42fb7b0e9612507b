"""Performance while labels are late: confidence-based performance estimation (CBPE, as
NannyML does it) from the model's own probabilities, calibrated on the holdout.

At evaluation, `calibration_reference` fits a calibrator per scored class on the holdout
(isotonic regression, kept only where it lowers the cross-validated expected calibration
error, which is how NannyML decides) and stores it compactly, as the isotonic thresholds, in
the monitor baseline. On a live window every prediction adds its calibrated probability to the
expected confusion matrix at the model's own decision: a row decided positive with calibrated
probability c adds c to TP and 1 - c to FP, one decided negative adds c to FN and 1 - c to TN
(per class, one-vs-rest, for multiclass). Accuracy, precision, recall, F1 and balanced
accuracy follow from the expected matrix; ROC AUC and average precision from the expected
curve (each cut of the raw scores' order adds its rows' calibrated probabilities to TP and the
rest to FP), as NannyML's `estimate_roc_auc`; per-row losses (Brier, log loss) are their
expectations. The interval is the spread of the realized metric over labels drawn from the
calibrated probabilities (a parametric bootstrap): how far the realized metric may land from
the estimate by the labels' chance alone, if the assumptions hold.

It assumes no concept drift (P(y | x) as on the holdout), calibrated scores, no shift into
inputs the holdout did not cover, and enough rows. Regression is not estimated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.schema import ResolvedSchema
from mlcycle.spec import Task

Json = dict[str, Any]
DRAWS = 200  # label draws from the calibrated probabilities, for the interval
LEVEL = 0.95
MIN_LABELS = 30  # as the live metric: fewer labelled window rows give no realized comparison
CHECK_FOLDS = 3  # stratified folds of the holdout on which calibration must lower the ECE
ECE_BINS = 10
MAX_DRAWN = 2_000_000  # label values drawn at once (draws x rows x classes): bounds memory
EPS = float(np.finfo("float64").eps)  # log loss clips as scikit-learn does

# What a window's probabilities can estimate: confusion-matrix metrics, the ranking metrics
# through the expected curve, the losses through their expectation.
ESTIMABLE: dict[Task, tuple[str, ...]] = {
    Task.BINARY: (
        "accuracy",
        "balanced_accuracy",
        "f1",
        "precision",
        "recall",
        "roc_auc",
        "pr_auc",
        "brier",
        "log_loss",
    ),
    Task.MULTICLASS: ("accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss"),
}
NOT_REGRESSION = (
    "regression is not estimated: a point prediction carries no probability to take an "
    "expectation over (NannyML's direct loss estimation would need a second model trained "
    "on the holdout's errors)"
)


def estimable(task: Task | str, metric: str) -> bool:
    return metric in ESTIMABLE.get(Task(task), ())


def assumptions(min_rows: int) -> list[str]:
    return [
        "no concept drift: P(y | x) is what it was on the holdout; the inputs may move "
        "(covariate shift), the relation between inputs and label may not",
        "calibrated scores: the model's probabilities, through the calibrator fitted on the "
        "holdout, are the chance of each class",
        "no shift into inputs the holdout did not cover, where the model's probabilities are "
        "extrapolated",
        f"enough rows: at least {min_rows}; the interval covers the labels' chance given "
        "calibrated probabilities, not calibration error or concept drift",
    ]


# --- at evaluation: the calibrator ---------------------------------------------------------


def calibration_reference(
    probabilities: Any, y: Any, schema: ResolvedSchema, threshold: float | None, *, seed: int = 0
) -> Json | None:
    """What the monitor estimates with, stored in the monitor baseline: per scored class (the
    positive class of a binary model, every class one-vs-rest of a multiclass one) a calibrator
    of its probability fitted on the holdout. None for regression."""
    if not schema.is_classification or probabilities is None:
        return None
    classes = list(schema.classes or [])
    proba = np.asarray(probabilities, dtype="float64")
    truth = np.asarray(y, dtype=object).astype(str)
    positive = schema.positive_class or classes[-1]
    scored = [positive] if schema.task is Task.BINARY else classes
    return {
        "method": "cbpe",
        "task": schema.task.value,
        "classes": classes,
        "positive_class": positive if schema.task is Task.BINARY else None,
        "threshold": threshold,
        "rows": len(truth),
        "calibrators": {
            c: _calibrator(proba[:, classes.index(c)], truth == c, seed) for c in scored
        },
    }


def _calibrator(scores: np.ndarray, is_class: np.ndarray, seed: int) -> Json:
    """Isotonic regression of the class on its score where it helps: its mean expected
    calibration error over stratified folds (fitted on the others) must be below the raw
    scores'; else the scores are used as they are."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.model_selection import StratifiedKFold

    smaller = int(min(is_class.sum(), (~is_class).sum()))
    if smaller < CHECK_FOLDS:
        return {"kind": "identity", "reason": f"{smaller} rows of one side: too few to check"}

    def isotonic() -> IsotonicRegression:
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")

    raw, fitted = [], []
    folds = StratifiedKFold(CHECK_FOLDS, shuffle=True, random_state=seed)
    for train, test in folds.split(scores.reshape(-1, 1), is_class):
        model = isotonic().fit(scores[train], is_class[train])
        raw.append(expected_calibration_error(scores[test], is_class[test]))
        fitted.append(expected_calibration_error(model.predict(scores[test]), is_class[test]))
    checked = {"ece_raw": float(np.mean(raw)), "ece_calibrated": float(np.mean(fitted))}
    if checked["ece_calibrated"] >= checked["ece_raw"]:
        return {"kind": "identity", **checked}
    model = isotonic().fit(scores, is_class)
    return {
        "kind": "isotonic",
        "x": [float(v) for v in model.X_thresholds_],
        "y": [float(v) for v in model.y_thresholds_],
        **checked,
    }


def expected_calibration_error(scores: Any, is_class: Any, bins: int = ECE_BINS) -> float:
    """The rows' weighted mean gap between score and frequency over equal-width score bins."""
    s, hit = np.asarray(scores, dtype="float64"), np.asarray(is_class, dtype="float64")
    which = np.clip((s * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, s, bins) - np.bincount(which, hit, bins))
    return float(gap.sum() / max(count.sum(), 1))


def calibrated(probabilities: Any, reference: Json) -> np.ndarray:
    """The window's probabilities (one column per class, in the reference's order) through
    the stored calibrators; a multiclass row is renormalized to sum to one."""
    classes = list(reference["classes"])
    raw = np.asarray(probabilities, dtype="float64")
    out = raw.copy()
    for name, calibrator in reference["calibrators"].items():
        j = classes.index(name)
        if calibrator["kind"] == "isotonic":
            out[:, j] = np.interp(raw[:, j], calibrator["x"], calibrator["y"])
    out = np.clip(out, 0.0, 1.0)
    if reference["task"] == Task.BINARY.value:
        positive = classes.index(reference["positive_class"])
        out[:, 1 - positive] = 1.0 - out[:, positive]
        return out
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), raw)


# --- on a window: the estimate -------------------------------------------------------------


def estimate(
    probabilities: Any,
    decided: Any,
    reference: Json,
    metric: str,
    *,
    min_rows: int,
    draws: int = DRAWS,
    level: float = LEVEL,
    seed: int = 0,
) -> Json:
    """The expected `metric` of a window of raw probabilities (one column per class, in the
    reference's class order) with the labels the model decided, its interval and the other
    estimable metrics; `value` None with a `reason` below `min_rows` rows."""
    task = Task(reference["task"])
    classes = list(reference["classes"])
    raw = np.asarray(probabilities, dtype="float64").reshape(-1, len(classes))
    decisions = _indices(decided, classes)
    out: Json = {
        "metric": metric,
        "value": None,
        "rows": len(raw),
        "assumptions": assumptions(min_rows),
        "reason": None,
    }
    if not estimable(task, metric):
        out["reason"] = f"{metric} cannot be estimated from probabilities for a {task.value} task"
        return out
    if len(raw) < min_rows:
        out["reason"] = f"only {len(raw)} rows with probabilities; at least {min_rows} are needed"
        return out
    c = calibrated(raw, reference)
    positive = classes.index(reference["positive_class"]) if task is Task.BINARY else None
    names = ESTIMABLE[task]
    expected = {
        k: float(v[0]) for k, v in _metrics(names, c[None], raw, decisions, positive).items()
    }
    if not np.isfinite(expected[metric]):  # e.g. ROC AUC with no expected positive
        out["reason"] = f"{metric} is undefined on this window's calibrated probabilities"
        return out
    spread = _spread(metric, c, raw, decisions, positive, draws, seed)
    spread = spread[np.isfinite(spread)]
    interval = None
    if len(spread) > 1:
        low, high = np.percentile(spread, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
        interval = [float(low), float(high)]
    out.update(
        value=expected[metric],
        interval=interval,
        level=level,
        standard_error=float(spread.std(ddof=1)) if len(spread) > 1 else None,
        draws=len(spread),
        metrics={k: v for k, v in expected.items() if np.isfinite(v)},
        calibration={name: cal["kind"] for name, cal in reference["calibrators"].items()},
    )
    if positive is not None:
        flagged = decisions == positive
        tp, fn = float(c[flagged, positive].sum()), float(c[~flagged, positive].sum())
        out["confusion"] = {
            "tp": tp,
            "fp": float(flagged.sum()) - tp,
            "fn": fn,
            "tn": float((~flagged).sum()) - fn,
            "threshold": reference.get("threshold"),
        }
    return out


def realized(
    metric: str, labels: Any, probabilities: Any, decided: Any, reference: Json
) -> float | None:
    """The metric the labels give the same rows (what `estimate` is judged against)."""
    classes = list(reference["classes"])
    truth = _indices(labels, classes)
    onehot = (truth[:, None] == np.arange(len(classes))).astype("float64")
    raw = np.asarray(probabilities, dtype="float64").reshape(-1, len(classes))
    positive = (
        classes.index(reference["positive_class"])
        if reference["task"] == Task.BINARY.value
        else None
    )
    value = _metrics([metric], onehot[None], raw, _indices(decided, classes), positive)[metric][0]
    return float(value) if np.isfinite(value) else None


def from_records(
    records: list[dict[str, Any]] | None,
    truth: pd.DataFrame | None,
    reference: Json | None,
    task: Task | str,
    metric: str,
    *,
    min_rows: int,
    seed: int = 0,
) -> Json:
    """The monitor's estimate over captured records (`prediction.probabilities` per class and
    `prediction.label`), and, once `truth` (request_id, label) covers at least `MIN_LABELS`
    of them, the estimate and the realized metric on those labelled rows side by side."""
    none: Json = {"metric": metric, "value": None, "assumptions": assumptions(min_rows)}
    if Task(task) is Task.REGRESSION:
        return {**none, "reason": NOT_REGRESSION}
    if reference is None:
        return {**none, "reason": "this version's monitor baseline has no calibration"}
    if records is None:
        return {**none, "reason": "estimated on captured traffic only: a file has no outputs"}
    classes = list(reference["classes"])
    rows = []
    for record in records:
        prediction = record.get("prediction") or {}
        p = prediction.get("probabilities") or {}
        rows.append([str(record.get("request_id")), prediction.get("label"), *map(p.get, classes)])
    frame = pd.DataFrame(rows, columns=["request_id", "predicted", *classes])
    proba = frame[classes].apply(pd.to_numeric, errors="coerce")
    keep = proba.notna().all(axis=1) & frame["predicted"].astype(str).isin(classes)
    frame, proba = frame[keep], proba[keep].to_numpy(dtype="float64")
    out = estimate(proba, frame["predicted"], reference, metric, min_rows=min_rows, seed=seed)
    if out["value"] is None or truth is None or not len(truth):
        return out
    label = frame[["request_id"]].merge(truth, on="request_id", how="left")["label"]
    known = (label.notna() & label.astype(str).isin(classes)).to_numpy()
    if known.sum() >= MIN_LABELS:
        labelled = estimate(
            proba[known], frame["predicted"][known], reference, metric, min_rows=1, draws=0
        )
        real = realized(
            metric, label[known].astype(str), proba[known], frame["predicted"][known], reference
        )
        out["labelled"] = {
            "rows": int(known.sum()),
            "estimated": labelled["value"],
            "realized": real,
            "error": None
            if real is None or labelled["value"] is None
            else float(labelled["value"] - real),
        }
    return out


# --- the metrics of label mass: one-hot labels, or calibrated probabilities -----------------


def _indices(labels: Any, classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index.get(str(v), -1) for v in np.asarray(labels, dtype=object)])


def _spread(
    metric: str,
    c: np.ndarray,
    raw: np.ndarray,
    decisions: np.ndarray,
    positive: int | None,
    draws: int,
    seed: int,
) -> np.ndarray:
    """The realized metric over `draws` label sets drawn from the calibrated probabilities."""
    if draws <= 0:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    n, k = c.shape
    edges = np.cumsum(c, axis=1)[:, :-1]
    chunk = max(1, MAX_DRAWN // max(n * k, 1))
    values = []
    for start in range(0, draws, chunk):
        u = rng.random((min(chunk, draws - start), n, 1))
        drawn = (u > edges[None]).sum(axis=2)
        onehot = (drawn[..., None] == np.arange(k)).astype("float64")
        values.append(_metrics([metric], onehot, raw, decisions, positive)[metric])
    return np.concatenate(values)


def _metrics(
    names: Sequence[str],
    mass: np.ndarray,
    raw: np.ndarray,
    decisions: np.ndarray,
    positive: int | None,
) -> dict[str, np.ndarray]:
    """`mass` (sets x rows x classes): each row's label as one-hot, or as calibrated
    probabilities (its expectation). Confusion-matrix metrics from the (expected) matrix at
    `decisions`, scikit-learn's conventions (zero division gives 0; balanced accuracy and
    macro F1 over the classes present); one value per set."""
    n, k = raw.shape
    decided = (decisions[:, None] == np.arange(k)).astype("float64")
    tp = np.einsum("snk,nk->sk", mass, decided)
    actual = mass.sum(axis=1)
    flagged = decided.sum(axis=0)[None, :]
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(actual > 0, tp / actual, np.nan)
        f1 = np.where(actual + flagged > 0, 2 * tp / (actual + flagged), np.nan)
        precision = np.where(flagged > 0, tp / flagged, 0.0)
        for name in names:
            if name == "accuracy":
                out[name] = tp.sum(axis=1) / n
            elif name == "balanced_accuracy":
                out[name] = _nanmean(recall)
            elif name == "f1":
                out[name] = np.nan_to_num(f1[:, positive]) if positive is not None else _nanmean(f1)
            elif name == "precision" and positive is not None:
                out[name] = precision[:, positive]
            elif name == "recall" and positive is not None:
                out[name] = np.nan_to_num(recall[:, positive])
            elif name == "roc_auc":
                scored = [positive] if positive is not None else range(k)
                aucs = np.stack([_ranked(mass[:, :, j], raw[:, j])[0] for j in scored], axis=1)
                out[name] = _nanmean(aucs)
            elif name == "pr_auc" and positive is not None:
                out[name] = _ranked(mass[:, :, positive], raw[:, positive])[1]
            elif name == "brier" and positive is not None:
                s = raw[:, positive]
                out[name] = (mass[:, :, positive] @ (1 - 2 * s) + (s**2).sum()) / n
            elif name == "log_loss":
                logs = np.log(np.clip(raw, EPS, 1 - EPS))
                out[name] = -np.einsum("snk,nk->s", mass, logs) / n
            else:
                raise ValueError(f"{name} is not estimable here")
    return out


def _ranked(mass: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision per set of label mass (sets x rows) for the ranking by
    `scores`: the (expected) TP and FP at every distinct score, highest first, ties cut
    together as scikit-learn does; the area under the ROC by trapezoids, AP as the step sum
    over recall. NaN where the set has no positive or no negative mass."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
    tp = np.cumsum(mass[:, order], axis=1)[:, ends]
    fp = (ends + 1)[None, :] - tp
    positives, negatives = tp[:, -1:], fp[:, -1:]
    zero = np.zeros((len(tp), 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.hstack([zero, tp / positives])
        fpr = np.hstack([zero, fp / negatives])
        auc = np.trapezoid(tpr, fpr, axis=1)
        ap = (np.diff(tpr, axis=1) * (tp / (ends + 1)[None, :])).sum(axis=1)
    undefined = (positives[:, 0] <= 0) | (negatives[:, 0] <= 0)
    auc[undefined] = np.nan
    ap[positives[:, 0] <= 0] = np.nan
    return auc, ap


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Row means over the defined entries (NaN where none is)."""
    defined = np.isfinite(values)
    total = np.where(defined, values, 0.0).sum(axis=1)
    count = defined.sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
