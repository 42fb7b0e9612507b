"""Batch-scored rows are captured traffic (moto): a monitor pass after a scoring run computes
drift on the run's rows, flags a shifted batch, and joins labels uploaded for its request ids."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlcycle import batch_scoring
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.batch_scoring import Chunk, FinishEvent, ScorePartEvent, ScoringSummary
from mlcycle.context import RunContext, Source
from mlcycle.monitoring import monitor_dataset
from mlcycle.serving.manifest import Manifest
from tests.conftest import ROOT
from tests.integration.test_monitoring import DATASET, _release
from tests.integration.test_predict import export_toy_model

BATCH = 600  # rows of each scored file


@pytest.fixture(scope="module")
def toy() -> tuple[bytes, Manifest]:
    return export_toy_model()


@pytest.fixture
def released(lake: Lake, registry: Registry, toy: tuple[bytes, Manifest]) -> Iterator[None]:
    batch_scoring._models.clear()  # another test's model of the same name and version
    _release(lake, registry, toy, attribution=False)
    yield
    batch_scoring._models.clear()


def _customers(skip: int) -> pd.DataFrame:
    """Rows of the example file the model did not train on, with their truth."""
    frame = pd.read_csv(ROOT / "examples" / "customer-churn.csv")
    return frame.iloc[skip : skip + BATCH].reset_index(drop=True)


def _score(
    lake: Lake, registry: Registry, frame: pd.DataFrame, name: str, *, capture_rows: int
) -> tuple[ScoringSummary, pd.DataFrame]:
    """A scoring run over `frame` (without its target) as the state machine runs it; its
    summary and predictions."""
    key = f"score/{DATASET}/{name}"
    data = frame.drop(columns=["churned"]).to_csv(index=False).encode()
    version = lake.s3.put_object(Bucket=lake.bucket, Key=key, Body=data)["VersionId"]
    source = Source(bucket=lake.bucket, key=key, version_id=version)
    ctx = RunContext(run_id=f"{DATASET}-{name.split('.')[0]}", source=source)
    plan = batch_scoring.plan_scoring(
        ctx, lake, registry, chunk_rows=250, capture_rows=capture_rows
    )
    chunks = [Chunk(**c) for c in lake.get_json(lake.uri(plan.chunks_key))]
    parts = [batch_scoring.score_part(ScorePartEvent(chunk=c, plan=plan), lake) for c in chunks]
    event = FinishEvent(run_id=ctx.run_id, source=source, plan=plan, parts=parts)
    summary = batch_scoring.finish_scoring(event, lake)
    return summary, batch_scoring.read_predictions(lake, summary).to_pandas()


def _monitor(lake: Lake, registry: Registry) -> dict:
    return monitor_dataset(DATASET, lake, registry, boto3.client("cloudwatch"))


@pytest.mark.usefixtures("released")
def test_a_monitor_pass_computes_drift_on_a_scored_batch(lake: Lake, registry: Registry) -> None:
    frame = _customers(skip=2000)
    summary, _ = _score(lake, registry, frame, "tonight.csv", capture_rows=10_000)
    assert summary.captured == BATCH  # fewer rows than the sample: all of them
    document = _monitor(lake, registry)
    assert document["sample_size"] == BATCH
    assert document["enough_samples"] is True
    # the same numbers as the monitor over the same rows given as a file
    given = frame.assign(signup_date=pd.to_datetime(frame["signup_date"]))
    expected = monitor_dataset(DATASET, lake, registry, boto3.client("cloudwatch"), current=given)
    psi = {f["name"]: f["psi"] for f in document["features"]}
    assert psi == pytest.approx({f["name"]: f["psi"] for f in expected["features"]})
    assert document["drifted_features"] == expected["drifted_features"]
    assert document["alarm"] is False  # one feature at most: no alarm


@pytest.mark.usefixtures("released")
def test_a_shifted_batch_flags_drift(lake: Lake, registry: Registry) -> None:
    frame = _customers(skip=2000)
    frame["plan"] = "basic"
    frame["monthly_charges"] = frame["monthly_charges"] * 1.8
    _score(lake, registry, frame, "shifted.csv", capture_rows=10_000)
    document = _monitor(lake, registry)
    assert document["sample_size"] == BATCH
    assert document["alarm"] is True
    assert {"plan", "monthly_charges"} <= set(document["drifted_features"])


@pytest.mark.usefixtures("released")
def test_labels_for_batch_request_ids_join_the_captured_sample(
    lake: Lake, registry: Registry
) -> None:
    frame = _customers(skip=3000)
    summary, predictions = _score(lake, registry, frame, "sampled.csv", capture_rows=200)
    assert summary.captured == predictions["captured"].sum() == 200
    assert summary.capture_rate == pytest.approx(200 / BATCH)
    # the user labels every row of the run by its request id, a month later
    truth = frame["churned"].to_numpy()[predictions["row"].to_numpy() - 1]
    labels = pd.DataFrame({"request_id": predictions["request_id"], "label": truth})
    lake.put_bytes(f"labels/dataset={DATASET}/batch.csv", labels.to_csv(index=False).encode())
    document = _monitor(lake, registry)
    assert document["sample_size"] == 200
    live = document["live"]
    assert live["n_labels"] == 200  # the captured rows' labels; the others are not traffic
    captured = predictions[predictions["captured"]]
    kept = np.isin(predictions["request_id"], captured["request_id"])
    auc = roc_auc_score(truth[kept] == "yes", captured["probability_yes"].astype("float64"))
    assert live["metrics"]["roc_auc"] == pytest.approx(auc, abs=1e-6)
