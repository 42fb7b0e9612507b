"""Stage 7/8: the serving artifact. The fitted transformer and model as one ONNX graph, the
exact inputs the endpoint feeds it, and proof that it reproduces scikit-learn.

How parity is made exact rather than approximately close:

- The graph's inputs follow the manifest contract (`mlcycle.serving.manifest.FeatureSpec`):
  float32 [n, 1] for numeric and datetime (days since 1970-01-01), string [n, 1] for
  categorical ("" = missing). `model_input` already rounds numeric values and `DateParts`
  dates to float32, so scikit-learn is trained on exactly the values the endpoint can send.
- Right after the inputs the graph casts to float64 and computes in float64, as NumPy does:
  median imputation (`onnx_converters._NumericImputer`, a `Where(IsNaN)` with the indicators, since
  onnxruntime's `Imputer` op is float32 only), date parts (exact floor arithmetic on whole
  days), `StandardScaler` as `Sub` then `Div` (the same two IEEE operations as scikit-learn),
  and tree ensembles with float64 thresholds (skl2onnx adjusts forest thresholds to mimic
  scikit-learn's float32 cast). A 1-ulp float32 difference before a tree threshold flips a
  branch and moves a regression prediction by a whole leaf (measured: 0.4 on targets of
  10 +- 3); in float64 with identical inputs no branch can flip.
- What is left is output rounding: onnxruntime's tree ensembles return float32 scores.

Tolerances (`check_parity`): classification labels must all be equal and probabilities
within `PROBABILITY_TOLERANCE`; regression values within `VALUE_RELATIVE_TOLERANCE` of the
largest |prediction| (floored at 1). Measured residuals are 3e-8..1.2e-7 (probabilities)
and 5e-8 relative (values), so the margin is ~100x, while one flipped branch in one of 200
trees moves the output by (leaf difference) / 200, typically 1e-4 or more, and is caught.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlcycle.domain.features import (
    MISSING_CATEGORY,
    model_input,
    numeric_values,
)
from mlcycle.domain.onnx_converters import (
    MISSING_STRING,
    ParityError,
    prepare,
    register_converters,
)
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.manifest import FeatureSpec, Manifest, Parity
from mlcycle.spec import ColumnType, Task

TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}  # ml 3: tree thresholds as float64 tensors
PROBABILITY_TOLERANCE = 1e-5
VALUE_RELATIVE_TOLERANCE = 1e-5


# --- export ------------------------------------------------------------------------------


def export_onnx(pipeline: Pipeline, schema: ResolvedSchema) -> bytes:
    """The serving Pipeline (steps "transform" + "model") as serialized ONNX.

    One graph input per feature, named like the feature (see the module docstring);
    classifiers output `label` (string) and `probabilities` (float64 [n, classes], in
    `model.classes_` order), regressors `variable` (float64 [n, 1]).
    """
    register_converters()
    prepared = prepare(pipeline)
    # Converted with float64 inputs so that skl2onnx types every step float64, then each
    # such input becomes the float32 input of the contract followed by a Cast to float64.
    initial_types: list[tuple[str, Any]] = [
        (
            name,
            StringTensorType([None, 1])
            if kind is ColumnType.CATEGORICAL
            else DoubleTensorType([None, 1]),
        )
        for name, kind in schema.features.items()
    ]
    model = prepared.named_steps["model"]
    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    onx = to_onnx(prepared, initial_types=initial_types, options=options, target_opset=TARGET_OPSET)
    _original_input_names(onx.graph, list(schema.features))
    _float32_inputs(onx.graph)
    _float64_outputs(onx.graph)
    onx.producer_name = "mlcycle"
    onnx.checker.check_model(onx)
    return bytes(onx.SerializeToString())


def _original_input_names(graph: onnx.GraphProto, features: list[str]) -> None:
    """Give each graph input its feature's own name (skl2onnx makes C-like names:
    `mean radius` -> `mean_radius`, `a.b` and `a_b` -> `a_b` and `a_b1`), so the endpoint
    feeds the names clients send. onnxruntime takes any string. A name that some other value
    of the graph already holds (only a plain identifier can) keeps skl2onnx's input name,
    which the manifest then records (`FeatureSpec.input`)."""
    inputs = [i.name for i in graph.input]
    if len(inputs) != len(features):
        raise ParityError(f"the graph has {len(inputs)} inputs for {len(features)} features")
    others = {name for node in graph.node for name in [*node.input, *node.output]}
    others |= {o.name for o in graph.output} | {t.name for t in graph.initializer}
    others -= set(inputs)
    rename = {old: new for old, new in zip(inputs, features, strict=True) if new not in others}
    while clashes := [old for old, new in rename.items() if new in set(inputs) - rename.keys()]:
        for old in clashes:  # another feature's kept input name: keep this one too
            del rename[old]
    for graph_input in graph.input:
        graph_input.name = rename.get(graph_input.name, graph_input.name)
    for node in graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]


def _float32_inputs(graph: onnx.GraphProto) -> None:
    """Each float64 graph input `x` becomes a float32 input `x` cast to float64 for the
    nodes that read it (exact: every float32 is a float64)."""
    taken = {name for node in graph.node for name in [*node.input, *node.output]}
    taken |= {i.name for i in graph.input} | {t.name for t in graph.initializer}
    casts = []
    for graph_input in graph.input:
        tensor = graph_input.type.tensor_type
        if tensor.elem_type != TensorProto.DOUBLE:
            continue
        inner = f"{graph_input.name}__float64"
        while inner in taken:
            inner += "_"
        taken.add(inner)
        for node in graph.node:
            node.input[:] = [inner if name == graph_input.name else name for name in node.input]
        tensor.elem_type = TensorProto.FLOAT
        casts.append(
            helper.make_node(
                "Cast", [graph_input.name], [inner], to=TensorProto.DOUBLE, name=f"{inner}_cast"
            )
        )
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)


def _float64_outputs(graph: onnx.GraphProto) -> None:
    """Every float32 graph output becomes float64 (forest probabilities come out of the tree
    op as float32, the rest as float64), so the endpoint meets a single numeric type."""
    for graph_output in graph.output:
        tensor = graph_output.type.tensor_type
        if tensor.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{graph_output.name}__float32"
        for node in graph.node:
            node.output[:] = [inner if name == graph_output.name else name for name in node.output]
        graph.node.append(
            helper.make_node(
                "Cast", [inner], [graph_output.name], to=TensorProto.DOUBLE, name=f"{inner}_cast"
            )
        )
        tensor.elem_type = TensorProto.DOUBLE


# --- serving inputs and parity -----------------------------------------------------------


def serving_inputs(frame: pd.DataFrame, schema: ResolvedSchema) -> dict[str, np.ndarray]:
    """The arrays the endpoint builds for these rows: one [n, 1] array per feature, float32
    for numeric (NaN missing) and datetime (days since 1970-01-01 UTC, NaN missing), str
    objects for categorical ("" missing)."""
    data = model_input(frame, schema)
    out: dict[str, np.ndarray] = {}
    for col, kind in schema.features.items():
        s = data[col]
        if kind is ColumnType.CATEGORICAL:
            values = s.to_numpy(dtype=object)
            missing = pd.isna(values)
            values = np.where(missing, MISSING_STRING, values).astype(str).astype(object)
            out[col] = values.reshape(-1, 1)
        elif kind is ColumnType.DATETIME:
            out[col] = numeric_values(s).astype(np.float32).reshape(-1, 1)
        else:
            out[col] = s.to_numpy(dtype="float32", na_value=np.nan).reshape(-1, 1)
    return out


def onnx_inputs(onnx_bytes: bytes) -> list[str]:
    """The graph's input names, in order (the features' order)."""
    return [i.name for i in onnx.load_from_string(onnx_bytes).graph.input]


def onnx_outputs(onnx_bytes: bytes) -> list[str]:
    """The graph's output names, in order."""
    return [o.name for o in onnx.load_from_string(onnx_bytes).graph.output]


