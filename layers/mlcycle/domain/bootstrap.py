"""Seeded bootstrap intervals for holdout metrics, and a paired bootstrap of two models.

A replicate is a resample of the holdout rows with replacement, held as a row-count vector
(multinomial(n, 1/n)): its metric equals the scikit-learn metric with `sample_weight=counts`.
Metrics are computed for a chunk of replicates at once from matrix products and cumulative
sums instead of one scikit-learn call per replicate (about 1 ms of overhead each).

The replicates are a function of (n, seed) only: replicate r is the r-th draw of
`np.random.default_rng(seed)` whatever the metric, the model or the chunk size, so intervals
of candidates are comparable and `paired_comparison` is truly paired.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import sparse

from mlcycle.errors import GateError
from mlcycle.spec import METRICS, Task

TASK_METRICS: dict[Task, tuple[str, ...]] = {
    task: tuple(name for name, (tasks, _) in METRICS.items() if task in tasks)
    for task in (Task.BINARY, Task.MULTICLASS, Task.REGRESSION)
}
SMALLER_IS_BETTER = frozenset(name for name, (_, larger) in METRICS.items() if not larger)

# Rows x replicates per chunk: bounds each (chunk, n) float64 work array to 8 MB, so the
# peak stays at a few tens of MB whatever the holdout size.
CHUNK_CELLS = 1 << 20


@dataclass(frozen=True)
class Interval:
    value: float  # the metric on the full holdout, not the bootstrap mean
    low: float  # percentile interval of the replicates at `level`
    high: float

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Comparison:
    """Improvement of a challenger over a reference (positive = the challenger is better).

    `replicates` counts the replicates where the metric was defined for both models: the
    denominator of `probability` and the sample of the interval.
    """

    metric: str
    challenger: float
    reference: float
    difference: float
    low: float
    high: float
    probability: float
    min_improvement: float
    level: float
    replicates: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scores:
    """What one model said on the holdout."""

    labels: np.ndarray | None  # classification: predicted labels, at the threshold for binary
    probabilities: np.ndarray | None  # classification: [n, k] in `classes` order
    values: np.ndarray | None = None  # regression: predictions


def replicate_counts(n: int, replicates: int, seed: int) -> Iterator[np.ndarray]:
    """Row counts of `replicates` resamples of n rows, as float64 [chunk, n] blocks."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(replicates, CHUNK_CELLS // max(n, 1)))
    for start in range(0, replicates, chunk):
        block = np.empty((min(chunk, replicates - start), n))
        for row in block:
            # one draw per replicate, so the stream does not depend on the chunk size
            row[:] = np.bincount(rng.integers(0, n, n), minlength=n)
        yield block


def weighted_metrics(
    task: Task,
    y_true: np.ndarray,
    scores: Scores,
    counts: np.ndarray,
    *,
    classes: list[str] | None,
    positive_class: str | None,
    metrics: Sequence[str],
) -> dict[str, np.ndarray]:
    """Each metric for each row of `counts` ([m, n] row weights); NaN where undefined."""
    scorer = _Scorer(task, y_true, scores, classes, positive_class, metrics)
    return scorer(np.atleast_2d(np.asarray(counts, dtype="float64")))


