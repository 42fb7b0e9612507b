"""Fairness across groups (mlcycle.domain.fairness): the per-group numbers are fairlearn's,
computed here independently with MetricFrame; the summary measures are Clarify's, computed
here by hand from counts; the edge cases say what they are rather than a misleading number."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    mean_prediction,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, mean_absolute_error

from mlcycle.domain import fairness, process
from mlcycle.domain.evaluate import gate
from mlcycle.errors import BadInputError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, FairnessPolicy, ProblemSpec, Task

BINARY = ResolvedSchema(
    dataset="loans",
    task=Task.BINARY,
    target="default",
    features={"income": ColumnType.NUMERIC},
    sensitive={"sex": ColumnType.CATEGORICAL, "age": ColumnType.NUMERIC},
    classes=["no", "yes"],
    positive_class="yes",
)


def _binary_data(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Women are flagged less often than men; a few rows have no sex or age."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["male", "female"], dtype=object), n, p=[0.6, 0.4])
    sex[rng.random(n) < 0.05] = None
    age = rng.integers(18, 80, n).astype("float64")
    age[rng.random(n) < 0.03] = np.nan
    truth = rng.random(n) < np.where(sex == "female", 0.3, 0.4)
    flagged = np.where(truth, rng.random(n) < 0.8, rng.random(n) < 0.15)
    flagged &= ~((sex == "female") & (rng.random(n) < 0.35))
    labels = np.array(["no", "yes"], dtype=object)
    return (
        pd.DataFrame({"sex": sex, "age": age}),
        labels[truth.astype(int)],
        labels[flagged.astype(int)],
    )


def _assess(
    rows: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    schema: ResolvedSchema = BINARY,
    **policy: object,
) -> dict:
    spec = FairnessPolicy(sensitive_features=list(schema.sensitive), **policy)  # type: ignore[arg-type]
    groups = fairness.groupings(rows, schema, spec)
    return fairness.assess(rows, y, p, schema, spec, groups)


def _group(section: dict, feature: str, group: str) -> dict:
    return next(g for g in section["features"][feature]["groups"] if g["group"] == group)


def _measure(section: dict, feature: str, group: str) -> dict:
    return next(m for m in section["features"][feature]["measures"] if m["group"] == group)


def test_binary_groups_are_fairlearns_and_the_measures_clarifys() -> None:
    rows, y, p = _binary_data()
    section = _assess(rows, y, p, min_disparate_impact=None, max_equal_opportunity_difference=None)
    sex = section["features"]["sex"]
    assert sex["reference_group"] == "male"  # the largest group
    assert [g["group"] for g in sex["groups"]] == ["male", "female", "(missing)"]

    # fairlearn, independently: 0/1 indicators of the positive class, groups by hand
    groups = rows["sex"].fillna("(missing)").to_numpy()
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "accuracy": accuracy_score,
        },
        y_true=(y == "yes").astype(int),
        y_pred=(p == "yes").astype(int),
        sensitive_features=groups,
    ).by_group
    for name in ("male", "female", "(missing)"):
        got = _group(section, "sex", name)
        for key in ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy"):
            assert got[key] == pytest.approx(frame.loc[name, key]), (name, key)
        assert got["count"] == int((groups == name).sum())
        assert got["base_rate"] == pytest.approx((y[groups == name] == "yes").mean())

    # Clarify's definitions by hand, female (d) against male (a)
    a, d = groups == "male", groups == "female"
    n_a, n_d = a.sum(), d.sum()
    q_a, q_d = (y[a] == "yes").mean(), (y[d] == "yes").mean()
    s_a, s_d = (p[a] == "yes").mean(), (p[d] == "yes").mean()
    tpr_a = ((p == "yes") & (y == "yes") & a).sum() / ((y == "yes") & a).sum()
    tpr_d = ((p == "yes") & (y == "yes") & d).sum() / ((y == "yes") & d).sum()
    acc_a, acc_d = (p[a] == y[a]).mean(), (p[d] == y[d]).mean()
    m = _measure(section, "sex", "female")
    assert m["CI"] == pytest.approx((n_a - n_d) / (n_a + n_d))
    assert m["DPL"] == pytest.approx(q_a - q_d)
    assert m["DI"] == pytest.approx(s_d / s_a)
    assert m["DPPL"] == pytest.approx(s_a - s_d)
    assert m["recall_difference"] == pytest.approx(tpr_a - tpr_d)
    assert m["accuracy_difference"] == pytest.approx(acc_a - acc_d)
    assert m["DI"] < 0.8  # the made-up bias is there
    assert section["passed"]
    assert section["violations"] == []

    between = sex["between_groups"]  # fairlearn's own ratio over the judged groups
    judged = frame.loc[["male", "female", "(missing)"], "selection_rate"]
    assert between["selection_rate_ratio"] == pytest.approx(judged.min() / judged.max())


def test_a_violated_limit_names_the_feature_the_group_and_the_value() -> None:
    rows, y, p = _binary_data()
    section = _assess(rows, y, p)
    di = _measure(section, "sex", "female")["DI"]
    assert not section["passed"]
    violation = next(v for v in section["violations"] if v["measure"] == "DI")
    assert violation == {
        "feature": "sex",
        "group": "female",
        "reference_group": "male",
        "measure": "DI",
        "value": pytest.approx(di),
        "limit": 0.8,
        "reason": f"disparate impact of sex=female vs male is {di:.3f}, below 0.8",
    }
    [check] = fairness.gate_checks(section)
    assert not check.passed
    assert check.name == "fairness"
    verdict = gate(
        primary_metric="roc_auc",
        winner_metrics={"roc_auc": 0.9},
        baseline_metrics={"roc_auc": 0.5},
        threshold=None,
        production_metrics=None,
        fairness_checks=[check],
    )
    assert not verdict.passed
    assert f"fairness: disparate impact of sex=female vs male is {di:.3f}, below 0.8" in (
        verdict.reason
    )


def test_an_impossible_limit_rejects_every_unequal_group() -> None:
    rows, y, p = _binary_data()
    section = _assess(rows, y, p, min_disparate_impact=1.0, max_equal_opportunity_difference=0)
    failed = {(v["feature"], v["group"], v["measure"]) for v in section["violations"]}
    assert ("sex", "female", "DI") in failed
    assert ("sex", "female", "recall_difference") in failed
    # a DI above 1 / limit fails too: the positive class may be the unfavourable outcome
    above = [v for v in section["violations"] if v["measure"] == "DI" and v["value"] > 1]
    assert all("above 1 (1/1)" in v["reason"] for v in above)


def test_small_groups_are_reported_never_gated() -> None:
    rows, y, p = _binary_data()
    section = _assess(rows, y, p, min_group_size=40, min_disparate_impact=1.0)
    missing = _group(section, "sex", "(missing)")
    assert missing["count"] < 40
    assert missing["small"]
    assert _measure(section, "sex", "(missing)")["small"]
    assert not any(v["group"] == "(missing)" for v in section["violations"])
    assert _measure(section, "sex", "(missing)")["DI"] is not None  # still reported


def test_a_small_reference_gates_nothing_and_says_so() -> None:
    rows, y, p = _binary_data(n=50)
    section = _assess(rows, y, p, min_group_size=100, min_disparate_impact=1.0)
    assert section["passed"]
    assert "nothing is gated on this feature" in " ".join(section["features"]["sex"]["notes"])
    assert fairness.gate_checks(section)[0].passed


def test_undefined_measures_are_null_with_a_reason() -> None:
    rows = pd.DataFrame({"sex": ["male"] * 40 + ["female"] * 40, "age": [30.0] * 80})
    y = np.array(["no", "yes"] * 20 + ["no"] * 40, dtype=object)  # no female positives
    p = np.array(["no"] * 40 + ["yes"] * 10 + ["no"] * 30, dtype=object)  # no man selected
    section = _assess(rows, y, p, reference_groups={"sex": "male"})
    male, female = _group(section, "sex", "male"), _group(section, "sex", "female")
    assert male["selection_rate"] == 0
    assert female["true_positive_rate"] is None
    assert female["positives"] == 0
    assert female["false_positive_rate"] == pytest.approx(0.25)
    m = _measure(section, "sex", "female")
    assert m["DI"] is None
    assert m["recall_difference"] is None
    assert "DI is undefined: the reference group 'male' has a selection rate of 0" in m["notes"]
    assert "recall difference is undefined: 'female' has no positive labels" in m["notes"]
    assert not any(v["feature"] == "sex" for v in section["violations"])  # nothing to judge


def test_numeric_features_are_binned_into_stated_ranges() -> None:
    assert fairness.bin_label(0, [25, 45]) == "< 25"
    assert fairness.bin_label(1, [25, 45]) == "[25, 45)"
    assert fairness.bin_label(2, [25, 45]) == ">= 45"
    got = fairness.group_labels(pd.Series([18.0, 25.0, 44.9, 45.0, np.nan, 90.0]), [25, 45])
    assert got.tolist() == ["< 25", "[25, 45)", "[25, 45)", ">= 45", "(missing)", ">= 45"]

    rows, y, p = _binary_data()
    section = _assess(rows, y, p, bins={"age": [30, 50, 65]}, reference_groups={"age": "[30, 50)"})
    age = section["features"]["age"]
    assert age["bins"] == [30, 50, 65]
    assert age["kind"] == "numeric"
    assert [g["group"] for g in age["groups"]] == [
        "< 30",
        "[30, 50)",
        "[50, 65)",
        ">= 65",
        "(missing)",
    ]
    assert _group(section, "age", "[30, 50)")["count"] == int(rows["age"].between(30, 49.99).sum())
    for v in section["violations"]:
        if v["feature"] == "age":
            assert v["reason"].split(" vs ")[0].split(" of ")[1].startswith("age ")

    # no bins in the spec: the training rows' quartiles
    default = fairness.groupings(rows, BINARY, FairnessPolicy(sensitive_features=["age"]))
    assert default["age"].bins == pytest.approx(list(rows["age"].quantile([0.25, 0.5, 0.75])))


def test_a_reference_group_that_is_not_in_the_data_is_an_error() -> None:
    rows, _, _ = _binary_data()
    policy = FairnessPolicy(sensitive_features=["sex"], reference_groups={"sex": "Male"})
    with pytest.raises(BadInputError, match=r"reference_groups\.sex: 'Male' is not a group"):
        fairness.groupings(rows, BINARY, policy)


def test_regression_reports_mean_prediction_and_error_per_group() -> None:
    schema = BINARY.model_copy(
        update={"task": Task.REGRESSION, "classes": None, "positive_class": None}
    )
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"sex": rng.choice(["a", "b"], 300), "age": rng.normal(40, 10, 300)})
    y = rng.normal(100, 10, 300)
    pred = y + rng.normal(0, 5, 300) + np.where(rows["sex"] == "b", 4.0, 0.0)
    section = _assess(rows, y, pred, schema, min_disparate_impact=0.99)
    frame = MetricFrame(
        metrics={"mean_prediction": mean_prediction, "mae": mean_absolute_error},
        y_true=y,
        y_pred=pred,
        sensitive_features=rows["sex"],
    ).by_group
    for name in ("a", "b"):
        g = _group(section, "sex", name)
        assert g["mean_prediction"] == pytest.approx(frame.loc[name, "mean_prediction"])
        assert g["mae"] == pytest.approx(frame.loc[name, "mae"])
        assert g["mean_target"] == pytest.approx(y[rows["sex"] == name].mean())
    ref = section["features"]["sex"]["reference_group"]
    other = "b" if ref == "a" else "a"
    m = _measure(section, "sex", other)
    assert m["mae_difference"] == pytest.approx(frame.loc[ref, "mae"] - frame.loc[other, "mae"])
    assert section["gated"] == []
    assert section["passed"]
    assert fairness.gate_checks(section) == []  # reported, never gated
    assert "never gated" in section["notes"][0]


def test_multiclass_gates_on_the_accuracy_difference_only() -> None:
    schema = BINARY.model_copy(
        update={"task": Task.MULTICLASS, "classes": ["a", "b", "c"], "positive_class": None}
    )
    rng = np.random.default_rng(2)
    rows = pd.DataFrame({"sex": rng.choice(["f", "m"], 400), "age": rng.normal(40, 10, 400)})
    y = rng.choice(np.array(["a", "b", "c"], dtype=object), 400)
    p = np.where(rng.random(400) < np.where(rows["sex"] == "f", 0.5, 0.9), y, "a").astype(object)
    section = _assess(rows, y, p, schema, min_disparate_impact=1.0, max_accuracy_difference=0.1)
    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "selected_b": lambda t, q: float(np.mean(q == "b"))},
        y_true=y,
        y_pred=p,
        sensitive_features=rows["sex"],
    ).by_group
    f = _group(section, "sex", "f")
    assert f["accuracy"] == pytest.approx(frame.loc["f", "accuracy"])
    assert f["selection_rates"]["b"] == pytest.approx(frame.loc["f", "selected_b"])
    assert sum(f["selection_rates"].values()) == pytest.approx(1.0)
    assert section["gated"] == ["accuracy_difference"]
    assert {v["measure"] for v in section["violations"]} == {"accuracy_difference"}
    assert "accuracy difference of sex=f vs m" in section["violations"][0]["reason"]


def test_the_registry_summary_is_compact_and_plain() -> None:
    rows, y, p = _binary_data()
    section = _assess(rows, y, p)
    summary = fairness.registry_summary(section)
    assert summary is not None
    assert summary["passed"] is False
    assert summary["violations"] == [v["reason"] for v in section["violations"]]
    female = next(m for m in summary["features"]["sex"]["measures"] if m["group"] == "female")
    assert female["DI"] == pytest.approx(_measure(section, "sex", "female")["DI"])
    assert female["count"] == _group(section, "sex", "female")["count"]
    assert "notes" not in female
    assert fairness.registry_summary(None) is None


# -- the schema: sensitive features out of the model, in the curated data ---------------------


def _upload(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "sex": rng.choice(["female", "male"], n),
            "age": rng.integers(18, 80, n),
            "default": rng.choice(["no", "yes"], n),
        }
    )


def _spec(**fairness_section: object) -> ProblemSpec:
    return ProblemSpec(dataset="loans", target="default", fairness=fairness_section)  # type: ignore[arg-type]


def test_sensitive_features_are_kept_out_of_the_model_but_curated() -> None:
    curated = process.curate(
        pa.Table.from_pandas(_upload()), _spec(sensitive_features=["sex", "age"])
    )
    schema = curated.schema
    assert list(schema.features) == ["income"]
    reason = "sensitive feature (fairness.exclude_from_features)"
    assert schema.excluded == {"sex": reason, "age": reason}
    assert schema.sensitive == {"sex": ColumnType.CATEGORICAL, "age": ColumnType.NUMERIC}
    assert curated.curated.column_names == ["income", "sex", "age", "default"]
    assert curated.curated.column("age").type == pa.float64()  # typed like a feature

    explicit = ProblemSpec(
        dataset="loans",
        target="default",
        features=["income", "sex"],
        fairness=FairnessPolicy(sensitive_features=["sex"]),
    )
    assert list(process.resolve_schema(_upload(), explicit).features) == ["income"]


def test_a_sensitive_feature_stays_an_input_when_the_spec_says_so() -> None:
    spec = _spec(sensitive_features=["sex"], exclude_from_features=False)
    schema = process.resolve_schema(_upload(), spec)
    assert "sex" in schema.features
    assert schema.excluded == {}
    assert schema.sensitive == {"sex": ColumnType.CATEGORICAL}


def test_a_sensitive_feature_the_data_lacks_fails_naming_it() -> None:
    with pytest.raises(BadInputError, match=r"fairness\.sensitive_features: .*'gender'"):
        process.resolve_schema(_upload(), _spec(sensitive_features=["gender"]))
    with pytest.raises(BadInputError, match=r"fairness\.bins\.sex: 'sex' is categorical"):
        process.resolve_schema(_upload(), _spec(sensitive_features=["sex"], bins={"sex": [1]}))
    only = _upload()[["sex", "default"]]
    with pytest.raises(BadInputError, match="no usable feature columns"):
        process.resolve_schema(only, _spec(sensitive_features=["sex"]))
