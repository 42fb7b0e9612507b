"""Stage 7, the hyperparameter search inside one candidate's training invocation.

scikit-learn's `ParameterSampler` draws the configurations (the defaults first) and
`cross_val_predict` scores each one on the training split. Not `RandomizedSearchCV`: it can
neither stop at a time budget nor hand back the out-of-fold predictions, and those are what
the decision threshold is tuned on. With a handful of trials a random search is as good as a
model-based one (Bergstra and Bengio 2012), so Optuna would add a dependency and no result.

The budget is never knowingly exceeded: a trial starts only when the longest trial so far,
plus the final refit on every training row, still fits in what is left. The first
configuration (the algorithm's defaults) always runs, so every candidate has a model.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import (
    KFold,
    ParameterGrid,
    ParameterSampler,
    StratifiedKFold,
    cross_val_predict,
    train_test_split,
)

from mlcycle.domain.decision import ThresholdChoice, choose_threshold, decide
from mlcycle.domain.estimators import make_estimator
from mlcycle.domain.evaluate import aligned_proba, holdout_metrics, larger_is_better
from mlcycle.spec import Algorithm, DecisionPolicy, SearchPolicy, Task

REFIT_MARGIN = 1.5  # the refit on all rows is estimated from one fold's fit, with this margin

# Each algorithm's space beside its defaults (mlcycle.domain.estimators.make_estimator). Bounded so
# the artifact stays small: forests at most 200 trees of depth 10, as the defaults are.
_CLASS_WEIGHTS = [None, "balanced"]
SPACES: dict[tuple[Algorithm, bool], dict[str, list[Any]]] = {
    (Algorithm.LINEAR, True): {
        "C": [0.001, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0],
        "class_weight": _CLASS_WEIGHTS,
    },
    (Algorithm.LINEAR, False): {"alpha": [0.01, 0.1, 0.3, 3.0, 10.0, 100.0]},  # default 1.0
    (Algorithm.RANDOM_FOREST, True): {
        "n_estimators": [100, 200],
        "max_depth": [6, 8, 10],
        "min_samples_leaf": [1, 3, 10, 30],
        "max_features": ["sqrt", 0.5, 1.0],
        "class_weight": [None, "balanced", "balanced_subsample"],
    },
    (Algorithm.RANDOM_FOREST, False): {
        "n_estimators": [100, 200],
        "max_depth": [6, 8, 10],
        "min_samples_leaf": [1, 3, 10, 30],
        "max_features": ["sqrt", 0.5, 1.0],
    },
    (Algorithm.HIST_GRADIENT_BOOSTING, True): {
        "learning_rate": [0.03, 0.05, 0.1, 0.2],
        "max_leaf_nodes": [15, 31, 63],
        "min_samples_leaf": [10, 20, 50, 100],
        "l2_regularization": [0.0, 0.1, 1.0],
        "class_weight": _CLASS_WEIGHTS,
    },
    (Algorithm.HIST_GRADIENT_BOOSTING, False): {
        "learning_rate": [0.03, 0.05, 0.1, 0.2],
        "max_leaf_nodes": [15, 31, 63],
        "min_samples_leaf": [10, 20, 50, 100],
        "l2_regularization": [0.0, 0.1, 1.0],
    },
}


@dataclass(frozen=True)
class Trial:
    trial: int  # 1-based; trial 1 is the defaults
    params: dict[str, Any]  # what this trial changed from the defaults
    score: float | None  # the metric on the out-of-fold predictions (None: undefined)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "params": self.params,
            "score": self.score,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class SearchResult:
    best: Trial
    trials: list[Trial]
    planned: int
    stopped: str  # "trials": all ran; "budget": the next one would not have fit
    seconds: float
    folds: int
    rows: int  # training rows the search cross-validated on
    metric: str
    oof: np.ndarray  # the best trial's out-of-fold probabilities [n, k] or predictions [n]
    y: pd.Series  # the targets of those rows
    threshold: ThresholdChoice | None = None  # binary: tuned on the best trial's predictions
    refit_estimate: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, budget_seconds: float) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "cv_folds": self.folds,
            "rows": self.rows,
            "planned": self.planned,
            "budget_seconds": budget_seconds,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "best_trial": self.best.trial,
            "trials": [t.to_json() for t in self.trials],
        }


Progress = Callable[[int, int, Trial], None]  # (trials done, planned, the last trial)


def configurations(
    algorithm: Algorithm, task: Task, trials: int, seed: int
) -> list[dict[str, Any]]:
    """The defaults ({}), then `trials - 1` distinct seeded draws from the algorithm's space;
    a draw that only restates the defaults is one trial less, not a repeat."""
    space = SPACES[(algorithm, task is not Task.REGRESSION)]
    defaults = make_estimator(algorithm, task, seed).get_params()
    # one draw more than needed, in case one of them restates the defaults
    draws = ParameterSampler(
        space, n_iter=min(trials, len(ParameterGrid(space))), random_state=seed
    )
    out: list[dict[str, Any]] = [{}]
    for params in draws:
        changed = {k: v for k, v in params.items() if defaults.get(k) != v}
        if changed and params not in out:
            out.append(dict(params))
    return out[:trials]


def search(
    estimator: BaseEstimator,
    algorithm: Algorithm,
    task: Task,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    policy: SearchPolicy,
    metric: str,
    classes: list[str] | None,
    positive_class: str | None,
    decision: DecisionPolicy | None,
    seed: int,
    on_trial: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> SearchResult:
    """Cross-validate each configuration of `estimator` within the budget; the best wins."""
    started = clock()
    X_cv, y_cv = _sample(X, y, task, policy.max_rows, seed)
    cv, folds = _folds(task, y_cv, policy.cv_folds, seed)
    planned = configurations(algorithm, task, policy.trials, seed)
    larger = larger_is_better(metric)
    trials: list[Trial] = []
    best: tuple[Trial, np.ndarray, ThresholdChoice | None] | None = None
    stopped = "trials"
    # The refit sees all rows, the folds (folds - 1) / folds of the sample.
    scale = len(X) / max(len(X_cv) * (folds - 1) / folds, 1)
    refit_estimate = 0.0
    for number, params in enumerate(planned, start=1):
        elapsed = clock() - started
        if trials:
            longest = max(t.seconds for t in trials)
            if elapsed + longest + refit_estimate > policy.budget_seconds:
                stopped = "budget"
                break
        trial_started = clock()
        model = clone(estimator).set_params(**params)
        oof = _out_of_fold(model, X_cv, y_cv, cv, task, classes)
        score, threshold = _score(
            task, y_cv, oof, metric, classes, positive_class, decision, _tuned_on(folds, X, X_cv)
        )
        seconds = clock() - trial_started
        refit_estimate = max(refit_estimate, seconds / folds * scale * REFIT_MARGIN)
        trial = Trial(number, params, score, seconds)
        trials.append(trial)
        if best is None or _better(score, best[0].score, larger):
            best = (trial, oof, threshold)
        if on_trial is not None:
            on_trial(number, len(planned), trial)
    assert best is not None  # the first trial always runs
    trial, oof, threshold = best
    return SearchResult(
        best=trial,
        trials=trials,
        planned=len(planned),
        stopped=stopped,
        seconds=clock() - started,
        folds=folds,
        rows=len(X_cv),
        metric=metric,
        oof=oof,
        y=y_cv,
        threshold=threshold,
        refit_estimate=refit_estimate,
    )


def _better(score: float | None, than: float | None, larger: bool) -> bool:
    if score is None:
        return False
    return than is None or (score > than if larger else score < than)


def _sample(
    X: pd.DataFrame, y: pd.Series, task: Task, max_rows: int, seed: int
) -> tuple[pd.DataFrame, pd.Series]:
    """A seeded (stratified) sample of at most `max_rows` rows: the search's cost stays
    bounded whatever the data size; the refit uses every row."""
    if len(X) <= max_rows:
        return X, y
    stratify = y if task is not Task.REGRESSION and y.value_counts().min() >= 2 else None
    X_s, _, y_s, _ = train_test_split(
        X, y, train_size=max_rows, random_state=seed, stratify=stratify
    )
    return X_s, y_s


def _tuned_on(folds: int, X: pd.DataFrame, X_cv: pd.DataFrame) -> str:
    rows = "" if len(X_cv) == len(X) else f", a sample of {len(X_cv):,} of its {len(X):,} rows"
    return f"out-of-fold predictions of the training split ({folds} folds{rows})"


def _folds(task: Task, y: pd.Series, folds: int, seed: int) -> tuple[Any, int]:
    if task is Task.REGRESSION:
        folds = min(folds, len(y))
        return KFold(folds, shuffle=True, random_state=seed), folds
    smallest = int(y.value_counts().min())
    if smallest >= folds:
        return StratifiedKFold(folds, shuffle=True, random_state=seed), folds
    # A class rarer than the folds cannot be in every fold; plain folds still predict it.
    return KFold(folds, shuffle=True, random_state=seed), folds


def _out_of_fold(
    model: BaseEstimator,
    X: pd.DataFrame,
    y: pd.Series,
    cv: Any,
    task: Task,
    classes: list[str] | None,
) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # a fold without some class
        if task is Task.REGRESSION:
            return np.asarray(cross_val_predict(model, X, y, cv=cv), dtype="float64")
        proba = cross_val_predict(model, X, y, cv=cv, method="predict_proba")
    return aligned_proba(proba, sorted(set(y.astype(str))), classes)


def _score(
    task: Task,
    y: pd.Series,
    oof: np.ndarray,
    metric: str,
    classes: list[str] | None,
    positive_class: str | None,
    decision: DecisionPolicy | None,
    tuned_on: str,
) -> tuple[float | None, ThresholdChoice | None]:
    """The metric on out-of-fold predictions; binary labels at the threshold tuned on them."""
    if task is Task.REGRESSION:
        return holdout_metrics(task, y, oof, None, None, None).get(metric), None
    assert classes is not None
    threshold = None
    if task is Task.BINARY:
        assert positive_class is not None
        assert decision is not None
        pos = classes.index(positive_class)
        y_text = y.astype(str).to_numpy()
        threshold = choose_threshold(
            y_text == positive_class,
            oof[:, pos],
            decision,
            tuned_on=tuned_on,
        )
        negative = classes[1 - pos]
        labels = np.where(decide(oof[:, pos], threshold.threshold), positive_class, negative)
    else:
        labels = np.asarray(classes, dtype=object)[oof.argmax(axis=1)]
    metrics = holdout_metrics(task, y, labels, oof, classes, positive_class)
    return metrics.get(metric), threshold
