"""The monitor's drift, prediction drift and live quality, on generated data with no AWS."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from mlcycle.domain.drift_stats import sorted_bin_fractions
from mlcycle.domain.features import bin_fractions, category_fractions, drift_baseline
from mlcycle.domain.monitor import (
    extend_baseline,
    feature_drift,
    live_quality,
    prediction_baseline,
    prediction_drift,
    quantile_grid,
)
from mlcycle.errors import BadInputError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, MonitoringLimits, Task

N = 20_000
FEATURES = {
    "age": ColumnType.NUMERIC,
    "visits": ColumnType.NUMERIC,  # discrete: ties at the decile edges
    "plan": ColumnType.CATEGORICAL,
    "signup": ColumnType.DATETIME,
}
SCHEMA = ResolvedSchema(
    dataset="demo",
    task=Task.BINARY,
    target="churned",
    features=FEATURES,
    classes=["no", "yes"],
    positive_class="yes",
)
LIMITS = MonitoringLimits()  # psi 0.2, more than 1 drifted feature alarms, 100 rows


def make_frame(
    n: int = N,
    seed: int = 0,
    *,
    age_shift: float = 0.0,
    plan_p: tuple[float, ...] = (0.5, 0.3, 0.2),
    visits_missing: float = 0.02,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(4, n).astype("float64")
    visits[rng.random(n) < visits_missing] = np.nan
    return pd.DataFrame(
        {
            "age": rng.lognormal(3.5, 0.3, n) + age_shift,
            "visits": visits,
            "plan": pd.Series(rng.choice(["basic", "pro", "team"], n, p=plan_p), dtype=object),
            "signup": pd.Timestamp("2022-01-01")
            + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(seed=1)


@pytest.fixture(scope="module")
def baseline(reference: pd.DataFrame) -> dict:
    return extend_baseline(drift_baseline(reference, SCHEMA), reference, SCHEMA)


def by_name(result_json: dict) -> dict[str, dict]:
    return {f["name"]: f for f in result_json["features"]}


def test_same_distribution_has_no_drift(baseline: dict) -> None:
    result = feature_drift(make_frame(seed=2), baseline, SCHEMA, LIMITS).to_json()
    assert result["n_drifted"] == 0
    assert result["drifted_features"] == []
    assert not result["alarm"]
    assert result["enough_samples"]
    for f in result["features"]:
        assert f["psi"] < 0.01, f
        assert not f["drifted"]
        assert sum(f["reference"]) == pytest.approx(1.0)
        assert sum(f["current"]) == pytest.approx(1.0)
        assert len(f["bins"]) == len(f["reference"]) == len(f["current"])


def test_shifted_mean_and_changed_mix_are_flagged_by_name(baseline: dict) -> None:
    current = make_frame(seed=3, age_shift=10.0, plan_p=(0.2, 0.3, 0.5))
    result = feature_drift(current, baseline, SCHEMA, LIMITS).to_json()
    assert result["drifted_features"] == ["age", "plan"]
    assert result["alarm"]  # 2 drifted > max_drifted_features 1
    assert any(
        "2 features drifted, more than the 1 allowed: age (PSI" in reason
        and ", plan (PSI" in reason
        for reason in result["reasons"]
    )
    features = by_name(result)
    assert features["age"]["drifted_by"] == ["psi", "ks"]
    assert features["plan"]["drifted_by"] == ["psi", "distance"]
    assert features["age"]["ks"] > 0.2
    assert features["plan"]["cramers_v"] > 0.2
    assert features["plan"]["unknown_rate"] == 0.0
    assert features["signup"]["psi"] < 0.01


def test_unknown_categories_are_counted_as_other_and_flagged(baseline: dict) -> None:
    current = make_frame(seed=4)
    current.loc[current.index[: N // 4], "plan"] = "enterprise"  # never seen in training
    result = feature_drift(current, baseline, SCHEMA, LIMITS).to_json()
    plan = by_name(result)["plan"]
    assert result["drifted_features"] == ["plan"]
    assert not result["alarm"]  # one drifted feature is within the limit
    assert plan["unknown_rate"] == pytest.approx(0.25)
    assert plan["unknown_exact"] is True  # training had 3 categories, all listed
    assert plan["bins"] == ["basic", "pro", "team", "__other__", "__missing__"]
    assert plan["current"][3] == pytest.approx(0.25)


def test_a_rising_missing_rate_is_flagged(baseline: dict) -> None:
    result = feature_drift(make_frame(seed=5, visits_missing=0.3), baseline, SCHEMA, LIMITS)
    visits = by_name(result.to_json())["visits"]
    assert result.drifted_features == ["visits"]
    assert visits["missing_rate"] == pytest.approx(0.3, abs=0.01)
    assert visits["baseline_missing_rate"] == pytest.approx(0.02, abs=0.005)


def test_ks_estimate_is_close_to_the_exact_two_sample_statistic(
    reference: pd.DataFrame, baseline: dict
) -> None:
    old_style = drift_baseline(reference, SCHEMA)  # deciles only: a coarser lower bound
    for current in (make_frame(seed=6), make_frame(seed=7, age_shift=3.0, visits_missing=0.1)):
        fine = by_name(feature_drift(current, baseline, SCHEMA, LIMITS).to_json())
        coarse = by_name(feature_drift(current, old_style, SCHEMA, LIMITS).to_json())
        for col in ("age", "visits"):
            exact = ks_2samp(reference[col].dropna(), current[col].dropna()).statistic
            assert fine[col]["ks"] == pytest.approx(exact, abs=0.01), col
            assert coarse[col]["ks"] <= exact + 0.01, col
        days = ks_2samp(reference["signup"].astype("int64"), current["signup"].astype("int64"))
        assert fine["signup"]["ks"] == pytest.approx(days.statistic, abs=0.01)


def test_a_small_window_is_measured_but_does_not_alarm(baseline: dict) -> None:
    current = make_frame(n=50, seed=8, age_shift=10.0, plan_p=(0.1, 0.1, 0.8))
    result = feature_drift(current, baseline, SCHEMA, LIMITS)
    assert result.n_drifted >= 2
    assert not result.enough_samples
    assert not result.alarm
    assert "fewer than the 100" in result.reasons[0]


def test_datetimes_captured_as_text_are_parsed(baseline: dict) -> None:
    current = make_frame(seed=9)
    current["signup"] = current["signup"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    signup = by_name(feature_drift(current, baseline, SCHEMA, LIMITS).to_json())["signup"]
    assert signup["missing_rate"] == 0.0
    assert signup["psi"] < 0.01


def test_missing_feature_columns_are_a_clear_error(baseline: dict) -> None:
    with pytest.raises(BadInputError, match="plan"):
        feature_drift(make_frame(seed=10).drop(columns="plan"), baseline, SCHEMA, LIMITS)


def test_category_shares_match_the_features_helper(baseline: dict) -> None:
    current = make_frame(n=2000, seed=11)
    current.loc[current.index[:100], "plan"] = None
    current.loc[current.index[100:150], "plan"] = 7  # a number in a text column is "7"
    plan = by_name(feature_drift(current, baseline, SCHEMA, LIMITS).to_json())["plan"]
    categories = list(baseline["columns"]["plan"]["frequencies"])
    present = 1 - plan["missing_rate"]
    shares = [x / present for x in plan["current"][:-1]]
    assert shares == pytest.approx(category_fractions(current["plan"], categories))


def test_result_json_has_no_nan_even_for_empty_columns(baseline: dict) -> None:
    current = make_frame(n=300, seed=12)
    current["age"] = np.nan
    current["plan"] = None
    result = feature_drift(current, baseline, SCHEMA, LIMITS).to_json()
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text)["sample_size"] == 300
    features = by_name(result)
    assert features["age"]["ks"] is None
    assert features["age"]["mean"] is None
    assert features["age"]["drifted"]  # everything went missing
    assert features["plan"]["unknown_rate"] is None


@pytest.mark.parametrize("values", [[], [3.0], [1.0, 2.0, 2.0, 2.0, 3.0, 5.0, 5.0, 9.0]])
def test_sorted_bin_fractions_match_the_features_helper(values: list[float]) -> None:
    rng = np.random.default_rng(40)
    data = np.sort(np.r_[values, rng.integers(0, 10, 500).astype("float64")])
    for edges in ([], [2.0], [1.0, 2.0, 5.0], [0.5, 2.0, 2.5, 9.0, 11.0]):
        assert sorted_bin_fractions(data, edges) == pytest.approx(bin_fractions(data, edges))
    assert sorted_bin_fractions(np.array([]), [1.0, 2.0]) == bin_fractions([], [1.0, 2.0])


def test_quantile_grid_is_empty_without_values() -> None:
    assert quantile_grid([np.nan, np.inf]) == []
    assert quantile_grid([1.0, 2.0, 3.0], points=3) == [1.0, 2.0, 3.0]


# --- prediction drift --------------------------------------------------------------------


def test_prediction_drift_classification() -> None:
    rng = np.random.default_rng(20)
    summary = prediction_baseline(rng.choice(["no", "yes"], 5000, p=[0.8, 0.2]), "binary")
    assert summary["classes"] == ["no", "yes"]
    assert sum(summary["shares"]) == pytest.approx(1.0)
    same = prediction_drift(rng.choice(["no", "yes"], 5000, p=[0.8, 0.2]), summary, "binary")
    moved = prediction_drift(
        rng.choice(["no", "yes"], 5000, p=[0.4, 0.6]), summary, "binary", limits=LIMITS
    )
    assert same.psi < 0.01
    assert same.drifted is None  # no limits given
    assert moved.psi > LIMITS.prediction_psi_threshold
    assert moved.drifted
    assert moved.bins == ["no", "yes", "__other__"]
    json.dumps(moved.to_json(), allow_nan=False)


def test_prediction_drift_regression() -> None:
    rng = np.random.default_rng(21)
    summary = prediction_baseline(rng.normal(100, 15, 5000), Task.REGRESSION)
    assert len(summary["fractions"]) == len(summary["edges"]) + 1
    same = prediction_drift(rng.normal(100, 15, 5000), summary, Task.REGRESSION)
    moved = prediction_drift(rng.normal(120, 15, 5000), summary, Task.REGRESSION)
    assert same.psi < 0.02
    assert moved.psi > 0.2
    assert moved.ks == pytest.approx(0.5, abs=0.05)  # Phi(20/15/2)*2-1 ~ 0.5


def test_prediction_drift_raises_the_alarm(baseline: dict) -> None:
    rng = np.random.default_rng(22)
    stored = {
        **baseline,
        "predictions": prediction_baseline(rng.choice(["no", "yes"], 4000), "binary"),
    }
    live = np.where(rng.random(N) < 0.9, "yes", "no")
    result = feature_drift(make_frame(seed=13), stored, SCHEMA, LIMITS, predictions=live)
    assert result.n_drifted == 0
    assert result.prediction is not None
    assert result.prediction.drifted
    assert result.alarm
    assert "predictions drifted" in result.reasons[-1]
    without = feature_drift(make_frame(seed=13), baseline, SCHEMA, LIMITS, predictions=live)
    assert without.prediction is None
    assert "no prediction baseline" in without.reasons[0]


# --- live quality ------------------------------------------------------------------------


def test_live_quality_classification_with_and_without_probabilities() -> None:
    rng = np.random.default_rng(30)
    labels = rng.choice(["no", "yes"], 500)
    flip = rng.random(500) < 0.2
    predictions = np.where(flip, np.where(labels == "yes", "no", "yes"), labels)
    p_yes = np.clip(np.where(predictions == "yes", 0.8, 0.2) + rng.normal(0, 0.05, 500), 0, 1)
    proba = np.c_[1 - p_yes, p_yes]
    args = (predictions, labels, "binary", ["no", "yes"], "yes")
    full = live_quality(*args, "roc_auc", probabilities=proba)
    assert full["n_labels"] == 500
    assert full["value"] == full["metrics"]["roc_auc"] > 0.7
    assert full["metrics"]["accuracy"] == pytest.approx(0.8, abs=0.05)
    labels_only = live_quality(*args, "roc_auc")
    assert labels_only["value"] is None
    assert "probabilities" in labels_only["reason"]
    assert set(labels_only["metrics"]) == {
        "accuracy",
        "balanced_accuracy",
        "f1",
        "precision",
        "recall",
    }
    assert labels_only["metrics"]["accuracy"] == full["metrics"]["accuracy"]
    json.dumps(full, allow_nan=False)


def test_live_quality_regression_drops_missing_labels() -> None:
    y = np.arange(100, dtype="float64")
    labels = pd.Series(y, dtype=object)
    labels[:10] = None
    out = live_quality(y + 1.0, labels, Task.REGRESSION, None, None, "mae")
    assert out["n_labels"] == 90
    assert out["dropped"]["missing"] == 10
    assert out["value"] == pytest.approx(1.0)


def test_live_quality_with_too_few_labels_has_no_metric() -> None:
    out = live_quality(["yes"] * 5, ["no"] * 5, "binary", ["no", "yes"], "yes", "accuracy")
    assert out["value"] is None
    assert out["metrics"] == {}
    assert "only 5 labelled predictions" in out["reason"]


def test_live_quality_ignores_labels_outside_the_classes() -> None:
    preds = ["no", "yes"] * 30
    labels = ["no", "yes"] * 29 + ["maybe", "maybe"]
    out = live_quality(preds, labels, "binary", ["no", "yes"], "yes", "accuracy", min_labels=10)
    assert out["dropped"]["unknown_class"] == 2
    assert out["value"] == 1.0


def test_live_quality_rejects_a_metric_of_another_task() -> None:
    with pytest.raises(BadInputError, match="rmse"):
        live_quality([1], [1], "binary", ["0", "1"], "1", "rmse")


def test_any_feature_name_is_a_cloudwatch_dimension_value() -> None:
    from mlcycle.monitoring import MAX_DIMENSION, dimension

    assert dimension("price ($) 😀") == "price ($) 😀"
    assert dimension("x" * MAX_DIMENSION) == "x" * MAX_DIMENSION
    assert dimension("") == "(unnamed)"
    long_a, long_b = "n" * 2000 + "a", "n" * 2000 + "b"
    assert len(dimension(long_a)) == MAX_DIMENSION
    assert dimension(long_a) != dimension(long_b)  # same first 1024 characters, kept apart
    assert dimension(long_a) == dimension(long_a)
