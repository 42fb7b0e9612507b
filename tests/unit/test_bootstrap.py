"""Bootstrap intervals and the paired comparison: vectorized metrics equal scikit-learn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlcycle.domain import bootstrap
from mlcycle.domain.bootstrap import (
    TASK_METRICS,
    Scores,
    metric_intervals,
    paired_comparison,
    replicate_counts,
    weighted_metrics,
)
from mlcycle.errors import GateError
from mlcycle.spec import Task


class Case:
    """A holdout with one model's scores and the reference scikit-learn metrics."""

    def __init__(
        self,
        task: Task,
        y: np.ndarray,
        scores: Scores,
        classes: list[str] | None = None,
        positive: str | None = None,
    ) -> None:
        self.task, self.y, self.scores = task, y, scores
        self.classes, self.positive = classes, positive

    @property
    def metrics(self) -> tuple[str, ...]:
        return TASK_METRICS[self.task]

    def ours(self, counts: np.ndarray, scores: Scores | None = None) -> dict[str, np.ndarray]:
        return weighted_metrics(
            self.task,
            self.y,
            scores or self.scores,
            counts,
            classes=self.classes,
            positive_class=self.positive,
            metrics=self.metrics,
        )

    def intervals(self, **kwargs: Any) -> dict[str, bootstrap.Interval]:
        return metric_intervals(
            self.task,
            self.y,
            self.scores,
            classes=self.classes,
            positive_class=self.positive,
            metrics=self.metrics,
            **kwargs,
        )

    def compare(self, metric: str, challenger: Scores, **kwargs: Any) -> bootstrap.Comparison:
        return paired_comparison(
            metric,
            self.task,
            self.y,
            challenger,
            self.scores,
            classes=self.classes,
            positive_class=self.positive,
            **kwargs,
        )

    def sklearn(self, metric: str, w: np.ndarray | None = None) -> float:
        y, s = self.y, self.scores
        if self.task is Task.REGRESSION:
            fn = {
                "rmse": lambda: math.sqrt(skm.mean_squared_error(y, s.values, sample_weight=w)),
                "mae": lambda: skm.mean_absolute_error(y, s.values, sample_weight=w),
                "r2": lambda: skm.r2_score(y, s.values, sample_weight=w),
            }
            return float(fn[metric]())
        assert s.probabilities is not None
        assert self.classes is not None
        if metric == "accuracy":
            return float(skm.accuracy_score(y, s.labels, sample_weight=w))
        if metric == "balanced_accuracy":
            return float(skm.balanced_accuracy_score(y, s.labels, sample_weight=w))
        if metric == "log_loss":
            return float(skm.log_loss(y, s.probabilities, labels=self.classes, sample_weight=w))
        if self.task is Task.MULTICLASS:
            if metric == "f1":
                return float(
                    skm.f1_score(y, s.labels, average="macro", zero_division=0, sample_weight=w)
                )
            aucs = [
                skm.roc_auc_score(y == c, s.probabilities[:, i], sample_weight=w)
                for i, c in enumerate(self.classes)
                if (y == c).any()
            ]
            return float(np.mean(aucs))
        pos = self.positive
        is_pos, p = y == pos, s.probabilities[:, self.classes.index(str(pos))]
        fns = {
            "f1": lambda: skm.f1_score(
                y, s.labels, pos_label=pos, zero_division=0, sample_weight=w
            ),
            "precision": lambda: skm.precision_score(
                y, s.labels, pos_label=pos, zero_division=0, sample_weight=w
            ),
            "recall": lambda: skm.recall_score(
                y, s.labels, pos_label=pos, zero_division=0, sample_weight=w
            ),
            "roc_auc": lambda: skm.roc_auc_score(is_pos, p, sample_weight=w),
            "pr_auc": lambda: skm.average_precision_score(is_pos, p, sample_weight=w),
            "brier": lambda: skm.brier_score_loss(is_pos, p, sample_weight=w),
        }
        return float(fns[metric]())


