"""Stage 6: split, transformer, drift baseline."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcycle.domain.features import (
    DATE_PARTS,
    DateParts,
    bin_fractions,
    build_transformer,
    category_fractions,
    drift_baseline,
    engineer,
    expand_dates,
    model_input,
    psi,
    split,
)
from mlcycle.errors import GateError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, Task

FEATURES = {
    "age": ColumnType.NUMERIC,
    "income": ColumnType.NUMERIC,
    "color": ColumnType.CATEGORICAL,
    "signup": ColumnType.DATETIME,
}


def make_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": np.where(rng.random(n) < 0.1, np.nan, rng.normal(50, 5, n)),
            "color": pd.Series(rng.choice(["red", "green", "blue", None], n), dtype=object),
            "signup": pd.Timestamp("2021-01-01")
            + pd.to_timedelta(rng.integers(0, 900, n), unit="D"),
        }
    )
    df.loc[df.index[::23], "signup"] = pd.NaT
    # imbalanced three-class label: shares ~ 0.6 / 0.3 / 0.1
    df["label"] = rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])
    return df


def schema(task: Task = Task.MULTICLASS, classes: list[str] | None = None) -> ResolvedSchema:
    return ResolvedSchema(
        dataset="demo",
        task=task,
        target="label",
        features=FEATURES,
        classes=classes if classes is not None else ["a", "b", "c"],
    )


def test_split_is_stratified_and_seeded():
    df = make_frame()
    train, holdout = split(df, schema(), holdout_fraction=0.25, seed=7)
    assert len(train) + len(holdout) == len(df)
    assert set(train.index).isdisjoint(holdout.index)
    full = df["label"].value_counts(normalize=True)
    for part in (train, holdout):
        shares = part["label"].value_counts(normalize=True)
        for c in ["a", "b", "c"]:
            assert shares[c] == pytest.approx(full[c], abs=0.02)
    again, _ = split(df, schema(), holdout_fraction=0.25, seed=7)
    assert again.index.equals(train.index)
    other, _ = split(df, schema(), holdout_fraction=0.25, seed=8)
    assert not other.index.equals(train.index)


def test_split_puts_a_rare_class_on_both_sides():
    df = make_frame(100)
    df["label"] = ["a"] * 97 + ["c"] * 3
    train, holdout = split(df, schema(classes=["a", "c"]), holdout_fraction=0.2, seed=1)
    assert (train["label"] == "c").sum() >= 1
    assert (holdout["label"] == "c").sum() >= 1


def test_split_rejects_a_single_row_class():
    df = make_frame(100)
    df["label"] = ["a"] * 99 + ["zebra"]
    with pytest.raises(GateError, match="zebra"):
        split(df, schema(classes=["a", "zebra"]), holdout_fraction=0.2, seed=1)


def test_split_rejects_a_class_without_rows():
    df = make_frame(100)
    df["label"] = "a"
    with pytest.raises(GateError, match="lacks the classes \\['b'\\]"):
        split(df, schema(classes=["a", "b"]), holdout_fraction=0.2, seed=1)


def test_split_rejects_a_tiny_holdout():
    df = make_frame(20)
    df["label"] = np.linspace(0, 1, 20)
    reg = ResolvedSchema(dataset="demo", task=Task.REGRESSION, target="label", features=FEATURES)
    with pytest.raises(GateError, match="holdout set would have 2 rows"):
        split(df, reg, holdout_fraction=0.1, seed=1)
    train, holdout = split(df, reg, holdout_fraction=0.25, seed=1)
    assert (len(train), len(holdout)) == (15, 5)


def test_expand_dates_adds_numeric_parts():
    df = pd.DataFrame({"signup": pd.to_datetime(["2024-03-15", None, "1970-01-02"]), "x": 1.0})
    sch = ResolvedSchema(
        dataset="d",
        task=Task.REGRESSION,
        target="y",
        features={"signup": ColumnType.DATETIME, "x": ColumnType.NUMERIC},
    )
    out = expand_dates(df, sch)
    assert "signup" not in out.columns
    row = out.iloc[0]
    assert (row["signup__year"], row["signup__month"], row["signup__day"]) == (2024, 3, 15)
    assert row["signup__dayofweek"] == 4  # a Friday
    assert out.iloc[2]["signup__days_since_epoch"] == 1.0
    assert out.iloc[1][[c for c in out.columns if c.startswith("signup")]].isna().all()


def _readable(names: Any) -> list[str]:
    """The transformer's output names without their position prefix."""
    return [str(name).split(":", 1)[1] for name in names]


