"""Batch scoring of one chunk: Arrow columns -> the ONNX graph's inputs -> a predictions table.

The contract is the endpoint's (`mlcycle.serving.inputs`, the manifest's `FeatureSpec`):
numeric -> float32 (null -> NaN), datetime -> float32 days since 1970-01-01 UTC (null -> NaN),
categorical -> string (null -> ""; integer codes as their decimal text). It is applied a column
at a time, straight from Arrow: no row dicts, no pandas. A value the endpoint would refuse (text
in a numeric column, an infinite number, an unparseable date) quarantines its row, with the row
number and the reason; every other row is scored. Labels are decided as the endpoint decides
them (`LoadedModel._decide`): a binary model's threshold is compared with the probability the
endpoint answers (float32, as its shortest decimal), so batch and endpoint agree on every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.domain.batch_capture import REQUEST_COLUMN, request_ids
from mlcycle.errors import BadInputError
from mlcycle.serving.inputs import days_since_epoch
from mlcycle.serving.manifest import FeatureSpec, Manifest
from mlcycle.serving.model import LoadedModel

ROW_COLUMN = "row"  # the row's number in the uploaded file: 1 is the first data row
LABEL_COLUMN = "label"
PREDICTION_COLUMN = "prediction"  # regression
PROBABILITY_PREFIX = "probability_"
VERSION_COLUMN = "model_version"
REASON_COLUMN = "reason"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
_SECONDS_PER_DAY = 86400.0


@dataclass
class ChunkInputs:
    """A chunk's ONNX feeds (for the rows that can be scored) and what is wrong with the rest."""

    feeds: dict[str, np.ndarray]  # ONNX input name -> [good rows, 1]
    good: np.ndarray  # bool per chunk row: scored
    problems: dict[int, list[str]] = field(default_factory=dict)  # chunk row -> reasons
    unknown_categories: int = 0  # values not seen in training (scored, as the endpoint does)


def missing_features(manifest: Manifest, columns: list[str]) -> list[str]:
    """The model's features the file lacks: without them no row can be scored."""
    present = set(columns)
    return [f.name for f in manifest.features if f.name not in present]


def carried_columns(manifest: Manifest, columns: list[str]) -> list[str]:
    """The columns the model excluded (ids and the like) that the file has, in file order."""
    excluded = set(manifest.excluded) - {manifest.target}
    return [c for c in columns if c in excluded]


def build_inputs(manifest: Manifest, table: pa.Table) -> ChunkInputs:
    """Convert each feature column; rows with a value the endpoint would refuse are left out."""
    missing = missing_features(manifest, table.column_names)
    if missing:
        raise BadInputError(f"the file lacks the model's features: {', '.join(missing)}")
    n = table.num_rows
    bad = np.zeros(n, dtype=bool)
    problems: dict[int, list[str]] = {}
    arrays: dict[str, np.ndarray] = {}
    unknown = 0
    for spec in manifest.features:
        column = _plain(table.column(spec.name))
        if spec.kind == "numeric":
            values, wrong = _numeric(spec, column)
        elif spec.kind == "datetime":
            values, wrong = _datetime(spec, column)
        else:
            values, wrong, unseen = _categorical(spec, column)
            unknown += unseen
        for row, reason in wrong.items():
            problems.setdefault(row, []).append(f"{spec.name}: {reason}")
            bad[row] = True
        arrays[spec.input or spec.name] = values
    good = ~bad
    everything = not bad.any()
    feeds = {
        name: (values if everything else values[good]).reshape(-1, 1)
        for name, values in arrays.items()
    }
    return ChunkInputs(feeds, good, dict(sorted(problems.items())), unknown)


def _plain(column: pa.ChunkedArray) -> pa.Array:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    return array


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value if len(value) <= 40 else value[:37] + '...'!r}"
    return type(value).__name__


