"""Stage 7/8: the serving artifact. The fitted transformer and model as one ONNX graph, the
exact inputs the endpoint feeds it, and proof that it reproduces scikit-learn.

How parity is made exact rather than approximately close:

- The graph's inputs follow the manifest contract (`mlcycle.serving.manifest.FeatureSpec`):
  float32 [n, 1] for numeric and datetime (days since 1970-01-01), string [n, 1] for
  categorical ("" = missing). `model_input` already rounds numeric values and `DateParts`
  dates to float32, so scikit-learn is trained on exactly the values the endpoint can send.
- Right after the inputs the graph casts to float64 and computes in float64, as NumPy does:
  median imputation (`_NumericImputer`, a `Where(IsNaN)` with the missing indicators, since
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

import copy
import functools
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlcycle.domain.features import (
    DATE_PARTS,
    MISSING_CATEGORY,
    DateParts,
    model_input,
    numeric_values,
)
from mlcycle.errors import MlcycleError
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.manifest import FeatureSpec, Manifest, Parity
from mlcycle.spec import ColumnType, Task

TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}  # ml 3: tree thresholds as float64 tensors
PROBABILITY_TOLERANCE = 1e-5
VALUE_RELATIVE_TOLERANCE = 1e-5
MISSING_STRING = ""  # a missing category at serving time


class ParityError(MlcycleError):
    """The ONNX graph does not reproduce the scikit-learn pipeline; it must not be served."""


# --- export ------------------------------------------------------------------------------


def export_onnx(pipeline: Pipeline, schema: ResolvedSchema) -> bytes:
    """The serving Pipeline (steps "transform" + "model") as serialized ONNX.

    One graph input per feature, named like the feature (see the module docstring);
    classifiers output `label` (string) and `probabilities` (float64 [n, classes], in
    `model.classes_` order), regressors `variable` (float64 [n, 1]).
    """
    _register_converters()
    prepared = _prepare(pipeline)
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


def _prepare(pipeline: Pipeline) -> Pipeline:
    """A deep copy whose steps skl2onnx converts the way serving needs: categorical imputers
    match the "" the endpoint sends, numeric ones become `_NumericImputer`, one-hot encoders
    `_IndexOneHotEncoder`."""
    prepared = copy.deepcopy(pipeline)
    _swap_steps(prepared)
    return prepared


def _swap_steps(estimator: Any) -> None:
    if isinstance(estimator, Pipeline):
        for i, (name, step) in enumerate(estimator.steps):
            estimator.steps[i] = (name, _serving_step(step))
    elif isinstance(estimator, ColumnTransformer):
        for i, (name, fitted, columns) in enumerate(estimator.transformers_):
            estimator.transformers_[i] = (name, _serving_step(fitted), columns)


def _serving_step(step: Any) -> Any:
    if isinstance(step, ColumnTransformer) and type(step) is not ColumnTransformer:
        step = _as_base(step, ColumnTransformer)  # skl2onnx converts by exact type
    if isinstance(step, SimpleImputer):
        return _serving_imputer(step)
    if isinstance(step, OneHotEncoder):
        if step.drop_idx_ is not None:
            raise ParityError("cannot export a OneHotEncoder that drops categories")
        return _recast(step, _IndexOneHotEncoder)
    _swap_steps(step)
    return step


def _recast(fitted: Any, cls: type[Any]) -> Any:
    """`fitted` as an instance of its subclass `cls` (same state), for our own converter."""
    out = object.__new__(cls)
    out.__dict__.update(fitted.__dict__)
    return out


_as_base = _recast  # the same state as an instance of a base class


def _serving_imputer(imputer: SimpleImputer) -> SimpleImputer:
    if np.asarray(imputer.statistics_).dtype.kind == "O":
        # A constant string fill: the standard converter, told that "" is missing (pandas
        # gives NaN, which a string tensor cannot hold).
        if imputer.strategy != "constant":
            raise ParityError(f"cannot export a string imputer with strategy {imputer.strategy!r}")
        imputer.missing_values = MISSING_STRING
        return imputer
    return _recast(imputer, _NumericImputer)


class _NumericImputer(SimpleImputer):
    """A fitted numeric `SimpleImputer` (NaN missing, any strategy, with or without
    `add_indicator`) under its own converter; never fitted itself."""


def _numeric_imputer_shape(operator: Any) -> None:
    op = operator.raw_operator
    n_valid = int(np.sum(~np.isnan(np.asarray(op.statistics_, dtype="float64"))))
    n_indicator = len(op.indicator_.features_) if op.add_indicator else 0
    operator.outputs[0].type = DoubleTensorType([None, n_valid + n_indicator])


def _numeric_imputer_convert(scope: Any, operator: Any, container: Any) -> None:
    op = operator.raw_operator
    if not (isinstance(op.missing_values, float) and np.isnan(op.missing_values)):
        raise ParityError(f"cannot export an imputer for missing_values={op.missing_values!r}")
    stats = np.asarray(op.statistics_, dtype="float64")
    valid = np.flatnonzero(~np.isnan(stats))  # scikit-learn drops all-missing columns

    def name(hint: str) -> str:
        return str(scope.get_unique_variable_name(hint))

    def const(hint: str, value: np.ndarray) -> str:
        var = name(hint)
        proto = TensorProto.DOUBLE if value.dtype == np.float64 else TensorProto.INT64
        container.add_initializer(var, proto, list(value.shape), value.ravel().tolist())
        return var

    inputs = [v.full_name for v in operator.inputs]
    joined = inputs[0]
    if len(inputs) > 1:
        joined = name("imp_concat")
        container.add_node("Concat", inputs, [joined], axis=1)
    x = name("imp_x")
    container.add_node("Cast", [joined], [x], to=TensorProto.DOUBLE)  # a no-op on float64
    isnan = name("imp_isnan")
    container.add_node("IsNaN", [x], [isnan])
    filled = name("imp_filled")
    container.add_node("Where", [isnan, const("imp_stats", stats.reshape(1, -1)), x], [filled])
    parts = [filled]
    if len(valid) < len(stats):
        kept = name("imp_kept")
        container.add_node(
            "Gather", [filled, const("imp_valid", valid.astype(np.int64))], [kept], axis=1
        )
        parts = [kept]
    if op.add_indicator:
        flags = np.asarray(op.indicator_.features_, dtype=np.int64)
        picked = name("imp_flags")
        container.add_node("Gather", [isnan, const("imp_indicator", flags)], [picked], axis=1)
        indicator = name("imp_indicator_f")
        container.add_node("Cast", [picked], [indicator], to=TensorProto.DOUBLE)
        parts.append(indicator)
    if len(parts) == 1:
        container.add_node("Identity", parts, [operator.outputs[0].full_name])
    else:
        container.add_node("Concat", parts, [operator.outputs[0].full_name], axis=1)


class _IndexOneHotEncoder(OneHotEncoder):
    """A fitted `OneHotEncoder` under its own converter (skl2onnx 1.20's fails on unknown
    categories unless handle_unknown="ignore", and cannot send them to the infrequent
    column as "infrequent_if_exist" does); never fitted itself."""


def _one_hot_columns(encoder: OneHotEncoder, i: int) -> tuple[list[str], list[int], int, int]:
    """(categories, their output column, the column of an unknown category or -1, width)
    of input column i, in scikit-learn's output order: frequent categories as in
    `categories_`, then one infrequent column if there are infrequent categories."""
    categories = [str(c) for c in encoder.categories_[i]]
    infrequent_sets = getattr(encoder, "infrequent_categories_", None)
    infrequent = infrequent_sets[i] if infrequent_sets is not None else None
    rare = {str(c) for c in infrequent} if infrequent is not None else set()
    frequent = [c for c in categories if c not in rare]
    width = len(frequent) + (1 if rare else 0)
    column = {c: j for j, c in enumerate(frequent)} | {c: len(frequent) for c in rare}
    unknown = len(frequent) if rare and encoder.handle_unknown == "infrequent_if_exist" else -1
    return categories, [column[c] for c in categories], unknown, width


def _one_hot_shape(operator: Any) -> None:
    encoder = operator.raw_operator
    width = sum(_one_hot_columns(encoder, i)[3] for i in range(len(encoder.categories_)))
    operator.outputs[0].type = DoubleTensorType([None, width])


def _one_hot_convert(scope: Any, operator: Any, container: Any) -> None:
    """Per column: LabelEncoder maps each string to its output column (unknown -> the
    infrequent column, or -1 = all zeros), then Equal against 0..width-1."""
    encoder = operator.raw_operator

    def name(hint: str) -> str:
        return str(scope.get_unique_variable_name(hint))

    def ints(hint: str, values: list[int]) -> str:
        var = name(hint)
        container.add_initializer(var, TensorProto.INT64, [len(values)], values)
        return var

    inputs = [v.full_name for v in operator.inputs]
    joined = inputs[0]
    if len(inputs) > 1:
        joined = name("ohe_concat")
        container.add_node("Concat", inputs, [joined], axis=1)
    parts = []
    for i in range(len(encoder.categories_)):
        categories, columns, unknown, width = _one_hot_columns(encoder, i)
        value = name("ohe_value")
        container.add_node("Gather", [joined, ints("ohe_i", [i])], [value], axis=1)
        index = name("ohe_index")
        container.add_node(
            "LabelEncoder",
            [value],
            [index],
            keys_strings=categories,
            values_int64s=columns,
            default_int64=unknown,
            op_domain="ai.onnx.ml",
            op_version=2,
        )
        hot = name("ohe_hot")
        container.add_node("Equal", [index, ints("ohe_range", list(range(width)))], [hot])
        part = name("ohe_part")
        container.add_node("Cast", [hot], [part], to=TensorProto.DOUBLE)
        parts.append(part)
    if len(parts) == 1:
        container.add_node("Identity", parts, [operator.outputs[0].full_name])
    else:
        container.add_node("Concat", parts, [operator.outputs[0].full_name], axis=1)


def _date_parts_shape(operator: Any) -> None:
    n = len(operator.raw_operator.feature_names_in_)
    operator.outputs[0].type = DoubleTensorType([None, len(DATE_PARTS) * n])


def _date_parts_convert(scope: Any, operator: Any, container: Any) -> None:
    """Days since epoch (float, NaN = missing) -> year, month, day, dayofweek, days per
    column, in float64: Howard Hinnant's civil_from_days on floor(days); every value is a
    whole number far below 2^53, so each step is exact. NaN propagates to every part."""

    def name(hint: str) -> str:
        return str(scope.get_unique_variable_name(hint))

    constants: dict[float, str] = {}

    def c(value: float) -> str:
        if value not in constants:
            var = name("dp_c")
            container.add_initializer(var, TensorProto.DOUBLE, [], [float(value)])
            constants[value] = var
        return constants[value]

    def node(op_type: str, *args: str, **attrs: Any) -> str:
        out = name(f"dp_{op_type.lower()}")
        container.add_node(op_type, list(args), [out], **attrs)
        return out

    def floordiv(a: str, b: float) -> str:
        return node("Floor", node("Div", a, c(b)))

    inputs = [v.full_name for v in operator.inputs]
    joined = inputs[0] if len(inputs) == 1 else node("Concat", *inputs, axis=1)
    x = node("Cast", joined, to=TensorProto.DOUBLE)
    days = node("Floor", x)
    z = node("Add", days, c(719468))
    era = floordiv(z, 146097)
    doe = node("Sub", z, node("Mul", era, c(146097)))
    yoe_num = node(
        "Sub",
        node("Add", node("Sub", doe, floordiv(doe, 1460)), floordiv(doe, 36524)),
        floordiv(doe, 146096),
    )
    yoe = floordiv(yoe_num, 365)
    doy = node(
        "Sub",
        doe,
        node("Sub", node("Add", node("Mul", yoe, c(365)), floordiv(yoe, 4)), floordiv(yoe, 100)),
    )
    mp = floordiv(node("Add", node("Mul", doy, c(5)), c(2)), 153)
    day = node(
        "Add", node("Sub", doy, floordiv(node("Add", node("Mul", mp, c(153)), c(2)), 5)), c(1)
    )
    from_march = node("Cast", node("GreaterOrEqual", mp, c(10)), to=TensorProto.DOUBLE)
    month = node("Sub", node("Add", mp, c(3)), node("Mul", from_march, c(12)))
    jan_feb = node("Cast", node("LessOrEqual", month, c(2)), to=TensorProto.DOUBLE)
    year = node("Add", node("Add", yoe, node("Mul", era, c(400))), jan_feb)
    shifted = node("Add", days, c(3))  # 1970-01-01 was a Thursday (Monday = 0)
    dayofweek = node("Sub", shifted, node("Mul", floordiv(shifted, 7), c(7)))
    # [n, k] each -> [n, k, 5] -> [n, 5k]: column-major per date, as DateParts orders them
    axis = name("dp_axis")
    container.add_initializer(axis, TensorProto.INT64, [1], [2])
    stacked = node(
        "Concat", *[node("Unsqueeze", p, axis) for p in (year, month, day, dayofweek, x)], axis=2
    )
    shape = name("dp_shape")
    width = len(DATE_PARTS) * len(operator.raw_operator.feature_names_in_)
    container.add_initializer(shape, TensorProto.INT64, [2], [-1, width])
    container.add_node("Reshape", [stacked, shape], [operator.outputs[0].full_name])


@functools.cache
def _register_converters() -> None:
    """Idempotent, process-wide: converters for our two custom steps, and the skl2onnx fix."""
    update_registered_converter(
        DateParts, "MlcycleDateParts", _date_parts_shape, _date_parts_convert
    )
    update_registered_converter(
        _NumericImputer, "MlcycleNumericImputer", _numeric_imputer_shape, _numeric_imputer_convert
    )
    update_registered_converter(
        _IndexOneHotEncoder, "MlcycleIndexOneHotEncoder", _one_hot_shape, _one_hot_convert
    )
    _patch_tree_add_node()
    for alias in _TREE_CONVERTERS:
        _double_tree_converter(alias)


def _patch_tree_add_node() -> None:
    """skl2onnx 1.20 passes HistGradientBoosting's missing-value flag to onnx 1.23's
    `make_attribute` as a Python bool, which onnx now rejects ("Expected an int, got a
    boolean"). Cast it to int in `tree_ensemble.add_node` and every module that imported it.
    Remove when skl2onnx casts it itself."""
    import skl2onnx.common.tree_ensemble as tree_ensemble

    original = tree_ensemble.add_node
    if getattr(original, "_mlcycle_patched", False):
        return

    @functools.wraps(original)
    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(
            *args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs
        )

    add_node._mlcycle_patched = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = add_node  # called through the module global, nowhere imported


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


# --- float64 tree ensembles --------------------------------------------------------------

_TREE_CONVERTERS = (
    "SklearnRandomForestClassifier",
    "SklearnRandomForestRegressor",
    "SklearnHistGradientBoostingClassifier",
    "SklearnHistGradientBoostingRegressor",
)
_TREE_OPS = {"TreeEnsembleClassifier": 1, "TreeEnsembleRegressor": 0}  # -> index of the scores
_TREE_DOUBLE_ATTRIBUTES = (
    "nodes_values",
    "nodes_hitrates",
    "class_weights",
    "target_weights",
    "base_values",
)


def _double_tree_converter(alias: str) -> None:
    """skl2onnx 1.20 emits tree ensembles at ai.onnx.ml opset 1 only: given float64 inputs it
    still rounds thresholds to float32 (a float64 input next to a threshold takes the wrong
    branch) and declares float64 scores the op cannot produce (onnxruntime refuses the
    graph). Wrap its converter: with a float64 input, run it at opset 3 (which keeps float64
    arrays) and let `_DoubleTreeContainer` write them as the opset's `*_as_tensor` float64
    attributes. Float inputs convert as before."""
    from skl2onnx.common._registration import RegisteredConverter, _converter_pool

    registered = _converter_pool[alias]
    if getattr(registered._fct, "_mlcycle_double", False):
        return
    original = registered._fct

    def convert(scope: Any, operator: Any, container: Any) -> None:
        if not isinstance(operator.inputs[0].type, DoubleTensorType):
            original(scope, operator, container)
            return
        original(scope, operator, _DoubleTreeContainer(scope, operator, container), op_version=3)

    convert._mlcycle_double = True  # type: ignore[attr-defined]
    _converter_pool[alias] = RegisteredConverter(convert, registered.get_allowed_options())


class _DoubleTreeContainer:
    """Passes every call to skl2onnx's container, rewriting tree ensemble nodes: float64
    arrays become float64 tensor attributes, and a score output declared other than float
    (the op always outputs float) is produced through a Cast."""

    def __init__(self, scope: Any, operator: Any, container: Any) -> None:
        self._scope = scope
        self._container = container
        self._declared = {
            v.full_name: v.type.to_onnx_type().tensor_type.elem_type for v in operator.outputs
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(
        self,
        op_type: str,
        inputs: Any,
        outputs: Any,
        op_domain: str = "",
        op_version: int | None = None,
        name: str | None = None,
        **attrs: Any,
    ) -> Any:
        if op_type not in _TREE_OPS:
            return self._container.add_node(
                op_type,
                inputs,
                outputs,
                op_domain=op_domain,
                op_version=op_version,
                name=name,
                **attrs,
            )
        for key in _TREE_DOUBLE_ATTRIBUTES:
            values = attrs.pop(key, None)
            if values is not None and len(values):
                array = np.asarray(values, dtype=np.float64)
                attrs[f"{key}_as_tensor"] = onnx.numpy_helper.from_array(array, name=key)
        outs = [outputs] if isinstance(outputs, str) else list(outputs)
        index = _TREE_OPS[op_type]
        declared = self._declared.get(outs[index], TensorProto.FLOAT)
        cast_to = None
        if declared != TensorProto.FLOAT:
            cast_to, final = declared, outs[index]
            outs[index] = str(self._scope.get_unique_variable_name(f"{final}_float"))
        self._container.add_node(
            op_type, inputs, outs, op_domain=op_domain, op_version=3, name=name, **attrs
        )
        if cast_to is not None:
            self._container.add_node("Cast", [outs[index]], [final], to=cast_to)
        return None
