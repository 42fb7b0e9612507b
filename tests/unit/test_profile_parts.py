"""Stage 5 over part files: partial profiles merged equal `explore.profile` of all the rows,
exactly where the math allows and within the sketches' stated errors elsewhere."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from datasketches import hll_sketch, kll_doubles_sketch
from palmerpenguins import load_penguins

from mlcycle.domain import profile_parts
from mlcycle.domain.explore import QUANTILES, profile, render_html
from mlcycle.domain.profile_parts import merge_profiles, partial_profile
from mlcycle.errors import BadInputError
from mlcycle.samples import customer_churn
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, Task

NUM, CAT, DT = ColumnType.NUMERIC, ColumnType.CATEGORICAL, ColumnType.DATETIME
RANK_ERROR = kll_doubles_sketch.get_normalized_rank_error(profile_parts.KLL_K, False)
BIN_ERROR = kll_doubles_sketch.get_normalized_rank_error(profile_parts.KLL_K, True)
HLL_ERROR = abs(hll_sketch.get_rel_err(True, True, profile_parts.HLL_LG_K, 2))  # 95%
CHURN_FEATURES = {
    "signup_date": DT,
    "plan": CAT,
    "region": CAT,
    "payment_method": CAT,
    "monthly_charges": NUM,
    "tenure_months": NUM,
    "support_tickets_90d": NUM,
    "avg_session_minutes": NUM,
    "last_login_days": NUM,
    "discount_pct": NUM,
    "satisfaction_score": NUM,
}
CHURN = ResolvedSchema(
    dataset="churn",
    task=Task.BINARY,
    target="churned",
    features=CHURN_FEATURES,
    excluded={"customer_id": "identifier"},
    classes=["no", "yes"],
    positive_class="yes",
)


def _churn(n: int, seed: int = 3) -> pd.DataFrame:
    df = customer_churn(n, seed=seed)
    return df.assign(signup_date=pd.to_datetime(df["signup_date"]))


def _merge(parts: list[pd.DataFrame], schema: ResolvedSchema) -> dict:
    # through JSON, as the partials travel between Lambdas
    partials = [json.loads(json.dumps(partial_profile(p, schema), allow_nan=False)) for p in parts]
    return merge_profiles(partials, schema)


@pytest.fixture(scope="module")
def churn_parts() -> list[pd.DataFrame]:
    """Uneven parts: one without the "yes" class, one with a column all missing, one row."""
    df = _churn(7000)
    parts = [
        df.iloc[:2500],
        df.iloc[2500:4000].query("churned == 'no'"),
        df.iloc[4000:5500].copy(),
        df.iloc[5500:5501],
        df.iloc[5501:5700].copy(),
        df.iloc[5700:],
    ]
    parts[2]["avg_session_minutes"] = np.nan
    parts[2]["payment_method"] = None
    parts[2]["last_login_days"] = pd.NA
    parts[4]["signup_date"] = pd.NaT
    assert set(parts[1]["churned"]) == {"no"}
    return parts


def _col(prof: dict, name: str) -> dict:
    return next(c for c in prof["columns"] if c["name"] == name)


def _approximate(prof: dict, statistic: str) -> set[str]:
    stats = prof["approximate"]["statistics"]
    return {c for s in stats if s["statistic"] == statistic for c in s["columns"]}


def _assert_same(merged: object, whole: object, path: str, skip: set[str]) -> None:
    """Equal values, floats to 1e-9 (relative, or absolute near 0); `skip`: sketched paths."""
    if path in skip:
        return
    if isinstance(whole, dict):
        assert isinstance(merged, dict), path
        assert set(merged) - {"parts", "approximate"} == set(whole), path
        for key in whole:
            _assert_same(merged[key], whole[key], f"{path}.{key}", skip)
    elif isinstance(whole, list):
        assert isinstance(merged, list), path
        assert len(merged) == len(whole), path
        for i, (m, w) in enumerate(zip(merged, whole, strict=True)):
            _assert_same(m, w, f"{path}[{i}]", skip)
    elif isinstance(whole, float) and not isinstance(whole, bool):
        assert merged == pytest.approx(whole, rel=1e-9, abs=1e-12), path
    else:
        assert merged == whole, path


def _sketched(prof: dict) -> set[str]:
    """The paths that come from sketches in `prof`, by its own note."""
    skip = set()
    for i, col in enumerate(prof["columns"]):
        if col["name"] in _approximate(prof, "quantiles"):
            skip |= {f".columns[{i}].stats.quantiles", f".columns[{i}].histogram.counts"}
            if col["role"] == "target":
                skip |= {".target.stats.quantiles", ".target.histogram.counts"}
        if col["name"] in _approximate(prof, "distinct"):
            skip.add(f".columns[{i}].distinct")
        if col["name"] in _approximate(prof, "top_share"):
            skip.add(f".columns[{i}].top_share")
    return skip


def _assert_sketches_within_bounds(merged: dict, whole_df: pd.DataFrame, whole: dict) -> None:
    for col in merged["columns"]:
        name, exact = col["name"], _col(whole, col["name"])
        if col["name"] in _approximate(merged, "quantiles"):
            values = pd.to_numeric(whole_df[name], errors="coerce").to_numpy(
                np.float64, na_value=np.nan
            )
            values = np.sort(values[np.isfinite(values)])
            for key, rank in QUANTILES.items():
                q = col["stats"]["quantiles"][key]
                below = np.searchsorted(values, q, "left") / values.size
                upto = np.searchsorted(values, q, "right") / values.size
                assert below - RANK_ERROR <= rank <= upto + RANK_ERROR, (name, key)
            counts, true = np.array(col["histogram"]["counts"]), exact["histogram"]["counts"]
            assert col["histogram"]["edges"] == exact["histogram"]["edges"]
            assert counts.sum() == sum(true) == col["count"] - col.get("infinite", 0)
            assert np.abs(counts - true).max() <= BIN_ERROR * values.size, name
        if name in _approximate(merged, "distinct"):
            assert col["distinct"] == pytest.approx(exact["distinct"], rel=HLL_ERROR), name
        if name in _approximate(merged, "top_share"):
            bound = next(
                s for s in merged["approximate"]["statistics"] if s["statistic"] == "top_share"
            )
            assert exact["top_share"] - bound["bound"] <= col["top_share"] <= exact["top_share"]


def test_churn_parts_merge_to_the_whole_tables_profile(churn_parts):
    whole_df = pd.concat(churn_parts, ignore_index=True)
    whole = profile(whole_df, CHURN)
    merged = _merge(churn_parts, CHURN)

    assert merged["parts"] == 6
    assert merged["n_rows"] == len(whole_df)
    _assert_same(merged, whole, "", _sketched(merged))
    # what the note calls estimates: the continuous columns' sketches, nothing else
    assert _approximate(merged, "quantiles") == {c for c, k in CHURN_FEATURES.items() if k is NUM}
    assert _approximate(merged, "distinct") <= {
        "monthly_charges",
        "avg_session_minutes",
        "signup_date",
        "last_login_days",
    }
    assert "monthly_charges" in _approximate(merged, "distinct")
    assert not _approximate(merged, "categories") | _approximate(merged, "association")
    _assert_sketches_within_bounds(merged, whole_df, whole)
    # spot checks of the exact fields the comparison covered
    assert merged["target"]["classes"] == whole["target"]["classes"]
    assert (
        _col(merged, "avg_session_minutes")["missing"]
        == _col(whole, "avg_session_minutes")["missing"]
        > 1500
    )
    assert _col(merged, "monthly_charges")["stats"]["skew"] == pytest.approx(
        whole_df["monthly_charges"].skew(),
        rel=1e-2,  # pandas' is bias-adjusted
    )
    assert merged["warnings"] == whole["warnings"]


def test_a_single_part_merges_to_nearly_the_same_profile(churn_parts):
    df = churn_parts[0]
    merged, whole = _merge([df], CHURN), profile(df, CHURN)
    _assert_same(merged, whole, "", _sketched(merged))
    _assert_sketches_within_bounds(merged, df, whole)
    assert merged["approximate"]["summary"].startswith("Merged from 1 part: quantiles")


def test_small_parts_merge_exactly_even_the_quantiles():
    """Under k=200 values in all, the merged sketch holds every value, and parts of at most
    100 rows list all their values: no estimate at all."""
    df = _churn(150)
    merged = _merge([df.iloc[:40], df.iloc[40:41], df.iloc[41:141], df.iloc[141:]], CHURN)
    _assert_same(merged, profile(df, CHURN), "", set())
    assert merged["approximate"] == {
        "summary": "Merged from 4 parts: every statistic is exact.",
        "statistics": [],
    }


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins()  # sorted by species: contiguous parts lack whole classes


def test_penguin_species_parts_merge_to_the_whole(penguins):
    schema = ResolvedSchema(
        dataset="penguins",
        task=Task.MULTICLASS,
        target="species",
        features={
            "island": CAT,
            "bill_length_mm": NUM,
            "bill_depth_mm": NUM,
            "flipper_length_mm": NUM,
            "body_mass_g": NUM,
            "sex": CAT,
            "year": NUM,
        },
        classes=["Adelie", "Chinstrap", "Gentoo"],
    )
    parts = [
        penguins.iloc[:150],
        penguins.iloc[150:160].copy(),
        penguins.iloc[160:300],
        penguins.iloc[300:],
    ]
    parts[1]["sex"] = None
    assert parts[0]["species"].nunique() == 1
    whole_df = pd.concat(parts, ignore_index=True)
    whole, merged = profile(whole_df, schema), _merge(parts, schema)
    _assert_same(merged, whole, "", _sketched(merged))
    _assert_sketches_within_bounds(merged, whole_df, whole)
    assert _col(merged, "island")["association"]["method"] == "cramers_v"
    assert _col(merged, "bill_length_mm")["association"]["method"] == "eta"
    assert {w["kind"] for w in merged["warnings"]} == {w["kind"] for w in whole["warnings"]}


def test_penguin_mass_regression_parts_merge_pearson_and_eta(penguins):
    schema = ResolvedSchema(
        dataset="penguins",
        task=Task.REGRESSION,
        target="body_mass_g",
        features={"species": CAT, "island": CAT, "sex": CAT, "flipper_length_mm": NUM, "year": NUM},
    )
    parts = [penguins.iloc[:100], penguins.iloc[100:110].copy(), penguins.iloc[110:]]
    parts[1]["flipper_length_mm"] = np.nan
    whole_df = pd.concat(parts, ignore_index=True)
    whole, merged = profile(whole_df, schema), _merge(parts, schema)
    _assert_same(merged, whole, "", _sketched(merged))
    _assert_sketches_within_bounds(merged, whole_df, whole)
    assert _col(merged, "flipper_length_mm")["association"]["method"] == "pearson"
    assert _col(merged, "flipper_length_mm")["association"]["value"] > 0.8
    assert _col(merged, "species")["association"]["method"] == "eta"
    assert "stats" in merged["target"]
    assert "classes" not in merged["target"]


def test_monthly_timelines_switch_to_years_when_the_merged_span_exceeds_five_years():
    rng = np.random.default_rng(0)

    def part(start: str, days: int, n: int) -> pd.DataFrame:
        when = np.datetime64(start) + rng.integers(0, days, n).astype("timedelta64[D]")
        return pd.DataFrame({"when": when, "y": rng.normal(size=n)})

    schema = ResolvedSchema(dataset="t", task=Task.REGRESSION, target="y", features={"when": DT})
    parts = [part("2000-01-01", 3 * 365, 300), part("2004-01-01", 3 * 365, 200)]  # 3 years each
    assert all(_col(profile(p, schema), "when")["timeline"]["freq"] == "month" for p in parts)
    whole = profile(pd.concat(parts, ignore_index=True), schema)
    merged = _merge(parts, schema)
    assert _col(merged, "when")["timeline"]["freq"] == "year"
    assert _col(merged, "when")["timeline"] == _col(whole, "when")["timeline"]
    # a part spanning over five years alone already counts per year
    mixed = [part("1990-01-01", 8 * 365, 100), part("2000-03-01", 20, 50)]
    whole = profile(pd.concat(mixed, ignore_index=True), schema)
    assert _col(_merge(mixed, schema), "when")["timeline"] == _col(whole, "when")["timeline"]


def test_identifiers_beyond_the_cap_are_sketched_and_first_seen_among_ties():
    """customer_id: 5,000 distinct ids per part, over the 1,000 a part lists."""
    df = _churn(20_000, seed=5)
    schema = CHURN.model_copy(update={"features": {**CHURN_FEATURES, "customer_id": CAT}})
    parts = [df.iloc[i : i + 5000] for i in range(0, 20_000, 5000)]
    whole, merged = profile(df, schema), _merge(parts, schema)
    ids, exact = _col(merged, "customer_id"), _col(whole, "customer_id")
    assert ids["distinct"] == pytest.approx(20_000, rel=HLL_ERROR)
    assert ids["top"] == exact["top"]  # all counts 1: the first seen, as explore breaks ties
    assert ids["top"][0]["value"] == "C000001"
    assert ids["other"] == exact["other"] == 20_000 - 20
    assert ids["top_share"] == exact["top_share"]
    assert "customer_id" in _approximate(merged, "categories")
    assert "high_cardinality" in ids["warnings"]
    note = merged["approximate"]["summary"]
    assert "category counts of customer_id" in note
    assert "distinct counts of" in note


@pytest.mark.parametrize("task", [Task.BINARY, Task.REGRESSION])
def test_associations_of_categories_beyond_the_cap_are_exact_when_part_local(task, monkeypatch):
    """Cohorts of 10 rows, each within one part: the unlisted categories' share of chi2 (or
    of eta's between-group sum) adds up across parts as if every row were listed."""
    monkeypatch.setattr(profile_parts, "CATEGORY_CAP", 100)  # each part has 500 cohorts
    df = _churn(20_000, seed=6)
    target = "churned" if task is Task.BINARY else "monthly_charges"
    # sorted by the target within each part, so a cohort's rows share their target
    key = (df[target] == "yes") if task is Task.BINARY else df[target]
    df = df.iloc[np.lexsort((key.to_numpy(), np.arange(len(df)) // 5000))]
    df = df.assign(cohort=pd.array([f"g{i // 10}" for i in range(len(df))], dtype="str"))
    schema = ResolvedSchema(
        dataset="cohorts",
        task=task,
        target=target,
        features={"cohort": CAT, "region": CAT},
        classes=["no", "yes"] if task is Task.BINARY else None,
    )
    parts = [df.iloc[i : i + 5000] for i in range(0, 20_000, 5000)]
    exact = _col(profile(df, schema), "cohort")["association"]
    merged = _merge(parts, schema)
    cohort = _col(merged, "cohort")["association"]
    assert cohort["method"] == exact["method"] == ("cramers_v" if target == "churned" else "eta")
    assert exact["value"] > 0.5
    assert cohort["value"] == pytest.approx(exact["value"], rel=1e-9)
    assert _approximate(merged, "association") == {"cohort"}


def test_capped_categories_are_lower_bounds_within_the_stated_slack(churn_parts, monkeypatch):
    monkeypatch.setattr(profile_parts, "CATEGORY_CAP", 3)  # region has 5 categories
    whole_df = pd.concat(churn_parts, ignore_index=True)
    whole, merged = profile(whole_df, CHURN), _merge(churn_parts, CHURN)
    region, exact = _col(merged, "region"), _col(whole, "region")
    assert "region" in _approximate(merged, "categories")
    bound = next(s for s in merged["approximate"]["statistics"] if s["statistic"] == "categories")
    slack = bound["bound"] * region["count"]
    true = {t["value"]: t["count"] for t in exact["top"]}
    # a category in no part's top 3 is only in "other"
    assert 3 <= len(region["top"]) <= 5
    for t in region["top"]:
        assert true[t["value"]] - slack <= t["count"] <= true[t["value"]]
    assert region["other"] + sum(t["count"] for t in region["top"]) == exact["count"]
    assert region["distinct"] == 5  # HLL of five strings is exact
    # plan (3 categories) stays exact
    assert _col(merged, "plan")["top"] == _col(whole, "plan")["top"]


def test_the_partial_of_a_large_part_stays_small():
    schema = CHURN.model_copy(update={"features": {**CHURN_FEATURES, "customer_id": CAT}})
    small, large = _churn(50_000, seed=1), _churn(200_000, seed=1)
    size = {len(df): len(json.dumps(partial_profile(df, schema))) for df in (small, large)}
    assert size[200_000] < 160_000  # bytes
    assert size[200_000] < 1.15 * size[50_000]  # 4x the rows, about the same size


def test_the_merged_report_renders_and_states_the_estimates(churn_parts):
    merged = json.loads(json.dumps(_merge(churn_parts, CHURN), allow_nan=False))
    page = render_html(merged, title="Exploration")
    assert "Merged from 6 parts: quantiles and histograms from KLL sketches" in page
    assert f"normalized rank error ≤ {RANK_ERROR:.1%}" in page
    assert page.count('<section class="column"') == merged["n_columns"]
    assert "Merged from" not in render_html(profile(churn_parts[0], CHURN), title="Exploration")


def test_merge_rejects_nothing_and_partials_of_another_schema(churn_parts):
    with pytest.raises(BadInputError):
        merge_profiles([], CHURN)
    other = CHURN.model_copy(update={"features": {"plan": CAT}})
    with pytest.raises(BadInputError, match="columns"):
        merge_profiles([partial_profile(churn_parts[0], other)], CHURN)
    with pytest.raises(BadInputError, match="tenure_months"):
        partial_profile(churn_parts[0].drop(columns="tenure_months"), CHURN)


def test_an_empty_part_changes_nothing(churn_parts):
    df = churn_parts[0]
    with_empty = _merge([df.iloc[:0], df], CHURN)
    alone = _merge([df], CHURN)
    assert with_empty["parts"] == 2
    for key in ("n_rows", "target", "warnings"):
        assert with_empty[key] == alone[key]
    assert [c["count"] for c in with_empty["columns"]] == [c["count"] for c in alone["columns"]]
    assert math.isclose(
        _col(with_empty, "tenure_months")["stats"]["std"],
        _col(alone, "tenure_months")["stats"]["std"],
    )
