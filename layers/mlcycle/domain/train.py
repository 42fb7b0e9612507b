"""Stage 7, training one candidate on the engineered features."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from mlcycle.errors import GateError
from mlcycle.spec import Algorithm, Task


@dataclass
class Candidate:
    """One fitted candidate; `params` is JSON-safe."""

    algorithm: Algorithm
    estimator: Any  # a fitted scikit-learn estimator
    params: dict[str, Any]
    fit_seconds: float


def make_estimator(algorithm: Algorithm, task: Task, seed: int) -> BaseEstimator:
    """A fast default estimator for the algorithm and task."""
    if task is Task.AUTO:
        raise GateError("the task must be resolved before training")
    classify = task is not Task.REGRESSION
    if algorithm is Algorithm.LINEAR:
        # random_state only matters for stochastic solvers; set it so every candidate is seeded
        if classify:
            return LogisticRegression(max_iter=1000, random_state=seed)
        return Ridge(alpha=1.0, random_state=seed)
    if algorithm is Algorithm.RANDOM_FOREST:
        # max_depth and min_samples_leaf bound the tree count x leaves, i.e. the artifact
        # (pickle and ONNX) size: at most 200 x 1024 leaves whatever the row count.
        forest = dict(
            n_estimators=200, max_depth=10, min_samples_leaf=3, n_jobs=-1, random_state=seed
        )
        return RandomForestClassifier(**forest) if classify else RandomForestRegressor(**forest)
    if algorithm is Algorithm.HIST_GRADIENT_BOOSTING:
        # early_stopping="auto" turns on above 10k rows
        if classify:
            return HistGradientBoostingClassifier(random_state=seed)
        return HistGradientBoostingRegressor(random_state=seed)
    raise GateError(f"unknown algorithm {algorithm!r}")


def train_candidate(
    algorithm: Algorithm,
    task: Task,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    *,
    seed: int,
) -> Candidate:
    """Fit one candidate on the transformed training features."""
    estimator = make_estimator(algorithm, task, seed)
    started = time.perf_counter()
    estimator.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    return Candidate(
        algorithm=algorithm,
        estimator=estimator,
        params=json_params(estimator),
        fit_seconds=round(seconds, 4),
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
