"""Stage 6, feature engineering: split, fitted transformer, feature sets, drift baseline.

Design of the transformer (`build_transformer`): one `ColumnTransformer` over the raw curated
feature columns, built only from standard scikit-learn parts so that skl2onnx converts it:

- numeric: `SimpleImputer(median, add_indicator=True)` + `StandardScaler`
- categorical: `SimpleImputer(constant "__missing__")` + `OneHotEncoder` (infrequent bucket)
- datetime: `DateParts` + `SimpleImputer(median)` + `StandardScaler`

`DateParts` is the one custom step: a tiny, stateless expansion of each date column into
year / month / day / dayofweek / days since epoch. It lives inside the transformer so that the
fitted artifact takes the raw curated columns, and it is a separate pipeline step so that an
ONNX export can swap in its own converter (ONNX has no datetime type) without touching the rest.

Input contract of the transformer (`model_input` enforces it): numeric columns float64 with
NaN, holding float32 values (the serving graph's inputs are float32, so training sees what
serving can send), categorical columns str values in an object column with NaN for missing
(None and pd.NA are not seen as missing by `SimpleImputer`), datetime columns datetime64
(naive UTC) with NaT. `mlcycle.domain.export` turns the fitted transformer and a model into
one ONNX graph that reproduces them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlcycle.errors import GateError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType

MISSING_CATEGORY = "__missing__"
OTHER_CATEGORY = "__other__"
MIN_SPLIT_ROWS = 5  # smallest train or holdout side we accept
MAX_CATEGORIES = 40  # one-hot width bound per column (includes the infrequent bucket)
MIN_CATEGORY_FREQUENCY = 0.01  # rarer categories share the infrequent bucket
BASELINE_TOP_CATEGORIES = 50
# an integer feature with at most this many distinct values whose deciles tie is binned by
# value (`value_distribution`)
MAX_BINNED_VALUES = 30
DATE_PARTS = ("year", "month", "day", "dayofweek", "days_since_epoch")
PSI_EPSILON = 1e-4
_EPOCH = pd.Timestamp("1970-01-01")
_DAY = pd.Timedelta(days=1)


@dataclass
class FeatureSet:
    """Everything stage 6 produces; `train`/`holdout` hold the raw columns (after
    `model_input`) plus the target, `X_*` the transformed float features."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    transformer: ColumnTransformer
    X_train: pd.DataFrame
    X_holdout: pd.DataFrame
    y_train: pd.Series
    y_holdout: pd.Series
    baseline: dict[str, Any]
    extra: dict[str, float] | None = None  # the extra training rows: kept, dropped and why


# --- input contract ----------------------------------------------------------------------


def model_input(df: pd.DataFrame, schema: ResolvedSchema) -> pd.DataFrame:
    """A copy of `df` with each feature column in the dtype the transformer expects.

    Idempotent; other columns (the target) are left alone. Use it before any sklearn
    transform or predict on data that did not come out of `engineer`.
    """
    missing = [c for c in schema.features if c not in df.columns]
    if missing:
        raise GateError(f"the data lacks the feature columns {missing}")
    out = df.copy()
    for col, kind in schema.features.items():
        s = out[col]
        if kind is ColumnType.NUMERIC:
            # float32-representable: the endpoint sends float32 (the ONNX input contract),
            # so training sees exactly the values serving can see
            values = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            out[col] = values.astype("float32").astype("float64")
        elif kind is ColumnType.CATEGORICAL:
            values = s.astype(object)
            present = s.notna().to_numpy()
            out[col] = pd.Series(
                np.where(present, values.map(str).to_numpy(), np.nan), index=s.index, dtype=object
            )
        else:
            out[col] = _as_naive_datetime(s)
    return out


def _as_naive_datetime(s: pd.Series) -> pd.Series:
    dt = pd.to_datetime(s, errors="coerce")
    if isinstance(dt.dtype, pd.DatetimeTZDtype):
        dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
    return dt


# --- split -------------------------------------------------------------------------------


