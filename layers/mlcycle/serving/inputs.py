"""Request body -> the ONNX graph's input arrays, straight from JSON (no pandas).

The contract is the manifest's (`FeatureSpec`): one input per feature of shape [n, 1];
numeric -> float32 (null -> NaN); datetime -> ISO-8601 string -> float32 days since
1970-01-01 UTC (null -> NaN; a naive time is taken as UTC); categorical -> string
(null -> ""). Validation collects every problem of every instance before answering, so a
client fixes its batch in one round trip.

Speed matters: this runs on every request, next to a session.run of ~0.1 ms. Converters are
built once per model; in the common all-valid batch every numeric feature is converted by
one `np.array`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import numpy as np

from mlcycle.serving.errors import InvalidRequestError, Problem
from mlcycle.serving.manifest import FeatureSpec, Manifest

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_PER_DAY = 86400.0
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER_TYPES = (int, float)


def _describe(value: Any) -> str:
    """A value's JSON type and a short excerpt, for problem messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, _NUMBER_TYPES):
        return f"number {value!r}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"string {text!r}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def json_type(value: Any) -> str:
    return _describe(value).split(" ", 1)[0]


# --- the body ----------------------------------------------------------------------------


def parse_instances(body: str | bytes | None, *, max_instances: int) -> list[Any]:
    """The `instances` list of a V1 predict body, or `InvalidRequestError` saying what is wrong."""
    if body is None or not body.strip():
        raise InvalidRequestError(
            [Problem(None, None, 'the body is empty; send {"instances": [...]}')]
        )
    try:
        document = json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as error:
        raise InvalidRequestError([Problem(None, error.key, str(error))]) from None
    except RecursionError:
        # json nests by recursion: a body of arrays thousands deep exhausts the stack
        raise InvalidRequestError(
            [Problem(None, None, "the body nests arrays or objects too deeply to be a request")]
        ) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequestError(
            [Problem(None, None, f"the body is not valid JSON: {error}")]
        ) from None
    if not isinstance(document, dict):
        raise InvalidRequestError(
            [
                Problem(
                    None,
                    None,
                    f'the body must be a JSON object {{"instances": [...]}}, '
                    f"got {json_type(document)}",
                )
            ]
        )
    problems = [
        Problem(None, key, "unknown field; the body holds only 'instances'")
        for key in document
        if key != "instances"
    ]
    instances = document.get("instances")
    if "instances" not in document:
        problems.insert(0, Problem(None, "instances", "missing; send a list of feature objects"))
    elif not isinstance(instances, list):
        problems.insert(
            0, Problem(None, "instances", f"expected a list, got {json_type(instances)}")
        )
    elif not instances:
        problems.insert(0, Problem(None, "instances", "the list is empty; send at least one"))
    if problems:
        raise InvalidRequestError(problems)
    assert isinstance(instances, list)
    if len(instances) > max_instances:
        raise InvalidRequestError(
            [
                Problem(
                    None,
                    "instances",
                    f"{len(instances)} instances exceed the limit of {max_instances} per request",
                )
            ],
            status=413,
        )
    return instances


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"the field {key!r} appears twice in one object; send it once")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice: which value was meant is anyone's guess,
    and json.loads would silently keep the last."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return document


# --- per feature -------------------------------------------------------------------------


def days_since_epoch(text: str) -> float:
    """ISO-8601 date or datetime (with or without offset; naive = UTC) -> days since
    1970-01-01 UTC. Raises ValueError if it does not parse."""
    if len(text) == 10:  # the common YYYY-MM-DD: no datetime arithmetic needed
        return float(date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH).total_seconds() / _SECONDS_PER_DAY


_NONE: list[Any] = []  # shared "nothing wrong": never mutated


class Column(NamedTuple):
    """One feature's values of a batch, converted, with what went wrong."""

    array: np.ndarray
    problems: list[Problem]
    unknown: list[tuple[int, str]] = _NONE  # (instance, category)


Converter = Callable[[list[Any]], Column]


def _finite_float32_numbers(values: list[Any]) -> bool:
    """Every value a finite JSON number in float32 range, checked in pure Python (numpy calls
    cost more than this for a few rows). bool is an int subclass, excluded by `type`; NaN
    fails both comparisons and infinities fail one."""
    for v in values:
        t = type(v)
        if (t is not float and t is not int) or not -_FLOAT32_MAX <= v <= _FLOAT32_MAX:
            return False
    return True


def _numeric_block(names: list[str], rows: list[dict[str, Any]]) -> list[np.ndarray] | None:
    """Every numeric feature in one conversion: the common all-valid case, where one `np.array`
    replaces a converter call per feature. None sends the batch to the per-feature path, which
    names what is wrong."""
    values: list[Any] = [row.get(name) for name in names for row in rows]  # feature-major
    if not _finite_float32_numbers(values):
        return None
    block = np.array(values, dtype=np.float32).reshape(len(names), len(rows), 1)
    return list(block)  # one contiguous [n, 1] view per feature


def _numeric(name: str) -> Converter:
    def convert(values: list[Any]) -> Column:
        # A batch with a null somewhere: only the columns holding one take the slow path.
        if not _finite_float32_numbers(values):
            return _numeric_slow(name, values)
        return Column(np.array(values, dtype=np.float32).reshape(-1, 1), _NONE)

    return convert


