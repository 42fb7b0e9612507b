"""The rules of processing, written once over pandas Series: what type a column's values
are, which columns are no features (ids, free text, constants), what task a target implies,
and how values are coerced and targets cleaned. `mlcycle.domain.process` applies them to an
Arrow table cheaply (to a column's distinct values or a row sample) and answers from Arrow
directly only where the answer cannot differ."""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable
from typing import Final

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.api import guess_datetime_format

from mlcycle.errors import BadInputError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, ProblemSpec, Task

PARSE_SHARE = 0.9  # share of values that must parse for a text column to be numbers/dates
INFER_SAMPLE = 10_000
MAX_INTEGER_CLASSES = 20
ID_SHARE = 0.95
NAMED_ID_SHARE = 0.5
TEXT_MIN_DISTINCT = 100
TEXT_SHARE = 0.5
DATETIME_DTYPE: Final = "datetime64[us]"
TEXT_DTYPE: Final = "str"

# (label, rows it applies to or None for all, how to describe each row)
Reason = tuple[str, np.ndarray | None, Callable[[np.ndarray], list[str]] | None]


# --- the rules --------------------------------------------------------------


def infer_type(s: pd.Series) -> ColumnType:
    if ptypes.is_bool_dtype(s.dtype):
        return ColumnType.CATEGORICAL
    if ptypes.is_numeric_dtype(s.dtype):
        return ColumnType.NUMERIC
    if ptypes.is_datetime64_any_dtype(s.dtype):
        return ColumnType.DATETIME
    values = sample(s.dropna())
    if values.empty:
        return ColumnType.CATEGORICAL
    return infer_values(values)


def infer_values(values: pd.Series) -> ColumnType:
    """The type of a column from (a sample of) its non-null values."""
    kind = ptypes.infer_dtype(values, skipna=True)
    if kind == "boolean":
        return ColumnType.CATEGORICAL
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        return ColumnType.NUMERIC
    if kind in ("date", "datetime", "datetime64"):
        return ColumnType.DATETIME
    text = values.astype(TEXT_DTYPE).str.strip()
    if share(pd.to_numeric(text, errors="coerce").notna()) >= PARSE_SHARE:
        return ColumnType.NUMERIC
    # a cheap look at a few values first: most text columns are plainly not dates
    if share(parse_dates(text.iloc[:200]).notna()) < 0.5:
        return ColumnType.CATEGORICAL
    if share(parse_dates(text).notna()) >= PARSE_SHARE:
        return ColumnType.DATETIME
    return ColumnType.CATEGORICAL


def sample(s: pd.Series) -> pd.Series:
    return s.sample(INFER_SAMPLE, random_state=0) if len(s) > INFER_SAMPLE else s


def share(mask: pd.Series) -> float:
    return float(mask.mean()) if len(mask) else 0.0


