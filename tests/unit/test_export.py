"""Stage 7/8: the serving artifact. Every candidate exports to ONNX and reproduces scikit-learn
on the whole holdout, through the inputs the endpoint builds."""

from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from mlcycle.domain import export, onnx_converters
from mlcycle.domain.evaluate import serving_pipeline
from mlcycle.domain.export import (
    PROBABILITY_TOLERANCE,
    ParityError,
    build_manifest,
    check_parity,
    export_onnx,
    feature_specs,
    run_onnx,
    serving_inputs,
)
from mlcycle.domain.features import DateParts, FeatureSet, engineer
from mlcycle.domain.train import train_candidate
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.manifest import Manifest
from mlcycle.spec import Algorithm, ColumnType, Task

FEATURES = {
    "x1": ColumnType.NUMERIC,
    "x2": ColumnType.NUMERIC,
    "color": ColumnType.CATEGORICAL,
    "city": ColumnType.CATEGORICAL,
    "day": ColumnType.DATETIME,
}
RARE_CITIES = ["oslo", "lima"]  # < 1% of rows: the encoder's infrequent column


def problem(task: Task, n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, ResolvedSchema]:
    """Numeric (with missing values), two categoricals (missing values, rare categories) and a
    datetime with times of day and missing values; the target depends on all of them."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "rome", "bonn", None], n).astype(object)
    city[:4] = ["oslo", "oslo", "lima", "lima"]
    day = pd.Timestamp("2021-06-01") + pd.to_timedelta(rng.integers(0, 900 * 86400, n), "s")
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n) * 1000.0 + 0.1234567,
            "x2": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "color": pd.Series(rng.choice(["red", "green", "blue", None], n), dtype=object),
            "city": pd.Series(city, dtype=object),
            "day": pd.Series(day).mask(rng.random(n) < 0.08),
        }
    )
    days = (df["day"] - pd.Timestamp("2021-06-01")).dt.days.fillna(450).to_numpy()
    z = (
        df["x1"] / 1000.0
        + 1.5 * (df["color"] == "red")
        + 0.8 * (df["city"] == "rome")
        + days / 450.0
        + rng.normal(0, 0.3, n)
    )
    classes: list[str] | None = None
    positive = None
    if task is Task.BINARY:
        df["y"] = np.where(z > 1.4, "yes", "no")
        classes, positive = ["no", "yes"], "yes"
    elif task is Task.MULTICLASS:
        df["y"] = np.select([z < 0.7, z < 1.9], ["low", "mid"], "high")
        classes = ["high", "low", "mid"]
    else:
        df["y"] = 3.0 * z + 10.0
    schema = ResolvedSchema(
        dataset="demo",
        task=task,
        target="y",
        features=FEATURES,
        classes=classes,
        positive_class=positive,
    )
    return df, schema


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    # HistGradientBoosting on a few hundred rows is fastest on one thread, and OpenMP threads
    # spinning on a busy machine made it 20x slower
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@functools.cache
def engineered(task: Task) -> tuple[FeatureSet, ResolvedSchema]:
    df, schema = problem(task)
    return engineer(df, schema, holdout_fraction=0.3, seed=1), schema


@functools.cache
def fitted(task: Task, algorithm: Algorithm) -> tuple[Pipeline, bytes]:
    fs, schema = engineered(task)
    candidate = train_candidate(algorithm, task, fs.X_train, fs.y_train, seed=1)
    pipeline = serving_pipeline(fs.transformer, candidate.estimator)
    return pipeline, export_onnx(pipeline, schema)


def holdout_with_surprises(task: Task) -> pd.DataFrame:
    """The holdout plus what serving meets: unseen and rare categories, missing values."""
    fs, _ = engineered(task)
    rows = fs.holdout.copy()
    rows.loc[rows.index[::5], "color"] = "purple"  # unseen, no infrequent column: all zeros
    rows.loc[rows.index[1::5], "city"] = "tokyo"  # unseen: the infrequent column
    rows.loc[rows.index[2::5], "city"] = "oslo"  # seen but rare: the infrequent column
    rows.loc[rows.index[3::7], "x1"] = np.nan  # never missing in training
    rows.loc[rows.index[4::7], "day"] = pd.NaT
    return rows


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION])
@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_every_candidate_exports_and_matches_sklearn_on_the_whole_holdout(task, algorithm):
    _, schema = engineered(task)
    pipeline, onnx_bytes = fitted(task, algorithm)
    outputs = onnx.load_from_string(onnx_bytes).graph.output
    assert {o.type.tensor_type.elem_type for o in outputs} <= {
        onnx.TensorProto.STRING,
        onnx.TensorProto.DOUBLE,
    }
    rows = holdout_with_surprises(task)
    parity = check_parity(pipeline, onnx_bytes, rows, schema)
    assert parity.rows == len(rows)
    assert parity.labels_equal
    assert parity.max_abs_diff <= parity.tolerance
    if task is Task.REGRESSION:
        # float32 rounding of the output only: no branch flipped anywhere
        assert parity.max_abs_diff <= 1e-6 * np.abs(pipeline.predict(rows)).max()
    else:
        assert parity.tolerance == PROBABILITY_TOLERANCE
        assert parity.max_abs_diff < 1e-6


def test_an_unknown_category_is_handled_as_sklearn_handles_it():
    _, schema = engineered(Task.REGRESSION)
    pipeline, onnx_bytes = fitted(Task.REGRESSION, Algorithm.LINEAR)
    base = holdout_with_surprises(Task.REGRESSION).iloc[:1].copy()
    base["x2"] = 0.5
    variants = pd.concat([base] * 7, ignore_index=True)
    variants["city"] = ["tokyo", "oslo", "lima", "paris", None, "paris", "paris"]
    variants["color"] = ["red", "red", "red", "red", "red", "purple", None]
    got = run_onnx(onnx_bytes, serving_inputs(variants, schema))["variable"].ravel()
    expected = pipeline.predict(variants)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # scikit-learn's rules, reproduced: an unseen city counts as the infrequent (rare) ones,
    # an unseen color (no infrequent column) as none of the colors, unlike a missing one
    assert got[0] == pytest.approx(got[1])
    assert got[1] == pytest.approx(got[2])
    assert got[0] != pytest.approx(got[3])
    assert got[5] != pytest.approx(got[3])
    assert got[5] != pytest.approx(got[6])


def test_plain_onnxruntime_runs_the_graph_from_the_serving_inputs():
    fs, schema = engineered(Task.BINARY)
    pipeline, onnx_bytes = fitted(Task.BINARY, Algorithm.HIST_GRADIENT_BOOSTING)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape[1]) for i in session.get_inputs()] == [
        ("x1", "tensor(float)", 1),
        ("x2", "tensor(float)", 1),
        ("color", "tensor(string)", 1),
        ("city", "tensor(string)", 1),
        ("day", "tensor(float)", 1),
    ]
    assert [(o.name, o.type) for o in session.get_outputs()] == [
        ("label", "tensor(string)"),
        ("probabilities", "tensor(double)"),
    ]
    one = fs.holdout.iloc[[0]]
    inputs = serving_inputs(one, schema)
    assert inputs["x1"].dtype == np.float32
    assert inputs["x1"].shape == (1, 1)
    label, proba = session.run(["label", "probabilities"], inputs)
    assert label.tolist() == pipeline.predict(one).tolist()
    np.testing.assert_allclose(proba, pipeline.predict_proba(one), atol=1e-6)


def test_serving_inputs_follow_the_manifest_contract():
    _, schema = engineered(Task.BINARY)
    rows = pd.DataFrame(
        {
            "x1": [1.5, np.nan],
            "x2": [0.1, 2.0],
            "color": ["red", None],
            "city": [np.nan, "rome"],
            "day": [pd.Timestamp("1970-01-02 06:00"), pd.NaT],
        }
    )
    inputs = serving_inputs(rows, schema)
    assert inputs["x1"].dtype == np.float32
    assert np.isnan(inputs["x1"][1, 0])
    assert inputs["color"].tolist() == [["red"], [""]]
    assert inputs["city"].tolist() == [[""], ["rome"]]
    assert inputs["day"].dtype == np.float32
    assert inputs["day"][0, 0] == pytest.approx(1.25)
    assert np.isnan(inputs["day"][1, 0])


def test_date_parts_in_onnx_match_pandas():
    rng = np.random.default_rng(3)
    seconds = rng.integers(-70 * 365 * 86400, 130 * 365 * 86400, 5000)
    dates = pd.DataFrame({"d": pd.Timestamp("1970-01-01") + pd.to_timedelta(seconds, "s")})
    dates.loc[::50, "d"] = pd.NaT
    parts = DateParts().fit(dates)
    onnx_converters.register_converters()
    graph = to_onnx(parts, initial_types=[("d", FloatTensorType([None, 1]))], target_opset=21)
    days = ((dates["d"] - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy()
    got = run_onnx(graph.SerializeToString(), {"d": days.astype(np.float32).reshape(-1, 1)})
    np.testing.assert_array_equal(next(iter(got.values())), parts.transform(dates).to_numpy())


def test_a_graph_that_disagrees_fails_parity_naming_the_row():
    _, schema = engineered(Task.REGRESSION)
    pipeline, onnx_bytes = fitted(Task.REGRESSION, Algorithm.LINEAR)
    model = onnx.load_from_string(onnx_bytes)
    coefficients = next(t for t in model.graph.initializer if t.name.startswith("coef"))
    values = onnx.numpy_helper.to_array(coefficients).copy()
    values.flat[0] *= 1.01
    coefficients.CopyFrom(onnx.numpy_helper.from_array(values, coefficients.name))
    with pytest.raises(ParityError, match=r"differ by .* on the prediction of holdout row"):
        check_parity(
            pipeline, model.SerializeToString(), holdout_with_surprises(Task.REGRESSION), schema
        )


def test_another_pipeline_fails_parity_on_labels():
    _, schema = engineered(Task.MULTICLASS)
    pipeline, _ = fitted(Task.MULTICLASS, Algorithm.RANDOM_FOREST)
    _, other = fitted(Task.MULTICLASS, Algorithm.LINEAR)
    with pytest.raises(ParityError, match=r"disagree on the label of \d+ of \d+ holdout rows"):
        check_parity(pipeline, other, holdout_with_surprises(Task.MULTICLASS), schema)


def test_bytes_that_are_not_a_model_fail_parity():
    _, schema = engineered(Task.BINARY)
    pipeline, onnx_bytes = fitted(Task.BINARY, Algorithm.LINEAR)
    with pytest.raises(ParityError, match="cannot load"):
        check_parity(pipeline, onnx_bytes[:100], holdout_with_surprises(Task.BINARY), schema)


def test_feature_specs_list_the_categories_seen_in_training():
    fs, schema = engineered(Task.BINARY)
    pipeline, _ = fitted(Task.BINARY, Algorithm.LINEAR)
    specs = {s.name: s for s in feature_specs(pipeline, schema)}
    assert list(specs) == list(FEATURES)
    assert specs["color"].categories == ["blue", "green", "red"]
    seen = sorted(fs.train["city"].dropna().unique())
    assert specs["city"].categories == seen
    assert set(RARE_CITIES) & set(seen)
    assert specs["x1"].kind == "numeric"
    assert specs["x1"].categories == []
    assert specs["day"].kind == "datetime"


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.REGRESSION])
def test_the_manifest_names_the_graph_outputs_and_round_trips(task):
    fs, schema = engineered(task)
    pipeline, onnx_bytes = fitted(task, Algorithm.HIST_GRADIENT_BOOSTING)
    parity = check_parity(pipeline, onnx_bytes, fs.holdout, schema)
    manifest = build_manifest(
        pipeline, onnx_bytes, schema, version=0, onnx_sha256="0" * 64, metrics={}, parity=parity
    )
    outputs = export.onnx_outputs(onnx_bytes)
    if task is Task.REGRESSION:
        assert manifest.value_output == manifest.label_output == outputs[0]
        assert manifest.probability_output is None
        assert manifest.classes == []
    else:
        assert [manifest.label_output, manifest.probability_output] == outputs
        assert manifest.classes == ["high", "low", "mid"]
    document = json.loads(json.dumps(manifest.to_json(), allow_nan=False))
    assert Manifest.from_json(document) == manifest


def test_the_skl2onnx_patches_apply_once():
    import skl2onnx.common.tree_ensemble as tree_ensemble

    onnx_converters.register_converters.cache_clear()
    onnx_converters.register_converters()
    patched = tree_ensemble.add_node
    onnx_converters.register_converters.cache_clear()
    onnx_converters.register_converters()
    assert tree_ensemble.add_node is patched
    assert patched.__wrapped__.__module__ == "skl2onnx.common.tree_ensemble"


AWKWARD = {
    "mean radius": ColumnType.NUMERIC,
    "a.b": ColumnType.NUMERIC,
    "a_b": ColumnType.NUMERIC,  # skl2onnx names both `a_b`-something
    "1st": ColumnType.NUMERIC,
    "x": ColumnType.NUMERIC,
    "missingindicator_x": ColumnType.NUMERIC,
    "__target__": ColumnType.NUMERIC,
    "label": ColumnType.NUMERIC,  # the name of the graph's label output
    "größe": ColumnType.CATEGORICAL,
    "emoji 😀": ColumnType.CATEGORICAL,
    "plan": ColumnType.CATEGORICAL,
    "plan_basic": ColumnType.NUMERIC,
    "when?": ColumnType.DATETIME,
}


def test_awkward_feature_names_reach_the_graph_and_the_manifest():
    rng = np.random.default_rng(4)
    n = 300
    df = pd.DataFrame({name: rng.normal(size=n) for name in AWKWARD})
    df.loc[rng.random(n) < 0.1, "x"] = np.nan
    for name in ("größe", "emoji 😀"):
        df[name] = rng.choice(["ä", "😀", "b c"], n).astype(object)
    df["plan"] = rng.choice(["basic", "pro"], n).astype(object)
    df["when?"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), "D")
    df["y"] = np.where(df["mean radius"] + (df["plan"] == "pro") > 0.5, "yes", "no")
    schema = ResolvedSchema(
        dataset="awkward",
        task=Task.BINARY,
        target="y",
        features=AWKWARD,
        excluded={"row id": "id-like"},
        classes=["no", "yes"],
        positive_class="yes",
    )
    fs = engineer(df, schema, holdout_fraction=0.3, seed=1)
    assert fs.X_train.columns.is_unique  # `plan_basic` twice, `missingindicator_x` twice
    model = LogisticRegression(max_iter=500).fit(fs.X_train, fs.y_train)
    pipeline = serving_pipeline(fs.transformer, model)
    onnx_bytes = export_onnx(pipeline, schema)
    inputs = export.onnx_inputs(onnx_bytes)
    parity = check_parity(pipeline, onnx_bytes, fs.holdout, schema)
    manifest = build_manifest(
        pipeline, onnx_bytes, schema, version=0, onnx_sha256="0" * 64, metrics={}, parity=parity
    )
    # Every input is named like its feature but `label`, which the label output holds:
    # that one keeps skl2onnx's input name, and the manifest says which.
    assert inputs == [("label1" if name == "label" else name) for name in AWKWARD]
    assert [(f.name, f.input) for f in manifest.features] == [
        (name, "label1" if name == "label" else None) for name in AWKWARD
    ]
    assert manifest.label_output == "label"
    assert manifest.excluded == ["row id"]
    assert parity.labels_equal
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
