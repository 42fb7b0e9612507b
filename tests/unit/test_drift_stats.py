"""Sharper drift for small integer and categorical features: value bins, effect-size alerts
(KS, total variation distance) above their chance level, and old baselines still read."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from mlcycle.domain.drift_report import render_drift_report
from mlcycle.domain.drift_stats import (
    distance_chance_level,
    ks_chance_level,
    value_groups,
    value_labels,
)
from mlcycle.domain.features import drift_baseline
from mlcycle.domain.monitor import FeatureDrift, extend_baseline, feature_drift
from mlcycle.samples import customer_churn
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, MonitoringLimits, Task

N_REF = 20_000
SCHEMA = ResolvedSchema(
    dataset="demo",
    task=Task.REGRESSION,
    target="y",
    features={
        "tickets": ColumnType.NUMERIC,  # Poisson counts
        "rating": ColumnType.NUMERIC,  # 1 to 5 stars
        "plan": ColumnType.CATEGORICAL,
        "hour": ColumnType.NUMERIC,  # 24 integer values, but the deciles do not tie
    },
)
LIMITS = MonitoringLimits()  # psi 0.2, ks 0.15, categorical distance 0.15
PSI_ONLY = MonitoringLimits(ks_threshold=None, categorical_distance_threshold=None)
STARS = [1.0, 2.0, 3.0, 4.0, 5.0]
PLANS = ["basic", "standard", "premium"]


def make_frame(
    n: int,
    seed: int,
    *,
    tickets: float = 1.0,
    stars: tuple[float, ...] = (0.1, 0.15, 0.3, 0.3, 0.15),
    plans: tuple[float, ...] = (0.45, 0.45, 0.1),
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tickets": rng.poisson(tickets, n).astype("float64"),
            "rating": rng.choice(STARS, n, p=stars),
            "plan": pd.Series(rng.choice(PLANS, n, p=plans), dtype=object),
            "hour": rng.integers(0, 24, n).astype("float64"),
            "y": 0.0,
        }
    )


def decile_only(baseline: dict) -> dict:
    """A baseline as written before value bins: no `values` / `value_fractions`."""
    old = copy.deepcopy(baseline)
    for column in old["columns"].values():
        column.pop("values", None)
        column.pop("value_fractions", None)
    return old


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(N_REF, seed=1)


@pytest.fixture(scope="module")
def baseline(reference: pd.DataFrame) -> dict:
    return extend_baseline(drift_baseline(reference, SCHEMA), reference, SCHEMA)


@pytest.fixture(scope="module")
def shifted() -> pd.DataFrame:
    """Poisson(1) -> Poisson(1.5) tickets; one in five customers a star more; 18 points of
    the plan mix moved from standard to basic."""
    return make_frame(
        5000, seed=2, tickets=1.5, stars=(0.05, 0.1, 0.2, 0.4, 0.25), plans=(0.63, 0.27, 0.1)
    )


def by_name(features: list[FeatureDrift]) -> dict[str, FeatureDrift]:
    return {f.name: f for f in features}


# --- the baseline --------------------------------------------------------------------------


def test_few_integer_values_whose_deciles_tie_are_stored_by_value(baseline: dict) -> None:
    columns = baseline["columns"]
    assert columns["rating"]["values"] == STARS
    assert columns["rating"]["value_fractions"] == pytest.approx(
        [0.1, 0.15, 0.3, 0.3, 0.15], abs=0.01
    )
    assert columns["tickets"]["values"][:3] == [0.0, 1.0, 2.0]
    assert sum(columns["tickets"]["value_fractions"]) == pytest.approx(1.0)
    assert "values" not in columns["hour"]  # 9 distinct decile cut points: deciles suffice
    assert "values" not in columns["plan"]
    json.dumps(baseline, allow_nan=False)


def test_many_values_fractions_and_dates_keep_deciles() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    frame = pd.DataFrame(
        {
            "wide": rng.choice(np.arange(40.0), n, p=np.r_[0.5, np.full(39, 0.5 / 39)]),
            "halves": rng.choice([0.0, 0.5, 1.0], n),
            "day": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 3, n), unit="D"),
            "y": 0.0,
        }
    )
    schema = ResolvedSchema(
        dataset="d",
        task=Task.REGRESSION,
        target="y",
        features={
            "wide": ColumnType.NUMERIC,  # 40 distinct values: more than MAX_BINNED_VALUES
            "halves": ColumnType.NUMERIC,  # not integers
            "day": ColumnType.DATETIME,
        },
    )
    columns = drift_baseline(frame, schema)["columns"]
    assert not any("values" in columns[c] for c in ("wide", "halves", "day"))


def test_value_bins_merge_rare_neighbours_and_read_as_values() -> None:
    poisson = [0.37, 0.37, 0.18, 0.06, 0.015, 0.003, 0.0005]
    assert value_groups(poisson, 0.05) == [[0], [1], [2], [3, 4, 5, 6]]
    assert value_groups(poisson, 0.10) == [[0], [1], [2, 3, 4, 5, 6]]  # a 100-row window
    assert value_groups([0.02, 0.5, 0.48], 0.05) == [[0, 1], [2]]
    assert value_labels([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], value_groups(poisson, 0.05)) == [
        "0",
        "1",
        "2",
        "3 to 6",
    ]
    assert value_labels([10.0, 20.0, 50.0], [[0, 1, 2]]) == ["10, 20, 50"]


# --- the shifts PSI under-weights -----------------------------------------------------------


def test_a_poisson_shift_is_flagged_now(baseline: dict, shifted: pd.DataFrame) -> None:
    before = by_name(feature_drift(shifted, decile_only(baseline), SCHEMA, PSI_ONLY).features)
    after = by_name(feature_drift(shifted, baseline, SCHEMA, LIMITS).features)
    old, new = before["tickets"], after["tickets"]
    print(
        f"\nPoisson(1) -> Poisson(1.5), {N_REF} training rows, 5000 live: decile PSI "
        f"{old.psi:.3f} (KS {old.ks:.3f}, drifted: {old.drifted}); value-binned PSI "
        f"{new.psi:.3f}, KS {new.ks:.3f} (chance level {new.chance_level:.3f}), "
        f"drifted by {new.drifted_by}"
    )
    assert old.binning == "deciles"
    assert not old.drifted
    assert old.psi < 0.2
    assert new.binning == "values"
    assert new.bins == ["0", "1", "2", "3 to 7", "__other__", "__missing__"]
    assert new.psi > old.psi  # value bins split decile's "2 or more"
    assert new.drifted_by == ["ks"]
    assert new.chance_level is not None
    assert new.ks is not None
    assert new.ks > 0.15 > new.chance_level


def test_value_binned_ks_is_exact_and_unseen_values_have_their_bin(
    reference: pd.DataFrame, baseline: dict, shifted: pd.DataFrame
) -> None:
    current = shifted.copy()
    current.loc[current.index[:100], "tickets"] = 2.5  # no training value
    current.loc[current.index[100:150], "tickets"] = 40.0  # beyond the training range
    current.loc[current.index[150:200], "rating"] = np.nan
    features = by_name(feature_drift(current, baseline, SCHEMA, LIMITS).features)
    for name in ("tickets", "rating"):
        exact = ks_2samp(reference[name], current[name].dropna()).statistic
        assert features[name].ks == pytest.approx(exact, abs=1e-12), name
    tickets = features["tickets"]
    unseen = float((~current["tickets"].isin(reference["tickets"].unique())).mean())
    assert unseen >= 150 / 5000  # and the few Poisson(1.5) counts training never had
    assert tickets.unknown_rate == pytest.approx(unseen)
    assert tickets.current[-2] == pytest.approx(unseen)  # __other__, then __missing__
    assert tickets.reference[-2] == 0.0
    assert features["rating"].current[-1] == pytest.approx(50 / 5000)


def test_a_rating_shift_is_flagged_by_ks(baseline: dict, shifted: pd.DataFrame) -> None:
    rating = by_name(feature_drift(shifted, baseline, SCHEMA, LIMITS).features)["rating"]
    print(f"\n1-5 rating, a fifth a star up: PSI {rating.psi:.3f}, KS {rating.ks:.3f}")
    assert rating.bins == ["1", "2", "3", "4", "5", "__other__", "__missing__"]
    assert rating.psi < 0.2  # PSI alone would let it pass
    assert rating.drifted_by == ["ks"]


def test_a_plan_mix_shift_is_flagged_by_its_distance(
    reference: pd.DataFrame, baseline: dict, shifted: pd.DataFrame
) -> None:
    plan = by_name(feature_drift(shifted, baseline, SCHEMA, LIMITS).features)["plan"]
    print(f"\nplan mix, 18 points moved: PSI {plan.psi:.3f}, distance {plan.distance:.3f}")
    assert plan.psi < 0.2
    assert plan.distance == pytest.approx(0.18, abs=0.015)
    assert plan.drifted_by == ["distance"]
    # Cramér's V reads the same shift smaller in a smaller window; the distance does not
    small = by_name(feature_drift(shifted.iloc[:500], baseline, SCHEMA, LIMITS).features)["plan"]
    assert small.cramers_v is not None
    assert plan.cramers_v is not None
    assert small.cramers_v < 0.5 * plan.cramers_v
    assert small.distance == pytest.approx(plan.distance, abs=0.04)


def test_an_effect_size_below_its_chance_level_does_not_flag(baseline: dict) -> None:
    """The same star shares (KS 0.18 against training) in 100 and in 1,000 rows: chance
    reaches 0.2 at 100 rows, 0.06 at 1,000."""
    stars = np.repeat(STARS, [4, 9, 24, 42, 21])  # cumulative 0.04, 0.13, 0.37, 0.79
    for repeat, flagged in ((1, False), (10, True)):
        current = make_frame(100 * repeat, seed=5)
        current["rating"] = np.tile(stars, repeat)
        rating = by_name(feature_drift(current, baseline, SCHEMA, LIMITS).features)["rating"]
        assert rating.ks == pytest.approx(0.18, abs=0.01)
        assert rating.psi < 0.2
        assert ("ks" in rating.drifted_by) is flagged, repeat
    assert ks_chance_level(100, N_REF) == pytest.approx(0.196, abs=0.002)
    assert distance_chance_level([0.5, 0.5, 0.0], 100, N_REF) == pytest.approx(0.16, abs=0.01)


# --- no drift, no flag ---------------------------------------------------------------------

CHURN = ResolvedSchema(
    dataset="customer-churn",
    task=Task.BINARY,
    target="churned",
    features={
        "signup_date": ColumnType.DATETIME,
        "plan": ColumnType.CATEGORICAL,
        "region": ColumnType.CATEGORICAL,
        "payment_method": ColumnType.CATEGORICAL,
        "monthly_charges": ColumnType.NUMERIC,
        "tenure_months": ColumnType.NUMERIC,
        "support_tickets_90d": ColumnType.NUMERIC,
        "avg_session_minutes": ColumnType.NUMERIC,
        "last_login_days": ColumnType.NUMERIC,
        "discount_pct": ColumnType.NUMERIC,
        "satisfaction_score": ColumnType.NUMERIC,
    },
    classes=["no", "yes"],
    positive_class="yes",
)


@pytest.mark.parametrize(("rows", "seeds"), [(300, range(11, 16)), (10_000, [16])])
def test_same_distribution_churn_windows_flag_nothing(rows: int, seeds: range) -> None:
    train = customer_churn(4000, seed=7)
    baseline = extend_baseline(drift_baseline(train, CHURN), train, CHURN)
    binned = [c for c, entry in baseline["columns"].items() if "values" in entry]
    assert binned == ["support_tickets_90d", "discount_pct", "satisfaction_score"]
    for seed in seeds:
        result = feature_drift(customer_churn(rows, seed=seed), baseline, CHURN, LIMITS)
        worst_ks = max(f.ks or 0.0 for f in result.features)
        worst_distance = max(f.distance or 0.0 for f in result.features)
        worst_psi = max(f.psi for f in result.features)
        print(
            f"\nchurn, {rows} rows, seed {seed}: worst PSI {worst_psi:.3f}, KS {worst_ks:.3f}, "
            f"distance {worst_distance:.3f}"
        )
        assert result.drifted_features == [], seed
        assert not result.alarm
        assert worst_ks < 0.15
        assert worst_distance < 0.15


# --- what is stored stays readable ----------------------------------------------------------


def test_a_baseline_without_value_fields_is_still_read(
    baseline: dict, shifted: pd.DataFrame
) -> None:
    old = json.loads(json.dumps(decile_only(baseline)))  # as stored in the registry
    result = feature_drift(shifted, old, SCHEMA, LIMITS).to_json()
    tickets = {f["name"]: f for f in result["features"]}["tickets"]
    assert tickets["binning"] == "deciles"
    assert tickets["bins"][0].startswith("< ")
    assert tickets["drifted_by"] == ["ks"]  # the KS alert needs no value bins
    # limits written by an older metrics stage lack the effect-size fields: defaults
    older = {
        "psi_threshold": 0.2,
        "max_drifted_features": 1,
        "prediction_psi_threshold": 0.2,
        "min_samples": 100,
    }
    limits = MonitoringLimits.model_validate(older)
    assert (limits.ks_threshold, limits.categorical_distance_threshold) == (0.15, 0.15)
    assert limits.drift_rule() == "PSI above 0.2, KS above 0.15 or category distance above 0.15"
    assert PSI_ONLY.drift_rule() == "PSI above 0.2"


def test_an_older_result_without_the_new_fields_still_renders(
    baseline: dict, shifted: pd.DataFrame
) -> None:
    document = feature_drift(shifted, baseline, SCHEMA, PSI_ONLY).to_json()
    new_fields = ("binning", "drifted_by", "distance", "chance_level")
    for f in document["features"]:
        for key in new_fields:
            f.pop(key)
    for key in ("ks_threshold", "categorical_distance_threshold"):
        document["limits"].pop(key)
    page = render_drift_report(document, title="old")
    assert "a feature drifts when its PSI exceeds 0.2</p>" in page


def test_the_report_says_which_statistic_flagged(baseline: dict, shifted: pd.DataFrame) -> None:
    document = json.loads(
        json.dumps(feature_drift(shifted, baseline, SCHEMA, LIMITS).to_json(), allow_nan=False)
    )
    assert document["reasons"] == [
        "3 features drifted, more than the 1 allowed: "
        + ", ".join(
            f"{f['name']} ({'KS' if f['name'] != 'plan' else 'distance'} "
            f"{f['ks' if f['name'] != 'plan' else 'distance']:.3g} > 0.15)"
            for f in document["features"]
            if f["drifted"]
        )
    ]
    page = render_drift_report(document, title="shift")
    assert "drifted: KS</span>" in page
    assert "drifted: distance</span>" in page
    assert "yes, by KS" in page
    assert (
        "or when an effect size exceeds its limit (KS 0.15 for numbers and dates, category "
        "distance 0.15) and what chance alone reaches" in page
    )
    assert "by value (rare neighbours merged" in page
    assert "exact, 5 training values" in page  # the rating's KS
