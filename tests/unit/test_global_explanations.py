"""What the served model relies on across the holdout: the endpoint's explainer, summarized."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mlcycle.domain import export
from mlcycle.domain.background import background_summary
from mlcycle.domain.evaluate import serving_pipeline
from mlcycle.domain.global_explanations import (
    attribution_baseline,
    global_explanations,
    top_features,
)
from mlcycle.domain.train import train_candidate
from mlcycle.serving.explain import Explainer
from mlcycle.serving.manifest import Manifest
from mlcycle.serving.model import load_model
from mlcycle.spec import Algorithm, Task
from tests.unit.test_explain import engineered, json_rows


def _graph(task: Task, algorithm: Algorithm) -> tuple[bytes, Manifest]:
    fs, schema = engineered(task)
    candidate = train_candidate(algorithm, task, fs.X_train, fs.y_train, seed=1)
    pipeline = serving_pipeline(fs.transformer, candidate.estimator)
    onnx = export.export_onnx(pipeline, schema)
    digest = hashlib.sha256(onnx).hexdigest()
    manifest = export.build_manifest(
        pipeline, onnx, schema, version=1, onnx_sha256=digest, metrics={}, parity=None
    )
    return onnx, manifest


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION])
def test_the_summary_is_the_mean_of_the_endpoints_own_explanations(task: Task) -> None:
    fs, schema = engineered(task)
    onnx, manifest = _graph(task, Algorithm.RANDOM_FOREST)
    background = background_summary(fs.train, schema.features, rows=2, seed=1)
    explained = global_explanations(onnx, manifest, background, fs.holdout, schema, seed=3, rows=40)
    assert explained["rows"] == 40
    shares = [f["share"] for f in explained["features"]]
    assert sum(shares) == pytest.approx(1.0)
    assert shares == sorted(shares, reverse=True)
    assert {f["name"] for f in explained["features"]} == set(schema.features)

    # the same numbers as the endpoint's explainer gives for the same rows
    model = load_model(manifest, onnx)
    sample = fs.holdout.sample(40, random_state=3)
    batch = model.builder.build(json_rows(sample[list(schema.features)]))
    direct = Explainer.for_model(model, background).explain(batch.feeds, model.run(batch))
    first = explained["features"][0]["name"]
    assert explained["features"][0]["mean_abs"] == pytest.approx(
        float(np.mean([abs(e.contributions[first]) for e in direct])), abs=1e-9
    )
    if task is Task.REGRESSION:
        assert "per_class" not in explained
    else:
        assert sum(c["rows"] for c in explained["per_class"].values()) == 40
    assert attribution_baseline(explained)["shares"][first] == explained["features"][0]["share"]
    assert [f["name"] for f in top_features(explained, 2)] == [
        f["name"] for f in explained["features"][:2]
    ]


def test_binary_points_read_toward_the_positive_class() -> None:
    fs, schema = engineered(Task.BINARY)
    onnx, manifest = _graph(Task.BINARY, Algorithm.LINEAR)
    background = background_summary(fs.train, schema.features, rows=1, seed=1)
    explained = global_explanations(onnx, manifest, background, fs.holdout, schema, seed=3, rows=30)
    assert explained["points_toward"] == manifest.positive_class
    model = load_model(manifest, onnx)
    sample = fs.holdout.sample(30, random_state=3)
    batch = model.builder.build(json_rows(sample[list(schema.features)]))
    predictions = model.run(batch)
    direct = Explainer.for_model(model, background).explain(batch.feeds, predictions)
    name = next(iter(explained["points"]))
    signs = [1.0 if p["label"] == manifest.positive_class else -1.0 for p in predictions]
    expected = [s * e.contributions[name] for s, e in zip(signs, direct, strict=True)]
    assert explained["points"][name]["contributions"] == pytest.approx(expected, abs=1e-9)