def _numeric(spec: FeatureSpec, column: pa.Array) -> tuple[np.ndarray, dict[int, str]]:
    typ = column.type
    wrong: dict[int, str] = {}
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        numbers = column.cast(pa.float64()) if not pa.types.is_float64(typ) else column
    elif pa.types.is_string(typ):
        text = pc.utf8_trim_whitespace(column)
        ok = pc.or_kleene(pc.is_null(text), pc.match_substring_regex(text, _NUMBER))
        ok_mask = ok.to_numpy(zero_copy_only=False)
        for row in np.flatnonzero(~ok_mask).tolist():
            wrong[row] = f"expected a number, got {_describe(text[row].as_py())}"
        numbers = pc.if_else(ok, text, pa.scalar(None, pa.string())).cast(pa.float64())
    else:  # booleans, timestamps, ...: the endpoint takes numbers only
        for row, value in enumerate(column.to_pylist()):
            if value is not None:
                wrong[row] = f"expected a number, got {_describe(value)}"
        return np.full(len(column), np.nan, dtype=np.float32), wrong
    values = numbers.fill_null(math.nan).to_numpy(zero_copy_only=False)
    finite = np.isfinite(values) | np.isnan(values)
    huge = np.abs(np.where(finite, values, 0.0)) > _FLOAT32_MAX
    for row in np.flatnonzero(~finite).tolist():
        wrong.setdefault(
            row, f"expected a finite number, got {float(values[row])!r}; leave it empty for missing"
        )
    for row in np.flatnonzero(huge).tolist():
        wrong.setdefault(row, f"{float(values[row])!r} is outside the float32 range")
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(np.float32), wrong


def _datetime(spec: FeatureSpec, column: pa.Array) -> tuple[np.ndarray, dict[int, str]]:
    typ = column.type
    wrong: dict[int, str] = {}
    out = np.full(len(column), np.nan, dtype=np.float64)
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        micros = column.cast(pa.timestamp("us", tz=getattr(typ, "tz", None))).cast(pa.int64())
        valid = micros.is_valid().to_numpy(zero_copy_only=False)
        raw = micros.fill_null(0).to_numpy(zero_copy_only=False)
        # as the endpoint computes it: seconds (timedelta.total_seconds), then days
        out[valid] = (raw[valid] / 1e6) / _SECONDS_PER_DAY
    elif pa.types.is_string(typ):
        for row, value in enumerate(column.to_pylist()):
            if value is None:
                continue
            try:
                out[row] = days_since_epoch(value)
            except ValueError:
                wrong[row] = (
                    f"cannot parse {_describe(value)} as an ISO-8601 date or datetime "
                    "(e.g. 2024-05-31 or 2024-05-31T12:00:00+02:00)"
                )
    else:
        for row, value in enumerate(column.to_pylist()):
            if value is not None:
                wrong[row] = f"expected an ISO-8601 date string, got {_describe(value)}"
    return out.astype(np.float32), wrong


def _categorical(spec: FeatureSpec, column: pa.Array) -> tuple[np.ndarray, dict[int, str], int]:
    typ = column.type
    wrong: dict[int, str] = {}
    if pa.types.is_integer(typ):
        column = column.cast(pa.string())  # integer codes read as their decimal text
    elif not pa.types.is_string(typ):
        for row, value in enumerate(column.to_pylist()):
            if value is not None:
                wrong[row] = f"expected a string, got {_describe(value)}"
        column = pa.nulls(len(column), pa.string())
    text = column.fill_null("")
    unseen = 0
    if spec.categories:
        known = pc.is_in(text, value_set=pa.array([*spec.categories, ""], pa.string()))
        unseen = len(text) - int(pc.sum(known).as_py() or 0)
    return text.to_numpy(zero_copy_only=False), wrong, unseen  # an object array of str


# --- predictions -------------------------------------------------------------------------


def float32_cutoff(threshold: float) -> np.float32:
    """The least float32 p with float(str(p)) >= threshold: the endpoint compares the threshold
    with the probability it answers (the float32's shortest decimal), and that comparison is
    monotone in p, so `p >= cutoff` on the raw float32 decides exactly as the endpoint does."""
    candidate = np.float32(threshold)
    down, up = np.float32(-np.inf), np.float32(np.inf)
    while float(str(candidate)) >= threshold:
        candidate = np.nextafter(candidate, down)
    while float(str(candidate)) < threshold:
        candidate = np.nextafter(candidate, up)
    return np.float32(candidate)


