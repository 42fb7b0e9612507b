"""Stage 3, data processing: resolve the spec against the data, then clean the rows.

Curated column dtypes, which every later stage can rely on:
numeric features float64 (NaN for missing), categorical features pandas "str" (NaN for
missing), datetime features naive UTC datetime64[us] (NaT for missing); the target is "str"
labels for classification and float64 for regression.
"""

from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass, field
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
MIN_ROWS = 10
REJECT_REASON = "_reject_reason"
DATETIME_DTYPE: Final = "datetime64[us]"
TEXT_DTYPE: Final = "str"


@dataclass
class CleanResult:
    """The curated rows, the rejected ones (with `_reject_reason`) and what was done."""

    curated: pd.DataFrame
    rejected: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    rows_in: int = 0
    duplicates_dropped: int = 0
    coerced: dict[str, int] = field(default_factory=dict)  # column -> values that became null


def infer_column_types(df: pd.DataFrame) -> dict[str, ColumnType]:
    """The type of every column, from its dtype or, for text, from what its values parse as."""
    return {str(name): _infer_type(df[name]) for name in df.columns}


def resolve_schema(df: pd.DataFrame, spec: ProblemSpec) -> ResolvedSchema:
    """Make the spec concrete against the data: task, classes, features and their types."""
    columns = [str(c) for c in df.columns]
    if spec.target not in columns:
        raise BadInputError(_not_found("the target column", [spec.target], columns))
    unknown = [c for c in spec.column_types if c not in columns]
    if unknown:
        raise BadInputError(_not_found("column_types: the column(s)", unknown, columns))

    task, classes = _resolve_task(df[spec.target], spec)
    positive_class = None
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
    elif task is Task.BINARY:
        assert classes is not None
        positive_class = classes[1]

    excluded: dict[str, str] = {}
    if spec.features is not None:
        missing = [c for c in spec.features if c not in columns]
        if missing:
            raise BadInputError(_not_found("features: the column(s)", missing, columns))
        empty = [c for c in spec.features if df[c].notna().sum() == 0]
        if empty:
            raise BadInputError(f"feature(s) with no values at all: {', '.join(empty)}")
        features = {c: spec.column_types.get(c) or _infer_type(df[c]) for c in spec.features}
    else:
        features = {}
        for name in columns:
            if name == spec.target:
                continue
            typ = spec.column_types.get(name) or _infer_type(df[name])
            reason = _exclusion(name, df[name], typ)
            if reason:
                excluded[name] = reason
            else:
                features[name] = typ
        if not features:
            why = "; ".join(f"{c}: {r}" for c, r in excluded.items()) or "no other columns"
            raise BadInputError(f"no usable feature columns besides the target ({why})")

    return ResolvedSchema(
        dataset=spec.dataset,
        task=task,
        target=spec.target,
        features=features,
        excluded=excluded,
        classes=classes,
        positive_class=positive_class,
    )


def clean(df: pd.DataFrame, schema: ResolvedSchema) -> CleanResult:
    """Coerce features to their types, normalize the target, drop duplicates, quarantine.

    Duplicates are rows identical in every column of the upload (a double load), so two
    customers who differ only by an excluded id are both kept.
    """
    needed = [*schema.features, schema.target]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise BadInputError(
            _not_found("the schema's column(s)", missing, [str(c) for c in df.columns])
        )
    rows_in = len(df)
    duplicated = df.duplicated()
    duplicates = int(duplicated.sum())
    if duplicates:
        df = df[~duplicated]

    coerced: dict[str, int] = {}
    curated: dict[str, pd.Series] = {}
    for name, typ in schema.features.items():
        curated[name], failed = _coerce(df[name], typ)
        if failed:
            coerced[name] = failed
    target, reasons, reason_counts = _clean_target(df[schema.target], schema)
    curated[schema.target] = target

    bad = reasons.notna().to_numpy()
    good = pd.DataFrame(curated, index=df.index)[~bad].reset_index(drop=True)
    rejected = df[bad].copy()
    rejected[REJECT_REASON] = reasons[bad].astype(TEXT_DTYPE)
    rejected = rejected.reset_index(drop=True)

    notes = []
    if duplicates:
        notes.append(f"dropped {duplicates} exact duplicate row(s)")
    if reason_counts:
        parts = ", ".join(f"{why} ({n})" for why, n in reason_counts.items())
        notes.append(f"moved {int(bad.sum())} row(s) to quarantine: {parts}")
    for name, failed in coerced.items():
        kind = "numbers" if schema.features[name] is ColumnType.NUMERIC else "dates"
        notes.append(f"{name!r}: {failed} value(s) could not be read as {kind} and became empty")

    if good.empty:
        parts = ", ".join(f"{why} ({n})" for why, n in reason_counts.items())
        after = f" (after dropping {duplicates} duplicates)" if duplicates else ""
        raise BadInputError(f"no usable rows: all {len(df)} rows{after} were rejected: {parts}")
    if len(good) < MIN_ROWS:
        raise BadInputError(
            f"only {len(good)} usable rows; at least {MIN_ROWS} are needed to train and evaluate"
        )
    return CleanResult(good, rejected, notes, rows_in, duplicates, coerced)