def test_engineer_outputs_named_float_features_fit_on_train_only():
    fs = engineer(make_frame(), schema(), holdout_fraction=0.2, seed=3)
    names = list(fs.X_train.columns)
    assert names[:3] == ["0:age", "1:income", "2:missingindicator_income"]
    readable = _readable(names)
    assert {"color_red", "color___missing__", "signup__month", "signup__days_since_epoch"} <= set(
        readable
    )
    assert names == [f"{i}:{name}" for i, name in enumerate(readable)]
    assert list(fs.X_holdout.columns) == names
    assert all(dt == np.float64 for dt in fs.X_train.dtypes)
    assert not fs.X_train.isna().any().any()
    assert len(fs.X_train) == len(fs.y_train) == len(fs.train)
    assert len(fs.X_holdout) == len(fs.y_holdout) == len(fs.holdout)
    scaler = fs.transformer.named_transformers_["numeric"].named_steps["scale"]
    # "age" has no missing value, so the scaler saw exactly the train column
    assert scaler.mean_[0] == pytest.approx(fs.train["age"].mean())
    assert scaler.mean_[0] != pytest.approx(fs.holdout["age"].mean())
    assert fs.X_train["0:age"].mean() == pytest.approx(0.0, abs=1e-9)


def test_transformer_ignores_unknown_categories():
    data = model_input(make_frame(), schema())
    transformer = build_transformer(schema()).fit(data[list(FEATURES)])
    new = data[list(FEATURES)].head(3).copy()
    new["color"] = ["purple", None, "red"]
    out = transformer.transform(model_input(new, schema()))
    out.columns = _readable(out.columns)
    color = [c for c in out.columns if c.startswith("color_")]
    assert out.iloc[0][color].sum() == 0.0  # unseen: no infrequent bucket here, all zeros
    assert out.iloc[1]["color___missing__"] == 1.0
    assert out.iloc[2]["color_red"] == 1.0


def test_rare_categories_share_the_infrequent_bucket():
    df = make_frame()
    df.loc[df.index[:2], "color"] = "mauve"  # 2 of ~320 train rows: below 1%
    fs = engineer(df, schema(), holdout_fraction=0.2, seed=3)
    assert "color_infrequent_sklearn" in _readable(fs.X_train.columns)
    assert "color_mauve" not in _readable(fs.X_train.columns)


def test_model_input_normalizes_missing_categories():
    df = pd.DataFrame(
        {
            "age": pd.array([1.0, None, 3.0], dtype="Float64"),
            "income": [1.0, 2.0, 3.0],
            "color": pd.array(["red", pd.NA, "blue"], dtype="string"),
            "signup": pd.to_datetime(["2024-01-01T00:00Z", None, "2024-01-03T00:00Z"]),
        }
    )
    out = model_input(df, schema())
    assert out["age"].dtype == np.float64
    assert math.isnan(out["age"][1])
    assert out["color"].dtype == object
    assert out["color"].tolist()[::2] == ["red", "blue"]
    assert isinstance(out["color"][1], float)
    assert math.isnan(out["color"][1])
    assert out["signup"].dt.tz is None
    with pytest.raises(GateError, match="income"):
        model_input(df.drop(columns="income"), schema())


def test_model_input_keeps_what_a_float32_input_can_hold():
    # the ONNX graph takes float32; training on the same values keeps both runtimes equal
    df = make_frame(5).assign(age=[0.1, 1e-3, 123456789.0, np.nan, 40.0])
    out = model_input(df, schema())
    assert out["age"].dtype == np.float64
    expected = df["age"].to_numpy().astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(out["age"].to_numpy(), expected)
    assert out["age"][0] != 0.1  # 0.1 is not a float32
    np.testing.assert_array_equal(model_input(out, schema())["age"], out["age"])  # idempotent


def test_date_parts_use_float32_days_since_epoch():
    # float32 days resolve about 3 minutes today: a time just before midnight rounds to the
    # next day, in the parts too, exactly as the ONNX graph (fed float32 days) computes them
    df = pd.DataFrame({"d": pd.to_datetime(["2024-03-15 12:00:00", "2024-03-15 23:59:30"])})
    parts = DateParts().fit(df).transform(df)
    days = parts["d__days_since_epoch"].to_numpy()
    assert days[0] == 19797.5
    np.testing.assert_array_equal(days, days.astype(np.float32))
    assert days[1] == 19798.0
    assert parts["d__day"].tolist() == [15.0, 16.0]