def predict(model: LoadedModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs for the feeds, as columns: `label` and one probability column per
    class (float32, the values the endpoint rounds to text), or `prediction` (regression)."""
    manifest = model.manifest
    rows = len(next(iter(feeds.values()))) if feeds else 0
    if manifest.task == "regression":
        (values,) = model.session.run([manifest.value_output or "variable"], feeds)
        return {PREDICTION_COLUMN: np.asarray(values, dtype=np.float32).reshape(rows)}
    if not manifest.probability_output:
        (labels,) = model.session.run([manifest.label_output], feeds)
        return {LABEL_COLUMN: np.asarray(labels).reshape(rows).astype(str).astype(object)}
    threshold, positive_class = manifest.threshold, manifest.positive_class
    decided = threshold is not None and positive_class is not None
    # a thresholded model's labels come from its probabilities: the graph's are not asked for
    outputs = [manifest.probability_output] if decided else [manifest.label_output]
    if not decided:
        outputs.append(manifest.probability_output)
    results = model.session.run(outputs, feeds)
    probabilities = np.asarray(results[-1], dtype=np.float32).reshape(rows, len(manifest.classes))
    if threshold is not None and positive_class is not None:
        classes = manifest.classes
        j = classes.index(positive_class)
        positive = probabilities[:, j] >= float32_cutoff(threshold)
        labels = np.where(positive, positive_class, classes[1 - j]).astype(object)
    else:
        labels = np.asarray(results[0]).reshape(rows).astype(str).astype(object)
    columns: dict[str, np.ndarray] = {LABEL_COLUMN: labels}
    for i, name in enumerate(manifest.classes):
        columns[f"{PROBABILITY_PREFIX}{name}"] = np.ascontiguousarray(probabilities[:, i])
    return columns


@dataclass
class ScoredChunk:
    predictions: pa.Table  # one row per scored row, in input order
    quarantine: pa.Table  # one row per row that could not be scored
    unknown_categories: int = 0


def score_chunk(
    model: LoadedModel, table: pa.Table, *, first_row: int, run_id: str | None = None
) -> ScoredChunk:
    """Score one chunk of an upload whose first row is row `first_row` (1-based) of the file;
    with `run_id`, each scored row gets its request id (`batch_capture.request_ids`)."""
    manifest = model.manifest
    inputs = build_inputs(manifest, table)
    rows = pa.array(np.arange(first_row, first_row + table.num_rows, dtype=np.int64))
    carried = carried_columns(manifest, table.column_names)
    good = pa.array(inputs.good)
    scored_rows = int(inputs.good.sum())
    outputs = predict(model, inputs.feeds) if scored_rows else _empty_outputs(manifest)
    predictions = {ROW_COLUMN: rows.filter(good)}
    if run_id is not None:
        predictions[REQUEST_COLUMN] = request_ids(run_id, predictions[ROW_COLUMN])
    for name in carried:
        predictions[name] = _plain(table.column(name)).filter(good)
    for name, values in outputs.items():
        predictions[name] = pa.array(values, type=pa.string() if values.dtype == object else None)
    predictions[VERSION_COLUMN] = pa.array(np.full(scored_rows, manifest.version, dtype=np.int32))
    bad_rows = list(inputs.problems)
    quarantine = {
        ROW_COLUMN: pa.array([first_row + r for r in bad_rows], pa.int64()),
        **{
            name: _plain(table.column(name)).take(pa.array(bad_rows, pa.int64()))
            for name in carried
        },
        REASON_COLUMN: pa.array(["; ".join(reasons) for reasons in inputs.problems.values()]),
    }
    return ScoredChunk(
        pa.table(predictions), pa.table(quarantine), unknown_categories=inputs.unknown_categories
    )


def _empty_outputs(manifest: Manifest) -> dict[str, np.ndarray]:
    if manifest.task == "regression":
        return {PREDICTION_COLUMN: np.empty(0, dtype=np.float32)}
    columns: dict[str, np.ndarray] = {LABEL_COLUMN: np.empty(0, dtype=object)}
    if manifest.probability_output:
        for name in manifest.classes:
            columns[f"{PROBABILITY_PREFIX}{name}"] = np.empty(0, dtype=np.float32)
    return columns