def run_onnx(onnx_bytes: bytes, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the graph once with plain onnxruntime, as the endpoint does; `inputs` in the
    features' order, fed by position (an input is named like its feature but for a rare
    clash, see `_original_input_names`)."""
    try:
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ParityError(f"onnxruntime cannot load the exported model: {exc}") from exc
    feeds = dict(zip([i.name for i in session.get_inputs()], inputs.values(), strict=True))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def check_parity(
    pipeline: Pipeline, onnx_bytes: bytes, holdout_rows: pd.DataFrame, schema: ResolvedSchema
) -> Parity:
    """Run scikit-learn and onnxruntime (fed by `serving_inputs`) on every holdout row and
    compare; a `ParityError` naming the worst row when they disagree beyond tolerance."""
    if holdout_rows.empty:
        raise ParityError("parity needs at least one holdout row")
    X = model_input(holdout_rows, schema)[list(schema.features)]
    outputs = run_onnx(onnx_bytes, serving_inputs(X, schema))
    model = pipeline.named_steps["model"]
    rows = len(X)
    if is_classifier(model):
        label_name, proba_name = _classifier_outputs(outputs)
        expected_labels = np.asarray(pipeline.predict(X)).astype(str)
        got_labels = np.asarray(outputs[label_name]).ravel().astype(str)
        expected = np.asarray(pipeline.predict_proba(X), dtype="float64")
        got = np.asarray(outputs[proba_name], dtype="float64")
        tolerance = PROBABILITY_TOLERANCE
        _check_shape(got, expected)
        diff = np.abs(got - expected).max(axis=1)
        mismatched = np.flatnonzero(got_labels != expected_labels)
        if len(mismatched):
            i = int(mismatched[np.argmax(diff[mismatched])])
            raise ParityError(
                f"ONNX and scikit-learn disagree on the label of {len(mismatched)} of {rows} "
                f"holdout rows; e.g. row {X.index[i]!r}: ONNX {got_labels[i]!r}, scikit-learn "
                f"{expected_labels[i]!r} (probabilities {_fmt_row(got[i])} vs "
                f"{_fmt_row(expected[i])})"
            )
        labels_equal = True
    else:
        value_name = _regressor_output(outputs)
        expected = np.asarray(pipeline.predict(X), dtype="float64").reshape(-1)
        got = np.asarray(outputs[value_name], dtype="float64").reshape(-1)
        _check_shape(got, expected)
        tolerance = VALUE_RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max()))
        diff = np.abs(got - expected)
        labels_equal = True
    worst = int(np.argmax(diff))
    max_abs_diff = float(diff[worst])
    if not np.isfinite(max_abs_diff) or max_abs_diff > tolerance:
        what = "probabilities" if is_classifier(model) else "prediction"
        raise ParityError(
            f"ONNX and scikit-learn differ by {max_abs_diff:.3g} (tolerance {tolerance:.3g}) "
            f"on the {what} of holdout row {X.index[worst]!r} ({rows} rows checked): ONNX "
            f"{_fmt_row(got[worst])}, scikit-learn {_fmt_row(expected[worst])}"
        )
    return Parity(
        rows=rows, labels_equal=labels_equal, max_abs_diff=max_abs_diff, tolerance=tolerance
    )


def _classifier_outputs(outputs: dict[str, np.ndarray]) -> tuple[str, str]:
    names = list(outputs)
    if len(names) != 2:
        raise ParityError(f"a classifier graph needs a label and a probability output, got {names}")
    return names[0], names[1]


def _regressor_output(outputs: dict[str, np.ndarray]) -> str:
    names = list(outputs)
    if len(names) != 1:
        raise ParityError(f"a regressor graph needs one output, got {names}")
    return names[0]


def _check_shape(got: np.ndarray, expected: np.ndarray) -> None:
    if got.shape != expected.shape:
        raise ParityError(f"the ONNX output has shape {got.shape}, scikit-learn {expected.shape}")


def _fmt_row(values: Any) -> str:
    arr = np.atleast_1d(np.asarray(values, dtype="float64"))
    text = ", ".join(f"{v:.6g}" for v in arr)
    return text if arr.size == 1 else f"[{text}]"


# --- manifest ----------------------------------------------------------------------------


def feature_specs(
    pipeline: Pipeline, schema: ResolvedSchema, onnx_bytes: bytes | None = None
) -> list[FeatureSpec]:
    """One `FeatureSpec` per feature, in input order; categorical ones list the categories
    seen in training (the one-hot encoder's, without the missing placeholder), and each
    records its graph input's name where that is not the feature's own."""
    seen = _categories(pipeline.named_steps["transform"])
    inputs = onnx_inputs(onnx_bytes) if onnx_bytes is not None else list(schema.features)
    specs = []
    for (col, kind), graph_input in zip(schema.features.items(), inputs, strict=True):
        categories = [c for c in seen.get(col, []) if c != MISSING_CATEGORY]
        specs.append(
            FeatureSpec(
                name=col,
                kind=kind.value,  # ColumnType values are the FeatureKind literals
                categories=categories if kind is ColumnType.CATEGORICAL else [],
                input=graph_input if graph_input != col else None,
            )
        )
    return specs


def _categories(transformer: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if not isinstance(transformer, ColumnTransformer):
        return out
    for _, fitted, columns in transformer.transformers_:
        steps = fitted.steps if isinstance(fitted, Pipeline) else [("", fitted)]
        for _, step in steps:
            if isinstance(step, OneHotEncoder):
                for col, cats in zip(columns, step.categories_, strict=True):
                    out[str(col)] = [str(c) for c in cats]
    return out


def build_manifest(
    pipeline: Pipeline,
    onnx_bytes: bytes,
    schema: ResolvedSchema,
    *,
    version: int,
    onnx_sha256: str,
    metrics: dict[str, float],
    parity: Parity | None,
    threshold: float | None = None,
) -> Manifest:
    """The manifest for this graph; `version` 0 marks a draft written before registration.
    A binary model's `threshold` is its decision (None: the graph's argmax label)."""
    names = onnx_outputs(onnx_bytes)
    model = pipeline.named_steps["model"]
    common: dict[str, Any] = dict(
        model=schema.dataset,
        version=version,
        task=schema.task.value,
        target=schema.target,
        features=feature_specs(pipeline, schema, onnx_bytes),
        onnx_sha256=onnx_sha256,
        metrics=dict(metrics),
        parity=parity,
        excluded=list(schema.excluded),
    )
    if is_classifier(model):
        return Manifest(
            **common,
            classes=[str(c) for c in model.classes_],
            positive_class=schema.positive_class,
            threshold=threshold if schema.task is Task.BINARY else None,
            label_output=names[0],
            probability_output=names[1],
            value_output=None,
        )
    # A regressor has no label: label_output names the value too, so it always names the
    # output that holds the prediction.
    return Manifest(**common, label_output=names[0], probability_output=None, value_output=names[0])
