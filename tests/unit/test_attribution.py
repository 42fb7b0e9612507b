"""Shares of attribution and their drift, live against training (`mlcycle.domain.attribution`)."""

from __future__ import annotations

import json

import pytest

from mlcycle.domain.attribution import attribution_drift, attribution_shares


def test_shares_are_mean_absolute_contributions_normalised_to_one() -> None:
    shares = attribution_shares(
        [
            {"a": 3.0, "b": -1.0, "c": 0.0},
            {"a": -1.0, "b": 1.0, "c": 0.0},
        ]
    )
    # means of |x|: a 2, b 1, c 0 -> 2/3, 1/3, 0
    assert shares == pytest.approx({"a": 2 / 3, "b": 1 / 3, "c": 0.0})
    assert sum(shares.values()) == pytest.approx(1.0)


def test_all_zero_contributions_give_zero_shares_and_no_rows_none() -> None:
    assert attribution_shares([{"a": 0.0, "b": -0.0}, {"a": 0.0, "b": 0.0}]) == {
        "a": 0.0,
        "b": 0.0,
    }
    assert attribution_shares([]) == {}


def test_a_feature_missing_from_a_row_or_not_finite_counts_as_zero() -> None:
    shares = attribution_shares([{"a": 1.0}, {"a": 1.0, "b": 2.0}, {"a": float("nan"), "b": 0}])
    # a: (1 + 1 + 0) / 3, b: (0 + 2 + 0) / 3 -> equal
    assert shares == pytest.approx({"a": 0.5, "b": 0.5})


def test_drift_names_the_features_whose_share_moved_by_ten_points() -> None:
    reference = {"plan": 0.12, "tenure": 0.50, "charges": 0.28, "region": 0.10}
    live = {"plan": 0.31, "tenure": 0.40, "charges": 0.25, "region": 0.04}
    drift = attribution_drift(reference, live)
    by_name = {f["name"]: f for f in drift["features"]}
    assert by_name["plan"] == pytest.approx(
        {"name": "plan", "reference": 0.12, "live": 0.31, "change": 0.19, "moved": True}
    )
    assert by_name["tenure"]["change"] == pytest.approx(0.10)
    assert by_name["tenure"]["moved"] is True  # exactly ten points is a move
    assert by_name["charges"]["moved"] is False
    assert by_name["region"]["moved"] is False
    assert drift["moved"] == ["plan", "tenure"]  # largest change first
    assert [f["name"] for f in drift["features"]] == ["tenure", "plan", "charges", "region"]
    assert drift["top_live"] == ["tenure", "plan", "charges", "region"]
    assert drift["top_reference"] == ["tenure", "charges", "plan", "region"]
    assert drift["min_change"] == 0.1
    json.dumps(drift, allow_nan=False)  # plain JSON


def test_drift_options_and_features_on_one_side_only() -> None:
    drift = attribution_drift(
        {"a": 0.9, "gone": 0.1}, {"a": 0.7, "new": 0.3}, min_change=0.25, top=1
    )
    by_name = {f["name"]: f for f in drift["features"]}
    assert by_name["gone"] == pytest.approx(
        {"name": "gone", "reference": 0.1, "live": 0.0, "change": 0.1, "moved": False}
    )
    assert by_name["new"]["reference"] == 0.0
    assert drift["moved"] == ["new"]
    assert drift["top_live"] == ["a"]
    assert drift["top_reference"] == ["a"]


def test_equal_shares_move_nothing_and_zero_shares_are_not_top() -> None:
    shares = {"a": 1.0, "b": 0.0}
    drift = attribution_drift(shares, shares)
    assert drift["moved"] == []
    assert all(f["change"] == 0.0 for f in drift["features"])
    assert drift["top_live"] == drift["top_reference"] == ["a"]
    assert attribution_drift({}, {}) == {
        "min_change": 0.1,
        "features": [],
        "moved": [],
        "top_live": [],
        "top_reference": [],
    }
