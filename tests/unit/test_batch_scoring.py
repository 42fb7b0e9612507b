"""Batch scoring of a chunk equals the endpoint's predictions for the same rows (labels by the
version's threshold included), and rows the endpoint would refuse are quarantined by number."""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlcycle.domain import scoring
from mlcycle.domain.export import build_manifest
from mlcycle.domain.tables import read_upload
from mlcycle.errors import BadInputError
from mlcycle.serving.model import LoadedModel, load_model
from mlcycle.spec import Algorithm, Task
from tests.unit.test_export import _one_openmp_thread, engineered, fitted  # noqa: F401

_FEATURES = ["x1", "x2", "color", "city", "day"]


@functools.cache
def model(task: Task, threshold: float | None = None) -> LoadedModel:
    _, schema = engineered(task)
    schema = schema.model_copy(update={"excluded": {"id": "id-like"}})
    pipeline, onnx = fitted(task, Algorithm.HIST_GRADIENT_BOOSTING)
    manifest = build_manifest(
        pipeline,
        onnx,
        schema,
        version=3,
        onnx_sha256=hashlib.sha256(onnx).hexdigest(),
        metrics={},
        parity=None,
        threshold=threshold,
    )
    return load_model(manifest, onnx)


def rows(task: Task) -> pd.DataFrame:
    """The holdout with what batch files hold: unseen categories, missing values, an id."""
    fs, _ = engineered(task)
    frame = fs.holdout[_FEATURES].reset_index(drop=True).copy()
    frame.loc[::5, "color"] = "purple"
    frame.loc[1::7, "x1"] = np.nan
    frame.loc[2::7, "day"] = pd.NaT
    frame.insert(0, "id", [f"C{i:05d}" for i in range(len(frame))])
    return frame


