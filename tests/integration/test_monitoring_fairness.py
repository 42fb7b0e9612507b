"""The monitor's fairness against moto: captured requests keep the sensitive fields the model
ignores, so the drift document measures selection rates per group, the late labels add the
label-based measures, and the worst group's disparate impact is published for its alarm."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pytest

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.monitoring import monitor_dataset
from mlcycle.serving.manifest import Manifest
from tests.integration.test_monitoring import DATASET, _release, capture
from tests.integration.test_predict import export_toy_model

REFERENCE = {
    "task": "binary",
    "positive_class": "yes",
    "limits": {
        "min_disparate_impact": 0.8,
        "max_equal_opportunity_difference": 0.1,
        "max_accuracy_difference": None,
        "min_group_size": 20,
    },
    "features": {
        "sex": {
            "bins": None,
            "reference_group": "male",
            "holdout": {
                "male": {"count": 60, "selection_rate": 0.3},
                "female": {"count": 40, "selection_rate": 0.28},
            },
        }
    },
}


@pytest.fixture(scope="module")
def toy() -> tuple[bytes, Manifest]:
    return export_toy_model()


def test_live_disparate_impact_is_measured_reported_and_published(
    lake: Lake, registry: Registry, toy: tuple[bytes, Manifest]
) -> None:
    baseline, instances = _release(lake, registry, toy, attribution=False)
    key = "models/dataset=customer-churn/run=r1/monitor_baseline.json"
    lake.put_json(key, {**baseline, "fairness": REFERENCE})
    now = datetime.now(UTC)
    rng = np.random.default_rng(0)
    sex = np.where(np.arange(len(instances)) % 2 == 0, "male", "female")
    flagged = rng.random(len(instances)) < np.where(sex == "male", 0.4, 0.1)
    sent = [  # as sent: the ignored field kept
        {**instance, "sex": str(s)} for instance, s in zip(instances, sex, strict=True)
    ]
    answers = [
        {
            "label": "yes" if f else "no",
            "probabilities": {"no": 0.4 if f else 0.6, "yes": 0.6 if f else 0.4},
        }
        for f in flagged
    ]
    capture(lake, sent, now, answers)
    labels = "request_id,label\n" + "".join(
        f"r-{i},{'yes' if i % 3 else 'no'}\n" for i in range(150)
    )
    lake.put_bytes(f"labels/dataset={DATASET}/labels.csv", labels.encode())
    cloudwatch = boto3.client("cloudwatch")
    document = monitor_dataset(DATASET, lake, registry, cloudwatch, now=now)

    fair = document["fairness"]
    feature = fair["features"]["sex"]
    rates = {g["group"]: g["selection_rate"] for g in feature["groups"]}
    assert rates["male"] == pytest.approx(flagged[sex == "male"].mean())
    assert rates["female"] == pytest.approx(flagged[sex == "female"].mean())
    [measure] = feature["measures"]
    di = rates["female"] / rates["male"]
    assert measure["DI"] == pytest.approx(di)
    assert fair["worst_disparate_impact"]["value"] == pytest.approx(min(di, 1 / di))
    [violation] = fair["violations"]
    assert violation["reason"].startswith("live disparate impact of sex=female vs male is")
    assert fair["labelled"]["features"]["sex"]["measures"][0]["recall_difference"] is not None
    assert fair["labelled_note"] == "150 labelled rows"

    stored = lake.get_json(document["report_uri"].replace("drift.html", "drift.json"))
    assert stored["fairness"] == json.loads(json.dumps(fair))
    page = lake.get_bytes(document["report_uri"]).decode()
    assert "Fairness across groups, live" in page
    assert "live disparate impact of sex=female vs male" in page

    stats = cloudwatch.get_metric_statistics(
        Namespace="mlcycle",
        MetricName="DisparateImpact",
        Dimensions=[{"Name": "dataset", "Value": DATASET}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=["Minimum"],
    )
    [point] = stats["Datapoints"]
    assert point["Minimum"] == pytest.approx(min(di, 1 / di))


def test_a_baseline_without_fairness_leaves_the_document_alone(
    lake: Lake, registry: Registry, toy: tuple[bytes, Manifest]
) -> None:
    _release(lake, registry, toy, attribution=False)
    document: dict[str, Any] = monitor_dataset(
        DATASET, lake, registry, boto3.client("cloudwatch"), now=datetime.now(UTC)
    )
    assert "fairness" not in document
