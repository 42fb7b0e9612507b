"""The ONNX converters the serving graph needs beyond skl2onnx's own, and its fixes.

`prepare` swaps a fitted pipeline's steps for subclasses with converters of their own:
numeric imputers (`_NumericImputer`, float64 `Where(IsNaN)` with the missing indicators),
one-hot encoders (`_IndexOneHotEncoder`, unknown categories to the infrequent column),
string imputers told that "" is missing; `DateParts` has its own converter. Tree ensembles
convert at ai.onnx.ml opset 3 with float64 thresholds (`_double_tree_converter`). Why each one
exists is in `mlcycle.domain.export`'s docstring and beside each converter.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlcycle.domain.features import DATE_PARTS, DateParts
from mlcycle.errors import MlcycleError

MISSING_STRING = ""  # a missing category at serving time


class ParityError(MlcycleError):
    """The ONNX graph does not reproduce the scikit-learn pipeline; it must not be served."""


def prepare(pipeline: Pipeline) -> Pipeline:
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

    joined = _joined_inputs(operator, container, name("imp_concat"))
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


def _joined_inputs(operator: Any, container: Any, concat_name: str) -> str:
    """The operator's inputs as one tensor: the only one, or their columns side by side."""
    inputs = [v.full_name for v in operator.inputs]
    if len(inputs) == 1:
        return str(inputs[0])
    container.add_node("Concat", inputs, [concat_name], axis=1)
    return concat_name


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

    joined = _joined_inputs(operator, container, name("ohe_concat"))
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
def register_converters() -> None:
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
