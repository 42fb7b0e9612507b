"""Fairness on live traffic (mlcycle.domain.live_fairness): selection rates per group of the
captured requests against the groups evaluation fixed, checked against fairlearn; the label-
based measures once enough late labels have arrived."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, selection_rate

from mlcycle.domain import fairness, live_fairness
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, FairnessPolicy, Task

SCHEMA = ResolvedSchema(
    dataset="loans",
    task=Task.BINARY,
    target="default",
    features={"income": ColumnType.NUMERIC},
    sensitive={"sex": ColumnType.CATEGORICAL, "age": ColumnType.NUMERIC},
    classes=["no", "yes"],
    positive_class="yes",
)


def _reference(**policy: object) -> dict:
    """The monitor baseline's fairness, from an evaluation on made-up holdout rows."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"sex": rng.choice(["f", "m"], 400), "age": rng.normal(40, 12, 400)})
    y = rng.choice(np.array(["no", "yes"], dtype=object), 400)
    spec = FairnessPolicy(sensitive_features=["sex", "age"], bins={"age": [30, 50]}, **policy)  # type: ignore[arg-type]
    groups = fairness.groupings(rows, SCHEMA, spec)
    section = fairness.assess(rows, y, y, SCHEMA, spec, groups)
    reference = live_fairness.monitor_reference(section)
    assert reference is not None
    return reference


def _traffic(n: int = 500) -> tuple[list[dict], np.ndarray]:
    """Captured records: women are flagged half as often as men."""
    rng = np.random.default_rng(1)
    sex = rng.choice(["f", "m"], n)
    flagged = rng.random(n) < np.where(sex == "f", 0.2, 0.4)
    records = [
        {"request_id": f"r-{i}", "instance": {"income": 1.0, "sex": s, "age": float(20 + i % 50)}}
        for i, s in enumerate(sex)
    ]
    return records, np.where(flagged, "yes", "no").astype(object)


def test_live_selection_rates_and_disparate_impact_are_fairlearns() -> None:
    reference = _reference()
    assert reference["features"]["age"]["bins"] == [30, 50]
    records, said = _traffic()
    out = live_fairness.from_records(records, said, None, SCHEMA, reference)
    sex = pd.Series([r["instance"]["sex"] for r in records])
    frame = MetricFrame(
        metrics=selection_rate,
        y_true=(said == "yes").astype(int),
        y_pred=(said == "yes").astype(int),
        sensitive_features=sex,
    ).by_group
    feature = out["features"]["sex"]
    ref = feature["reference_group"]
    other = "f" if ref == "m" else "m"
    rates = {g["group"]: g["selection_rate"] for g in feature["groups"]}
    assert rates == pytest.approx(frame.to_dict())
    assert all(g["holdout_selection_rate"] is not None for g in feature["groups"])
    [m] = feature["measures"]
    assert m["group"] == other
    assert m["DI"] == pytest.approx(frame[other] / frame[ref])
    assert m["DPPL"] == pytest.approx(frame[ref] - frame[other])
    worst = out["worst_disparate_impact"]
    folded = [min(x["DI"], 1 / x["DI"]) for f in out["features"].values() for x in f["measures"]]
    assert worst["value"] == pytest.approx(min(folded))
    assert any(v["feature"] == "sex" and v["measure"] == "DI" for v in out["violations"])
    assert out["labelled"] is None
    assert out["labelled_note"] == "no late labels for the window's requests yet"
    ages = {g["group"] for g in out["features"]["age"]["groups"]}
    assert ages == {"< 30", "[30, 50)", ">= 50"}


def test_late_labels_bring_the_label_based_measures() -> None:
    reference = _reference(max_equal_opportunity_difference=0.05)
    records, said = _traffic()
    truth = pd.DataFrame(
        {"request_id": [r["request_id"] for r in records[:200]], "label": said[:200]}
    )
    truth.loc[::3, "label"] = "yes"
    out = live_fairness.from_records(records, said, truth, SCHEMA, reference)
    labelled = out["labelled"]
    assert out["labelled_note"] == "200 labelled rows"
    sex = labelled["features"]["sex"]
    total = sum(g["count"] for g in sex["groups"])
    assert total == 200
    y, p = truth["label"].to_numpy(), said[:200]
    groups = np.array([r["instance"]["sex"] for r in records[:200]])
    for g in sex["groups"]:
        rows = groups == g["group"]
        positives = y[rows] == "yes"
        assert g["true_positive_rate"] == pytest.approx((p[rows][positives] == "yes").mean())

    few = live_fairness.from_records(records, said, truth.head(10), SCHEMA, reference)
    assert few["labelled"] is None
    assert few["labelled_note"].startswith("10 labelled rows, fewer than 30")


def test_small_groups_and_absent_fields_are_said_not_judged() -> None:
    reference = _reference(min_group_size=100)
    records, said = _traffic(120)
    for r in records:
        r["instance"].pop("age")
    out = live_fairness.from_records(records, said, None, SCHEMA, reference)
    assert all(m["small"] for m in out["features"]["sex"]["measures"])
    assert out["worst_disparate_impact"] is None
    assert out["violations"] == []
    assert [g["group"] for g in out["features"]["age"]["groups"]] == ["(missing)"]
    assert "no request in the window carried 'age'" in out["notes"][0]


def test_multiclass_and_regression_report_their_own_rates() -> None:
    multiclass = SCHEMA.model_copy(update={"task": Task.MULTICLASS, "classes": ["a", "b", "c"]})
    reference = {
        "task": "multiclass",
        "positive_class": None,
        "limits": {"min_group_size": 1, "min_disparate_impact": 0.8},
        "features": {"sex": {"bins": None, "reference_group": "m", "holdout": {}}},
    }
    rows = pd.DataFrame({"sex": ["m", "m", "f", "f"]})
    out = live_fairness.live(rows, np.array(["a", "b", "a", "a"]), multiclass, reference)
    f = next(g for g in out["features"]["sex"]["groups"] if g["group"] == "f")
    assert f["selection_rate:a"] == 1.0
    assert out["features"]["sex"]["measures"][0]["DPPL"] == {"a": -0.5, "b": 0.5, "c": 0.0}
    assert out["worst_disparate_impact"] is None  # DI is a binary measure

    regression = SCHEMA.model_copy(update={"task": Task.REGRESSION, "classes": None})
    out = live_fairness.live(rows, np.array([1.0, 3.0, 5.0, 7.0]), regression, reference)
    [m] = out["features"]["sex"]["measures"]
    assert m["mean_prediction_difference"] == pytest.approx(2.0 - 6.0)