def metric_intervals(
    task: Task,
    y_true: np.ndarray,
    scores: Scores,
    *,
    classes: list[str] | None,
    positive_class: str | None,
    metrics: Sequence[str],
    replicates: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """A percentile bootstrap interval of each metric; a metric undefined on the full
    holdout (roc_auc with a single class) is left out."""
    _check(replicates, level)
    scorer = _Scorer(task, y_true, scores, classes, positive_class, metrics)
    full = scorer(np.ones((1, scorer.n)))
    defined = [m for m in metrics if np.isfinite(full[m][0])]
    samples = _collect([scorer], scorer.n, replicates, seed)
    out = {}
    for name in defined:
        low, high = _percentiles(samples[0][name], level)
        out[name] = Interval(float(full[name][0]), low, high)
    return out


def paired_comparison(
    metric: str,
    task: Task,
    y_true: np.ndarray,
    challenger: Scores,
    reference: Scores,
    *,
    classes: list[str] | None,
    positive_class: str | None,
    min_improvement: float = 0.0,
    replicates: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Bootstrap of the challenger's improvement over the reference on the same resamples;
    a metric undefined on the full holdout is an error."""
    _check(replicates, level)
    sign = -1.0 if metric in SMALLER_IS_BETTER else 1.0
    scorers = [
        _Scorer(task, y_true, s, classes, positive_class, [metric]) for s in (challenger, reference)
    ]
    ones = np.ones((1, scorers[0].n))
    ch, ref = (float(s(ones)[metric][0]) for s in scorers)
    if not (np.isfinite(ch) and np.isfinite(ref)):
        raise GateError(f"{metric} is undefined on this holdout")
    samples = _collect(scorers, scorers[0].n, replicates, seed)
    gain = sign * (samples[0][metric] - samples[1][metric])
    gain = gain[np.isfinite(gain)]
    low, high = _percentiles(gain, level)
    return Comparison(
        metric=metric,
        challenger=ch,
        reference=ref,
        difference=sign * (ch - ref),
        low=low,
        high=high,
        probability=float(np.mean(gain >= min_improvement)) if gain.size else float("nan"),
        min_improvement=min_improvement,
        level=level,
        replicates=int(gain.size),
    )


def _check(replicates: int, level: float) -> None:
    if replicates < 1:
        raise GateError(f"replicates must be at least 1, got {replicates}")
    if not 0 < level < 1:
        raise GateError(f"level must be between 0 and 1, got {level}")


def _collect(
    scorers: list[_Scorer], n: int, replicates: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """Every scorer's metrics on the same replicates, concatenated over the chunks."""
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in scorers]
    for counts in replicate_counts(n, replicates, seed):
        for part, scorer in zip(parts, scorers, strict=True):
            part.append(scorer(counts))
    return [{k: np.concatenate([p[k] for p in part]) for k in part[0]} for part in parts]


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(low), float(high)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


class _Ranking:
    """Weighted ROC AUC and average precision of one score against a positive mask.

    Positives and negatives are each sorted by score once; per replicate, the cumulative
    weights of each side are looked up at every positive's score (ties: the negatives tied
    with a positive count 1/2, as the trapezoid of scikit-learn's ROC curve does).
    """

    def __init__(self, positive: np.ndarray, score: np.ndarray) -> None:
        pos_rows, neg_rows = np.flatnonzero(positive), np.flatnonzero(~positive)
        self.pos_rows = pos_rows[np.argsort(score[pos_rows], kind="stable")]
        self.neg_rows = neg_rows[np.argsort(score[neg_rows], kind="stable")]
        pos_scores, neg_scores = score[self.pos_rows], score[self.neg_rows]
        # per positive (in score order): negatives below / at most its score, positives below
        self.neg_below = np.searchsorted(neg_scores, pos_scores, side="left")
        self.neg_upto = np.searchsorted(neg_scores, pos_scores, side="right")
        self.pos_below = np.searchsorted(pos_scores, pos_scores, side="left")

    def __call__(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(roc_auc, average precision) per replicate, NaN where undefined."""
        cp = np.take(counts, self.pos_rows, axis=1)
        pos_cum = _cumsum0(cp)
        neg_cum = _cumsum0(np.take(counts, self.neg_rows, axis=1))
        p_tot, n_tot = pos_cum[:, -1:], neg_cum[:, -1:]
        below = np.take(neg_cum, self.neg_below, axis=1)
        wins = np.einsum("ij,ij->i", cp, below + np.take(neg_cum, self.neg_upto, axis=1)) / 2
        pairs = (p_tot * n_tot)[:, 0]
        auc = np.divide(wins, pairs, out=np.full(len(counts), np.nan), where=pairs > 0)
        # precision at each positive's threshold: weight at or above its score
        tp = p_tot - np.take(pos_cum, self.pos_below, axis=1)
        precision = _ratio(tp, tp + n_tot - below)
        ap_sum = np.einsum("ij,ij->i", cp, precision)
        ap = np.divide(ap_sum, p_tot[:, 0], out=np.full(len(counts), np.nan), where=p_tot[:, 0] > 0)
        return auc, ap


def _cumsum0(x: np.ndarray) -> np.ndarray:
    """Cumulative sums along the rows with a leading 0 column."""
    out = np.zeros((x.shape[0], x.shape[1] + 1))
    np.cumsum(x, axis=1, out=out[:, 1:])
    return out


class _Scorer:
    """One model's holdout, prepared once; called on [m, n] row counts."""

    def __init__(
        self,
        task: Task,
        y_true: np.ndarray,
        scores: Scores,
        classes: list[str] | None,
        positive_class: str | None,
        metrics: Sequence[str],
    ) -> None:
        if task not in TASK_METRICS:
            raise GateError(f"no bootstrap for task {task!r}")
        unknown = [m for m in metrics if m not in TASK_METRICS[task]]
        if unknown:
            raise GateError(
                f"unknown {task.value} metrics {unknown}; choose from {list(TASK_METRICS[task])}"
            )
        self.task, self.metrics = task, list(metrics)
        self.n = len(y_true)
        # per-row columns whose weighted means are metrics (losses) or feed r2
        columns: dict[str, np.ndarray] = {}
        if task is Task.REGRESSION:
            if scores.values is None:
                raise GateError("regression metrics need the predicted values")
            y = np.asarray(y_true, dtype="float64")
            err = np.asarray(scores.values, dtype="float64") - y
            centered = y - y.mean()  # shift-free sums of squares keep r2 exact
            columns = {"sq": err**2, "abs": np.abs(err), "y": centered, "y2": centered**2}
        else:
            self._prepare_classification(y_true, scores, classes, positive_class, columns)
        self.names = list(columns)
        self.columns = np.column_stack(list(columns.values())) if columns else None

    def _prepare_classification(
        self,
        y_true: np.ndarray,
        scores: Scores,
        classes: list[str] | None,
        positive_class: str | None,
        columns: dict[str, np.ndarray],
    ) -> None:
        if not classes:
            raise GateError("classification metrics need the classes")
        k = len(classes)
        yi = _encode(y_true, classes, "y_true")
        needs_labels = {"accuracy", "balanced_accuracy", "f1", "precision", "recall"}
        needs_proba = {"roc_auc", "pr_auc", "brier", "log_loss"}
        self.indicators = None
        if needs_labels.intersection(self.metrics):
            if scores.labels is None:
                raise GateError("label metrics need the predicted labels")
            pi = _encode(scores.labels, classes, "predicted labels")
            rows = np.arange(self.n)
            hit = yi == pi
            # columns: true class (k), predicted class (k), correct and of that class (k)
            self.indicators = sparse.csr_array(
                (
                    np.ones(2 * self.n + hit.sum()),
                    (
                        np.concatenate([rows, rows, rows[hit]]),
                        np.concatenate([yi, k + pi, 2 * k + yi[hit]]),
                    ),
                ),
                shape=(self.n, 3 * k),
            )
        self.rankings: list[_Ranking] = []
        if positive_class is not None and positive_class not in classes:
            raise GateError(f"positive class {positive_class!r} is not one of {classes}")
        self.pos = classes.index(positive_class) if positive_class is not None else k - 1
        if not needs_proba.intersection(self.metrics):
            return
        if scores.probabilities is None:
            raise GateError("probability metrics need the predicted probabilities")
        proba = np.asarray(scores.probabilities, dtype="float64")
        if proba.shape != (self.n, k):
            raise GateError(f"probabilities must be [{self.n}, {k}], got {list(proba.shape)}")
        if "log_loss" in self.metrics:
            # scikit-learn clips to [eps, 1 - eps] before the log
            eps = np.finfo("float64").eps
            columns["log_loss"] = -np.log(np.clip(proba[np.arange(self.n), yi], eps, 1 - eps))
        if self.task is Task.BINARY:
            is_pos, p_pos = yi == self.pos, proba[:, self.pos]
            if "brier" in self.metrics:
                columns["brier"] = (p_pos - is_pos) ** 2
            if {"roc_auc", "pr_auc"}.intersection(self.metrics):
                self.rankings = [_Ranking(is_pos, p_pos)]
        elif "roc_auc" in self.metrics:
            self.rankings = [_Ranking(yi == c, proba[:, c]) for c in range(k)]

    def __call__(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        total = counts.sum(axis=1)
        sums = dict(zip(self.names, (counts @ self.columns).T, strict=True)) if self.names else {}
        out: dict[str, np.ndarray] = {}
        if self.task is Task.REGRESSION:
            sse = sums["sq"]
            sst = sums["y2"] - sums["y"] ** 2 / total
            # scikit-learn's force_finite: a constant target scores 1 if fit exactly, else 0
            r2 = np.where(sse == 0, 1.0, 0.0)
            np.subtract(1.0, sse / np.where(sst == 0, 1.0, sst), out=r2, where=sst != 0)
            per_metric = {"rmse": np.sqrt(sse / total), "mae": sums["abs"] / total, "r2": r2}
            return {m: per_metric[m] for m in self.metrics}
        for name in ("log_loss", "brier"):
            if name in sums:
                out[name] = sums[name] / total
        if self.indicators is not None:
            out.update(self._label_metrics(counts, total))
        if self.rankings and self.task is Task.BINARY:
            out["roc_auc"], out["pr_auc"] = self.rankings[0](counts)
        elif self.rankings:
            aucs = np.column_stack([ranking(counts)[0] for ranking in self.rankings])
            defined = np.isfinite(aucs)
            n_defined = defined.sum(axis=1)
            mean = np.where(defined, aucs, 0.0).sum(axis=1) / np.maximum(n_defined, 1)
            out["roc_auc"] = np.where(n_defined > 0, mean, np.nan)
        return {m: out[m] for m in self.metrics}

    def _label_metrics(self, counts: np.ndarray, total: np.ndarray) -> dict[str, np.ndarray]:
        assert self.indicators is not None
        support, predicted, tp = np.split(np.asarray(counts @ self.indicators), 3, axis=1)
        present = support > 0
        recall = _ratio(tp, support)
        f1 = _ratio(2 * tp, support + predicted)
        out = {
            "accuracy": tp.sum(axis=1) / total,
            # scikit-learn averages over the classes present in y_true
            "balanced_accuracy": (recall * present).sum(axis=1) / present.sum(axis=1),
        }
        if self.task is Task.BINARY:
            p = self.pos
            out["precision"] = _ratio(tp[:, p], predicted[:, p])
            out["recall"] = recall[:, p]
            out["f1"] = f1[:, p]
        else:
            # macro over the labels in y_true or the predictions of the resample
            labels = present | (predicted > 0)
            out["f1"] = (f1 * labels).sum(axis=1) / labels.sum(axis=1)
        return out


def _encode(values: Any, classes: list[str], what: str) -> np.ndarray:
    """Index of each value in `classes`."""
    strings = np.asarray(values, dtype=object).astype(str)
    order = np.argsort(classes)
    sorted_classes = np.asarray(classes, dtype=str)[order]
    pos = np.searchsorted(sorted_classes, strings).clip(0, len(classes) - 1)
    unknown = sorted_classes[pos] != strings
    if unknown.any():
        raise GateError(f"{what} has labels outside the classes: {sorted(set(strings[unknown]))}")
    return np.asarray(order[pos])