def instances(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The same rows as a client sends them to :predict (JSON types)."""
    out = []
    for record in frame[_FEATURES].to_dict("records"):
        instance: dict[str, Any] = {}
        for key, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
                instance[key] = None
            elif isinstance(value, pd.Timestamp):
                instance[key] = value.isoformat()
            else:
                instance[key] = value
        out.append(instance)
    return out


def endpoint(loaded: LoadedModel, frame: pd.DataFrame) -> list[dict[str, Any]]:
    return loaded.run(loaded.builder.build(instances(frame)))


def assert_same_as_endpoint(
    predictions: pa.Table, answers: list[dict[str, Any]], loaded: LoadedModel
) -> None:
    manifest = loaded.manifest
    assert predictions.num_rows == len(answers)
    if manifest.task == "regression":
        values = predictions.column("prediction").to_numpy()
        assert values.dtype == np.float32
        assert values.tolist() == [np.float32(a["value"]) for a in answers]
        return
    assert predictions.column("label").to_pylist() == [a["label"] for a in answers]
    for name in manifest.classes:
        column = predictions.column(f"probability_{name}").to_numpy()
        assert column.dtype == np.float32
        # the endpoint answers the float32 as its shortest decimal: the same float32
        assert column.tolist() == [np.float32(a["probabilities"][name]) for a in answers]


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION])
def test_a_chunk_scores_as_the_endpoint_answers(task: Task) -> None:
    loaded = model(task)
    frame = rows(task)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    scored = scoring.score_chunk(loaded, table, first_row=101)
    assert_same_as_endpoint(scored.predictions, endpoint(loaded, frame), loaded)
    assert scored.predictions.column("row").to_pylist() == list(range(101, 101 + len(frame)))
    assert scored.predictions.column("id").to_pylist() == frame["id"].tolist()
    assert set(scored.predictions.column("model_version").to_pylist()) == {3}
    assert scored.quarantine.num_rows == 0
    assert scored.unknown_categories >= len(frame) // 5  # purple: scored, as the endpoint does


def test_a_binary_models_labels_follow_its_threshold_exactly_as_the_endpoint() -> None:
    frame = rows(Task.BINARY)
    plain = model(Task.BINARY)
    probabilities = [a["probabilities"]["yes"] for a in endpoint(plain, frame)]
    # thresholds at an answered probability and just above it: the edge cases of `>=`
    median = sorted(probabilities)[len(probabilities) // 2]
    for threshold in (median, math.nextafter(median, 1.0), 0.3):
        loaded = model(Task.BINARY, threshold)
        answers = endpoint(loaded, frame)
        scored = scoring.score_chunk(
            loaded, pa.Table.from_pandas(frame, preserve_index=False), first_row=1
        )
        assert_same_as_endpoint(scored.predictions, answers, loaded)
        labels = scored.predictions.column("label").to_pylist()
        assert labels == ["yes" if p >= threshold else "no" for p in probabilities]


def test_the_float32_cutoff_decides_as_the_endpoints_decimal_comparison() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.random(20_000).astype(np.float32)
    for threshold in [*rng.random(50).tolist(), 0.5, 0.1, 1e-8, 0.999999]:
        cutoff = scoring.float32_cutoff(threshold)
        expected = [float(str(p)) >= threshold for p in probabilities]
        assert (probabilities >= cutoff).tolist() == expected


def _csv(frame: pd.DataFrame) -> pa.Table:
    text = frame.to_csv(index=False, sep=";", date_format="%Y-%m-%dT%H:%M:%S")
    return read_upload(text.encode("cp1252"), "batch.csv").table


def test_rows_the_endpoint_would_refuse_are_quarantined_with_their_row_numbers() -> None:
    loaded = model(Task.BINARY, 0.4)
    frame = rows(Task.BINARY).astype({"x1": object, "x2": object, "day": object})
    frame.loc[3, "x1"] = "abc"
    frame.loc[7, "x2"] = "inf"
    frame.loc[8, "day"] = "yesterday"
    frame.loc[9, "x1"] = "1e300"  # a number, outside float32
    table = _csv(frame)
    assert pa.types.is_string(table.schema.field("x1").type)  # text made the column text
    scored = scoring.score_chunk(loaded, table, first_row=1)
    quarantine = scored.quarantine.to_pylist()
    assert [q["row"] for q in quarantine] == [4, 8, 9, 10]
    assert [q["id"] for q in quarantine] == frame["id"].iloc[[3, 7, 8, 9]].tolist()
    reasons = [q["reason"] for q in quarantine]
    assert reasons[0] == "x1: expected a number, got string 'abc'"
    assert reasons[1].startswith("x2: expected a finite number, got inf")
    assert reasons[2].startswith("day: cannot parse string 'yesterday'")
    assert reasons[3] == "x1: 1e+300 is outside the float32 range"
    # everything else is scored, in order, exactly as the endpoint scores those rows
    good = frame.drop(index=[3, 7, 8, 9])
    clean = _csv(rows(Task.BINARY)).to_pandas().drop(index=[3, 7, 8, 9])
    assert scored.predictions.column("row").to_pylist() == [i + 1 for i in good.index]
    assert scored.predictions.column("id").to_pylist() == good["id"].tolist()
    answers = endpoint(loaded, clean.assign(day=pd.to_datetime(clean["day"])))
    assert_same_as_endpoint(scored.predictions, answers, loaded)


def test_a_chunk_of_bad_rows_only_writes_an_empty_predictions_table() -> None:
    loaded = model(Task.MULTICLASS)
    frame = rows(Task.MULTICLASS).head(3).astype({"x1": object})
    frame["x1"] = "n/a-ish"
    scored = scoring.score_chunk(loaded, _csv(frame), first_row=1)
    assert scored.predictions.num_rows == 0
    assert {"label", "probability_high", "model_version"} <= set(scored.predictions.column_names)
    assert scored.quarantine.column("row").to_pylist() == [1, 2, 3]


def test_a_file_without_a_feature_is_refused_naming_it() -> None:
    loaded = model(Task.REGRESSION)
    table = pa.Table.from_pandas(rows(Task.REGRESSION).drop(columns=["city"]))
    with pytest.raises(BadInputError, match="city"):
        scoring.score_chunk(loaded, table, first_row=1)


def test_only_the_excluded_columns_present_are_carried_and_never_the_target() -> None:
    manifest = replace(model(Task.BINARY).manifest, excluded=["id", "y", "note"])
    assert scoring.carried_columns(manifest, ["x1", "y", "id", "extra"]) == ["id"]


def test_parquet_chunks_with_dictionary_columns_score_the_same() -> None:
    loaded = model(Task.BINARY, 0.5)
    frame = rows(Task.BINARY)
    plain = pa.Table.from_pandas(frame, preserve_index=False)
    encoded = plain.set_column(
        plain.schema.get_field_index("color"), "color", plain.column("color").dictionary_encode()
    )
    first = scoring.score_chunk(loaded, plain, first_row=1).predictions
    second = scoring.score_chunk(loaded, encoded, first_row=1).predictions
    assert first.equals(second)


def test_numbers_written_as_text_are_read_as_the_endpoint_reads_numbers() -> None:
    loaded = model(Task.REGRESSION)
    frame = rows(Task.REGRESSION).head(4)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    text = pa.array([" 1.5 ", "+2", None, "twelve"], pa.string())
    table = table.set_column(table.schema.get_field_index("x1"), "x1", text)
    inputs = scoring.build_inputs(loaded.manifest, table)
    assert inputs.good.tolist() == [True, True, True, False]
    spec = next(f for f in loaded.manifest.features if f.name == "x1")
    x1 = inputs.feeds[spec.input or spec.name]
    assert x1[:2, 0].tolist() == [1.5, 2.0]
    assert np.isnan(x1[2, 0])
    assert inputs.problems == {3: ["x1: expected a number, got string 'twelve'"]}
