"""Stage 3, data processing: resolve the spec against the data, then clean the rows.

Curated column dtypes, which every later stage can rely on:
numeric features float64 (NaN for missing), categorical features pandas "str" (NaN for
missing), datetime features naive UTC datetime64[us] (NaT for missing); the target is "str"
labels for classification and float64 for regression.

The stage runs on the Arrow table it read (`curate`) and writes Parquet straight from it
(`parquet_bytes`); `resolve_schema` and `clean` are the same code over a DataFrame. The rules
are written once, over pandas Series (`mlcycle.domain.column_rules`). The Arrow path gets
the same answers cheaply: it applies those rules to a column's distinct values (a million
rows often hold a handful) or to the very row sample they would see, and answers from Arrow
directly only where the answer cannot differ (a numeric column's dtype, its min and max).
Any column type without such a path is handed to the rules whole, as the pandas Series
`Table.to_pandas()` would give.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlcycle.domain import column_rules as rules
from mlcycle.errors import BadInputError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, ProblemSpec, Task

MIN_ROWS = 10
REJECT_REASON = "_reject_reason"
SENSITIVE_REASON: Final = "sensitive feature (fairness.exclude_from_features)"
PARQUET_COMPRESSION: Final = "zstd"
THREADS = 2  # columns `curate` works on at once; most of that work releases the GIL

_T = TypeVar("_T")


@dataclass
class CleanResult:
    """The curated rows, the rejected ones (with `_reject_reason`) and what was done."""

    curated: pd.DataFrame
    rejected: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    rows_in: int = 0
    duplicates_dropped: int = 0
    coerced: dict[str, int] = field(default_factory=dict)  # column -> values that became null


@dataclass
class Curated:
    """The processing stage's output as Arrow tables, with the schema it resolved.

    `curated` holds categorical columns dictionary-encoded (cheap to build and to write):
    store it with `parquet_bytes`, which reads back as plain strings. `rejected` holds the
    upload's rows as read, plus `_reject_reason`.
    """

    schema: ResolvedSchema
    curated: pa.Table
    rejected: pa.Table
    notes: list[str] = field(default_factory=list)
    rows_in: int = 0
    duplicates_dropped: int = 0
    coerced: dict[str, int] = field(default_factory=dict)


def infer_column_types(df: pd.DataFrame | pa.Table) -> dict[str, ColumnType]:
    """The type of every column, from its dtype or, for text, from what its values parse as."""
    frame = _Frame(df)
    return {name: column.inferred for name, column in frame.columns.items()}


def resolve_schema(df: pd.DataFrame | pa.Table, spec: ProblemSpec) -> ResolvedSchema:
    """Make the spec concrete against the data: task, classes, features and their types."""
    return _resolve(_Frame(df), spec)


def clean(df: pd.DataFrame, schema: ResolvedSchema) -> CleanResult:
    """Coerce features to their types, normalize the target, drop duplicates, quarantine.

    Duplicates are rows identical in every column of the upload (a double load), so two
    customers who differ only by an excluded id are both kept.
    """
    done = _clean(_Frame(df), schema)
    kept = df if done.keep is None else df[done.keep]
    rejected = kept[done.bad[done.keep] if done.keep is not None else done.bad].copy()
    rejected[REJECT_REASON] = pd.array(done.reasons, dtype=rules.TEXT_DTYPE)
    return CleanResult(
        _decoded(done.curated).to_pandas(),
        rejected.reset_index(drop=True),
        done.notes,
        done.rows_in,
        done.duplicates,
        done.coerced,
    )


def curate(
    table: pa.Table,
    spec: ProblemSpec,
    *,
    schema: ResolvedSchema | None = None,
    min_rows: int = MIN_ROWS,
) -> Curated:
    """The whole stage on an Arrow table: `resolve_schema`, then `clean`, in one pass.

    With `schema` (one part of a many-part dataset, whose schema was resolved once on a sample
    of the parts) the rows are cleaned to it instead; `min_rows` is then the part's minimum.
    """
    frame = _Frame(table)
    pool = ThreadPoolExecutor(THREADS, thread_name_prefix="curate")
    try:
        schema = schema or _resolve(frame, spec, pool)
        done = _clean(frame, schema, pool, min_rows=min_rows)
    finally:
        pool.shutdown(cancel_futures=True)
    rows = done.bad if done.keep is None else done.keep & done.bad
    rejected = _decoded(table.filter(pa.array(rows)) if rows.any() else table.slice(0, 0))
    rejected = rejected.append_column(REJECT_REASON, pa.array(done.reasons, pa.string()))
    return Curated(
        schema,
        done.curated,
        rejected,
        done.notes,
        done.rows_in,
        done.duplicates,
        done.coerced,
    )


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as zstd Parquet; dictionary-encoded text reads back as plain strings.

    Without the stored Arrow schema a reader takes each column's type from Parquet's own
    logical types (string, double, timestamp), so a dictionary column is a string column to
    `pyarrow.parquet.read_table(...).to_pandas()`, Athena and Glue alike.
    """
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=PARQUET_COMPRESSION, store_schema=False)
    return buffer.getvalue()


