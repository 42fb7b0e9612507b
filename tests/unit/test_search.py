"""Stage 7: the bounded, seeded hyperparameter search inside one training invocation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from mlcycle.domain.search import SPACES, configurations, search
from mlcycle.domain.train import make_estimator, train_candidate
from mlcycle.spec import Algorithm, DecisionPolicy, SearchPolicy, Task

SEED = 42


def standardized(X: pd.DataFrame) -> pd.DataFrame:
    return (X - X.mean()) / X.std()


def breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    y = pd.Series(np.asarray(data.target_names)[data.target], index=data.frame.index)
    return standardized(data.data), y.astype(object)


def wine() -> tuple[pd.DataFrame, pd.Series]:
    data = load_wine(as_frame=True)
    y = pd.Series(np.asarray(data.target_names)[data.target], index=data.frame.index)
    return standardized(data.data), y.astype(object)


# --- configurations -------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION])
def test_configurations_start_with_the_defaults_and_are_seeded(algorithm, task):
    planned = configurations(algorithm, task, 6, SEED)
    assert planned[0] == {}
    assert 1 < len(planned) <= 6
    assert planned == configurations(algorithm, task, 6, SEED)
    assert configurations(algorithm, task, 6, SEED + 1)[0] == {}
    assert all(a != b for i, a in enumerate(planned) for b in planned[i + 1 :])
    # every parameter is one the algorithm's estimator takes
    estimator = make_estimator(algorithm, task, SEED)
    for params in planned:
        estimator.set_params(**params)


def test_configurations_are_bounded_by_the_trials_and_the_space():
    assert configurations(Algorithm.LINEAR, Task.BINARY, 1, SEED) == [{}]
    assert len(configurations(Algorithm.RANDOM_FOREST, Task.BINARY, 20, SEED)) == 20
    # ridge has 6 alphas besides its default: defaults plus every one of them, however many
    # trials are asked
    ridge = configurations(Algorithm.LINEAR, Task.REGRESSION, 50, SEED)
    assert len(ridge) == 7
    assert sorted(p["alpha"] for p in ridge[1:]) == SPACES[(Algorithm.LINEAR, False)]["alpha"]


def test_different_seeds_draw_different_configurations():
    a = configurations(Algorithm.HIST_GRADIENT_BOOSTING, Task.BINARY, 10, 1)
    b = configurations(Algorithm.HIST_GRADIENT_BOOSTING, Task.BINARY, 10, 2)
    assert a != b


def test_no_configuration_repeats_the_defaults():
    base = make_estimator(Algorithm.LINEAR, Task.REGRESSION, SEED).get_params()
    planned = configurations(Algorithm.LINEAR, Task.REGRESSION, 8, SEED)
    assert all(any(base[k] != v for k, v in params.items()) for params in planned[1:])


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_class_weight_is_searched_for_classifiers_only(algorithm):
    assert None in SPACES[(algorithm, True)]["class_weight"]
    assert "balanced" in SPACES[(algorithm, True)]["class_weight"]
    assert "class_weight" not in SPACES[(algorithm, False)]


# --- the budget -------------------------------------------------------------------------------


class FakeClock:
    """Time moves only when a model is fitted: FIT_COST seconds per fit."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()
FIT_COST = 1.0


class TickingLogisticRegression(LogisticRegression):
    def fit(self, X, y, sample_weight=None):
        CLOCK.now += FIT_COST
        return super().fit(X, y, sample_weight=sample_weight)


def ticking_search(budget: float, trials: int = 8, **kwargs: object):
    X, y = breast_cancer()
    CLOCK.now = 0.0
    return search(
        TickingLogisticRegression(max_iter=1000),
        Algorithm.LINEAR,
        Task.BINARY,
        X,
        y,
        policy=SearchPolicy(trials=trials, budget_seconds=budget, cv_folds=3),
        metric="roc_auc",
        classes=["benign", "malignant"],
        positive_class="malignant",
        decision=DecisionPolicy(),
        seed=SEED,
        clock=CLOCK,
        **kwargs,
    )