def parse_dates(text: pd.Series) -> pd.Series:
    """Parse date strings to naive UTC datetime64[us]; unparseable values become NaT.

    Each distinct value is parsed once, vectorized with the one format that fits the most
    values (ISO 8601, or a guessed day-first or month-first format), then value by value
    for the few that format missed.
    """
    codes, uniques = pd.factorize(text)
    if not len(uniques):
        return pd.Series(pd.NaT, index=text.index, dtype=DATETIME_DTYPE)
    strings = pd.Series(uniques, dtype=TEXT_DTYPE)
    strings = strings[strings.str.contains(r"\d", regex=True).fillna(False).astype(bool)]
    parsed = pd.Series(pd.NaT, index=range(len(uniques)), dtype="datetime64[us, UTC]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmt = best_format(strings.iloc[:1000])
        if fmt is not None:
            parsed[strings.index] = pd.to_datetime(strings, errors="coerce", format=fmt, utc=True)
        todo = strings[parsed[strings.index].isna().to_numpy()]
        if len(todo):
            parsed[todo.index] = pd.to_datetime(todo, errors="coerce", format="mixed", utc=True)
    naive = parsed.dt.tz_localize(None).to_numpy()
    taken = naive[codes]
    taken[codes < 0] = np.datetime64("NaT")
    return pd.Series(taken, index=text.index, dtype=DATETIME_DTYPE)


def best_format(head: pd.Series) -> str | None:
    """The format, among ISO 8601 and those guessed from a few values, that parses most."""
    guessed = {
        guess_datetime_format(value, dayfirst=dayfirst)
        for value in head.iloc[:20]
        for dayfirst in (False, True)
    }
    best, best_count = None, 0
    for fmt in ["ISO8601", *sorted(f for f in guessed if f)]:
        count = int(pd.to_datetime(head, errors="coerce", format=fmt, utc=True).notna().sum())
        if count > best_count:
            best, best_count = fmt, count
    return best


def series_exclusion(name: str, s: pd.Series, typ: ColumnType) -> str | None:
    """Why a column should not be a feature, or None."""
    count = int(s.notna().sum())
    if count == 0:
        return "empty: no values"
    distinct = int(s.nunique(dropna=True))
    if distinct == 1:
        return f"constant: one distinct value ({str(s.dropna().iloc[0])!r})"
    if typ is ColumnType.DATETIME or ptypes.is_bool_dtype(s.dtype):
        return None
    share = distinct / count
    if series_looks_like_id(name, s, typ, distinct, share):
        return f"id-like: {percent(share)} distinct values"
    if typ is ColumnType.CATEGORICAL and distinct > TEXT_MIN_DISTINCT and share > TEXT_SHARE:
        return f"free text: {distinct} distinct values ({percent(share)} of rows)"
    return None


def series_looks_like_id(
    name: str, s: pd.Series, typ: ColumnType, distinct: int, share: float
) -> bool:
    if share >= NAMED_ID_SHARE and id_name(name):
        return True
    if share < ID_SHARE:
        return False
    if typ is ColumnType.CATEGORICAL:
        return True
    if not ptypes.is_numeric_dtype(s.dtype):
        return False
    values = s.dropna().to_numpy(dtype="float64")
    if not np.all(values == np.round(values)):
        return False
    # A unique integer is an id when it counts rows (a dense range), not when it measures
    # something (an income in dollars is unique too, but spread wide).
    return float(values.max() - values.min() + 1) <= 2 * distinct


def id_name(name: str) -> bool:
    lower = name.lower().strip()
    if lower in ("id", "uuid", "guid", "key") or lower.endswith(("_id", " id", "-id", "uuid")):
        return True
    return len(name) > 2 and name.endswith(("Id", "ID")) and name[-3].islower()


def percent(share: float) -> str:
    return f"{math.floor(share * 100)}%"


# --- target --------------------------------------------------------------------------------


def series_resolve_task(target: pd.Series, spec: ProblemSpec) -> tuple[Task, list[str] | None]:
    name = spec.target
    values = target.dropna()
    if values.empty:
        raise BadInputError(f"the target {name!r} has no values")
    numbers = numeric_values(values)
    task = spec.task
    if task is Task.AUTO and numbers is not None:
        integral = bool(np.all(numbers == np.round(numbers)))
        if not integral or numbers.nunique() > MAX_INTEGER_CLASSES:
            task = Task.REGRESSION
    if task is Task.REGRESSION:
        if numbers is None:
            examples = ", ".join(repr(v) for v in values.astype(str).unique()[:3])
            raise BadInputError(
                f"the target {name!r} is not numeric (e.g. {examples}); a regression target "
                "must be a number"
            )
        return task, None

    classes = sorted(as_labels(values).dropna().unique().tolist())
    return classes_task(name, task, classes), classes


def classes_task(name: str, task: Task, classes: list[str]) -> Task:
    """The classification task the classes make (or check the spec's against them)."""
    if len(classes) < 2:
        label = classes[0] if classes else ""
        raise BadInputError(f"the target {name!r} has a single class {label!r}: nothing to learn")
    if task is Task.AUTO:
        task = Task.BINARY if len(classes) == 2 else Task.MULTICLASS
    if task is Task.BINARY and len(classes) != 2:
        shown = ", ".join(map(repr, classes[:10])) + (", ..." if len(classes) > 10 else "")
        raise BadInputError(
            f"the task is binary but the target {name!r} has {len(classes)} classes: {shown}"
        )
    return task


def numeric_values(values: pd.Series) -> pd.Series | None:
    """The non-null values as float64 when they are numbers (or mostly numeric text)."""
    if ptypes.is_bool_dtype(values.dtype):
        return None
    if ptypes.is_numeric_dtype(values.dtype):
        return pd.Series(values.to_numpy(dtype="float64"), index=values.index)
    if infer_type(values) is not ColumnType.NUMERIC:
        return None
    numbers = pd.to_numeric(values.astype(TEXT_DTYPE).str.strip(), errors="coerce")
    return numbers.dropna().astype("float64")


def clean_target(raw: pd.Series, schema: ResolvedSchema) -> tuple[pd.Series, list[Reason]]:
    """The target values, and the rejections: (reason, rows, the values to name or None)."""
    name = schema.target

    def naming(values: pd.Series) -> Callable[[np.ndarray], list[str]]:
        return lambda mask: [str(t) for t in values[mask].astype(TEXT_DTYPE)]

    if schema.is_classification:
        labels = as_labels(raw)
        missing = labels.isna()
        unknown = ~missing & ~labels.isin(schema.classes or [])
        return labels, [
            (f"target {name!r} is missing", missing.to_numpy(dtype=bool), None),
            (
                f"target {name!r} has a class the schema does not know",
                unknown.to_numpy(dtype=bool),
                naming(labels),
            ),
        ]

    numbers, text = to_numbers(raw)
    shown = raw.astype(TEXT_DTYPE) if text is None else text
    missing = raw.isna() | (shown == "").fillna(False)
    not_number = ~missing & numbers.isna()
    infinite = numbers.notna() & ~np.isfinite(numbers)
    return numbers.where(np.isfinite(numbers)), [
        (f"target {name!r} is missing", missing.to_numpy(dtype=bool), None),
        (f"target {name!r} is not a number", not_number.to_numpy(dtype=bool), naming(shown)),
        (f"target {name!r} is not finite", infinite.to_numpy(dtype=bool), naming(shown)),
    ]


# --- coercion ------------------------------------------------------------------------------


def coerce(s: pd.Series, typ: ColumnType) -> tuple[pd.Series, int]:
    """The column as its type's dtype, and how many values failed and became null."""
    if typ is ColumnType.CATEGORICAL:
        return as_labels(s), 0
    if typ is ColumnType.NUMERIC:
        numbers, _ = to_numbers(s)
        numbers = numbers.where(np.isfinite(numbers))
    else:
        numbers = to_datetimes(s)
    failed = int((s.notna() & numbers.isna()).sum())
    return numbers, failed


def to_numbers(s: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """float64 values (NaN when missing or not a number) and the stripped text, if text."""
    if ptypes.is_bool_dtype(s.dtype) or ptypes.is_numeric_dtype(s.dtype):
        return pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index), None
    text = s.astype(TEXT_DTYPE).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    return pd.Series(numbers.to_numpy(dtype="float64", na_value=np.nan), index=s.index), text


def to_datetimes(s: pd.Series) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(s.dtype):
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return s.astype(DATETIME_DTYPE)
    if ptypes.infer_dtype(s, skipna=True) in ("date", "datetime"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(s, errors="coerce", utc=True)
        return parsed.dt.tz_localize(None).astype(DATETIME_DTYPE)
    return parse_dates(s.astype(TEXT_DTYPE).str.strip())


def as_labels(s: pd.Series) -> pd.Series:
    """Values as label strings: 1.0 -> "1", True -> "true", " yes " -> "yes"; nulls stay null."""
    if ptypes.is_bool_dtype(s.dtype) or ptypes.infer_dtype(s, skipna=True) == "boolean":
        return s.map({True: "true", False: "false"}).astype(TEXT_DTYPE)
    if ptypes.is_numeric_dtype(s.dtype):
        numbers = s.to_numpy(dtype="float64", na_value=np.nan)
        integral = np.isfinite(numbers) & (numbers == np.round(numbers))
        integral &= np.abs(numbers) < 2**53
        labels = pd.Series(numbers.astype(str), index=s.index, dtype=object)
        labels[integral] = numbers[integral].astype(np.int64).astype(str)
        labels[np.isnan(numbers)] = None
        return labels.astype(TEXT_DTYPE)
    text = s.astype(TEXT_DTYPE).str.strip()
    return text.mask(text == "")


def not_found(what: str, names: list[str], columns: list[str]) -> str:
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, columns, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
    verb = "is" if len(names) == 1 else "are"
    return f"{what} {', '.join(parts)} {verb} not in the data; the columns are: {shown}"
