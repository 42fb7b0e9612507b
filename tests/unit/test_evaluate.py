"""Stage 7: holdout metrics, baseline, winner, gate, serving pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlcycle.domain.evaluate import (
    baseline_metrics,
    gate,
    holdout_metrics,
    pick_winner,
    score_model,
    serving_pipeline,
)
from mlcycle.domain.features import engineer, model_input
from mlcycle.domain.train import train_candidate
from mlcycle.errors import GateError
from mlcycle.spec import Algorithm, Task
from tests.unit.test_train import learnable


def test_binary_metrics_by_hand():
    y = ["pos", "pos", "neg", "neg"]
    p_pos = np.array([0.9, 0.25, 0.3, 0.2])
    pred = ["pos", "neg", "neg", "neg"]
    proba = np.column_stack([1 - p_pos, p_pos])
    m = holdout_metrics(Task.BINARY, y, pred, proba, ["neg", "pos"], "pos")
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    assert m["f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 1/2
    assert m["roc_auc"] == pytest.approx(3 / 4)  # 3 of 4 pos/neg pairs ordered right
    assert m["log_loss"] == pytest.approx(
        -(math.log(0.9) + math.log(0.25) + math.log(0.7) + math.log(0.8)) / 4
    )
    assert all(type(v) is float for v in m.values())


def test_multiclass_metrics_by_hand_with_a_class_absent_from_the_holdout():
    y = ["a", "a", "b", "b"]  # "c" is a known class with no holdout row
    pred = ["a", "b", "b", "b"]
    proba = np.array([[0.7, 0.2, 0.1], [0.25, 0.65, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    m = holdout_metrics(Task.MULTICLASS, y, pred, proba, ["a", "b", "c"], None)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # a: P=1 R=.5; b: P=2/3 R=1
    assert m["roc_auc"] == pytest.approx(0.75)  # a: 3/4, b: 3/4, c: undefined, skipped
    assert m["log_loss"] == pytest.approx(
        -(math.log(0.7) + math.log(0.25) + math.log(0.7) + math.log(0.6)) / 4
    )


def test_roc_auc_is_left_out_when_the_holdout_has_one_class():
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    m = holdout_metrics(Task.BINARY, ["pos", "pos"], ["pos", "neg"], proba, ["neg", "pos"], "pos")
    assert "roc_auc" not in m
    assert m["accuracy"] == 0.5


def test_regression_metrics_by_hand():
    m = holdout_metrics(Task.REGRESSION, [1.0, 2.0, 3.0], [2.0, 2.0, 2.0], None, None, None)
    assert m == pytest.approx({"rmse": math.sqrt(2 / 3), "mae": 2 / 3, "r2": 0.0})


def test_baseline_is_the_prior():
    fs = engineer(*learnable(Task.BINARY), holdout_fraction=0.25, seed=1)
    _, sch = learnable(Task.BINARY)
    m = baseline_metrics(fs.y_train, fs.y_holdout, sch)
    assert m["roc_auc"] == pytest.approx(0.5)
    majority = fs.y_train.value_counts().idxmax()
    assert m["accuracy"] == pytest.approx((fs.y_holdout == majority).mean())
    reg_df, reg = learnable(Task.REGRESSION)
    fr = engineer(reg_df, reg, holdout_fraction=0.25, seed=1)
    r = baseline_metrics(fr.y_train, fr.y_holdout, reg)
    assert r["mae"] == pytest.approx((fr.y_holdout - fr.y_train.mean()).abs().mean())


def test_pick_winner_respects_direction_and_order():
    results = {
        Algorithm.LINEAR: {"rmse": 2.0, "r2": 0.5},
        Algorithm.RANDOM_FOREST: {"rmse": 1.5, "r2": 0.7},
        Algorithm.HIST_GRADIENT_BOOSTING: {"rmse": 1.5, "r2": 0.9},
    }
    assert pick_winner(results, "rmse") is Algorithm.RANDOM_FOREST  # lower wins, tie: first
    assert pick_winner(results, "r2") is Algorithm.HIST_GRADIENT_BOOSTING
    assert pick_winner({Algorithm.LINEAR: {}, Algorithm.RANDOM_FOREST: {"r2": 0.1}}, "r2") is (
        Algorithm.RANDOM_FOREST
    )
    with pytest.raises(GateError, match="roc_auc"):
        pick_winner({Algorithm.LINEAR: {"accuracy": 0.9}}, "roc_auc")


def _gate(value, *, base=0.5, threshold=0.7, prod=None, metric="roc_auc"):
    return gate(
        primary_metric=metric,
        winner_metrics={metric: value},
        baseline_metrics={metric: base},
        threshold=threshold,
        production_metrics=None if prod is None else {metric: prod},
        production_version=None if prod is None else 3,
    )


def test_gate_passes_with_every_check():
    v = _gate(0.871, prod=0.842)
    assert v.passed
    assert v.reason == (
        "roc_auc 0.871 beats the baseline 0.500, reaches the threshold 0.700, "
        "and beats production v3 at 0.842"
    )
    assert [(c.name, c.passed) for c in v.checks] == [
        ("baseline", True),
        ("threshold", True),
        ("production", True),
    ]


def test_gate_below_threshold():
    v = _gate(0.612)
    assert not v.passed
    assert v.reason == "roc_auc 0.612 is below the threshold 0.700"


def test_gate_below_baseline():
    v = _gate(0.48, threshold=None)
    assert not v.passed
    assert v.reason == "roc_auc 0.480 does not beat the baseline 0.500"
    assert [c.name for c in v.checks] == ["baseline"]


def test_gate_worse_than_production():
    v = _gate(0.8, prod=0.842)
    assert not v.passed
    assert v.reason == "roc_auc 0.800 is worse than production v3 at 0.842"
    assert _gate(0.842, prod=0.842).passed  # as good as production is enough


def test_gate_with_a_smaller_is_better_metric():
    ok = _gate(2.0, base=5.0, threshold=3.0, prod=2.5, metric="rmse")
    assert ok.passed, ok.reason
    bad = _gate(3.2, base=5.0, threshold=3.0, prod=2.5, metric="rmse")
    assert bad.reason == (
        "rmse 3.200 is above the threshold 3.000 and is worse than production v3 at 2.500"
    )


def test_gate_fails_closed_without_a_production_metric():
    v = gate(
        primary_metric="roc_auc",
        winner_metrics={"roc_auc": 0.9},
        baseline_metrics={"roc_auc": 0.5},
        threshold=None,
        production_metrics={},
    )
    assert not v.passed
    assert v.reason == ("roc_auc 0.900 cannot be compared with production, which has no roc_auc")


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION])
def test_serving_pipeline_matches_transformer_then_estimator(task):
    df, sch = learnable(task)
    fs = engineer(df, sch, holdout_fraction=0.25, seed=1)
    cand = train_candidate(Algorithm.HIST_GRADIENT_BOOSTING, task, fs.X_train, fs.y_train, seed=1)
    pipe = serving_pipeline(fs.transformer, cand.estimator)
    raw = df.loc[fs.holdout.index, list(sch.features)]  # as curated, before model_input
    separate = cand.estimator.predict(fs.transformer.transform(fs.holdout[list(sch.features)]))
    np.testing.assert_array_equal(pipe.predict(model_input(raw, sch)), separate)
    np.testing.assert_array_equal(pipe.predict(fs.holdout), separate)
    assert score_model(pipe, raw, fs.y_holdout, sch) == score_model(
        cand.estimator, fs.X_holdout, fs.y_holdout, sch
    )
