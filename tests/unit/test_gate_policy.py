"""Stage 7: the gate against production with a paired bootstrap, and the decision's checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from mlcycle.domain.bootstrap import Comparison, Scores, paired_comparison
from mlcycle.domain.decision import ThresholdChoice
from mlcycle.domain.evaluate import decision_checks, gate, recent_check
from mlcycle.spec import DecisionPolicy, GatePolicy, Task


def comparison(probability: float, **fields: float) -> Comparison:
    base = Comparison(
        metric="roc_auc",
        challenger=0.88,
        reference=0.86,
        difference=0.02,
        low=-0.004,
        high=0.041,
        probability=probability,
        min_improvement=0.0,
        level=0.9,
        replicates=1000,
    )
    return replace(base, **fields)


def production_gate(c: Comparison | None, policy: GatePolicy | None, value: float = 0.88):
    return gate(
        primary_metric="roc_auc",
        winner_metrics={"roc_auc": value},
        baseline_metrics={"roc_auc": 0.5},
        threshold=None,
        production_metrics={"roc_auc": 0.86},
        production_version=4,
        comparison=c,
        policy=policy,
    )


def production_check(verdict):
    (check,) = [c for c in verdict.checks if c.name == "production"]
    return check


INTERVAL = "(paired difference +0.020, 90% interval -0.004 to +0.041)"


def test_confident_improvement_passes_and_quotes_the_interval():
    verdict = production_gate(comparison(0.95), GatePolicy(confidence=0.9))
    assert verdict.passed
    check = production_check(verdict)
    assert check.passed
    assert check.detail == (
        "is better than production v4 at 0.860 by at least 0 with probability 0.95 "
        f"(required 0.9) {INTERVAL}"
    )
    assert verdict.reason == f"roc_auc 0.880 beats the baseline 0.500 and {check.detail}"


def test_an_uncertain_improvement_fails_though_the_point_estimate_is_better():
    verdict = production_gate(comparison(0.5), GatePolicy(confidence=0.9))
    assert not verdict.passed
    check = production_check(verdict)
    assert not check.passed
    assert check.detail.startswith("is not better than production v4 at 0.860")
    assert "with probability 0.50 (required 0.9)" in check.detail
    assert INTERVAL in check.detail
    assert verdict.reason == f"roc_auc 0.880 {check.detail}"  # only the failed check


def test_the_required_probability_is_inclusive():
    assert production_gate(comparison(0.9), GatePolicy(confidence=0.9)).passed


def test_min_improvement_is_named_in_the_detail():
    c = comparison(0.93, min_improvement=0.01)
    check = production_check(production_gate(c, GatePolicy(min_improvement=0.01, confidence=0.9)))
    assert check.passed
    assert "by at least 0.01 with probability 0.93" in check.detail


def test_without_confidence_the_point_estimates_decide_and_the_interval_is_quoted():
    better = production_check(production_gate(comparison(0.5), GatePolicy()))
    assert better.passed
    assert better.detail == f"beats production v4 at 0.860 {INTERVAL}"
    # a worse point estimate fails even when the bootstrap is confident
    worse = production_check(production_gate(comparison(0.99), None, value=0.85))
    assert not worse.passed
    assert worse.detail == f"is worse than production v4 at 0.860 {INTERVAL}"


def test_confidence_without_a_comparison_falls_back_to_the_point_estimates():
    check = production_check(production_gate(None, GatePolicy(confidence=0.9)))
    assert check.passed
    assert check.detail == "beats production v4 at 0.860"


def test_a_real_paired_bootstrap_drives_the_gate():
    """Breast cancer: all 30 features against one weak feature, on the same holdout."""
    data = load_breast_cancer()
    X = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    labels = np.asarray(data.target_names)[data.target].astype(object)
    X_tr, X_te, y_tr, y_te = train_test_split(X, labels, test_size=0.4, random_state=0)
    classes = ["benign", "malignant"]

    def scores(columns: list[int]) -> tuple[Scores, float]:
        model = LogisticRegression(max_iter=1000).fit(X_tr[:, columns], y_tr)
        proba = model.predict_proba(X_te[:, columns])
        return Scores(model.predict(X_te[:, columns]), proba), float(
            roc_auc_score(y_te == "malignant", proba[:, 1])
        )

    strong, strong_auc = scores(list(range(30)))
    weak, weak_auc = scores([9])  # mean fractal dimension: barely informative
    c = paired_comparison(
        "roc_auc",
        Task.BINARY,
        y_te,
        strong,
        weak,
        classes=classes,
        positive_class="malignant",
        level=0.9,
        replicates=300,
    )
    assert c.challenger == pytest.approx(strong_auc)
    assert c.reference == pytest.approx(weak_auc)
    assert c.probability > 0.99
    verdict = gate(
        primary_metric="roc_auc",
        winner_metrics={"roc_auc": strong_auc},
        baseline_metrics={"roc_auc": 0.5},
        threshold=None,
        production_metrics={"roc_auc": weak_auc},
        comparison=c,
        policy=GatePolicy(confidence=0.95),
    )
    assert verdict.passed
    assert f"interval {c.low:+.3f} to {c.high:+.3f}" in production_check(verdict).detail
    reverse = paired_comparison(
        "roc_auc",
        Task.BINARY,
        y_te,
        weak,
        strong,
        classes=classes,
        positive_class="malignant",
        replicates=300,
    )
    assert reverse.probability < 0.01
    assert not gate(
        primary_metric="roc_auc",
        winner_metrics={"roc_auc": weak_auc},
        baseline_metrics={"roc_auc": 0.5},
        threshold=None,
        production_metrics={"roc_auc": strong_auc},
        comparison=reverse,
        policy=GatePolicy(confidence=0.95),
    ).passed


# --- the decision's constraints ---------------------------------------------------------------


def choice(feasible: bool = True, precision: float = 0.82, recall: float = 0.71) -> ThresholdChoice:
    return ThresholdChoice(
        threshold=0.3125,
        source="auto: best f1 on the folds",
        objective=0.76,
        precision=precision,
        recall=recall,
        feasible=feasible,
    )


def test_decision_checks_pass_when_the_holdout_meets_the_limits():
    policy = DecisionPolicy(min_precision=0.8, min_recall=0.6)
    (check,) = decision_checks(choice(), {"precision": 0.81, "recall": 0.65}, policy)
    assert check.name == "decision"
    assert check.passed
    assert check.detail == (
        "meets precision >= 0.8 and recall >= 0.6 at threshold 0.312 on the holdout"
    )


def test_decision_checks_fail_and_name_the_missed_numbers():
    policy = DecisionPolicy(min_precision=0.8, min_recall=0.6)
    (check,) = decision_checks(choice(), {"precision": 0.74, "recall": 0.55}, policy)
    assert not check.passed
    assert check.detail == (
        "misses precision >= 0.8 and recall >= 0.6 at threshold 0.312 on the holdout: "
        "precision 0.740 is below 0.8; recall 0.550 is below 0.6"
    )
    (only_recall,) = decision_checks(
        choice(), {"precision": 0.9, "recall": 0.55}, DecisionPolicy(min_recall=0.6)
    )
    assert not only_recall.passed
    assert only_recall.detail.endswith(": recall 0.550 is below 0.6")


def test_an_infeasible_choice_fails_with_its_training_numbers():
    policy = DecisionPolicy(min_precision=0.95)
    (check,) = decision_checks(choice(False, 0.9, 0.4), {"precision": 0.99}, policy)
    assert not check.passed
    assert check.detail == (
        "has no threshold with precision >= 0.95 on the training folds (at 0.312: "
        "precision 0.900, recall 0.400)"
    )


def test_no_constraints_or_no_choice_add_no_check():
    assert decision_checks(choice(), {"precision": 0.1, "recall": 0.1}, DecisionPolicy()) == []
    assert decision_checks(None, {"precision": 0.1}, DecisionPolicy(min_precision=0.5)) == []


def test_a_missing_holdout_metric_counts_as_a_miss():
    (check,) = decision_checks(choice(), {}, DecisionPolicy(min_recall=0.5))
    assert not check.passed
    assert "recall" in check.detail


def test_decision_checks_take_part_in_the_verdict():
    checks = decision_checks(
        choice(), {"precision": 0.74, "recall": 0.9}, DecisionPolicy(min_precision=0.8)
    )
    verdict = gate(
        primary_metric="f1",
        winner_metrics={"f1": 0.8},
        baseline_metrics={"f1": 0.2},
        threshold=None,
        production_metrics=None,
        decision_checks=checks,
    )
    assert not verdict.passed
    assert [(c.name, c.passed) for c in verdict.checks] == [
        ("baseline", True),
        ("decision", False),
    ]
    assert verdict.reason == (
        "f1 0.800 misses precision >= 0.8 at threshold 0.312 on the holdout: "
        "precision 0.740 is below 0.8"
    )


# -- a retraining run: judged on the holdout production was judged on, and on recent traffic


def retraining_gate(holdout: Comparison, recent: Comparison, policy: GatePolicy | None = None):
    return gate(
        primary_metric="roc_auc",
        winner_metrics={"roc_auc": holdout.challenger},
        baseline_metrics={"roc_auc": 0.5},
        threshold=None,
        production_metrics={"roc_auc": holdout.reference},
        production_version=1,
        comparison=holdout,
        policy=policy,
        recent_check=recent_check(recent, 300, "production v1", policy),
    )


def test_a_retrained_model_better_on_recent_traffic_and_no_worse_on_the_holdout_passes() -> None:
    tie = comparison(
        0.4, challenger=0.875, reference=0.876, difference=-0.001, low=-0.006, high=0.004
    )
    better = comparison(
        1.0, challenger=0.835, reference=0.725, difference=0.11, low=0.066, high=0.153
    )
    verdict = retraining_gate(tie, better)
    assert verdict.passed, verdict.reason
    assert "is no worse than production v1 at 0.876 on the holdout" in verdict.reason
    assert (
        "on the 300 most recent labeled requests (held back from training) beats "
        "production v1: 0.835 against 0.725" in verdict.reason
    )


def test_credibly_worse_on_the_holdout_fails_however_good_on_recent_traffic() -> None:
    worse = comparison(
        0.0, challenger=0.84, reference=0.876, difference=-0.036, low=-0.05, high=-0.02
    )
    better = comparison(1.0, challenger=0.9, reference=0.7, difference=0.2, low=0.1, high=0.3)
    verdict = retraining_gate(worse, better)
    assert not verdict.passed
    assert verdict.reason.startswith("roc_auc 0.840 is worse than production v1 at 0.876 on the")


def test_not_better_on_recent_traffic_fails_even_when_tied_on_the_holdout() -> None:
    tie = comparison(0.5, challenger=0.876, reference=0.876, difference=0.0, low=-0.004, high=0.004)
    worse_recent = comparison(
        0.2, challenger=0.80, reference=0.81, difference=-0.01, low=-0.03, high=0.01
    )
    verdict = retraining_gate(tie, worse_recent)
    assert not verdict.passed
    assert "is not better than production v1: 0.800 against 0.810" in verdict.reason
    # with a confidence, recent traffic must show the improvement with that probability
    better_maybe = comparison(0.7, challenger=0.82, reference=0.81, difference=0.01)
    assert retraining_gate(tie, better_maybe).passed
    assert not retraining_gate(tie, better_maybe, GatePolicy(confidence=0.9)).passed