def test_the_budget_cuts_the_search_before_it_would_overrun():
    # each trial is 3 fits (3 s); the refit is estimated at 3 / 3 x 1.5 (rows) x 1.5 = 2.25 s
    result = ticking_search(budget=12)
    assert [t.seconds for t in result.trials] == [3.0, 3.0, 3.0]
    assert result.refit_estimate == pytest.approx(2.25)
    assert result.stopped == "budget"
    assert result.planned == 8
    assert result.seconds == pytest.approx(9.0)
    # the search plus the refit it leaves room for fit in the budget
    assert result.seconds + result.refit_estimate <= 12


@pytest.mark.parametrize("budget", [6.0, 7.5, 10.0, 16.0, 23.0, 40.0])
def test_the_budget_is_never_exceeded(budget):
    result = ticking_search(budget=budget)
    assert len(result.trials) >= 1
    # what the search spent plus the actual refit (one fit) stays within the budget
    assert result.seconds + FIT_COST <= budget
    assert result.seconds + result.refit_estimate <= budget
    if len(result.trials) < result.planned:
        assert result.stopped == "budget"
        # the next trial would not have fit
        assert result.seconds + 3.0 + result.refit_estimate > budget
    else:
        assert result.stopped == "trials"


def test_the_first_trial_always_runs():
    result = ticking_search(budget=0.5)
    assert len(result.trials) == 1
    assert result.best.trial == 1
    assert result.best.params == {}
    assert result.stopped == "budget"
    assert result.seconds == pytest.approx(3.0)  # over the budget: there must be a model


def test_a_clock_that_ticks_per_call_still_stops():
    ticks = iter(np.arange(0.0, 10_000.0, 1.0))
    X, y = breast_cancer()
    result = search(
        make_estimator(Algorithm.LINEAR, Task.BINARY, SEED),
        Algorithm.LINEAR,
        Task.BINARY,
        X,
        y,
        policy=SearchPolicy(trials=10, budget_seconds=10, cv_folds=3),
        metric="roc_auc",
        classes=["benign", "malignant"],
        positive_class="malignant",
        decision=DecisionPolicy(),
        seed=SEED,
        clock=lambda: float(next(ticks)),
    )
    assert 1 <= len(result.trials) < 10
    assert result.stopped == "budget"
    assert all(t.seconds == 1.0 for t in result.trials)


def test_a_generous_budget_runs_every_trial_and_reports_progress():
    seen: list[tuple[int, int, int]] = []
    result = ticking_search(
        budget=700,
        trials=4,
        on_trial=lambda done, planned, t: seen.append((done, planned, t.trial)),
    )
    assert result.stopped == "trials"
    assert [t.trial for t in result.trials] == [1, 2, 3, 4]
    assert seen == [(1, 4, 1), (2, 4, 2), (3, 4, 3), (4, 4, 4)]
    js = result.to_json(700)
    assert js["stopped"] == "trials"
    assert js["budget_seconds"] == 700
    assert js["best_trial"] == result.best.trial
    assert len(js["trials"]) == 4


# --- real searches ----------------------------------------------------------------------------


def test_binary_search_on_breast_cancer():
    X, y = breast_cancer()
    result = search(
        make_estimator(Algorithm.LINEAR, Task.BINARY, SEED),
        Algorithm.LINEAR,
        Task.BINARY,
        X,
        y,
        policy=SearchPolicy(trials=5),
        metric="roc_auc",
        classes=["benign", "malignant"],
        positive_class="malignant",
        decision=DecisionPolicy(),
        seed=SEED,
    )
    assert result.oof.shape == (len(X), 2)
    np.testing.assert_allclose(result.oof.sum(axis=1), 1.0)
    assert result.rows == len(X)
    assert result.folds == 3
    assert len(result.trials) == 5
    assert result.stopped == "trials"
    scores = [t.score for t in result.trials]
    assert result.best.score == max(scores)
    assert result.best.score > 0.98
    # the kept out-of-fold predictions are the best trial's, in the rows' order
    assert (result.y == y).all()
    auc = roc_auc_score(result.y == "malignant", result.oof[:, 1])
    assert auc == pytest.approx(result.best.score)
    assert result.threshold is not None
    assert result.threshold.source == (
        "auto: best f1 on out-of-fold predictions of the training split (3 folds)"
    )
    assert 0 < result.threshold.threshold < 1