# --- the upload's columns, each with what is known about it ------------------------------------

_NUMBER, _TIME, _TEXT, _OTHER = "number", "time", "text", "other"
_EXACT_FLOAT = 2.0**53  # integers beyond it do not survive the trip to float64


class _cached(Generic[_T]):  # noqa: N801 - a decorator, named like functools.cached_property
    """`functools.cached_property` without its lock: Python 3.11's lock is shared by every
    instance, which would make threads working on different columns wait for each other.
    Two threads may compute the same value once each; both get an equal result."""

    def __init__(self, function: Callable[[Any], _T]) -> None:
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _cached[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...
    def __get__(self, instance: object, owner: type | None = None) -> _T | _cached[_T]:
        if instance is None:
            return self
        value = self.function(instance)
        instance.__dict__[self.name] = value
        return value


class _Column:
    """One column: its Arrow values when its type has a fast path, its pandas view, and facts
    about it computed at most once (resolving the schema and cleaning share them).

    The pandas view is the Series `Table.to_pandas()` gives for the column, so the pandas
    rules see exactly what they always saw: integers with nulls are float64, text is "str".
    """

    def __init__(self, name: str, arrow: pa.ChunkedArray | None, series: pd.Series | None):
        self.name = name
        self.arrow = arrow
        self._series = series
        self.kind = _OTHER if arrow is None else _kind(arrow)
        if arrow is not None:
            self.n, self.nulls = len(arrow), arrow.null_count
        else:
            assert series is not None
            self.n, self.nulls = len(series), int(series.isna().sum())
        self.count = self.n - self.nulls
        if self.kind is _NUMBER:
            assert arrow is not None
            if pa.types.is_floating(arrow.type):
                nans = int(np.isnan(self.numbers).sum())
                if nans > self.nulls:  # NaN is a missing value to pandas, a number to Arrow
                    arrow = pc.if_else(pc.is_nan(arrow), pa.scalar(None, arrow.type), arrow)
                    self.arrow, self.nulls, self.count = arrow, nans, self.n - nans
            elif self.nulls and self.count:
                low, high = self.min_max
                if max(abs(float(low)), abs(float(high))) >= _EXACT_FLOAT:
                    self.kind = _OTHER  # pandas would round these to float64: let it

    @property
    def values(self) -> pa.ChunkedArray:
        assert self.arrow is not None
        return self.arrow

    @property
    def float_view(self) -> bool:
        """Integers with nulls become float64 in pandas."""
        return self.arrow is not None and (
            pa.types.is_floating(self.arrow.type)
            or (pa.types.is_integer(self.arrow.type) and self.nulls > 0)
        )

    @_cached
    def series(self) -> pd.Series:
        if self._series is not None:
            return self._series
        return self.view(self.values)

    def view(self, values: pa.Array | pa.ChunkedArray) -> pd.Series:
        """Some of this column's values as pandas, in the dtype of the column's pandas view."""
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        series = values.to_pandas()
        if self.kind is _NUMBER and self.float_view and series.dtype != np.float64:
            series = series.astype(np.float64)
        return series

    @_cached
    def inferred(self) -> ColumnType:
        return _infer_column(self)

    @_cached
    def hashable(self) -> pa.ChunkedArray:
        """The values, with -0.0 as 0.0: pandas counts them as one value, Arrow as two."""
        values = self.values
        if pa.types.is_floating(values.type):
            return pc.add(values, pa.scalar(0.0, values.type))
        return values

    @_cached
    def encoded(self) -> tuple[np.ndarray, pa.Array]:
        """Per row, the position of its value among the distinct values (-1 when null), and
        the distinct non-null values, every one of them used by some row."""
        values = self.hashable
        if not pa.types.is_dictionary(values.type):
            # one dictionary, in order of first appearance
            values = pa.chunked_array([pc.dictionary_encode(values.combine_chunks())])
        elif values.num_chunks > 1:
            values = pa.table({"c": values}).unify_dictionaries().column("c")
        chunks = values.chunks
        if not chunks:
            return np.empty(0, np.int32), pa.array([], values.type.value_type)
        indices = pa.chunked_array([c.indices for c in chunks], values.type.index_type)
        dictionary = chunks[0].dictionary
        codes: np.ndarray
        if indices.null_count:
            codes = pc.fill_null(indices, -1).to_numpy()
            used = np.bincount(codes + 1, minlength=len(dictionary) + 1)[1:] > 0
        else:
            codes = indices.to_numpy()
            used = np.bincount(codes, minlength=len(dictionary)) > 0
        if not used.all():  # a dictionary may hold values no row uses: drop them
            renumber = np.full(len(dictionary) + 1, -1, np.int64)
            renumber[:-1][used] = np.arange(int(used.sum()))
            codes = renumber[codes]
            dictionary = dictionary.filter(pa.array(used))
        return codes, dictionary

    @_cached
    def distinct(self) -> int:
        """How many distinct non-null values, counted as pandas `nunique` counts them."""
        if self.kind is _OTHER:
            return int(self.series.nunique(dropna=True))
        if "encoded" not in self.__dict__ and not self.is_dictionary and self.increasing:
            return self.count
        return len(self.encoded[1])

    @property
    def is_dictionary(self) -> bool:
        return self.arrow is not None and pa.types.is_dictionary(self.arrow.type)

    @_cached
    def increasing(self) -> bool:
        """Whether the non-null values are strictly increasing (ids usually are): then they
        are all distinct, known without hashing a value."""
        values = self.hashable.drop_null()
        if len(values) < 2:
            return True
        ahead = values.slice(1)
        return bool(pc.all(pc.greater(ahead, values.slice(0, len(values) - 1))).as_py())

    def rows_all_distinct(self, cheap_only: bool) -> bool:
        """Whether no two rows hold the same value here (two nulls count as the same)."""
        if self.nulls > 1:
            return False
        if "distinct" in self.__dict__ or self.is_dictionary or not cheap_only:
            return self.distinct == self.count
        return self.kind is not _OTHER and self.increasing

    def row_codes(self) -> tuple[np.ndarray, int]:
        """Equal values get equal codes (-1 for nulls), as `DataFrame.duplicated` groups them."""
        if self.kind is _OTHER:
            codes, uniques = pd.factorize(self.series.array)
            return codes.astype(np.int64, copy=False), len(uniques)
        codes, dictionary = self.encoded
        return codes, len(dictionary)

    def constant(self) -> bool:
        """Exactly one distinct non-null value (there is at least one)."""
        if "distinct" in self.__dict__ or self.is_dictionary:
            return self.distinct == 1
        if self.kind is _TEXT and self.increasing:
            return self.count == 1
        low, high = self.min_max
        return bool(low == high)

    @_cached
    def min_max(self) -> tuple[Any, Any]:
        """The least and greatest non-null value (there is at least one)."""
        if self.kind is _NUMBER:  # numpy's min and max are many times faster than Arrow's
            numbers = self.numbers
            if self.nulls:
                return np.nanmin(numbers), np.nanmax(numbers)
            return numbers.min(), numbers.max()
        if self.kind is _TIME:
            present = (self.values.drop_null() if self.nulls else self.values).to_numpy()
            return present.min(), present.max()
        low, high = pc.min_max(self.values).values()
        return low.as_py(), high.as_py()

    @_cached
    def numbers(self) -> np.ndarray:
        """A number column as numpy: float64 with NaN for nulls, or integers if none."""
        array: np.ndarray = self.values.to_numpy()
        return array

    def first(self) -> object:
        """The first non-null value, as the pandas view holds it."""
        return self.view(self.values.drop_null().slice(0, 1)).iloc[0]

    @_cached
    def integral(self) -> bool:
        """Whether every value is a whole number (inf counts, as `v == np.round(v)` says)."""
        if pa.types.is_integer(self.values.type):
            return True
        numbers = self.numbers
        whole = numbers == np.round(numbers)
        return bool(np.all(whole | np.isnan(numbers)) if self.nulls else np.all(whole))

    def float_range(self) -> tuple[float, float]:
        """The least and greatest value, as float64 (what the pandas rules compute)."""
        low, high = self.min_max
        return float(low), float(high)

    def distinct_values(self) -> tuple[np.ndarray, pd.Series]:
        """Per row codes and the distinct values as pandas (in the view's dtype)."""
        codes, dictionary = self.encoded
        return codes, self.view(dictionary).reset_index(drop=True)

    def in_order_of_appearance(self) -> tuple[np.ndarray, pd.Series]:
        """`distinct_values` with the values in the order rows first show them (which
        `pd.factorize` over the whole column gives, and date parsing depends on)."""
        codes, dictionary = self.encoded
        if not self.is_dictionary:
            return codes, self.view(dictionary)  # dictionary_encode keeps that order
        order = pc.dictionary_encode(pa.array(codes[codes >= 0])).dictionary.to_numpy()
        renumber = np.empty(len(order) + 1, np.int64)
        renumber[order] = np.arange(len(order))
        renumber[-1] = -1
        reordered = dictionary.take(pa.array(order))
        return renumber[codes], self.view(reordered).reset_index(drop=True)

    def sample(self) -> pd.Series:
        """The non-null values `_sample` would pick from the pandas view."""
        values = self.values.drop_null()
        if len(values) > rules.INFER_SAMPLE:
            values = values.take(pa.array(_sample_positions(len(values))))
        return self.view(values)


def _kind(values: pa.ChunkedArray) -> str:
    typ = values.type
    if pa.types.is_integer(typ) or (pa.types.is_floating(typ) and typ.bit_width == 64):
        return _NUMBER
    if pa.types.is_timestamp(typ) and typ.tz is None and typ.unit in ("s", "ms", "us"):
        return _TIME
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return _TEXT
    return _OTHER


@functools.lru_cache(maxsize=8)
def _sample_positions(n: int) -> np.ndarray:
    """`Series.sample(rules.INFER_SAMPLE, random_state=0)` on n rows takes these positions."""
    positions: np.ndarray = np.random.RandomState(0).choice(n, rules.INFER_SAMPLE, replace=False)
    positions.setflags(write=False)
    return positions


def _arrow_of(series: pd.Series) -> pa.ChunkedArray | None:
    """The Series as Arrow when its dtype round-trips exactly (float64 NaN as null), else
    None: the column then takes the pandas rules only."""
    dtype = series.dtype
    fast = (
        (isinstance(dtype, np.dtype) and dtype.kind in "iu")
        or dtype == np.float64
        or dtype in ("datetime64[s]", "datetime64[ms]", "datetime64[us]")
        or (isinstance(dtype, pd.StringDtype) and dtype.na_value is np.nan)
    )
    if not fast:
        return None
    try:
        return pa.chunked_array([pa.Array.from_pandas(series)])
    except (pa.ArrowException, TypeError, ValueError):  # pragma: no cover - defensive
        return None


class _Frame:
    def __init__(self, data: pd.DataFrame | pa.Table) -> None:
        self.columns: dict[str, _Column] = {}
        if isinstance(data, pa.Table):
            self.n = data.num_rows
            for name, values in zip(data.column_names, data.columns, strict=True):
                self.columns[str(name)] = _Column(str(name), values, None)
        else:
            self.n = len(data)
            for i, name in enumerate(data.columns):
                series = data.iloc[:, i]
                self.columns[str(name)] = _Column(str(name), _arrow_of(series), series)

    def __getitem__(self, name: str) -> _Column:
        return self.columns[name]


# --- the schema ---------------------------------------------------------------------------------


def _resolve(frame: _Frame, spec: ProblemSpec, pool: Executor | None = None) -> ResolvedSchema:
    columns = list(frame.columns)
    if spec.target not in columns:
        raise BadInputError(rules.not_found("the target column", [spec.target], columns))
    unknown = [c for c in spec.column_types if c not in columns]
    if unknown:
        raise BadInputError(rules.not_found("column_types: the column(s)", unknown, columns))
    sensitive = spec.fairness.sensitive_features if spec.fairness else []
    absent = [c for c in sensitive if c not in columns]
    if absent:
        raise BadInputError(
            rules.not_found("fairness.sensitive_features: the column(s)", absent, columns)
        )

    automatic = spec.features is None
    candidates = [
        name
        for name in (columns if spec.features is None else spec.features)
        if name != spec.target and name in frame.columns
    ]

    def decide(name: str) -> tuple[ColumnType, str | None]:
        typ = spec.column_types.get(name) or frame[name].inferred
        return typ, _exclusion(frame[name], typ) if automatic else None

    pending = _each(pool, decide, candidates)  # on the pool, under way while the target is
    task, classes = _resolve_task(frame[spec.target], spec)
    positive_class: str | None = None
    positive_reason: str | None = None
    if spec.positive_class is not None:
        if task is not Task.BINARY:
            raise BadInputError(
                f"positive_class is set but the task is {task.value}; it applies to binary "
                "tasks only"
            )
        assert classes is not None
        if spec.positive_class not in classes:
            raise BadInputError(
                f"positive_class {spec.positive_class!r} is not a class of the target "
                f"{spec.target!r}; the classes are {', '.join(map(repr, classes))}"
            )
        positive_class = spec.positive_class
        positive_reason = "set in the spec"
    elif task is Task.BINARY:
        assert classes is not None
        positive_class, positive_reason = _minority(_class_counts(frame[spec.target]), classes)

    excluded: dict[str, str] = {}
    if spec.features is not None:
        missing = [c for c in spec.features if c not in columns]
        if missing:
            raise BadInputError(rules.not_found("features: the column(s)", missing, columns))
        empty = [c for c in spec.features if frame[c].count == 0]
        if empty:
            raise BadInputError(f"feature(s) with no values at all: {', '.join(empty)}")
        decisions = dict(zip(candidates, pending, strict=True))
        features = {c: decisions[c][0] for c in spec.features}
    else:
        decisions = dict(zip(candidates, pending, strict=True))
        features = {}
        for name in candidates:
            typ, reason = decisions[name]
            if reason:
                excluded[name] = reason
            else:
                features[name] = typ
    groups = _sensitive(frame, spec, features, excluded)
    if not features:
        why = "; ".join(f"{c}: {r}" for c, r in excluded.items()) or "no other columns"
        raise BadInputError(f"no usable feature columns besides the target ({why})")

    return ResolvedSchema(
        dataset=spec.dataset,
        task=task,
        target=spec.target,
        features=features,
        excluded=excluded,
        sensitive=groups,
        classes=classes,
        positive_class=positive_class,
        positive_class_reason=positive_reason,
    )


def _sensitive(
    frame: _Frame, spec: ProblemSpec, features: dict[str, ColumnType], excluded: dict[str, str]
) -> dict[str, ColumnType]:
    """The fairness section's columns and their types; by default kept out of `features`
    (in place, with the reason in `excluded`), though the curated data always keeps them."""
    policy = spec.fairness
    if policy is None:
        return {}
    out: dict[str, ColumnType] = {}
    for name in policy.sensitive_features:
        typ = features.get(name) or spec.column_types.get(name) or frame[name].inferred
        if typ is ColumnType.DATETIME:
            raise BadInputError(
                f"fairness.sensitive_features: {name!r} holds dates; groups need a categorical "
                "or numeric column (set column_types)"
            )
        if name in policy.bins and typ is not ColumnType.NUMERIC:
            raise BadInputError(
                f"fairness.bins.{name}: {name!r} is {typ.value}; bins apply to numeric columns"
            )
        out[name] = typ
        if policy.exclude_from_features:
            features.pop(name, None)
            excluded[name] = SENSITIVE_REASON
    return out


def _class_counts(column: _Column) -> dict[str, int]:
    """Rows per class label (as `rules.as_labels` names them), counted on the distinct values."""
    if column.kind in (_NUMBER, _TEXT):
        codes, values = column.distinct_values()
        per_value = np.bincount(codes[codes >= 0], minlength=len(values))
        labels: list[Any] = (
            rules.as_labels(values).astype(object).where(lambda s: s.notna(), None).tolist()
        )
        counts: dict[str, int] = {}
        for label, n in zip(labels, per_value.tolist(), strict=True):
            if label is not None:
                counts[label] = counts.get(label, 0) + n
        return counts
    return {str(k): int(v) for k, v in rules.as_labels(column.series).value_counts().items()}


def _minority(counts: dict[str, int], classes: list[str]) -> tuple[str, str]:
    """The positive class of a binary target: the rarer one, which is what a model is usually
    asked to find (fraud, churn, default); balanced classes keep the second label."""
    first, second = classes
    total = counts.get(first, 0) + counts.get(second, 0)
    if counts.get(first, 0) < counts.get(second, 0):
        share = counts[first] / total
        return first, f"the minority class ({share:.1%} of the rows)"
    if counts.get(first, 0) > counts.get(second, 0):
        share = counts[second] / total
        return second, f"the minority class ({share:.1%} of the rows)"
    return second, "the classes are balanced: the second in sorted order"


def _each(pool: Executor | None, function: Callable[[Any], _T], items: list[Any]) -> Iterator[_T]:
    """`function` of each item, in order: started on the pool's threads at once, or one by
    one as the results are taken when there is no pool."""
    if pool is None:
        return (function(item) for item in items)
    return pool.map(function, items)


def _infer_column(column: _Column) -> ColumnType:
    if column.kind is _NUMBER:
        return ColumnType.NUMERIC
    if column.kind is _TIME:
        return ColumnType.DATETIME
    if column.kind is _OTHER:
        return rules.infer_type(column.series)
    if column.count == 0:
        return ColumnType.CATEGORICAL
    if column.is_dictionary:
        # Text none of whose distinct values reads as a number or holds a digit is neither
        # numbers nor dates, whatever the sample: `rules.infer_values` would say so too.
        text = column.distinct_values()[1].astype(rules.TEXT_DTYPE).str.strip()
        numbers = pd.to_numeric(text, errors="coerce").notna()
        digits = text.str.contains(r"\d", regex=True).fillna(False).astype(bool)
        if not numbers.any() and not digits.any():
            return ColumnType.CATEGORICAL
    return rules.infer_values(column.sample())


def _exclusion(column: _Column, typ: ColumnType) -> str | None:
    """Why a column should not be a feature, or None (`rules.series_exclusion`, answered from
    Arrow where it can be)."""
    if column.kind is _OTHER:
        return rules.series_exclusion(column.name, column.series, typ)
    count = column.count
    if count == 0:
        return "empty: no values"
    if column.constant():
        return f"constant: one distinct value ({str(column.first())!r})"
    if typ is ColumnType.DATETIME:
        return None
    if typ is ColumnType.NUMERIC and not rules.id_name(column.name):
        # Such a column is id-like only as unique integers in a dense range, and never free
        # text: no need to count its distinct values when the range is too narrow for that.
        if column.kind is not _NUMBER:
            return None
        low, high = column.float_range()
        if max(abs(low), abs(high)) < _EXACT_FLOAT and high - low + 1 <= 0.9 * count:
            return None  # at most that many distinct whole numbers: not rules.ID_SHARE of the rows
        if not column.integral:
            return None
    distinct = column.distinct
    share = distinct / count
    if _looks_like_id(column, typ, distinct, share):
        return f"id-like: {rules.percent(share)} distinct values"
    if (
        typ is ColumnType.CATEGORICAL
        and distinct > rules.TEXT_MIN_DISTINCT
        and share > rules.TEXT_SHARE
    ):
        return f"free text: {distinct} distinct values ({rules.percent(share)} of rows)"
    return None


def _looks_like_id(column: _Column, typ: ColumnType, distinct: int, share: float) -> bool:
    if share >= rules.NAMED_ID_SHARE and rules.id_name(column.name):
        return True
    if share < rules.ID_SHARE:
        return False
    if typ is ColumnType.CATEGORICAL:
        return True
    if column.kind is not _NUMBER or not column.integral:
        return False
    low, high = column.float_range()
    return float(high - low + 1) <= 2 * distinct


def _resolve_task(column: _Column, spec: ProblemSpec) -> tuple[Task, list[str] | None]:
    if column.kind not in (_NUMBER, _TEXT):
        return rules.series_resolve_task(column.series, spec)
    name = spec.target
    if column.count == 0:
        raise BadInputError(f"the target {name!r} has no values")
    # every rule below depends on the set of values only: apply it to the distinct ones
    _, values = column.distinct_values()
    numbers = None
    if column.kind is _NUMBER:
        numbers = pd.Series(values.to_numpy(dtype="float64"))
    elif column.inferred is ColumnType.NUMERIC:  # `rules.infer_type(values)`: the same sample
        text = values.astype(rules.TEXT_DTYPE).str.strip()
        numbers = pd.to_numeric(text, errors="coerce").dropna().astype("float64")
    task = spec.task
    if task is Task.AUTO and numbers is not None:
        integral = bool(np.all(numbers == np.round(numbers)))
        if not integral or numbers.nunique() > rules.MAX_INTEGER_CLASSES:
            task = Task.REGRESSION
    if task is Task.REGRESSION and numbers is None:
        return rules.series_resolve_task(column.series, spec)  # raises, naming examples
    if task is Task.REGRESSION:
        return task, None
    classes = sorted(rules.as_labels(values).dropna().unique().tolist())
    return rules.classes_task(name, task, classes), classes


# --- cleaning -----------------------------------------------------------------------------------


@dataclass
class _Cleaned:
    curated: pa.Table
    keep: np.ndarray | None  # rows left after dropping duplicates (None: all of them)
    bad: np.ndarray  # rows rejected, among the kept ones
    reasons: list[str]  # why, for each rejected row in order
    notes: list[str]
    rows_in: int
    duplicates: int
    coerced: dict[str, int]


def _clean(
    frame: _Frame, schema: ResolvedSchema, pool: Executor | None = None, *, min_rows: int = MIN_ROWS
) -> _Cleaned:
    # the sensitive columns are curated too (typed like features), so they can be evaluated
    kinds = {**schema.features, **schema.sensitive}
    needed = [*kinds, schema.target]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise BadInputError(rules.not_found("the schema's column(s)", missing, list(frame.columns)))
    rows_in = frame.n
    features = list(kinds.items())
    coercions = _each(pool, lambda item: _coerce_column(frame[item[0]], item[1]), features)
    duplicated = _duplicated(frame)
    duplicates = 0 if duplicated is None else int(duplicated.sum())
    keep = None if duplicated is None or not duplicates else ~duplicated
    rows = rows_in - duplicates

    target, why = _clean_target_column(frame[schema.target], schema)
    coerced: dict[str, int] = {}
    curated: dict[str, pa.Array | pa.ChunkedArray] = {}
    for (name, _), (values, failed) in zip(features, coercions, strict=True):
        curated[name] = values
        count = 0 if failed is None else int((failed if keep is None else failed & keep).sum())
        if count:
            coerced[name] = count
    curated[schema.target] = target

    reason_counts: dict[str, int] = {}
    bad = np.zeros(rows_in, dtype=bool)
    rejections = []
    for reason, mask, named in why:
        if mask is None:
            continue
        if keep is not None:
            mask = mask & keep
        n = int(mask.sum())
        if n:
            reason_counts[reason] = n
            bad |= mask
            rejections.append((reason, mask, named))
    reasons = np.full(int(bad.sum()), None, dtype=object)
    for reason, mask, named in rejections:  # masks are disjoint
        at = mask[bad]
        reasons[at] = reason if named is None else [f"{reason}: '{v}'" for v in named(mask)]

    good = ~bad if keep is None else keep & ~bad
    good_rows = int(good.sum())
    table = pa.table(curated)
    if good_rows < rows_in:
        table = table.filter(pa.array(good))

    notes = []
    if duplicates:
        notes.append(f"dropped {duplicates} exact duplicate row(s)")
    if reason_counts:
        parts = ", ".join(f"{why} ({n})" for why, n in reason_counts.items())
        notes.append(f"moved {len(reasons)} row(s) to quarantine: {parts}")
    for name, n in coerced.items():
        kind = "numbers" if kinds[name] is ColumnType.NUMERIC else "dates"
        notes.append(f"{name!r}: {n} value(s) could not be read as {kind} and became empty")

    if not good_rows:
        parts = ", ".join(f"{why} ({n})" for why, n in reason_counts.items())
        after = f" (after dropping {duplicates} duplicates)" if duplicates else ""
        raise BadInputError(f"no usable rows: all {rows} rows{after} were rejected: {parts}")
    if good_rows < min_rows:
        raise BadInputError(
            f"only {good_rows} usable rows; at least {min_rows} are needed to train and evaluate"
        )
    return _Cleaned(table, keep, bad, reasons.tolist(), notes, rows_in, duplicates, coerced)


def _duplicated(frame: _Frame) -> np.ndarray | None:
    """`DataFrame.duplicated()` over every column, or None when no row can repeat.

    Rows are keyed exactly (no hashing, so no collisions): each column's values are numbered,
    and the numbers of the columns so far are combined into one integer per row.
    """
    columns = list(frame.columns.values())
    n = frame.n
    # One column whose rows all differ (an id, say) settles it; cheap checks first.
    if any(c.rows_all_distinct(cheap_only=True) for c in columns):
        return None
    key = np.zeros(n, dtype=np.int64)
    size = 1
    for column in columns:
        codes, distinct = column.row_codes()
        if distinct + (column.nulls > 0) == n:
            return None
        width = distinct + 1
        if size * width >= 2**62:
            key, uniques = pd.factorize(key)
            size = len(uniques)
            if size == n:
                return None
        key = key * width + (codes + 1)
        size *= width
    duplicated: np.ndarray = pd.Series(key).duplicated().to_numpy()
    return duplicated


# (reason, the rows it rejects or None for none, the value each of them names, if any)
_TARGET_TYPES: Final = {True: pa.string(), False: pa.float64()}  # is classification -> type


def _coerce_column(
    column: _Column, typ: ColumnType
) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray | None]:
    """The column as its type's Arrow type, and the rows whose value failed and became null."""
    kind = column.kind
    if typ is ColumnType.NUMERIC and kind is _NUMBER:
        numbers = column.values.cast(pa.float64(), safe=False)
        if not pa.types.is_floating(column.values.type):
            return numbers, None
        failed = np.isinf(column.numbers)
        if not failed.any():
            return numbers, None
        return pc.if_else(pa.array(failed), pa.scalar(None, pa.float64()), numbers), failed
    if typ is ColumnType.DATETIME and kind is _TIME:
        return column.values.cast(pa.timestamp("us")), None
    if typ is ColumnType.CATEGORICAL and kind in (_NUMBER, _TEXT):
        return _labels_column(column)[0], None
    if typ is ColumnType.NUMERIC and kind is _TEXT:
        codes, values = column.distinct_values()
        numbers, _ = rules.to_numbers(values)
        numbers = numbers.where(np.isfinite(numbers)).to_numpy(dtype="float64")
        per_row = np.append(numbers, np.nan)[codes]
        return pa.array(per_row, from_pandas=True), (codes >= 0) & np.isnan(per_row)
    if typ is ColumnType.DATETIME and kind is _TEXT:
        codes, values = column.in_order_of_appearance()
        parsed = rules.to_datetimes(values).to_numpy()
        per_row = np.append(parsed, np.datetime64("NaT", "us"))[codes]
        failed = (codes >= 0) & np.isnat(per_row)
        return pa.array(per_row, pa.timestamp("us"), from_pandas=True), failed
    # no fast path: the pandas rules on the pandas view
    series = column.series
    result, n_failed = rules.coerce(series, typ)
    arrow_type = {
        ColumnType.NUMERIC: pa.float64(),
        ColumnType.DATETIME: pa.timestamp("us"),
        ColumnType.CATEGORICAL: pa.string(),
    }[typ]
    failed_rows = (series.notna() & result.isna()).to_numpy() if n_failed else None
    return pa.array(result, arrow_type, from_pandas=True), failed_rows