def split(
    df: pd.DataFrame, schema: ResolvedSchema, *, holdout_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/holdout split; stratified per class for classification.

    Each class gets round(n_c * fraction) holdout rows, clamped so that every class is on
    both sides; a class with a single row cannot be, so it is a `GateError`.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise GateError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    y = df[schema.target]
    if y.isna().any():
        raise GateError(f"the target {schema.target!r} has {int(y.isna().sum())} missing values")
    rng = np.random.default_rng(seed)
    positions = np.arange(len(df))
    if schema.is_classification:
        labels = y.astype(str).to_numpy()
        classes = schema.classes or sorted(set(labels))
        absent = [c for c in classes if c not in set(labels)]
        if absent:
            raise GateError(f"the train set lacks the classes {absent}: no rows have them")
        counts = {c: int((labels == c).sum()) for c in classes}
        single = [c for c, n in counts.items() if n < 2]
        if single:
            raise GateError(
                f"the classes {single} have a single row; each class needs at least 2 rows "
                "to appear in both the train and the holdout set"
            )
        holdout_parts = []
        for c in classes:
            rows = rng.permutation(positions[labels == c])
            n_holdout = min(max(round(len(rows) * holdout_fraction), 1), len(rows) - 1)
            holdout_parts.append(rows[:n_holdout])
        holdout_pos = np.sort(np.concatenate(holdout_parts))
    else:
        n_holdout = math.ceil(len(df) * holdout_fraction)
        holdout_pos = np.sort(rng.permutation(positions)[:n_holdout])
    is_holdout = np.zeros(len(df), dtype=bool)
    is_holdout[holdout_pos] = True
    train, holdout = df.iloc[~is_holdout], df.iloc[is_holdout]
    for name, part in (("holdout", holdout), ("train", train)):
        if len(part) < MIN_SPLIT_ROWS:
            raise GateError(
                f"the {name} set would have {len(part)} rows (of {len(df)}, holdout_fraction "
                f"{holdout_fraction}); at least {MIN_SPLIT_ROWS} are needed"
            )
    return train, holdout


# --- dates -------------------------------------------------------------------------------


def expand_dates(df: pd.DataFrame, schema: ResolvedSchema) -> pd.DataFrame:
    """`df` with each DATETIME feature replaced by its numeric parts (for exploration and
    tests; the fitted transformer does the same through `DateParts`)."""
    cols = schema.columns_of(ColumnType.DATETIME)
    if not cols:
        return df.copy()
    parts = DateParts().fit(df[cols]).transform(df[cols])
    return pd.concat([df.drop(columns=cols), parts], axis=1)


class DateParts(TransformerMixin, BaseEstimator):
    """Stateless: each datetime column -> `<col>__year/__month/__day/__dayofweek/
    __days_since_epoch` as float, NaN where the date is missing. Dates are first rounded to
    float32 days since epoch (about 3 minutes of resolution today), the serving input."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> DateParts:
        frame = pd.DataFrame(X)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(X)
        frame.columns = list(self.feature_names_in_)
        out = {}
        for col in self.feature_names_in_:
            # Days since epoch rounded to float32 (the ONNX input contract), and the calendar
            # parts of that value's whole day, so the ONNX graph reproduces both exactly.
            days = numeric_values(_as_naive_datetime(frame[col]))
            days = days.astype("float32").astype("float64")
            dt = pd.Series(_EPOCH + pd.to_timedelta(np.floor(days), unit="D"), index=frame.index)
            out[f"{col}__year"] = dt.dt.year
            out[f"{col}__month"] = dt.dt.month
            out[f"{col}__day"] = dt.dt.day
            out[f"{col}__dayofweek"] = dt.dt.day_of_week
            out[f"{col}__days_since_epoch"] = pd.Series(days, index=frame.index)
        return pd.DataFrame(out, index=frame.index).astype("float64")

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(
            [f"{col}__{part}" for col in self.feature_names_in_ for part in DATE_PARTS],
            dtype=object,
        )


# --- transformer -------------------------------------------------------------------------


def build_transformer(schema: ResolvedSchema) -> ColumnTransformer:
    """The unfitted feature transformer (see the module docstring); outputs a float
    DataFrame named by position and readable name, such as `0:age`,
    `3:missingindicator_age`, `4:color_red`, `6:color_infrequent_sklearn`, `8:signup__month`."""
    branches: list[tuple[str, Any, list[str]]] = []
    numeric = schema.columns_of(ColumnType.NUMERIC)
    categorical = schema.columns_of(ColumnType.CATEGORICAL)
    dates = schema.columns_of(ColumnType.DATETIME)
    if numeric:
        branches.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        branches.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
                        ),
                        (
                            "encode",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                min_frequency=MIN_CATEGORY_FREQUENCY,
                                max_categories=MAX_CATEGORIES,
                                sparse_output=False,
                                dtype=np.float64,
                            ),
                        ),
                    ]
                ),
                categorical,
            )
        )
    if dates:
        branches.append(
            (
                "datetime",
                Pipeline(
                    [
                        ("expand", DateParts()),
                        ("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler()),
                    ]
                ),
                dates,
            )
        )
    if not branches:
        raise GateError("the schema has no feature columns to engineer")
    transformer = FeatureTransformer(
        branches, remainder="drop", verbose_feature_names_out=_readable_name
    )
    transformer.set_output(transform="pandas")
    for _, branch, _ in branches:
        # Inside a branch the readable names can repeat (numeric `x` adds
        # `missingindicator_x` next to a column of that name): arrays, named once outside.
        branch.set_output(transform="default")
    return transformer


def _readable_name(transformer_name: str, feature_name: str) -> str:
    return feature_name  # no branch prefix; the position makes the name unique


class FeatureTransformer(ColumnTransformer):
    """A `ColumnTransformer` whose output names are `<position>:<readable name>`.

    scikit-learn's readable names collide for legitimately different columns (a
    categorical `plan` with value `basic` next to a numeric `plan_basic`, a numeric
    `missingindicator_x` next to `x`, a feature named like the target's column in the
    feature matrices, `__target__`), and a collision silently overwrites a matrix column.
    The leading position makes every name unique, and unlike `__target__`."""

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = super().get_feature_names_out(input_features)
        return np.asarray([f"{i}:{name}" for i, name in enumerate(names)], dtype=object)


def engineer(
    df: pd.DataFrame,
    schema: ResolvedSchema,
    *,
    holdout_fraction: float,
    seed: int,
    extra_train: pd.DataFrame | None = None,
    max_extra_share: float = 1.0,
) -> FeatureSet:
    """Split, fit the transformer on train only, transform both sides, build the baseline.

    `extra_train` (a retraining run's labeled traffic, oldest first) joins the training rows
    only, after the split, so the holdout is the split of `df` alone; its rows that repeat a
    row of `df` are dropped (one in the holdout would leak it), and the most recent are kept
    so that they are at most `max_extra_share` of the training rows."""
    data = model_input(df, schema)
    train, holdout = split(data, schema, holdout_fraction=holdout_fraction, seed=seed)
    extra = None
    if extra_train is not None:
        train, extra = _with_extra(
            train, data, model_input(extra_train, schema), schema, max_extra_share
        )
    features = list(schema.features)
    transformer = build_transformer(schema).fit(train[features])
    return FeatureSet(
        train=train,
        holdout=holdout,
        transformer=transformer,
        X_train=_transform(transformer, train[features]),
        X_holdout=_transform(transformer, holdout[features]),
        y_train=_target(train, schema),
        y_holdout=_target(holdout, schema),
        baseline=drift_baseline(train, schema),
        extra=extra,
    )


def _with_extra(
    train: pd.DataFrame,
    data: pd.DataFrame,
    extra: pd.DataFrame,
    schema: ResolvedSchema,
    max_share: float,
) -> tuple[pd.DataFrame, dict[str, float]]:
    columns = [*schema.features, schema.target]
    seen = pd.util.hash_pandas_object(data[columns].astype(str), index=False)
    hashes = pd.util.hash_pandas_object(extra[columns].astype(str), index=False)
    repeats = hashes.isin(set(seen)) | hashes.duplicated(keep="last")
    fresh = extra[~repeats.to_numpy()]
    allowed = len(fresh) if max_share >= 1 else int(max_share / (1 - max_share) * len(train))
    kept = fresh.iloc[max(0, len(fresh) - allowed) :]
    combined = pd.concat([train, kept[columns]], ignore_index=True)
    return combined, {
        "rows": len(kept),
        "repeats_dropped": int(repeats.sum()),
        "dropped_by_share": len(fresh) - len(kept),
        "share_of_training": round(len(kept) / len(combined), 4) if len(combined) else 0.0,
    }


def _transform(transformer: ColumnTransformer, X: pd.DataFrame) -> pd.DataFrame:
    out = transformer.transform(X)
    return pd.DataFrame(out, index=X.index).astype("float64")


def _target(df: pd.DataFrame, schema: ResolvedSchema) -> pd.Series:
    y = df[schema.target]
    if schema.is_classification:
        return y.astype(str).astype(object)
    return y.astype("float64")


# --- drift baseline ----------------------------------------------------------------------


def drift_baseline(train: pd.DataFrame, schema: ResolvedSchema) -> dict[str, Any]:
    """The training distribution the monitor compares live data with (JSON-safe, no NaN).

    NUMERIC/DATETIME (dates as days since epoch): `edges` are the unique interior decile cut
    points; bins are (-inf, e0), [e0, e1), ..., [e_last, +inf), so `fractions` has
    len(edges) + 1 entries over the non-missing rows (see `bin_fractions`).
    NUMERIC with few integer values whose deciles tie (`value_distribution`): also `values`,
    the distinct training values ascending, and `value_fractions`, each one's share of the
    non-missing rows; the monitor then bins it by value (a baseline without them, as older
    ones, is binned by deciles).
    CATEGORICAL: `frequencies` of the top categories and the `__other__` share over the
    non-missing rows (see `category_fractions`). Every feature has its `missing_rate`.
    """
    data = model_input(train, schema)
    out: dict[str, Any] = {
        "row_count": len(data),
        "features": {name: kind.value for name, kind in schema.features.items()},
        "columns": {},
    }
    for col, kind in schema.features.items():
        s = data[col]
        entry: dict[str, Any] = {"type": kind.value, "missing_rate": _rate(s.isna().mean())}
        if kind is ColumnType.CATEGORICAL:
            counts = s.dropna().value_counts()
            top = counts.head(BASELINE_TOP_CATEGORIES)
            total = int(counts.sum())
            entry["frequencies"] = {str(k): int(v) / total for k, v in top.items()} if total else {}
            entry[OTHER_CATEGORY] = (total - int(top.sum())) / total if total else 0.0
        else:
            values = numeric_values(s)
            finite = values[~np.isnan(values)]
            edges = _decile_edges(finite)
            entry["edges"] = edges
            entry["fractions"] = bin_fractions(finite, edges)
            entry["min"] = _num(finite.min()) if finite.size else None
            entry["max"] = _num(finite.max()) if finite.size else None
            entry["mean"] = _num(finite.mean()) if finite.size else None
            entry["std"] = _num(finite.std(ddof=1)) if finite.size > 1 else None
            if kind is ColumnType.NUMERIC:
                entry.update(value_distribution(finite, edges))
        out["columns"][col] = entry
    return out


def numeric_values(s: pd.Series) -> np.ndarray:
    """The float values the baseline bins: numbers as is, datetimes as days since epoch."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return ((_as_naive_datetime(s) - _EPOCH) / _DAY).to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _decile_edges(values: np.ndarray) -> list[float]:
    if values.size == 0:
        return []
    cuts = np.quantile(values, np.linspace(0.1, 0.9, 9))
    return [float(v) for v in np.unique(cuts)]


def value_distribution(finite: np.ndarray, edges: list[float]) -> dict[str, list[float]]:
    """`values` and `value_fractions` of a feature whose finite values are at most
    `MAX_BINNED_VALUES` distinct integers and whose decile cut points tie (fewer than 9
    distinct): deciles lump its values together, so it is worth binning by value. Empty
    otherwise: with 9 distinct cut points the deciles already separate the values about as
    finely (an hour of the day), and value bins would only add noise."""
    if finite.size == 0 or len(edges) >= 9:
        return {}
    values, counts = np.unique(finite, return_counts=True)
    if values.size > MAX_BINNED_VALUES or not np.all(
        np.isfinite(values) & (values == np.round(values))
    ):
        return {}
    return {
        "values": [float(v) for v in values],
        "value_fractions": [int(c) / finite.size for c in counts],
    }


def bin_fractions(values: Any, edges: list[float]) -> list[float]:
    """Share of the non-missing `values` per bin of `edges` (open-ended outer bins, each bin
    closed on its left edge); all zeros when there is no value."""
    arr = np.asarray(values, dtype="float64")
    arr = arr[~np.isnan(arr)]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype="float64"), arr, side="right"),
        minlength=len(edges) + 1,
    )
    return [float(c) / arr.size if arr.size else 0.0 for c in counts]


def category_fractions(values: Any, categories: list[str]) -> list[float]:
    """Share of the non-missing `values` per category in `categories`, then `__other__`."""
    s = pd.Series(values, dtype=object).dropna().map(str)
    if s.empty:
        return [0.0] * (len(categories) + 1)
    counts = s.value_counts()
    shares = [float(counts.get(c, 0)) / len(s) for c in categories]
    return [*shares, max(0.0, 1.0 - sum(shares))]


def psi(expected_fractions: Any, actual_fractions: Any, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index; empty bins are floored at `epsilon` so it stays finite."""
    e = np.clip(np.asarray(expected_fractions, dtype="float64"), epsilon, None)
    a = np.clip(np.asarray(actual_fractions, dtype="float64"), epsilon, None)
    if e.shape != a.shape:
        raise ValueError(f"psi needs the same bins, got {e.shape} and {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def _rate(x: float) -> float:
    return 0.0 if math.isnan(x) else float(x)


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
