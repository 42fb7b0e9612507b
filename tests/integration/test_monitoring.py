"""The monitor against moto with a real (tiny) served model: live attribution against the
training reference in the drift document (`mlcycle.monitoring`)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pandas as pd
import pytest

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.domain.attribution import attribution_shares
from mlcycle.domain.background import request_rows
from mlcycle.domain.features import drift_baseline
from mlcycle.lake_layout import version_prefix
from mlcycle.monitoring import live_attribution, monitor_dataset
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.explain import Explainer
from mlcycle.serving.manifest import BACKGROUND_FILE, MANIFEST_FILE, ONNX_FILE, Manifest
from mlcycle.serving.model import load_model
from mlcycle.spec import ColumnType, MonitoringLimits, Task
from tests.conftest import ROOT
from tests.integration.test_predict import export_toy_model

DATASET = "customer-churn"


@pytest.fixture(scope="module")
def toy() -> tuple[bytes, Manifest]:
    return export_toy_model()


def _schema(manifest: Manifest) -> ResolvedSchema:
    return ResolvedSchema(
        dataset=DATASET,
        task=Task.BINARY,
        target="churned",
        features={f.name: ColumnType(f.kind) for f in manifest.features},
        classes=["no", "yes"],
        positive_class="yes",
    )


def _rows(n: int, skip: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(ROOT / "examples" / "customer-churn.csv", skiprows=range(1, 1 + skip))
    frame = frame.head(n).reset_index(drop=True)
    frame["signup_date"] = pd.to_datetime(frame["signup_date"])
    return frame


def _release(
    lake: Lake, registry: Registry, toy: tuple[bytes, Manifest], *, attribution: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """v1 served with a 3-row background, in production, with its contract and a monitor
    baseline whose attribution is that of 150 reference rows; returns the baseline and the
    reference rows in request form."""
    onnx, manifest = toy
    schema = _schema(manifest)
    reference = _rows(150)
    instances = request_rows(reference, schema.features)
    background = {"rows": request_rows(_rows(3, skip=500), schema.features)}
    prefix = version_prefix(DATASET, 1)
    lake.put_bytes(prefix + ONNX_FILE, onnx)
    lake.put_json(prefix + BACKGROUND_FILE, background)
    lake.put_json(prefix + MANIFEST_FILE, manifest.to_json())
    baseline = drift_baseline(reference, schema)
    if attribution:
        model = load_model(manifest, onnx, threads=1)
        batch = model.builder.build(instances)
        explained = Explainer.for_model(model, background).explain(batch.feeds, model.run(batch))
        shares = attribution_shares([e.contributions for e in explained])
        baseline["attribution"] = {"rows": len(explained), "shares": shares}
    baseline_uri = lake.put_json(
        "models/dataset=customer-churn/run=r1/monitor_baseline.json", baseline
    )
    lake.put_json(
        "runs/dataset=customer-churn/run=r1/metrics.json",
        {"monitoring": MonitoringLimits().model_dump(mode="json"), "primary_metric": "roc_auc"},
    )
    version = registry.register(
        DATASET,
        {
            "task": "binary",
            "target": "churned",
            "features": {name: kind.value for name, kind in schema.features.items()},
            "classes": ["no", "yes"],
            "positive_class": "yes",
            "run_id": "r1",
            "artifacts": {"monitor_baseline_uri": baseline_uri},
        },
    )
    registry.set_release(DATASET, production_version=version, expected_production=None)
    return baseline, instances


NO = {"label": "no", "probabilities": {"no": 0.9, "yes": 0.1}}


def capture(
    lake: Lake,
    instances: list[dict[str, Any]],
    now: datetime,
    predictions: list[dict[str, Any]] | None = None,
) -> list[str]:
    """The endpoint's capture of `instances` at `now` (answered `predictions`, else "no"):
    one object in the capture zone; returns the request ids."""
    answers = predictions or [NO] * len(instances)
    records: list[dict[str, Any]] = [
        {
            "time": now.isoformat(),
            "request_id": f"r-{i}",
            "model_version": 1,
            "status": "ok",
            "instance": instance,
            "prediction": answer,
        }
        for i, (instance, answer) in enumerate(zip(instances, answers, strict=True))
    ]
    key = f"capture/dataset={DATASET}/dt={now.date().isoformat()}/part-0.jsonl.gz"
    lake.put_bytes(key, gzip.compress("\n".join(json.dumps(r) for r in records).encode()))
    return [r["request_id"] for r in records]


def test_the_drift_document_compares_live_attribution_with_training(
    lake: Lake, registry: Registry, toy: tuple[bytes, Manifest]
) -> None:
    _release(lake, registry, toy)
    traffic = _rows(300, skip=1000)  # a given frame: its rows are explained in request form
    traffic["plan"] = "basic"
    traffic["monthly_charges"] = traffic["monthly_charges"] * 1.8
    document = monitor_dataset(DATASET, lake, registry, boto3.client("cloudwatch"), current=traffic)
    attribution = document["attribution"]
    assert attribution["rows"] == 200  # a seeded sample of the window
    assert attribution["window_rows"] == 300
    assert attribution["reference_rows"] == 150
    names = {f.name for f in toy[1].features}
    assert {f["name"] for f in attribution["features"]} == names
    for side in ("reference", "live"):
        assert sum(f[side] for f in attribution["features"]) == pytest.approx(1.0)
    assert set(attribution["top_live"]) <= names
    for f in attribution["features"]:
        assert f["change"] == pytest.approx(abs(f["live"] - f["reference"]))
        assert f["moved"] == (f["change"] >= 0.1 - 1e-12)
    assert attribution["moved"] == [
        f["name"] for f in sorted(attribution["features"], key=lambda f: -f["change"]) if f["moved"]
    ]
    stored = lake.get_json(document["report_uri"].replace("drift.html", "drift.json"))
    assert stored["attribution"] == attribution
    page = lake.get_bytes(document["report_uri"]).decode()
    assert "What the model relies on, live against training" in page
    assert "training share" in page


def test_captured_instances_like_the_reference_move_nothing(
    lake: Lake, registry: Registry, toy: tuple[bytes, Manifest]
) -> None:
    _, instances = _release(lake, registry, toy)
    now = datetime.now(UTC)
    capture(lake, instances, now)  # the reference rows themselves, as captured
    document = monitor_dataset(DATASET, lake, registry, boto3.client("cloudwatch"), now=now)
    attribution = document["attribution"]
    assert attribution["rows"] == attribution["window_rows"] == 150  # all of them
    assert attribution["moved"] == []
    assert max(f["change"] for f in attribution["features"]) < 1e-9
    assert attribution["top_live"] == attribution["top_reference"]


def test_no_attribution_baseline_or_background_is_null_not_an_error(
    lake: Lake, registry: Registry, toy: tuple[bytes, Manifest]
) -> None:
    baseline, instances = _release(lake, registry, toy, attribution=False)
    document = monitor_dataset(
        DATASET, lake, registry, boto3.client("cloudwatch"), current=_rows(50)
    )
    assert document["attribution"] is None
    assert document["attribution_note"] == "no attribution baseline for this version"
    page = lake.get_bytes(document["report_uri"]).decode()
    assert "no attribution baseline for this version" in page

    with_reference = {**baseline, "attribution": {"rows": 1, "shares": {"plan": 1.0}}}
    assert live_attribution(lake, DATASET, 1, with_reference, []) == (
        None,
        "no live rows to explain",
    )
    lake.s3.delete_object(Bucket=lake.bucket, Key=version_prefix(DATASET, 1) + BACKGROUND_FILE)
    result, note = live_attribution(lake, DATASET, 1, with_reference, instances)
    assert result is None
    assert note == "the version has no background summary to explain against"
