"""The training row budget and the stratified sample drawn part by part."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcycle.domain import sampling
from mlcycle.samples import customer_churn


def test_the_budget_follows_the_measured_cost_per_row_and_the_width() -> None:
    # 10,240 MB: (10,240 - 400) * 0.75 / 1,100 MB per million rows of 13 columns
    assert sampling.row_budget(10_240, 13) == 6_709_090
    assert sampling.row_budget(10_240, 26) == 3_354_545  # twice as wide, half the rows
    assert sampling.row_budget(2_048, 13) < sampling.row_budget(10_240, 13)
    assert sampling.row_budget(128, 13) == 1_000  # never nothing


def test_under_the_budget_every_row_is_kept() -> None:
    plan = sampling.plan_sample([{"yes": 30, "no": 70}, {"no": 5}], 1_000, stratified=True)
    assert not plan.sampled
    assert plan.quotas == [{"yes": 30, "no": 70}, {"no": 5}]
    assert plan.describe(7, "churn")["rows_used"] == 105


def test_quotas_keep_each_class_share_and_sum_to_the_budget() -> None:
    counts = [{"yes": 1_000, "no": 9_000}, {"yes": 500, "no": 4_500}, {"no": 3_000}]
    plan = sampling.plan_sample(counts, 3_000, stratified=True)
    assert plan.sampled
    assert plan.kept == 3_000
    assert plan.available == 18_000
    yes = sum(q.get("yes", 0) for q in plan.quotas)
    assert yes == round(3_000 * 1_500 / 18_000)  # 250: the class keeps its 8.3%
    # each part gives in proportion to what it holds of the class
    assert [q.get("no", 0) for q in plan.quotas] == [1_500, 750, 500]
    assert "yes" not in plan.quotas[2]


def test_a_rare_class_is_never_sampled_away() -> None:
    plan = sampling.plan_sample([{"common": 1_000_000, "rare": 3}], 1_000, stratified=True)
    assert plan.quotas[0]["rare"] >= 1


def test_take_draws_the_quota_per_class_without_replacement_in_row_order() -> None:
    frame = customer_churn(5_000, seed=3)
    counts = sampling.strata(frame, "churned", stratified=True)
    plan = sampling.plan_sample([counts], 1_000, stratified=True)
    sample = sampling.take(frame, "churned", plan.quotas[0], seed=42, part=0, stratified=True)
    assert len(sample) == plan.kept
    assert sample["churned"].astype(str).value_counts().to_dict() == plan.quotas[0]
    ids = sample["customer_id"].to_numpy()
    assert len(set(ids)) == len(ids)  # no row twice
    positions = pd.Index(frame["customer_id"]).get_indexer(ids)
    assert np.all(np.diff(positions) > 0)  # in the part's order
    again = sampling.take(frame, "churned", plan.quotas[0], seed=42, part=0, stratified=True)
    assert again.equals(sample)  # seeded
    other = sampling.take(frame, "churned", plan.quotas[0], seed=42, part=1, stratified=True)
    assert not other["customer_id"].equals(sample["customer_id"])  # parts draw independently


@pytest.mark.parametrize("rows", [999, 1_000])
def test_a_regression_is_sampled_uniformly(rows: int) -> None:
    frame = pd.DataFrame({"y": np.arange(rows, dtype=float), "x": np.arange(rows)})
    plan = sampling.plan_sample(
        [sampling.strata(frame, "y", stratified=False)], 500, stratified=False
    )
    sample = sampling.take(frame, "y", plan.quotas[0], seed=1, part=0, stratified=False)
    assert len(sample) == 500
    assert plan.describe(1, "y")["stratified_by"] is None