def test_baseline_is_json_without_nan_and_fractions_sum_to_one():
    df = make_frame()
    df["income"] = np.nan  # an all-missing column must not produce NaN either
    base = drift_baseline(df, schema())
    text = json.dumps(base, allow_nan=False)  # raises on NaN or inf
    assert json.loads(text)["row_count"] == len(df)
    assert base["features"] == {k: v.value for k, v in FEATURES.items()}
    age = base["columns"]["age"]
    assert len(age["edges"]) == 9
    assert len(age["fractions"]) == 10
    assert sum(age["fractions"]) == pytest.approx(1.0)
    assert age["fractions"] == pytest.approx([0.1] * 10, abs=0.01)
    assert age["mean"] == pytest.approx(df["age"].mean())
    signup = base["columns"]["signup"]
    assert sum(signup["fractions"]) == pytest.approx(1.0)
    assert signup["missing_rate"] == pytest.approx(df["signup"].isna().mean())
    assert base["columns"]["income"]["missing_rate"] == 1.0
    assert base["columns"]["income"]["mean"] is None
    color = base["columns"]["color"]
    assert set(color["frequencies"]) == {"red", "green", "blue"}
    assert sum(color["frequencies"].values()) + color["__other__"] == pytest.approx(1.0)


def test_bin_fractions_edges_are_left_closed_with_open_ends():
    assert bin_fractions([-5.0, 0.0, 0.5, 1.0, 9.0, np.nan], [0.0, 1.0]) == [0.2, 0.4, 0.4]
    assert bin_fractions([], [0.0]) == [0.0, 0.0]


def test_category_fractions_match_the_baseline_layout():
    assert category_fractions(["a", "a", "b", "z", None], ["a", "b"]) == [0.5, 0.25, 0.25]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, 5000)
    base = drift_baseline(
        pd.DataFrame({"x": train, "y": 0.0}),
        ResolvedSchema(dataset="d", task=Task.REGRESSION, target="y", features={"x": "numeric"}),
    )["columns"]["x"]
    same = bin_fractions(rng.normal(0, 1, 5000), base["edges"])
    shifted = bin_fractions(rng.normal(1, 1, 5000), base["edges"])
    assert psi(base["fractions"], same) < 0.02
    assert psi(base["fractions"], shifted) > 0.5
    assert math.isfinite(psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))


def test_names_that_clash_inside_scikit_learn_stay_apart():
    # `plan`=basic and numeric `plan_basic`, numeric `x` with missing values and
    # `missingindicator_x`, date `d` and `d__year`, and `__target__`, the target's column in
    # the feature matrices: each is its own output column, named by position.
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame(
        {
            "plan": rng.choice(["basic", "pro"], n).astype(object),
            "plan_basic": rng.normal(size=n),
            "x": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "missingindicator_x": rng.normal(size=n),
            "d": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), "D"),
            "d__year": rng.integers(2000, 2020, n).astype(float),
            "__target__": rng.normal(size=n),
            "y": rng.choice(["a", "b"], n),
        }
    )
    features = {
        "plan": ColumnType.CATEGORICAL,
        "plan_basic": ColumnType.NUMERIC,
        "x": ColumnType.NUMERIC,
        "missingindicator_x": ColumnType.NUMERIC,
        "d": ColumnType.DATETIME,
        "d__year": ColumnType.NUMERIC,
        "__target__": ColumnType.NUMERIC,
    }
    sch = ResolvedSchema(
        dataset="clash", task=Task.BINARY, target="y", features=features, classes=["a", "b"]
    )
    fs = engineer(df, sch, holdout_fraction=0.2, seed=1)
    names = list(fs.X_train.columns)
    assert _readable(names) == [
        "plan_basic",
        "x",
        "missingindicator_x",
        "d__year",
        "__target__",
        "missingindicator_x",
        "plan_basic",
        "plan_pro",
        *(f"d__{part}" for part in DATE_PARTS),
    ]
    assert len(set(names)) == len(names)
    assert "__target__" not in names
    # the numeric `plan_basic` is scaled; the one-hot `plan_basic` is 0/1
    assert fs.X_train[names[0]].mean() == pytest.approx(0.0, abs=1e-9)
    assert set(fs.X_train[names[6]]) == {0.0, 1.0}