# --- types -------------------------------------------------------------------------------


def _infer_type(s: pd.Series) -> ColumnType:
    if ptypes.is_bool_dtype(s.dtype):
        return ColumnType.CATEGORICAL
    if ptypes.is_numeric_dtype(s.dtype):
        return ColumnType.NUMERIC
    if ptypes.is_datetime64_any_dtype(s.dtype):
        return ColumnType.DATETIME
    values = _sample(s.dropna())
    if values.empty:
        return ColumnType.CATEGORICAL
    kind = ptypes.infer_dtype(values, skipna=True)
    if kind == "boolean":
        return ColumnType.CATEGORICAL
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        return ColumnType.NUMERIC
    if kind in ("date", "datetime", "datetime64"):
        return ColumnType.DATETIME
    text = values.astype(TEXT_DTYPE).str.strip()
    if _share(pd.to_numeric(text, errors="coerce").notna()) >= PARSE_SHARE:
        return ColumnType.NUMERIC
    # a cheap look at a few values first: most text columns are plainly not dates
    if _share(_parse_dates(text.iloc[:200]).notna()) < 0.5:
        return ColumnType.CATEGORICAL
    if _share(_parse_dates(text).notna()) >= PARSE_SHARE:
        return ColumnType.DATETIME
    return ColumnType.CATEGORICAL


def _sample(s: pd.Series) -> pd.Series:
    return s.sample(INFER_SAMPLE, random_state=0) if len(s) > INFER_SAMPLE else s


def _share(mask: pd.Series) -> float:
    return float(mask.mean()) if len(mask) else 0.0


def _parse_dates(text: pd.Series) -> pd.Series:
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
        fmt = _best_format(strings.iloc[:1000])
        if fmt is not None:
            parsed[strings.index] = pd.to_datetime(strings, errors="coerce", format=fmt, utc=True)
        todo = strings[parsed[strings.index].isna().to_numpy()]
        if len(todo):
            parsed[todo.index] = pd.to_datetime(todo, errors="coerce", format="mixed", utc=True)
    naive = parsed.dt.tz_localize(None).to_numpy()
    taken = naive[codes]
    taken[codes < 0] = np.datetime64("NaT")
    return pd.Series(taken, index=text.index, dtype=DATETIME_DTYPE)


def _best_format(head: pd.Series) -> str | None:
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


def _exclusion(name: str, s: pd.Series, typ: ColumnType) -> str | None:
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
    if _looks_like_id(name, s, typ, distinct, share):
        return f"id-like: {_percent(share)} distinct values"
    if typ is ColumnType.CATEGORICAL and distinct > TEXT_MIN_DISTINCT and share > TEXT_SHARE:
        return f"free text: {distinct} distinct values ({_percent(share)} of rows)"
    return None


def _looks_like_id(name: str, s: pd.Series, typ: ColumnType, distinct: int, share: float) -> bool:
    if share >= NAMED_ID_SHARE and _id_name(name):
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


def _id_name(name: str) -> bool:
    lower = name.lower().strip()
    if lower in ("id", "uuid", "guid", "key") or lower.endswith(("_id", " id", "-id", "uuid")):
        return True
    return len(name) > 2 and name.endswith(("Id", "ID")) and name[-3].islower()


def _percent(share: float) -> str:
    return f"{math.floor(share * 100)}%"


# --- target --------------------------------------------------------------------------------