def _numeric_slow(name: str, values: list[Any]) -> Column:
    out = np.empty(len(values), dtype=np.float32)
    problems = []
    for i, value in enumerate(values):
        if value is None:
            out[i] = np.nan
        elif type(value) is float or type(value) is int:
            if not math.isfinite(value):
                problems.append(
                    Problem(i, name, f"expected a finite number, got {value!r}; null = missing")
                )
            elif abs(value) > _FLOAT32_MAX:
                problems.append(Problem(i, name, f"{value!r} is outside the float32 range"))
            else:
                out[i] = value
        else:
            problems.append(Problem(i, name, f"expected a number, got {_describe(value)}"))
    return Column(out.reshape(-1, 1), problems)


def _datetime(name: str) -> Converter:
    def convert(values: list[Any]) -> Column:
        out = np.empty(len(values), dtype=np.float32)
        problems = []
        for i, value in enumerate(values):
            if value is None:
                out[i] = np.nan
            elif type(value) is str:
                try:
                    out[i] = days_since_epoch(value)
                except ValueError:
                    problems.append(
                        Problem(
                            i,
                            name,
                            f"cannot parse {_describe(value)} as an ISO-8601 date or datetime "
                            "(e.g. 2024-05-31 or 2024-05-31T12:00:00+02:00)",
                        )
                    )
            else:
                problems.append(
                    Problem(i, name, f"expected an ISO-8601 date string, got {_describe(value)}")
                )
        return Column(out.reshape(-1, 1), problems)

    return convert


def _categorical(name: str, categories: list[str]) -> Converter:
    known = frozenset(categories)

    def convert(values: list[Any]) -> Column:
        problems = []
        if not all(type(v) is str for v in values):
            values = list(values)
            for i, value in enumerate(values):
                if value is None:
                    values[i] = ""
                elif type(value) is int:
                    # Training reads integer-coded categories as their decimal text.
                    values[i] = str(value)
                elif type(value) is not str:
                    problems.append(Problem(i, name, f"expected a string, got {_describe(value)}"))
                    values[i] = ""
        unknown = (
            [(i, v) for i, v in enumerate(values) if v not in known and v != ""] if known else []
        )
        array = np.array(values, dtype=object).reshape(-1, 1)
        return Column(array, problems, unknown)

    return convert


def _converter(spec: FeatureSpec) -> Converter:
    if spec.kind == "numeric":
        return _numeric(spec.name)
    if spec.kind == "datetime":
        return _datetime(spec.name)
    return _categorical(spec.name, spec.categories)


# --- the batch ---------------------------------------------------------------------------


@dataclass
class Batch:
    feeds: dict[str, np.ndarray]  # ONNX input name -> [n, 1] array
    unknown_categories: list[tuple[int, str, str]]  # (instance, field, value)
    ignored: list[tuple[int, str]] = field(default_factory=list)  # (instance, excluded column)

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [
            {"instance": i, "field": f, "warning": f"unknown category {v!r}, not seen in training"}
            for i, f, v in self.unknown_categories
        ] + [
            {
                "instance": i,
                "field": f,
                "warning": "not a feature of the model (excluded in training); ignored",
            }
            for i, f in self.ignored
        ]


class InputBuilder:
    """Validates instances against one model's features and builds its input arrays."""

    def __init__(self, manifest: Manifest) -> None:
        self.features = manifest.features
        self.names = [spec.name for spec in manifest.features]
        self._name_set = frozenset(self.names)
        self._excluded = frozenset(manifest.excluded)
        # (field, ONNX input, converter): the input name differs only where export had to
        self._converters = [
            (spec.name, spec.input or spec.name, _converter(spec)) for spec in manifest.features
        ]
        self._numeric = [spec.name for spec in manifest.features if spec.kind == "numeric"]
        self._numeric_inputs = [
            spec.input or spec.name for spec in manifest.features if spec.kind == "numeric"
        ]

    def build(self, instances: list[Any]) -> Batch:
        """Raise `InvalidRequestError` naming every bad instance and field, else the feeds."""
        problems: list[Problem] = []
        names, name_set = self.names, self._name_set
        rows: list[dict[str, Any]] = []
        ignored: list[tuple[int, str]] = []
        for i, instance in enumerate(instances):
            if type(instance) is not dict:
                problems.append(
                    Problem(i, None, f"expected an object of features, got {json_type(instance)}")
                )
                rows.append({})
                continue
            if instance.keys() != name_set:
                problems.extend(
                    Problem(i, name, "missing feature (send null for a missing value)")
                    for name in names
                    if name not in instance
                )
                for key in instance:
                    if key in name_set:
                        continue
                    if key in self._excluded:
                        ignored.append((i, key))
                    else:
                        problems.append(
                            Problem(i, key, f"unknown field; the model's features are {names}")
                        )
            rows.append(instance)
        feeds: dict[str, np.ndarray] = {}
        numeric = _numeric_block(self._numeric, rows) if self._numeric else None
        if numeric is not None:
            feeds.update(zip(self._numeric_inputs, numeric, strict=True))
        unknown: list[tuple[int, str, str]] = []
        for name, key, convert in self._converters:
            if key in feeds:
                continue
            column = convert([row.get(name) for row in rows])
            feeds[key] = column.array
            problems.extend(column.problems)
            unknown.extend((i, name, value) for i, value in column.unknown)
        if problems:
            problems.sort(key=lambda p: p.instance if p.instance is not None else -1)
            raise InvalidRequestError(problems)
        return Batch(feeds, unknown, ignored)
