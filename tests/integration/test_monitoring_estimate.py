"""The monitor's performance estimate against moto: captured probabilities through the
calibration the evaluation stored in the monitor baseline give the expected primary metric
(`performance_estimate` in drift.json and drift.html), published as `EstimatedMetric`; once the
labels arrive the realized live metric stands beside it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pytest

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.domain import performance_estimation as pe
from mlcycle.monitoring import monitor_dataset
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.manifest import Manifest
from mlcycle.spec import ColumnType, Task
from tests.integration.test_monitoring import DATASET, _release, capture
from tests.integration.test_predict import export_toy_model

BASELINE_KEY = "models/dataset=customer-churn/run=r1/monitor_baseline.json"
SCHEMA = ResolvedSchema(
    dataset=DATASET,
    task=Task.BINARY,
    target="churned",
    features={"x": ColumnType.NUMERIC},
    classes=["no", "yes"],
    positive_class="yes",
)


@pytest.fixture(scope="module")
def toy() -> tuple[bytes, Manifest]:
    return export_toy_model()


def _captured(
    lake: Lake, instances: list[dict[str, Any]], p: np.ndarray, now: datetime
) -> list[str]:
    """Captured with the positive class's probabilities `p` (labels at the 0.4 threshold)."""
    answers = [
        {
            "label": "yes" if q >= 0.4 else "no",
            "probabilities": {"no": 1 - float(q), "yes": float(q)},
        }
        for q in p
    ]
    return capture(lake, instances, now, answers)


def _calibrate(lake: Lake, baseline: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """What evaluation stores: a calibrator fitted on a holdout whose scores are too extreme
    (the live scores below are as extreme)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2.0, 3.0, 2000)
    y = np.where(rng.random(2000) < p, "yes", "no")
    s = np.clip(0.5 + 1.5 * (p - 0.5), 0.001, 0.999)
    reference = pe.calibration_reference(np.c_[1 - s, s], y, SCHEMA, 0.4, seed=seed)
    assert reference is not None
    lake.put_json(BASELINE_KEY, {**baseline, "performance_estimation": reference})
    return reference


def _metric(cloudwatch: Any, name: str, now: datetime) -> list[dict[str, Any]]:
    return list(
        cloudwatch.get_metric_statistics(
            Namespace="mlcycle",
            MetricName=name,
            Dimensions=[{"Name": "dataset", "Value": DATASET}],
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=5),
            Period=60,
            Statistics=["Minimum"],
        )["Datapoints"]
    )


def test_the_estimate_is_in_the_drift_report_and_published_before_and_beside_the_labels(
    lake: Lake, registry: Registry, toy: tuple[bytes, Manifest]
) -> None:
    baseline, instances = _release(lake, registry, toy, attribution=False)
    reference = _calibrate(lake, baseline)
    rng = np.random.default_rng(1)
    p = rng.beta(2.0, 3.0, len(instances))
    truth = np.where(rng.random(len(p)) < p, "yes", "no")
    s = np.clip(0.5 + 1.5 * (p - 0.5), 0.001, 0.999)
    now = datetime.now(UTC)
    request_ids = _captured(lake, instances, s, now)
    cloudwatch = boto3.client("cloudwatch")

    # before the labels: the estimate alone
    before = monitor_dataset(DATASET, lake, registry, cloudwatch, now=now)
    estimate = before["performance_estimate"]
    said = np.where(s >= 0.4, "yes", "no")
    direct = pe.estimate(np.c_[1 - s, s], said, reference, "roc_auc", min_rows=100)
    assert (estimate["metric"], estimate["rows"]) == ("roc_auc", 150)
    assert estimate["value"] == pytest.approx(direct["value"])
    assert estimate["interval"] == pytest.approx(direct["interval"])
    assert estimate["calibration"] == {"yes": "isotonic"}
    assert any("no concept drift" in a for a in estimate["assumptions"])
    assert "labelled" not in estimate
    assert not before.get("live")  # no labels yet
    [point] = _metric(cloudwatch, "EstimatedMetric", now)
    assert point["Minimum"] == pytest.approx(estimate["value"])
    stored = lake.get_json(before["report_uri"].replace("drift.html", "drift.json"))
    assert stored["performance_estimate"] == json.loads(json.dumps(estimate))
    page = lake.get_bytes(before["report_uri"]).decode()
    assert "Estimated performance, before the labels" in page
    assert "no concept drift" in page

    # the labels arrive: the realized live metric beside the estimate on the same rows
    lake.put_bytes(
        f"labels/dataset={DATASET}/labels.csv",
        (
            "request_id,label\n"
            + "".join(f"{r},{y}\n" for r, y in zip(request_ids, truth, strict=True))
        ).encode(),
    )
    later = now + timedelta(minutes=1)
    after = monitor_dataset(DATASET, lake, registry, cloudwatch, now=later)
    labelled = after["performance_estimate"]["labelled"]
    assert labelled["rows"] == after["live"]["n_labels"] == 150
    assert labelled["realized"] == pytest.approx(after["live"]["metrics"]["roc_auc"])
    assert labelled["estimated"] == pytest.approx(estimate["value"])
    assert abs(labelled["error"]) < 0.1  # 150 rows: the labels' chance alone is about 0.04
    page = lake.get_bytes(after["report_uri"]).decode()
    assert "realized (labelled rows)" in page
    assert f"{after['live']['metrics']['roc_auc']:.4g}" in page


def test_a_small_window_or_an_old_baseline_is_not_estimated_and_publishes_nothing(
    lake: Lake, registry: Registry, toy: tuple[bytes, Manifest]
) -> None:
    baseline, instances = _release(lake, registry, toy, attribution=False)
    now = datetime.now(UTC)
    _captured(lake, instances, np.full(len(instances), 0.3), now)
    cloudwatch = boto3.client("cloudwatch")
    old = monitor_dataset(DATASET, lake, registry, cloudwatch, now=now)
    assert old["performance_estimate"]["value"] is None
    assert old["performance_estimate"]["reason"] == (
        "this version's monitor baseline has no calibration"
    )
    assert "not estimated: this version" in lake.get_bytes(old["report_uri"]).decode()

    _calibrate(lake, baseline)
    _captured(lake, instances[:60], np.full(60, 0.3), now)  # below min_samples (100)
    small = monitor_dataset(DATASET, lake, registry, cloudwatch, now=now)
    assert small["performance_estimate"]["reason"] == (
        "only 60 rows with probabilities; at least 100 are needed"
    )
    assert _metric(cloudwatch, "EstimatedMetric", now) == []
