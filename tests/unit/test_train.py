"""Stage 7: every algorithm trains for every task and beats the dummy baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import is_classifier, is_regressor

from mlcycle.domain.evaluate import baseline_metrics, score_model
from mlcycle.domain.features import engineer
from mlcycle.domain.train import make_estimator, train_candidate
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import METRICS, Algorithm, ColumnType, Task

FEATURES = {
    "x1": ColumnType.NUMERIC,
    "x2": ColumnType.NUMERIC,
    "color": ColumnType.CATEGORICAL,
    "day": ColumnType.DATETIME,
}


def learnable(task: Task, n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, ResolvedSchema]:
    """A problem driven by x1 and color, with noise features and some missing values."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "color": pd.Series(rng.choice(["red", "green", "blue", None], n), dtype=object),
            "day": pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 500, n), "D"),
        }
    )
    z = df["x1"] + 1.5 * (df["color"] == "red") + rng.normal(0, 0.3, n)
    classes: list[str] | None = None
    positive = None
    if task is Task.BINARY:
        df["y"] = np.where(z > 0.4, "yes", "no")
        classes, positive = ["no", "yes"], "yes"
    elif task is Task.MULTICLASS:
        df["y"] = np.select([z < -0.3, z < 0.8], ["low", "mid"], "high")
        classes = ["high", "low", "mid"]
    else:
        df["y"] = 3.0 * z + 10.0
    sch = ResolvedSchema(
        dataset="demo",
        task=task,
        target="y",
        features=FEATURES,
        classes=classes,
        positive_class=positive,
    )
    return df, sch


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION])
def test_make_estimator_matches_the_task(task):
    for algorithm in Algorithm:
        est = make_estimator(algorithm, task, seed=5)
        assert is_regressor(est) if task is Task.REGRESSION else is_classifier(est)
        if "random_state" in est.get_params():
            assert est.get_params()["random_state"] == 5


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION])
@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_every_algorithm_trains_and_beats_the_dummy(task, algorithm):
    df, sch = learnable(task)
    fs = engineer(df, sch, holdout_fraction=0.25, seed=1)
    cand = train_candidate(algorithm, task, fs.X_train, fs.y_train, seed=1)
    assert cand.algorithm is algorithm
    assert cand.fit_seconds >= 0
    json.dumps(cand.params, allow_nan=False)
    assert cand.params  # simple values survive
    metric = {Task.BINARY: "roc_auc", Task.MULTICLASS: "balanced_accuracy"}.get(task, "rmse")
    model = score_model(cand.estimator, fs.X_holdout, fs.y_holdout, sch)
    dummy = baseline_metrics(fs.y_train, fs.y_holdout, sch)
    larger_is_better = METRICS[metric][1]
    if larger_is_better:
        assert model[metric] > dummy[metric] + 0.1
    else:
        assert model[metric] < 0.8 * dummy[metric]


def test_training_is_reproducible_for_a_seed():
    df, sch = learnable(Task.BINARY)
    fs = engineer(df, sch, holdout_fraction=0.25, seed=1)
    a = train_candidate(Algorithm.RANDOM_FOREST, Task.BINARY, fs.X_train, fs.y_train, seed=3)
    b = train_candidate(Algorithm.RANDOM_FOREST, Task.BINARY, fs.X_train, fs.y_train, seed=3)
    # n_jobs=-1 may sum the trees in another order: equal up to float rounding
    np.testing.assert_allclose(
        a.estimator.predict_proba(fs.X_holdout),
        b.estimator.predict_proba(fs.X_holdout),
        rtol=1e-12,
    )
    assert a.params == b.params
    assert a.params["n_estimators"] == 200