def _labels_column(column: _Column) -> tuple[pa.DictionaryArray, pd.Series, np.ndarray]:
    """`rules.as_labels` of a number or text column, dictionary-encoded; with the label of each
    distinct value and the per-row codes into them."""
    codes, values = column.distinct_values()
    labels = rules.as_labels(values)
    dictionary = column.encoded[1]
    if (
        dictionary.type == pa.string()
        and not labels.isna().any()
        and bool((labels.to_numpy(dtype=object) == values.to_numpy(dtype=object)).all())
    ):
        # the values are their own labels (the usual case)
        return _dictionary_array(codes, dictionary, column.nulls > 0), labels, codes
    label_codes, uniques = pd.factorize(labels)
    per_row = np.append(label_codes, -1)[codes]
    dictionary = pa.array(np.asarray(uniques, dtype=object), pa.string())
    return _dictionary_array(per_row, dictionary, True), labels, codes


def _dictionary_array(codes: np.ndarray, dictionary: pa.Array, nulls: bool) -> pa.DictionaryArray:
    """Codes (-1 for null) into the dictionary, with the narrowest index type (the Parquet
    writer gets through int8 indices much faster)."""
    index_type = next(
        t for t in (np.int8, np.int16, np.int32) if len(dictionary) <= np.iinfo(t).max
    )
    mask = codes < 0 if nulls else None
    if mask is not None and not mask.any():
        mask = None
    indices = pa.array(codes.astype(index_type, copy=False), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _clean_target_column(
    column: _Column, schema: ResolvedSchema
) -> tuple[pa.Array | pa.ChunkedArray, list[rules.Reason]]:
    """The target values, and the rejections (`rules.clean_target` over distinct values)."""
    name = schema.target
    if column.kind not in (_NUMBER, _TEXT):
        values, why = rules.clean_target(column.series, schema)
        arrow_type = _TARGET_TYPES[schema.is_classification]
        return pa.array(values, arrow_type, from_pandas=True), why

    def per_row(per_value: np.ndarray, null: bool) -> np.ndarray | None:
        if not per_value.any() and (not null or not column.nulls):
            return None  # no row
        result: np.ndarray = np.append(per_value, [null])[codes]
        return result

    def naming(shown: pd.Series) -> Callable[[np.ndarray], list[str]]:
        def named(mask: np.ndarray) -> list[str]:
            texts = shown.astype(rules.TEXT_DTYPE).to_numpy(dtype=object)
            return [str(t) for t in texts[codes[mask]]]

        return named

    if schema.is_classification:
        labels_column, labels, codes = _labels_column(column)
        missing_value = labels.isna().to_numpy()
        unknown = ~missing_value & ~labels.isin(schema.classes or []).to_numpy()
        return labels_column, [
            (f"target {name!r} is missing", per_row(missing_value, True), None),
            (
                f"target {name!r} has a class the schema does not know",
                per_row(unknown, False),
                naming(labels),
            ),
        ]

    codes, values = column.distinct_values()
    if column.kind is _NUMBER:
        numbers = column.values.cast(pa.float64(), safe=False)
        infinite = pc.is_inf(numbers)
        if pc.any(infinite).as_py():
            numbers = pc.if_else(infinite, pa.scalar(None, pa.float64()), numbers)
        number_values = values.to_numpy(dtype="float64")
        return numbers, [
            (f"target {name!r} is missing", codes < 0 if column.nulls else None, None),
            (
                f"target {name!r} is not finite",
                per_row(np.isinf(number_values), False),
                naming(values),
            ),
        ]
    parsed, text = rules.to_numbers(values)
    assert text is not None
    number_values = parsed.to_numpy(dtype="float64")
    empty = (text == "").fillna(False).to_numpy(dtype=bool)
    finite = np.where(np.isfinite(number_values), number_values, np.nan)
    return pa.array(np.append(finite, np.nan)[codes], from_pandas=True), [
        (f"target {name!r} is missing", per_row(empty, True), None),
        (
            f"target {name!r} is not a number",
            per_row(~empty & np.isnan(number_values), False),
            naming(text),
        ),
        (f"target {name!r} is not finite", per_row(np.isinf(number_values), False), naming(text)),
    ]


def _decoded(table: pa.Table) -> pa.Table:
    """The table with dictionary columns as plain columns of their values."""
    for i, typ in enumerate(table.schema.types):
        if pa.types.is_dictionary(typ):
            table = table.set_column(i, table.field(i).name, table.column(i).cast(typ.value_type))
    return table
