"""Stage 5, data exploration: the profile's numbers and the report page, with no AWS."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mlcycle.domain.explore import profile, render_html
from mlcycle.errors import BadInputError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, Task

N = 2000
NUM, CAT, DT = ColumnType.NUMERIC, ColumnType.CATEGORICAL, ColumnType.DATETIME


def _shuffled(values: list, seed: int) -> list:
    out = list(values)
    np.random.default_rng(seed).shuffle(out)
    return out


@pytest.fixture
def binary() -> tuple[pd.DataFrame, ResolvedSchema]:
    rng = np.random.default_rng(0)
    label = np.array(_shuffled(["yes"] * 100 + ["no"] * 1900, 1))  # 5% positives
    leaky = (label == "yes").astype(float) + rng.normal(0, 0.01, N)
    noise = rng.normal(10, 2, N)
    noise[:50] = np.nan
    stamps = pd.Series(
        pd.to_datetime(["2021-01-15"] * 1000 + ["2021-02-10"] * 600 + ["2021-03-31"] * 350)
    )
    when = pd.concat([stamps, pd.Series([pd.NaT] * 50)], ignore_index=True)
    df = pd.DataFrame(
        {
            "noise": noise,
            "leaky": leaky,
            "colour": pd.array(
                _shuffled(["red"] * 1000 + ["green"] * 600 + ["blue"] * 300 + [None] * 100, 2),
                dtype="str",
            ),
            "<script>": pd.Series(rng.choice(["x", "y", None], N), dtype=object),  # object + None
            "when": when.to_numpy(),
            "label": pd.array(label, dtype="str"),
        }
    )
    schema = ResolvedSchema(
        dataset="demo",
        task=Task.BINARY,
        target="label",
        features={"noise": NUM, "leaky": NUM, "colour": CAT, "<script>": CAT, "when": DT},
        excluded={"row_id": "identifier: unique per row"},
        classes=["no", "yes"],
        positive_class="yes",
    )
    return df, schema


@pytest.fixture
def multiclass() -> tuple[pd.DataFrame, ResolvedSchema]:
    rng = np.random.default_rng(3)
    species = rng.choice(["adelie", "chinstrap", "gentoo"], N)
    island = pd.Series(species).map({"adelie": "a", "chinstrap": "c", "gentoo": "g"})
    df = pd.DataFrame(
        {
            "island": pd.array(island, dtype="str"),  # determines the target
            "sex": pd.array(rng.choice(["f", "m"], N), dtype="str"),  # independent of it
            "tag": pd.array([f"t{i % 25:02d}" for i in range(N)], dtype="str"),  # 25 levels
            "mass": rng.normal(4000, 500, N),
            "species": pd.array(species, dtype="str"),
        }
    )
    schema = ResolvedSchema(
        dataset="penguins",
        task=Task.MULTICLASS,
        target="species",
        features={"island": CAT, "sex": CAT, "tag": CAT, "mass": NUM},
        classes=["adelie", "chinstrap", "gentoo"],
    )
    return df, schema


@pytest.fixture
def regression() -> tuple[pd.DataFrame, ResolvedSchema]:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, N)
    start = np.datetime64("2010-01-01")
    df = pd.DataFrame(
        {
            "x": x,
            "neg": -x + rng.normal(0, 0.001, N),
            "noise": rng.normal(0, 1, N),
            "shop": pd.array(rng.choice(["s1", "s2", "s3"], N), dtype="str"),
            "row_key": pd.array([f"k{i // 2}" for i in range(N)], dtype="str"),  # id-like
            "opened": start + rng.integers(0, 10 * 365, N).astype("timedelta64[D]"),
            "price": 3 * x + 50 + rng.normal(0, 0.01, N),
        }
    )
    schema = ResolvedSchema(
        dataset="prices",
        task=Task.REGRESSION,
        target="price",
        features={"x": NUM, "neg": NUM, "noise": NUM, "shop": CAT, "row_key": CAT, "opened": DT},
    )
    return df, schema


def _col(prof: dict, name: str) -> dict:
    return next(c for c in prof["columns"] if c["name"] == name)


def _assoc(prof: dict, name: str) -> tuple[str, float]:
    a = _col(prof, name)["association"]
    return a["method"], a["value"]


def test_profile_counts_missing_values_and_summarises_numbers(binary):
    df, schema = binary
    prof = profile(df, schema)

    assert prof["n_rows"] == N
    assert prof["n_columns"] == 6
    assert [c["name"] for c in prof["columns"]] == [*schema.features, "label"]
    assert prof["excluded"] == [{"name": "row_id", "reason": "identifier: unique per row"}]

    noise = _col(prof, "noise")
    assert noise["type"] == "numeric"
    assert (noise["missing"], noise["count"]) == (50, N - 50)
    assert noise["missing_rate"] == pytest.approx(0.025)
    assert noise["distinct"] == N - 50
    assert sum(noise["histogram"]["counts"]) == N - 50
    assert len(noise["histogram"]["edges"]) == len(noise["histogram"]["counts"]) + 1 == 21
    present = df["noise"].dropna()
    stats = noise["stats"]
    assert stats["min"] == present.min()
    assert stats["max"] == present.max()
    assert stats["mean"] == pytest.approx(present.mean())
    assert stats["std"] == pytest.approx(present.std())
    assert stats["quantiles"]["p50"] == pytest.approx(present.median())
    assert list(stats["quantiles"]) == ["p1", "p5", "p25", "p50", "p75", "p95", "p99"]


def test_profile_counts_top_categories_and_datetimes(binary, multiclass):
    prof = profile(*binary)
    colour = _col(prof, "colour")
    assert colour["type"] == "categorical"
    assert colour["missing"] == 100
    assert colour["distinct"] == 3
    assert colour["top"] == [
        {"value": "red", "count": 1000},
        {"value": "green", "count": 600},
        {"value": "blue", "count": 300},
    ]
    assert colour["other"] == 0

    when = _col(prof, "when")
    assert when["missing"] == 50
    assert when["min"].startswith("2021-01-15")
    assert when["max"].startswith("2021-03-31")
    assert when["timeline"] == {
        "freq": "month",
        "labels": ["2021-01", "2021-02", "2021-03"],
        "counts": [1000, 600, 350],
    }

    tag = _col(profile(*multiclass), "tag")  # 25 levels of 80 rows: 20 shown, 5 in "other"
    assert len(tag["top"]) == 20
    assert all(t["count"] == 80 for t in tag["top"])
    assert tag["other"] == 5 * 80


def test_a_long_datetime_span_is_counted_per_year(regression):
    opened = _col(profile(*regression), "opened")
    assert opened["timeline"]["freq"] == "year"
    assert opened["timeline"]["labels"][0] == "2010"
    assert sum(opened["timeline"]["counts"]) == N


def test_binary_target_balance_and_imbalance_warning(binary):
    prof = profile(*binary)
    target = prof["target"]
    assert target["name"] == "label"
    assert target["classes"] == [
        {"label": "no", "count": 1900, "share": 0.95},
        {"label": "yes", "count": 100, "share": 0.05},
    ]
    assert target["minority_share"] == 0.05
    assert "'yes'" in target["imbalance"]
    assert {"column": "label", "kind": "imbalance"} in [
        {k: w[k] for k in ("column", "kind")} for w in prof["warnings"]
    ]
    assert _col(prof, "label")["type"] == "categorical"
    assert _col(prof, "label")["association"] is None


def test_balanced_multiclass_target_has_no_imbalance_note(multiclass):
    target = profile(*multiclass)["target"]
    assert [c["label"] for c in target["classes"]] == ["adelie", "chinstrap", "gentoo"]
    assert sum(c["count"] for c in target["classes"]) == N
    assert target["imbalance"] is None


def test_association_with_a_class_target(binary, multiclass):
    prof = profile(*binary)
    method, value = _assoc(prof, "leaky")
    assert method == "eta"
    assert value > 0.99
    assert _assoc(prof, "noise")[1] < 0.1
    assert _assoc(prof, "when")[0] == "eta"  # a datetime counts as a number

    prof = profile(*multiclass)
    method, value = _assoc(prof, "island")
    assert method == "cramers_v"
    assert value == pytest.approx(1.0, abs=0.01)
    assert _assoc(prof, "sex")[1] < 0.1
    assert _assoc(prof, "mass")[1] < 0.1

    leaks = {w["column"] for w in prof["warnings"] if w["kind"] == "leakage"}
    assert leaks == {"island"}


def test_association_with_a_numeric_target(regression):
    prof = profile(*regression)
    assert _assoc(prof, "x") == ("pearson", pytest.approx(1.0, abs=0.001))
    assert _assoc(prof, "neg") == ("pearson", pytest.approx(-1.0, abs=0.001))
    assert abs(_assoc(prof, "noise")[1]) < 0.1
    assert _assoc(prof, "shop")[0] == "eta"
    assert _assoc(prof, "shop")[1] < 0.1
    assert _assoc(prof, "opened")[0] == "pearson"
    # raw eta of a near-identifier is high (two rows per group); the bias-adjusted one is not
    assert _assoc(prof, "row_key")[1] < 0.5
    leaks = {w["column"] for w in prof["warnings"] if w["kind"] == "leakage"}
    assert leaks == {"x", "neg"}


def test_regression_target_gets_the_numeric_summary(regression):
    df, schema = regression
    target = profile(df, schema)["target"]
    assert target["stats"]["mean"] == pytest.approx(df["price"].mean())
    assert sum(target["histogram"]["counts"]) == N
    assert "classes" not in target


def test_warnings_name_missing_skew_near_constant_and_cardinality():
    rng = np.random.default_rng(5)
    mostly_missing = rng.normal(size=N)
    mostly_missing[: N // 2] = np.nan
    df = pd.DataFrame(
        {
            "sparse": mostly_missing,
            "skewed": rng.lognormal(0, 2, N),
            "flat": np.r_[np.zeros(N - 5), np.ones(5)],
            "zip": pd.array([f"z{i % 400}" for i in range(N)], dtype="str"),
            "y": rng.normal(size=N),
        }
    )
    schema = ResolvedSchema(
        dataset="w",
        task=Task.REGRESSION,
        target="y",
        features={"sparse": NUM, "skewed": NUM, "flat": NUM, "zip": CAT},
    )
    prof = profile(df, schema)
    kinds = {(w["column"], w["kind"]) for w in prof["warnings"]}
    assert kinds == {
        ("sparse", "high_missing"),
        ("skewed", "skewed"),
        ("flat", "near_constant"),
        ("zip", "high_cardinality"),
    }
    assert _col(prof, "flat")["warnings"] == ["near_constant"]
    assert _col(prof, "flat")["stats"]["zeros"] == N - 5


def test_profile_is_strict_json_even_for_empty_and_constant_columns(binary):
    df, schema = binary
    df = df.assign(noise=np.nan, leaky=1.0, when=pd.NaT)  # all missing / constant
    prof = profile(df, schema)
    text = json.dumps(prof, allow_nan=False)  # raises on NaN or inf
    assert json.loads(text) == prof
    assert _col(prof, "noise")["stats"]["mean"] is None
    assert _col(prof, "noise")["histogram"] == {"edges": [], "counts": []}
    assert _col(prof, "leaky")["association"]["value"] is None
    assert "near_constant" in _col(prof, "leaky")["warnings"]


def test_profile_rejects_a_table_without_the_schema_columns(binary):
    df, schema = binary
    with pytest.raises(BadInputError, match="leaky"):
        profile(df.drop(columns="leaky"), schema)


@pytest.mark.parametrize("case", ["binary", "multiclass", "regression"])
def test_html_is_one_self_contained_page_with_a_section_per_column(case, request):
    prof = json.loads(json.dumps(profile(*request.getfixturevalue(case))))  # from JSON alone
    page = render_html(prof, title="Exploration")

    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", page)
    assert "<link" not in page
    assert "<script" not in page.lower()
    sections = re.findall(r'<section class="column".*?</section>', page, flags=re.S)
    assert len(sections) == prof["n_columns"]
    for col, section in zip(prof["columns"], sections, strict=True):
        assert "<img" in section, col["name"]
    # target plot, missing-values chart (when any), association chart, one per column
    assert page.count("data:image/png;base64,") >= prof["n_columns"] + 2
    assert f"{prof['n_rows']:,}" in page


def test_html_escapes_user_strings(binary):
    df, schema = binary
    df = df.assign(label=df["label"].replace("yes", '<b onclick="x">yes</b>'))
    schema = schema.model_copy(update={"classes": ['<b onclick="x">yes</b>', "no"]})
    page = render_html(profile(df, schema), title="<title> & co")
    assert "&lt;script&gt;" in page  # the column name
    assert "<script>" not in page
    assert "&lt;b onclick=&quot;x&quot;&gt;yes&lt;/b&gt;" in page  # the class label
    assert "<b onclick" not in page
    assert "&lt;title&gt; &amp; co" in page


def test_a_dollar_sign_in_a_category_does_not_break_the_plot():
    rng = np.random.default_rng(6)
    df = pd.DataFrame(
        {
            "price_band": pd.array(rng.choice(["$5-$10", "$\\frac", "$$"], N), dtype="str"),
            "y": pd.array(rng.choice(["a", "b"], N), dtype="str"),
        }
    )
    schema = ResolvedSchema(
        dataset="d", task=Task.BINARY, target="y", features={"price_band": CAT}, classes=["a", "b"]
    )
    page = render_html(profile(df, schema), title="dollars")
    assert page.count("<img") >= 3
