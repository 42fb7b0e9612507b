"""Labeled traffic as training data: the join with late labels, the held-back recent slice,
the schema's typing, and the feature stage's rule that traffic trains but never judges."""

from __future__ import annotations

import pandas as pd
import pytest

from mlcycle.domain import features
from mlcycle.domain.traffic import (
    REQUEST_COLUMN,
    TIME_COLUMN,
    join_labels,
    split_recent,
    training_rows,
)
from mlcycle.samples import customer_churn
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, Task


def _record(i: int, **instance: object) -> dict[str, object]:
    return {
        "time": f"2026-12-01T10:00:{i:02d}.000+00:00",
        "request_id": f"r{i}",
        "status": "ok",
        "instance": {"x": float(i), "plan": "basic", **instance},
    }


def test_each_labeled_single_instance_request_becomes_a_row_oldest_first() -> None:
    records = [_record(i) for i in (3, 1, 2, 0)]
    records.append({**_record(4), "status": "error", "instance": None})  # not served
    records += [{**_record(5), "instance": {"x": 1.0}}, {**_record(5), "instance": {"x": 2.0}}]
    labels = pd.DataFrame(
        {"request_id": ["r0", "r1", "r2", "r5", "r1"], "label": ["no", "no", "yes", "yes", "yes"]}
    )
    joined = join_labels(records, labels, "churned")
    assert list(joined.rows[REQUEST_COLUMN]) == ["r0", "r1", "r2"]  # by capture time
    assert list(joined.rows["churned"]) == ["no", "yes", "yes"]  # r1's latest label wins
    assert list(joined.rows["x"]) == [0.0, 1.0, 2.0]
    assert joined.rows[TIME_COLUMN].is_monotonic_increasing
    assert (joined.requests, joined.unlabeled, joined.multi_instance) == (5, 1, 1)
    summary = joined.summary()
    assert summary["rows"] == 3
    assert summary["first_at"].startswith("2026-12-01 10:00:00")


def test_a_field_sent_as_text_by_one_client_keeps_the_column_storable() -> None:
    records = [_record(0, x="7"), _record(1)]
    labels = pd.DataFrame({"request_id": ["r0", "r1"], "label": ["no", "yes"]})
    rows = join_labels(records, labels, "churned").rows
    assert list(rows["x"]) == ["7", "1.0"]
    assert rows.to_parquet() is not None


def test_no_labels_means_no_rows() -> None:
    joined = join_labels([_record(0)], pd.DataFrame({"request_id": [], "label": []}), "y")
    assert len(joined.rows) == 0
    assert joined.unlabeled == 1


@pytest.mark.parametrize(("rows", "held"), [(10, 3), (3, 1), (1, 0), (0, 0)])
def test_the_most_recent_share_is_held_back(rows: int, held: int) -> None:
    frame = pd.DataFrame({"i": range(rows)})
    older, recent = split_recent(frame, 0.3)
    assert len(recent) == held
    assert list(older["i"]) + list(recent["i"]) == list(range(rows))


def _schema() -> ResolvedSchema:
    return ResolvedSchema(
        dataset="churn",
        task=Task.BINARY,
        target="churned",
        features={"x": ColumnType.NUMERIC, "plan": ColumnType.CATEGORICAL},
        classes=["no", "yes"],
        positive_class="yes",
    )


def test_traffic_is_typed_by_the_schema_and_unusable_labels_are_counted() -> None:
    rows = pd.DataFrame({"x": [1.0, 2.0, 3.0], "churned": ["yes", "maybe", None]})
    kept, summary = training_rows(rows, _schema())
    assert list(kept.columns) == ["x", "plan", "churned"]
    assert kept.to_dict("records") == [{"x": 1.0, "plan": None, "churned": "yes"}]
    assert summary == {"rows": 1, "unusable_labels": 2, "fields_never_sent": ["plan"]}


def _churn_schema() -> ResolvedSchema:
    frame = customer_churn(10)
    kinds = {
        name: ColumnType.NUMERIC
        if pd.api.types.is_numeric_dtype(frame[name])
        else ColumnType.CATEGORICAL
        for name in frame.columns
        if name not in ("customer_id", "churned", "signup_date")
    }
    return ResolvedSchema(
        dataset="churn",
        task=Task.BINARY,
        target="churned",
        features=kinds,
        classes=["no", "yes"],
        positive_class="yes",
    )


def test_traffic_trains_but_never_joins_the_holdout() -> None:
    schema = _churn_schema()
    upload = customer_churn(600, seed=1)
    traffic = customer_churn(200, seed=2)
    traffic = pd.concat([traffic, upload.iloc[:5]])  # five repeat rows the upload has
    alone = features.engineer(upload, schema, holdout_fraction=0.2, seed=42)
    both = features.engineer(
        upload, schema, holdout_fraction=0.2, seed=42, extra_train=traffic, max_extra_share=0.5
    )
    # the holdout is the upload's split, row for row: production is compared like for like
    pd.testing.assert_frame_equal(alone.holdout, both.holdout)
    assert both.extra == {
        "rows": 200,
        "repeats_dropped": 5,
        "dropped_by_share": 0,
        "share_of_training": round(200 / (len(alone.train) + 200), 4),
    }
    assert len(both.train) == len(alone.train) + 200
    assert len(both.X_train) == len(both.train)


def test_the_traffic_share_of_training_is_capped_keeping_the_newest() -> None:
    schema = _churn_schema()
    upload = customer_churn(300, seed=1)
    traffic = customer_churn(400, seed=3)
    both = features.engineer(
        upload, schema, holdout_fraction=0.2, seed=42, extra_train=traffic, max_extra_share=0.2
    )
    assert both.extra is not None
    train_rows = len(both.train) - both.extra["rows"]
    assert both.extra["rows"] == int(0.2 / 0.8 * train_rows)
    assert both.extra["dropped_by_share"] == 400 - both.extra["rows"]
    # the newest traffic rows are the ones kept (the traffic is oldest first)
    kept = both.train.iloc[train_rows:]
    assert list(kept["tenure_months"]) == list(traffic["tenure_months"].iloc[-len(kept) :])