def _classifier_case(X: Any, y: Any, task: Task, positive: str | None, **split: Any) -> Case:
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, **split)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    model.fit(X_train, y_train)
    classes = sorted(str(c) for c in model.classes_)
    proba = model.predict_proba(X_test)
    return Case(task, y_test, Scores(model.predict(X_test), proba), classes, positive)


def binary_case() -> Case:
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")
    return _classifier_case(X, labels, Task.BINARY, "malignant", test_size=0.4)


def multiclass_case() -> Case:
    X, y = load_wine(return_X_y=True)
    labels = np.asarray(["barolo", "grignolino", "barbera"])[y]
    return _classifier_case(X, labels, Task.MULTICLASS, None, test_size=0.5, stratify=labels)


def regression_case() -> Case:
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=0)
    model = LinearRegression().fit(X_train, y_train)
    return Case(Task.REGRESSION, y_test, Scores(None, None, model.predict(X_test)))


def imbalanced_case(n: int = 2000, seed: int = 0, signal: float = 1.5) -> Case:
    """5% positives, a logistic score with ties (2 decimals), labels at 0.3."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.05
    p = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, n) + signal * positive - 2.5))), 2)
    y = np.where(positive, "churn", "stay")
    labels = np.where(p >= 0.3, "churn", "stay")
    return Case(
        Task.BINARY, y, Scores(labels, np.column_stack([p, 1 - p])), ["churn", "stay"], "churn"
    )


CASES = {
    "binary": binary_case,
    "multiclass": multiclass_case,
    "regression": regression_case,
    "imbalanced": imbalanced_case,
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]()


def test_unit_weights_equal_sklearn(case: Case):
    ours = case.ours(np.ones(len(case.y)))
    assert set(ours) == set(case.metrics)
    for metric in case.metrics:
        assert ours[metric][0] == pytest.approx(case.sklearn(metric), abs=1e-12), metric


def _explicit_counts(n: int) -> np.ndarray:
    """Bootstrap draws, plus hand-made weights: every other row, the first half tripled."""
    drawn = np.concatenate(list(replicate_counts(n, 4, seed=7)))
    every_other = np.tile([0.0, 2.0], n)[:n]
    tripled = np.where(np.arange(n) < n // 2, 3.0, 1.0)
    return np.vstack([drawn, every_other, tripled])


def test_replicate_counts_equal_sklearn_sample_weight(case: Case):
    counts = _explicit_counts(len(case.y))
    ours = case.ours(counts)
    for row, w in enumerate(counts):
        for metric in case.metrics:
            expected = case.sklearn(metric, w)
            assert ours[metric][row] == pytest.approx(expected, abs=1e-10), (metric, row)


def test_replicate_counts_are_multinomial_resamples():
    blocks = list(replicate_counts(50, 7, seed=3))
    counts = np.concatenate(blocks)
    assert counts.shape == (7, 50)
    assert np.all(counts.sum(axis=1) == 50)
    assert np.all(counts == np.round(counts))
    again = np.concatenate(list(replicate_counts(50, 7, seed=3)))
    np.testing.assert_array_equal(counts, again)


def test_ties_in_scores_equal_sklearn():
    base = binary_case()
    assert base.scores.probabilities is not None
    coarse = np.round(base.scores.probabilities, 1)  # 11 distinct scores for ~230 rows
    case = Case(Task.BINARY, base.y, Scores(base.scores.labels, coarse), base.classes, "malignant")
    assert len(np.unique(coarse[:, 1])) <= 11
    counts = np.vstack([np.ones(len(case.y)), _explicit_counts(len(case.y))])
    ours = case.ours(counts)
    for row, w in enumerate(counts):
        for metric in ("roc_auc", "pr_auc"):
            assert ours[metric][row] == pytest.approx(case.sklearn(metric, w), abs=1e-12)


def test_all_scores_tied_give_auc_one_half():
    y = np.array(["a", "b", "a", "b", "b"])
    proba = np.full((5, 2), 0.5)
    out = weighted_metrics(
        Task.BINARY,
        y,
        Scores(y, proba),
        np.array([[1, 2, 0, 1, 3]]),
        classes=["a", "b"],
        positive_class="b",
        metrics=["roc_auc", "pr_auc"],
    )
    assert out["roc_auc"][0] == 0.5
    assert out["pr_auc"][0] == pytest.approx(6 / 7)  # one threshold: the positives' share


def test_resample_without_positives_is_dropped_from_that_metric_only():
    case = imbalanced_case(n=60, seed=1)
    is_pos = case.y == "churn"
    assert 1 <= is_pos.sum() <= 5
    no_positives = np.where(is_pos, 0.0, 1.0)
    out = case.ours(no_positives)
    assert math.isnan(out["roc_auc"][0])
    assert math.isnan(out["pr_auc"][0])
    assert out["accuracy"][0] == pytest.approx(case.sklearn("accuracy", no_positives))
    assert out["recall"][0] == 0.0  # zero_division=0
    # the interval is the percentiles of the defined replicates
    counts = np.concatenate(list(replicate_counts(60, 1000, seed=0)))
    auc = case.ours(counts)["roc_auc"]
    undefined = np.isnan(auc)
    assert 0 < undefined.sum() < 1000
    interval = case.intervals()["roc_auc"]
    low, high = np.percentile(auc[~undefined], [2.5, 97.5])
    assert (interval.low, interval.high) == (low, high)
    assert math.isfinite(case.intervals()["accuracy"].low)


def test_metric_undefined_on_the_holdout_is_left_out():
    y = np.array(["stay"] * 20)
    p = np.linspace(0.1, 0.9, 20)
    out = metric_intervals(
        Task.BINARY,
        y,
        Scores(np.where(p > 0.5, "churn", "stay"), np.column_stack([p, 1 - p])),
        classes=["churn", "stay"],
        positive_class="churn",
        metrics=["accuracy", "roc_auc", "pr_auc"],
        replicates=50,
    )
    assert set(out) == {"accuracy"}
    assert out["accuracy"].value == pytest.approx(0.5)


def test_macro_f1_of_a_resample_without_a_class_is_over_its_labels():
    """A replicate is a resampled holdout: a label gone from it leaves the macro average
    (scikit-learn's sample_weight would keep it with f1 0)."""
    case = multiclass_case()
    classes = np.unique(case.y)
    counts = np.where(case.y == classes[0], 0.0, 1.0)
    counts[np.asarray(case.scores.labels) == classes[0]] = 0.0  # nor predicted
    expected = skm.f1_score(
        np.repeat(case.y, counts.astype(int)),
        np.repeat(case.scores.labels, counts.astype(int)),
        average="macro",
        zero_division=0,
    )
    assert case.ours(counts)["f1"][0] == pytest.approx(expected, abs=1e-12)


def test_log_loss_follows_the_classes_order():
    y = np.array(["b", "a", "b", "c"])
    proba = np.array([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    out = weighted_metrics(
        Task.MULTICLASS,
        y,
        Scores(None, proba[:, [1, 0, 2]]),  # columns in the order b, a, c
        np.ones((1, 4)),
        classes=["b", "a", "c"],
        positive_class=None,
        metrics=["log_loss"],
    )
    assert out["log_loss"][0] == pytest.approx(skm.log_loss(y, proba, labels=["a", "b", "c"]))


def test_intervals_contain_the_value_and_shrink_as_n_grows():
    small, large = imbalanced_case(n=1000, seed=2), imbalanced_case(n=20000, seed=2)
    ours_small, ours_large = small.intervals(replicates=300), large.intervals(replicates=300)
    for metric in small.metrics:
        s, big = ours_small[metric], ours_large[metric]
        assert s.low <= s.value <= s.high, metric
        assert big.low <= big.value <= big.high, metric
        assert big.high - big.low < (s.high - s.low) / 2, metric  # ~ 1/sqrt(20) as wide


@pytest.mark.parametrize("name", ["binary", "multiclass", "regression"])
def test_value_is_the_full_holdout_metric_and_intervals_contain_it(name: str):
    case = CASES[name]()
    out = case.intervals(replicates=200)
    assert set(out) == set(case.metrics)
    for metric, interval in out.items():
        assert interval.value == pytest.approx(case.sklearn(metric), abs=1e-12)
        assert interval.low <= interval.value <= interval.high, metric
        assert interval.to_json() == {
            "value": interval.value,
            "low": interval.low,
            "high": interval.high,
        }


def test_same_seed_same_intervals_whatever_the_chunk_size(monkeypatch: pytest.MonkeyPatch):
    case = binary_case()
    first = case.intervals(replicates=200, seed=5)
    assert case.intervals(replicates=200, seed=5) == first
    assert case.intervals(replicates=200, seed=6) != first
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 3 * len(case.y))  # chunks of 3 replicates
    assert case.intervals(replicates=200, seed=5) == first


def test_level_is_respected():
    case = regression_case()
    counts = np.concatenate(list(replicate_counts(len(case.y), 400, seed=0)))
    rmse = case.ours(counts)["rmse"]
    widths = []
    for level in (0.5, 0.9, 0.99):
        interval = case.intervals(replicates=400, level=level)["rmse"]
        expected = np.percentile(rmse, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
        assert (interval.low, interval.high) == tuple(expected)
        widths.append(interval.high - interval.low)
    assert widths[0] < widths[1] < widths[2]


@pytest.mark.parametrize("name", list(CASES))
def test_a_model_against_itself_improves_by_exactly_nothing(name: str):
    case = CASES[name]()
    for metric in case.metrics:
        c = case.compare(metric, case.scores, replicates=200)
        assert (c.difference, c.low, c.high) == (0.0, 0.0, 0.0), metric
        assert c.probability == 1.0
        assert c.challenger == c.reference
        assert c.replicates == 200


def test_a_clearly_better_model_wins_with_probability_near_one():
    strong, weak = imbalanced_case(signal=3.0), imbalanced_case(signal=1.0)
    np.testing.assert_array_equal(strong.y, weak.y)  # same rows, same outcomes
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier"):
        c = weak.compare(metric, strong.scores, level=0.9)
        assert c.difference > 0, metric  # smaller-is-better metrics flip the sign
        assert 0 < c.low <= c.difference <= c.high, metric
        assert c.probability > 0.99, metric
        assert c.level == 0.9
        # and the other way round: the weak model never beats the strong one
        reverse = strong.compare(metric, weak.scores)
        assert reverse.difference == pytest.approx(-c.difference)
        assert reverse.probability < 0.01
    c = weak.compare("roc_auc", strong.scores, min_improvement=1.0)
    assert c.probability == 0.0  # an AUC cannot improve by a whole 1.0
    assert set(c.to_json()) == {
        "metric",
        "challenger",
        "reference",
        "difference",
        "low",
        "high",
        "probability",
        "min_improvement",
        "level",
        "replicates",
    }


def test_comparison_is_paired():
    """Both models see the same resamples: the improvement's interval is narrower than the
    difference of two independent intervals would suggest."""
    strong, weak = imbalanced_case(signal=3.0), imbalanced_case(signal=2.6)
    c = weak.compare("roc_auc", strong.scores)
    a = strong.intervals()["roc_auc"]
    b = weak.intervals()["roc_auc"]
    assert c.high - c.low < (a.high - a.low + b.high - b.low) / 2


def test_bad_arguments_are_refused():
    case = binary_case()
    with pytest.raises(GateError, match="rmse"):
        metric_intervals(
            Task.BINARY,
            case.y,
            case.scores,
            classes=case.classes,
            positive_class="malignant",
            metrics=["rmse"],
        )
    with pytest.raises(GateError, match="level"):
        case.intervals(level=1.0)
    with pytest.raises(GateError, match="outside the classes"):
        case.ours(
            np.ones(len(case.y)), Scores(np.full(len(case.y), "?"), case.scores.probabilities)
        )
