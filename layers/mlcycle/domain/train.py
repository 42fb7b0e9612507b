"""Stage 7, training one candidate on the engineered features."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from mlcycle.domain.decision import ThresholdChoice
from mlcycle.domain.estimators import make_estimator
from mlcycle.domain.search import Progress, SearchResult, search
from mlcycle.spec import DEFAULT_PRIMARY_METRIC, Algorithm, DecisionPolicy, SearchPolicy, Task


@dataclass
class Candidate:
    """One fitted candidate; `params` is JSON-safe."""

    algorithm: Algorithm
    estimator: Any  # a fitted scikit-learn estimator
    params: dict[str, Any]
    fit_seconds: float  # the refit on every training row, after the search
    search: SearchResult | None = None

    @property
    def threshold(self) -> ThresholdChoice | None:
        return self.search.threshold if self.search else None


def train_candidate(
    algorithm: Algorithm,
    task: Task,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    *,
    seed: int,
    metric: str | None = None,
    policy: SearchPolicy | None = None,
    classes: list[str] | None = None,
    positive_class: str | None = None,
    decision: DecisionPolicy | None = None,
    on_trial: Progress | None = None,
) -> Candidate:
    """Search the algorithm's configurations on the training split (no policy: the defaults
    only), then refit the best on every training row. Binary: the threshold is tuned on the
    best one's out-of-fold predictions (of the positive class: default the second label)."""
    estimator = make_estimator(algorithm, task, seed)
    if task is not Task.REGRESSION and classes is None:
        classes = sorted(set(y_train.astype(str)))
    if task is Task.BINARY and positive_class is None:
        positive_class = (classes or [])[-1]
    result = search(
        estimator,
        algorithm,
        task,
        X_train,
        y_train,
        policy=policy or SearchPolicy(trials=1),
        metric=metric or DEFAULT_PRIMARY_METRIC[task],
        classes=classes,
        positive_class=positive_class,
        decision=decision or DecisionPolicy(),
        seed=seed,
        on_trial=on_trial,
    )
    estimator.set_params(**result.best.params)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    return Candidate(
        algorithm=algorithm,
        estimator=estimator,
        params=json_params(estimator),
        fit_seconds=round(seconds, 4),
        search=result,
    )


def json_params(estimator: BaseEstimator) -> dict[str, Any]:
    """The estimator's own parameters reduced to JSON values (objects and NaN dropped)."""
    out: dict[str, Any] = {}
    for name, value in sorted(estimator.get_params(deep=False).items()):
        if isinstance(value, np.generic):
            value = value.item()
        if (
            value is None
            or isinstance(value, (bool, int, str))
            or (isinstance(value, float) and math.isfinite(value))
        ):
            out[name] = value
    return out
