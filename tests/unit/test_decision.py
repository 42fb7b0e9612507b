"""Stage 7: the decision threshold of a binary model, tuned on out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlcycle.domain.decision import (
    CURVE_POINTS,
    ThresholdChoice,
    choose_threshold,
    constraint_text,
    decide,
    expected_cost,
)
from mlcycle.spec import Costs, DecisionPolicy, Objective

# Sorted by score: labels 1 1 0 1 0 0 1 0. F1 is best (0.75) flagging the top four.
Y = np.array([True, True, False, True, False, False, True, False])
S = np.array([0.95, 0.85, 0.8, 0.7, 0.55, 0.45, 0.4, 0.2])


def partitions(y: np.ndarray, s: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Every way a threshold can split the rows: flag the scores at or above each cut."""
    return [(float(c), s >= c) for c in np.unique(s)[::-1]]


def noisy_scores(n: int = 300, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    s = 1 / (1 + np.exp(-(1.2 * y + rng.normal(0, 1, n) - 1.5)))
    return y, s


def tune(y: np.ndarray, s: np.ndarray, **policy: object) -> ThresholdChoice:
    return choose_threshold(y, s, DecisionPolicy.model_validate(policy), tuned_on="the folds")


def test_f1_threshold_on_a_tiny_example_is_the_brute_force_optimum():
    choice = tune(Y, S)
    best = max(f1_score(Y, flagged) for _, flagged in partitions(Y, S))
    assert best == pytest.approx(0.75)
    assert choice.objective == pytest.approx(best)
    # halfway between the lowest flagged score (0.7) and the next lower one (0.55)
    assert choice.threshold == pytest.approx(0.625)
    assert choice.precision == pytest.approx(0.75)
    assert choice.recall == pytest.approx(0.75)
    assert choice.feasible
    assert choice.source == "auto: best f1 on the folds"


@pytest.mark.parametrize(
    ("objective", "metric"),
    [("f1", f1_score), ("balanced_accuracy", balanced_accuracy_score)],
)
def test_objective_matches_brute_force_over_every_cut(objective, metric):
    y, s = noisy_scores()
    choice = tune(y, s, optimize=objective)
    best = max(metric(y, flagged) for _, flagged in partitions(y, s))
    assert choice.objective == pytest.approx(best)
    # deciding on the tuned predictions reproduces the optimum partition
    assert metric(y, decide(s, choice.threshold)) == pytest.approx(best)


def test_cost_objective_minimises_expected_cost():
    y, s = noisy_scores()
    costs = Costs(false_positive=1.0, false_negative=5.0, true_positive=-0.5)
    choice = tune(y, s, optimize="cost", costs=costs.model_dump())

    def cost(flagged: np.ndarray) -> float:
        tp = int((flagged & y).sum())
        fp = int((flagged & ~y).sum())
        fn = int((~flagged & y).sum())
        tn = int((~flagged & ~y).sum())
        return (1.0 * fp + 5.0 * fn - 0.5 * tp + 0.0 * tn) / len(y)

    best = min(cost(flagged) for _, flagged in partitions(y, s))
    assert choice.objective == pytest.approx(best)  # reported as the cost, not negated
    assert cost(decide(s, choice.threshold)) == pytest.approx(best)
    assert choice.source == "auto: best expected cost on the folds"
    assert choice.curve["objective"]
    assert min(choice.curve["objective"]) == pytest.approx(best)


def test_expected_cost_by_hand_and_on_arrays():
    costs = Costs(false_positive=2.0, false_negative=10.0, true_positive=-1.0)
    # 5 tn, 3 fp, 1 fn, 1 tp: (0 + 6 + 10 - 1) / 10
    assert expected_cost(costs, 5, 3, 1, 1) == pytest.approx(1.5)
    many = expected_cost(costs, np.array([5, 10]), np.array([3, 0]), np.array([1, 0]), [1, 0])
    np.testing.assert_allclose(many, [1.5, 0.0])


def test_min_precision_is_respected():
    choice = tune(Y, S, min_precision=0.9)
    # only the top one or two rows reach precision 0.9; the top two have the better F1
    assert choice.feasible
    assert choice.threshold == pytest.approx((0.85 + 0.8) / 2)
    assert choice.precision == pytest.approx(1.0)
    assert choice.objective == pytest.approx(f1_score(Y, S >= 0.85))
    flagged = decide(S, choice.threshold)
    assert precision_score(Y, flagged) >= 0.9


def test_min_recall_is_respected_on_noisy_scores():
    y, s = noisy_scores()
    choice = tune(y, s, min_recall=0.9)
    allowed = [f1_score(y, f) for _, f in partitions(y, s) if recall_score(y, f) >= 0.9]
    assert choice.feasible
    assert choice.objective == pytest.approx(max(allowed))
    flagged = decide(s, choice.threshold)
    assert recall_score(y, flagged) >= 0.9
    assert choice.recall == pytest.approx(recall_score(y, flagged))
    assert choice.precision == pytest.approx(precision_score(y, flagged))


def test_infeasible_constraints_are_reported_not_hidden():
    choice = tune(Y, S, min_precision=1.0, min_recall=1.0)
    assert not choice.feasible
    # still a threshold (the best objective overall), so there is a model to report on
    assert choice.objective == pytest.approx(0.75)
    assert constraint_text(DecisionPolicy(min_precision=1.0, min_recall=1.0)) == (
        "precision >= 1 and recall >= 1"
    )


def test_threshold_lies_strictly_between_the_chosen_score_and_the_next_lower():
    y, s = noisy_scores(seed=11)
    choice = tune(y, s)
    flagged = decide(s, choice.threshold)
    lowest_flagged = s[flagged].min()
    highest_unflagged = s[~flagged].max()
    assert highest_unflagged < choice.threshold < lowest_flagged
    assert choice.threshold == pytest.approx((lowest_flagged + highest_unflagged) / 2)
    assert choice.precision == pytest.approx(precision_score(y, flagged))
    assert choice.recall == pytest.approx(recall_score(y, flagged))


def test_flagging_every_row_halves_the_lowest_score():
    y = np.array([True, True, False, True])
    s = np.array([0.9, 0.2, 0.6, 0.4])
    choice = tune(y, s, min_recall=1.0)
    assert choice.threshold == pytest.approx(0.1)
    assert decide(s, choice.threshold).all()
    assert choice.recall == 1.0


def test_flagging_every_row_when_some_scores_are_exactly_zero():
    y = np.array([True, True, False, False, True])
    s = np.array([0.0, 0.3, 0.0, 0.6, 0.8])  # a forest's probabilities
    choice = tune(y, s, min_recall=1.0)
    flagged = decide(s, choice.threshold)
    assert choice.recall == pytest.approx(recall_score(y, flagged))
    assert recall_score(y, flagged) == 1.0


def test_a_spec_threshold_is_used_as_is():
    choice = tune(Y, S, threshold=0.5)
    assert choice.threshold == 0.5
    assert choice.source == "set in the spec"
    flagged = decide(S, 0.5)  # the top five: 3 positives of 4, 2 false positives
    assert choice.precision == pytest.approx(precision_score(Y, flagged)) == pytest.approx(0.6)
    assert choice.recall == pytest.approx(recall_score(Y, flagged)) == pytest.approx(0.75)
    assert choice.objective == pytest.approx(f1_score(Y, flagged))


def test_a_spec_threshold_on_a_score_counts_that_score_as_positive():
    choice = tune(Y, S, threshold=0.7)
    assert choice.threshold == 0.7
    assert choice.recall == pytest.approx(0.75)  # 0.7 itself is flagged
    assert decide(S, 0.7).sum() == 4


def test_a_spec_threshold_above_every_score_flags_nothing():
    choice = tune(Y, S, threshold=0.99)
    assert not decide(S, 0.99).any()
    assert choice.recall == 0.0


def test_curve_is_thinned_and_consistent_with_the_choice():
    y, s = noisy_scores(n=1000, seed=5)
    choice = tune(y, s)
    curve = choice.curve
    assert set(curve) == {"thresholds", "objective", "precision", "recall"}
    assert len(curve["thresholds"]) <= CURVE_POINTS
    assert {len(v) for v in curve.values()} == {len(curve["thresholds"])}
    assert curve["thresholds"] == sorted(curve["thresholds"], reverse=True)
    assert max(curve["objective"]) <= choice.objective + 1e-12
    # each kept point's precision and recall are those of flagging scores >= its threshold
    for t, p, r in list(zip(curve["thresholds"], curve["precision"], curve["recall"], strict=True))[
        ::37
    ]:
        assert p == pytest.approx(precision_score(y, s >= t, zero_division=0))
        assert r == pytest.approx(recall_score(y, s >= t))


def test_small_curve_keeps_every_cut_and_holds_the_chosen_point():
    choice = tune(Y, S)
    curve = choice.curve
    assert curve["thresholds"] == pytest.approx(list(S))
    at = curve["thresholds"].index(0.7)  # the lowest flagged score
    assert curve["precision"][at] == pytest.approx(choice.precision)
    assert curve["recall"][at] == pytest.approx(choice.recall)
    assert curve["objective"][at] == pytest.approx(choice.objective)
    js = choice.to_json()
    assert js["threshold"] == choice.threshold
    assert js["curve"] == curve


def test_tuned_threshold_beats_argmax_on_real_imbalanced_data():
    """Digits, "is it an 8" from row and column ink sums, 8s subsampled to 5%: logistic
    regression rarely reaches 0.5 on the rare class, a tuned threshold finds far more."""
    X, digit = load_digits(return_X_y=True)
    images = X.reshape(-1, 8, 8)
    features = np.hstack([images.sum(axis=2), images.sum(axis=1)])
    rng = np.random.default_rng(0)
    eights = np.flatnonzero(digit == 8)
    keep = np.concatenate([np.flatnonzero(digit != 8), rng.choice(eights, 85, replace=False)])
    X_s, y_s = features[keep], digit[keep] == 8
    assert 0.04 < y_s.mean() < 0.06
    X_tr, X_te, y_tr, y_te = train_test_split(X_s, y_s, test_size=0.4, stratify=y_s, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    oof = cross_val_predict(
        model,
        X_tr,
        y_tr,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        method="predict_proba",
    )[:, 1]
    choice = choose_threshold(y_tr, oof, DecisionPolicy(), tuned_on="out-of-fold predictions")
    assert choice.threshold < 0.5
    p = model.fit(X_tr, y_tr).predict_proba(X_te)[:, 1]
    at_half = f1_score(y_te, p >= 0.5)
    tuned = f1_score(y_te, decide(p, choice.threshold))
    assert tuned > at_half + 0.1
    assert pd.Series(decide(p, choice.threshold)).sum() > (p >= 0.5).sum()


def test_costs_make_the_threshold_follow_the_cost_ratio():
    """Missing a positive costing more pushes the threshold down (more rows flagged)."""
    y, s = noisy_scores(n=600, seed=8)
    cheap = tune(y, s, optimize=Objective.COST, costs={"false_positive": 1, "false_negative": 1})
    dear = tune(y, s, optimize=Objective.COST, costs={"false_positive": 1, "false_negative": 20})
    assert dear.threshold < cheap.threshold
    assert dear.recall > cheap.recall