def test_max_rows_cross_validates_on_a_stratified_sample():
    X, y = breast_cancer()
    result = search(
        make_estimator(Algorithm.LINEAR, Task.BINARY, SEED),
        Algorithm.LINEAR,
        Task.BINARY,
        X,
        y,
        policy=SearchPolicy(trials=2, max_rows=200),
        metric="f1",
        classes=["benign", "malignant"],
        positive_class="malignant",
        decision=DecisionPolicy(),
        seed=SEED,
    )
    assert result.rows == 200
    assert result.oof.shape == (200, 2)
    assert len(result.y) == 200
    assert result.y.index.isin(X.index).all()
    share = (y == "malignant").mean()
    assert abs((result.y == "malignant").sum() - 200 * share) <= 1
    assert result.threshold is not None
    assert "a sample of 200 of its 569 rows" in result.threshold.source


def test_regression_search_on_diabetes_minimises_rmse():
    data = load_diabetes(as_frame=True)
    X, y = data.data, data.target.astype("float64")
    result = search(
        make_estimator(Algorithm.LINEAR, Task.REGRESSION, SEED),
        Algorithm.LINEAR,
        Task.REGRESSION,
        X,
        y,
        policy=SearchPolicy(trials=4),
        metric="rmse",
        classes=None,
        positive_class=None,
        decision=None,
        seed=SEED,
    )
    assert result.oof.shape == (len(X),)
    assert result.threshold is None
    scores = [t.score for t in result.trials]
    assert result.best.score == min(scores)
    rmse = float(np.sqrt(np.mean((result.oof - y.to_numpy()) ** 2)))
    assert rmse == pytest.approx(result.best.score)
    assert result.best.score < y.std()  # better than predicting the mean


def test_multiclass_search_on_wine():
    X, y = wine()
    classes = sorted(set(y))
    result = search(
        make_estimator(Algorithm.LINEAR, Task.MULTICLASS, SEED),
        Algorithm.LINEAR,
        Task.MULTICLASS,
        X,
        y,
        policy=SearchPolicy(trials=3),
        metric="balanced_accuracy",
        classes=classes,
        positive_class=None,
        decision=None,
        seed=SEED,
    )
    assert result.oof.shape == (len(X), 3)
    assert result.threshold is None
    assert result.best.score == max(t.score for t in result.trials)
    labels = np.asarray(classes, dtype=object)[result.oof.argmax(axis=1)]
    assert balanced_accuracy_score(result.y, labels) == pytest.approx(result.best.score)
    assert result.best.score > 0.9


def test_train_candidate_refits_the_best_configuration():
    X, y = breast_cancer()
    candidate = train_candidate(
        Algorithm.LINEAR,
        Task.BINARY,
        X,
        y,
        seed=SEED,
        metric="roc_auc",
        policy=SearchPolicy(trials=4),
        positive_class="malignant",
    )
    assert candidate.search is not None
    best = candidate.search.best.params
    for name, value in best.items():
        assert candidate.params[name] == value
    assert candidate.threshold is candidate.search.threshold
    assert candidate.estimator.predict_proba(X).shape == (len(X), 2)


def test_train_candidate_without_a_policy_fits_the_defaults_only():
    X, y = breast_cancer()
    candidate = train_candidate(Algorithm.LINEAR, Task.BINARY, X, y, seed=SEED)
    assert candidate.search is not None
    assert len(candidate.search.trials) == 1
    assert candidate.search.best.params == {}
    # the positive class defaults to the second label
    assert candidate.threshold is not None
    assert candidate.params["C"] == 1.0
