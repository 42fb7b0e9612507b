"""The candidate algorithms: each one's default estimator for a task."""

from __future__ import annotations

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