def _resolve_task(target: pd.Series, spec: ProblemSpec) -> tuple[Task, list[str] | None]:
    name = spec.target
    values = target.dropna()
    if values.empty:
        raise BadInputError(f"the target {name!r} has no values")
    numbers = _numeric_values(values)
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

    classes = sorted(_as_labels(values).dropna().unique().tolist())
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
    return task, classes


def _numeric_values(values: pd.Series) -> pd.Series | None:
    """The non-null values as float64 when they are numbers (or mostly numeric text)."""
    if ptypes.is_bool_dtype(values.dtype):
        return None
    if ptypes.is_numeric_dtype(values.dtype):
        return pd.Series(values.to_numpy(dtype="float64"), index=values.index)
    if _infer_type(values) is not ColumnType.NUMERIC:
        return None
    numbers = pd.to_numeric(values.astype(TEXT_DTYPE).str.strip(), errors="coerce")
    return numbers.dropna().astype("float64")


def _clean_target(
    raw: pd.Series, schema: ResolvedSchema
) -> tuple[pd.Series, pd.Series, dict[str, int]]:
    """The target values, a reject reason per row (NaN when usable) and counts per reason."""
    name = schema.target
    reasons = np.full(len(raw), None, dtype=object)
    counts: dict[str, int] = {}

    def reject(mask: pd.Series, why: str, values: pd.Series | None = None) -> None:
        n = int(mask.sum())
        if not n:
            return
        counts[why] = n
        rows = mask.to_numpy(dtype=bool)
        if values is None:
            reasons[rows] = why
        else:
            reasons[rows] = (why + ": '" + values[mask].astype(TEXT_DTYPE) + "'").to_numpy()

    if schema.is_classification:
        labels = _as_labels(raw)
        missing = labels.isna()
        reject(missing, f"target {name!r} is missing")
        unknown = ~missing & ~labels.isin(schema.classes or [])
        reject(unknown, f"target {name!r} has a class the schema does not know", labels)
        return labels, pd.Series(reasons, index=raw.index), counts

    numbers, text = _to_numbers(raw)
    shown = raw.astype(TEXT_DTYPE) if text is None else text
    missing = raw.isna() | (shown == "").fillna(False)
    reject(missing, f"target {name!r} is missing")
    not_number = ~missing & numbers.isna()
    reject(not_number, f"target {name!r} is not a number", shown)
    infinite = numbers.notna() & ~np.isfinite(numbers)
    reject(infinite, f"target {name!r} is not finite", shown)
    return numbers.where(np.isfinite(numbers)), pd.Series(reasons, index=raw.index), counts


# --- coercion ------------------------------------------------------------------------------


def _coerce(s: pd.Series, typ: ColumnType) -> tuple[pd.Series, int]:
    """The column as its type's dtype, and how many values failed and became null."""
    if typ is ColumnType.CATEGORICAL:
        return _as_labels(s), 0
    if typ is ColumnType.NUMERIC:
        numbers, _ = _to_numbers(s)
        numbers = numbers.where(np.isfinite(numbers))
    else:
        numbers = _to_datetimes(s)
    failed = int((s.notna() & numbers.isna()).sum())
    return numbers, failed


def _to_numbers(s: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """float64 values (NaN when missing or not a number) and the stripped text, if text."""
    if ptypes.is_bool_dtype(s.dtype) or ptypes.is_numeric_dtype(s.dtype):
        return pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index), None
    text = s.astype(TEXT_DTYPE).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    return pd.Series(numbers.to_numpy(dtype="float64", na_value=np.nan), index=s.index), text


def _to_datetimes(s: pd.Series) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(s.dtype):
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return s.astype(DATETIME_DTYPE)
    if ptypes.infer_dtype(s, skipna=True) in ("date", "datetime"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(s, errors="coerce", utc=True)
        return parsed.dt.tz_localize(None).astype(DATETIME_DTYPE)
    return _parse_dates(s.astype(TEXT_DTYPE).str.strip())


def _as_labels(s: pd.Series) -> pd.Series:
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


def _not_found(what: str, names: list[str], columns: list[str]) -> str:
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, columns, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
    verb = "is" if len(names) == 1 else "are"
    return f"{what} {', '.join(parts)} {verb} not in the data; the columns are: {shown}"
