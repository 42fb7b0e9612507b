"""Stage 3: schema resolution (task, classes, features) and cleaning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.domain.column_rules import INFER_SAMPLE
from mlcycle.domain.process import (
    REJECT_REASON,
    _sample_positions,
    clean,
    curate,
    infer_column_types,
    parquet_bytes,
    resolve_schema,
)
from mlcycle.domain.tables import read_table
from mlcycle.errors import BadInputError
from mlcycle.samples import customer_churn
from mlcycle.spec import ColumnType, ProblemSpec, Task

N = 60


def spec(target: str = "label", **fields: object) -> ProblemSpec:
    return ProblemSpec.model_validate({"dataset": "test", "target": target, **fields})


def frame(n: int = N, **columns: object) -> pd.DataFrame:
    """A small table of distinct rows: numbers, a categorical and a yes/no label, and more."""
    rng = np.random.default_rng(0)
    base: dict[str, object] = {
        "age": rng.integers(18, 80, n),
        "score": rng.normal(size=n),
        "color": rng.choice(["red", "green", "blue"], n),
        "label": np.where(np.arange(n) % 3 == 0, "yes", "no"),
    }
    return pd.DataFrame({**base, **columns})


# --- inference -----------------------------------------------------------------------------


def test_infer_column_types() -> None:
    df = pd.DataFrame(
        {
            "int": [1, 2, 3, 4],
            "float": [1.5, np.nan, 2.0, 3.0],
            "flag": [True, False, True, True],
            "text": ["a", "b", None, "c"],
            "numbers_as_text": ["1", "2.5", "unknown", "4"],
            "us_dates": ["03/15/2021", "12/01/2020", "01/31/2022", None],
            "stamps": pd.to_datetime(pd.Series(["2021-01-01", "2021-01-02", None, "2021-01-04"])),
            "codes": ["A1", "B2", "C3", "D4"],
        }
    )
    types = infer_column_types(df)
    assert types == {
        "int": ColumnType.NUMERIC,
        "float": ColumnType.NUMERIC,
        "flag": ColumnType.CATEGORICAL,
        "text": ColumnType.CATEGORICAL,
        "numbers_as_text": ColumnType.CATEGORICAL,  # 75% numbers: below the 90% bar
        "us_dates": ColumnType.DATETIME,
        "stamps": ColumnType.DATETIME,
        "codes": ColumnType.CATEGORICAL,
    }


def test_mostly_numeric_text_is_numeric() -> None:
    values = [str(i * 1.5) for i in range(19)] + ["unknown"]
    assert infer_column_types(pd.DataFrame({"x": values})) == {"x": ColumnType.NUMERIC}


# --- the target and the task ---------------------------------------------------------------


def test_missing_target_names_it_and_suggests() -> None:
    with pytest.raises(BadInputError) as caught:
        resolve_schema(frame(), spec(target="labels"))
    message = str(caught.value)
    assert "the target column 'labels' (did you mean 'label'?) is not in the data" in message
    assert "the columns are: age, score, color, label" in message


def test_single_class_target() -> None:
    df = frame(label=["yes"] * N)
    with pytest.raises(BadInputError, match=r"the target 'label' has a single class 'yes': "):
        resolve_schema(df, spec())


def test_target_without_values() -> None:
    with pytest.raises(BadInputError, match="the target 'label' has no values"):
        resolve_schema(frame(label=[None] * N), spec())


def test_binary_from_strings() -> None:
    schema = resolve_schema(frame(), spec())
    assert schema.task is Task.BINARY
    assert schema.classes == ["no", "yes"]
    assert schema.positive_class == "yes"
    assert schema.features == {
        "age": ColumnType.NUMERIC,
        "score": ColumnType.NUMERIC,
        "color": ColumnType.CATEGORICAL,
    }


def test_binary_from_numbers_labels_are_normalized() -> None:
    schema = resolve_schema(frame(label=np.arange(N) % 2 * 1.0), spec())
    assert (schema.task, schema.classes, schema.positive_class) == (Task.BINARY, ["0", "1"], "1")


def test_binary_from_bools() -> None:
    schema = resolve_schema(frame(label=np.arange(N) % 2 == 0), spec())
    assert (schema.task, schema.classes, schema.positive_class) == (
        Task.BINARY,
        ["false", "true"],
        "true",
    )


def test_multiclass_from_small_integers_and_strings() -> None:
    schema = resolve_schema(frame(label=np.arange(N) % 5 + 1), spec())
    assert (schema.task, schema.classes) == (Task.MULTICLASS, ["1", "2", "3", "4", "5"])
    assert schema.positive_class is None
    schema = resolve_schema(frame(label=np.array(["a", "b", "c"] * (N // 3))), spec())
    assert (schema.task, schema.classes) == (Task.MULTICLASS, ["a", "b", "c"])


def test_regression_from_continuous_or_many_integers() -> None:
    schema = resolve_schema(frame(label=np.linspace(0, 1, N)), spec())
    assert (schema.task, schema.classes, schema.positive_class) == (Task.REGRESSION, None, None)
    assert resolve_schema(frame(label=np.arange(N)), spec()).task is Task.REGRESSION


def test_explicit_task_wins_over_inference() -> None:
    schema = resolve_schema(frame(label=np.arange(N) % 3), spec(task="regression"))
    assert schema.task is Task.REGRESSION
    schema = resolve_schema(frame(label=np.arange(N) % 2), spec(task="multiclass"))
    assert (schema.task, schema.classes) == (Task.MULTICLASS, ["0", "1"])


def test_binary_task_with_three_classes() -> None:
    df = frame(label=np.array(["a", "b", "c"] * (N // 3)))
    with pytest.raises(BadInputError, match="the task is binary but the target 'label' has 3"):
        resolve_schema(df, spec(task="binary"))


def test_regression_needs_a_numeric_target() -> None:
    with pytest.raises(BadInputError, match="the target 'label' is not numeric"):
        resolve_schema(frame(), spec(task="regression"))


def test_positive_class_from_spec() -> None:
    assert resolve_schema(frame(), spec(positive_class="no")).positive_class == "no"
    with pytest.raises(BadInputError, match=r"positive_class 'maybe' is not a class"):
        resolve_schema(frame(), spec(positive_class="maybe"))


# --- features ------------------------------------------------------------------------------


def test_features_from_spec_must_exist() -> None:
    with pytest.raises(BadInputError) as caught:
        resolve_schema(frame(), spec(features=["age", "colour", "height"]))
    message = str(caught.value)
    assert "'colour' (did you mean 'color'?), 'height' are not in the data" in message


def test_features_from_spec_keep_their_order_and_skip_exclusion() -> None:
    df = frame(const=[1] * N)
    schema = resolve_schema(df, spec(features=["const", "age"]))
    assert list(schema.features) == ["const", "age"]
    assert schema.excluded == {}


def test_column_types_override_inference() -> None:
    schema = resolve_schema(frame(), spec(column_types={"age": "categorical"}))
    assert schema.features["age"] is ColumnType.CATEGORICAL
    with pytest.raises(BadInputError, match=r"column_types: the column.* 'agee'"):
        resolve_schema(frame(), spec(column_types={"agee": "numeric"}))


def test_exclusions_carry_a_reason() -> None:
    rng = np.random.default_rng(1)
    df = frame(
        n=200,
        empty=[None] * 200,
        const=["x"] * 200,
        customer_id=[f"C{i:05d}" for i in range(200)],
        row=np.arange(1, 201),
        income=rng.integers(20_000, 200_000, 200),  # unique too, but a measurement
        comment=[f"free text number {i % 150}" for i in range(200)],
        account_id=np.arange(200) % 120,  # named like an id, 60% distinct
    )
    schema = resolve_schema(df, spec())
    assert schema.excluded == {
        "empty": "empty: no values",
        "const": "constant: one distinct value ('x')",
        "customer_id": "id-like: 100% distinct values",
        "row": "id-like: 100% distinct values",
        "comment": "free text: 150 distinct values (75% of rows)",
        "account_id": "id-like: 60% distinct values",
    }
    assert list(schema.features) == ["age", "score", "color", "income"]


def test_dates_are_features_not_ids() -> None:
    df = frame(seen=pd.date_range("2024-01-01", periods=N, freq="h"))
    assert resolve_schema(df, spec()).features["seen"] is ColumnType.DATETIME


def test_no_usable_features() -> None:
    df = pd.DataFrame({"k": [1] * N, "label": ["a", "b"] * (N // 2)})
    with pytest.raises(BadInputError, match=r"no usable feature columns .*k: constant"):
        resolve_schema(df, spec())


# --- cleaning ------------------------------------------------------------------------------


def test_clean_coerces_and_counts() -> None:
    words = ["12.5"] * N
    words[3], words[7] = "unknown", "n/a"
    df = frame(weight=words, extra=["dropped"] * N)
    schema = resolve_schema(
        df, spec(column_types={"weight": "numeric"}, features=["age", "weight"])
    )
    result = clean(df, schema)
    assert result.coerced == {"weight": 2}
    assert list(result.curated.columns) == ["age", "weight", "label"]
    assert result.curated["weight"].isna().sum() == 2
    assert result.curated["weight"].iloc[0] == 12.5
    assert "'weight': 2 value(s) could not be read as numbers and became empty" in result.notes


def test_clean_dtypes_are_the_contract() -> None:
    df = frame(when=[f"2024-01-{i % 28 + 1:02d}" for i in range(N)])
    df.loc[0, "color"] = None
    result = clean(df, resolve_schema(df, spec()))
    dtypes = result.curated.dtypes
    assert dtypes["age"] == np.float64
    assert dtypes["color"] == "str"
    assert dtypes["when"] == "datetime64[us]"
    assert dtypes["label"] == "str"
    assert pd.isna(result.curated.loc[0, "color"])
    assert result.curated.loc[1, "when"] == pd.Timestamp("2024-01-02")
    table = pa.Table.from_pandas(result.curated, preserve_index=False)
    assert table.schema.field("when").type == pa.timestamp("us")


def test_clean_parses_text_dates_and_counts_failures() -> None:
    dates = ["03/15/2021"] * N
    dates[5] = "not a date"
    df = frame(day=dates)
    schema = resolve_schema(df, spec())
    assert schema.features["day"] is ColumnType.DATETIME
    result = clean(df, schema)
    assert result.coerced == {"day": 1}
    assert result.curated["day"].iloc[0] == pd.Timestamp("2021-03-15")
    assert pd.isna(result.curated["day"].iloc[5])


def test_missing_target_rows_are_rejected_with_a_reason() -> None:
    df = frame()
    df.loc[[2, 4, 9], "label"] = None
    result = clean(df, resolve_schema(df, spec()))
    assert len(result.curated) == N - 3
    assert result.rows_in == N
    assert list(result.rejected[REJECT_REASON]) == ["target 'label' is missing"] * 3
    assert list(result.rejected["age"]) == list(df.loc[[2, 4, 9], "age"])
    assert "moved 3 row(s) to quarantine: target 'label' is missing (3)" in result.notes
    pa.Table.from_pandas(result.rejected, preserve_index=False)  # quarantine is writable


def test_regression_target_rejections() -> None:
    price: list[object] = [float(i) + 0.5 for i in range(N)]
    price[1], price[2], price[3] = "abc", None, "inf"
    df = frame(label=[str(p) if p is not None else None for p in price])
    schema = resolve_schema(df, spec())
    assert schema.task is Task.REGRESSION
    result = clean(df, schema)
    assert list(result.rejected[REJECT_REASON]) == [
        "target 'label' is not a number: 'abc'",
        "target 'label' is missing",
        "target 'label' is not finite: 'inf'",
    ]
    assert result.curated["label"].dtype == np.float64
    assert result.curated["label"].iloc[0] == 0.5
    assert len(result.curated) == N - 3


def test_classification_labels_are_strings() -> None:
    df = frame(label=np.arange(N) % 2 * 1.0)
    result = clean(df, resolve_schema(df, spec()))
    assert set(result.curated["label"]) == {"0", "1"}


def test_duplicates_are_dropped_and_counted() -> None:
    df = frame()
    df = pd.concat([df, df.iloc[:5]], ignore_index=True)
    result = clean(df, resolve_schema(df, spec()))
    assert result.duplicates_dropped == 5
    assert len(result.curated) == N
    assert "dropped 5 exact duplicate row(s)" in result.notes


def test_rows_differing_only_by_an_excluded_id_are_kept() -> None:
    df = pd.DataFrame(
        {"id": np.arange(N), "x": [1.0, 2.0] * (N // 2), "label": ["a", "b"] * (N // 2)}
    )
    result = clean(df, resolve_schema(df, spec()))
    assert result.duplicates_dropped == 0
    assert len(result.curated) == N


def test_too_few_usable_rows() -> None:
    df = frame()
    df.loc[5:, "label"] = None
    with pytest.raises(BadInputError, match=r"^only 5 usable rows; at least 10 are needed"):
        clean(df, resolve_schema(df, spec()))


def test_no_usable_rows() -> None:
    df = frame()
    schema = resolve_schema(df, spec())
    df["label"] = None
    with pytest.raises(BadInputError, match=r"no usable rows: all 60 rows were rejected"):
        clean(df, schema)


def test_clean_needs_the_schema_columns() -> None:
    df = frame()
    schema = resolve_schema(df, spec())
    with pytest.raises(BadInputError, match=r"'color'.* is not in the data"):
        clean(df.drop(columns=["color"]), schema)


def test_sample_data_end_to_end() -> None:
    df = customer_churn(2000)
    schema = resolve_schema(df, spec(target="churned"))
    assert schema.excluded == {"customer_id": "id-like: 100% distinct values"}
    assert schema.features["signup_date"] is ColumnType.DATETIME
    assert schema.positive_class == "yes"
    result = clean(df, schema)
    assert len(result.curated) == 2000
    assert 0.15 < (result.curated["churned"] == "yes").mean() < 0.35


# --- the stage's Arrow path ------------------------------------------------------------------


def _upload(n: int = 3000) -> bytes:
    """Sample data with every kind of column the Arrow path treats on its own."""
    rng = np.random.default_rng(5)
    df = customer_churn(n, seed=3)
    df["visit"] = pd.Series(df["signup_date"]).map(lambda d: f"{d[5:7]}/{d[8:10]}/{d[:4]}")
    df.loc[::97, "visit"] = "not a date"
    weight = np.round(rng.normal(70, 10, n), 1).astype(str).astype(object)
    weight[::13] = "unknown"
    df["weight"] = weight
    df["plan"] = df["plan"].where(np.arange(n) % 50 != 0, " " + df["plan"] + " ")
    df.loc[::211, "churned"] = None
    df.loc[::101, "monthly_charges"] = np.inf
    df = pd.concat([df, df.iloc[:25]], ignore_index=True)  # a double load
    return bytes(df.to_csv(index=False).encode())


def _read_back(data: bytes) -> pd.DataFrame:
    return pq.read_table(pa.BufferReader(data)).to_pandas()


def test_curate_is_resolve_schema_then_clean() -> None:
    data = _upload()
    stage_spec = spec(target="churned", column_types={"weight": "numeric"}, task="binary")
    frame = read_table(data, "t.csv").to_pandas()
    schema = resolve_schema(frame, stage_spec)
    expected = clean(frame, schema)
    processed = curate(read_table(data, "t.csv", dictionary_encode=True), stage_spec)

    assert processed.schema == schema
    assert schema.features["visit"] is ColumnType.DATETIME
    assert schema.excluded == {"customer_id": "id-like: 99% distinct values"}  # the double load
    pd.testing.assert_frame_equal(_read_back(parquet_bytes(processed.curated)), expected.curated)
    assert processed.notes == expected.notes
    assert (processed.rows_in, processed.duplicates_dropped) == (len(frame), 25)
    assert processed.coerced == expected.coerced
    assert set(processed.coerced) == {"visit", "weight", "monthly_charges"}
    rejected = processed.rejected.to_pandas()
    assert list(rejected[REJECT_REASON]) == list(expected.rejected[REJECT_REASON])
    assert list(rejected["customer_id"]) == list(expected.rejected["customer_id"])
    assert set(rejected[REJECT_REASON]) == {"target 'churned' is missing"}


def test_curated_parquet_reads_back_in_the_contract_dtypes() -> None:
    processed = curate(read_table(_upload(), "t.csv", dictionary_encode=True), spec("churned"))
    curated = _read_back(parquet_bytes(processed.curated))
    dtypes = curated.dtypes
    assert dtypes["monthly_charges"] == np.float64
    assert dtypes["tenure_months"] == np.float64  # integers become float64 too
    assert dtypes["plan"] == "str"
    assert dtypes["signup_date"] == "datetime64[us]"
    assert dtypes["churned"] == "str"
    assert set(curated["plan"]) == {"basic", "standard", "premium"}  # stripped
    assert curated["payment_method"].isna().any()


def test_regression_target_on_the_arrow_path() -> None:
    price: list[object] = [f"{i + 0.5}" for i in range(N)]
    price[1], price[2], price[3] = "abc", None, "inf"
    df = frame(label=price)
    processed = curate(pa.Table.from_pandas(df, preserve_index=False), spec())
    assert processed.schema.task is Task.REGRESSION
    assert processed.rejected.column(REJECT_REASON).to_pylist() == [
        "target 'label' is not a number: 'abc'",
        "target 'label' is missing",
        "target 'label' is not finite: 'inf'",
    ]
    assert processed.curated.column("label").type == pa.float64()
    assert processed.curated.num_rows == N - 3


def test_duplicates_compare_as_pandas_does() -> None:
    # no column is unique on its own; -0.0 equals 0.0 and NaN equals null, as in pandas
    table = pa.table(
        {
            "x": pa.array([0.0, -0.0, np.nan, None, 1.0] * 8),
            "c": pa.array(["a", "a", "b", "b", "c"] * 8).dictionary_encode(),
            "k": np.arange(40) // 5 % 4,
            "label": ["yes", "yes", "no", "no", "no"] * 8,
        }
    )
    processed = curate(table, spec())
    frame = table.to_pandas()
    expected = clean(frame, resolve_schema(frame, spec()))
    assert processed.duplicates_dropped == expected.duplicates_dropped == 40 - 3 * 4
    assert processed.curated.num_rows == 12


def test_unknown_classes_are_rejected_naming_them() -> None:
    df = frame()
    schema = resolve_schema(df, spec())
    df.loc[[4, 8], "label"] = ["maybe", " yes "]
    result = clean(df, schema)
    assert list(result.rejected[REJECT_REASON]) == [
        "target 'label' has a class the schema does not know: 'maybe'"
    ]
    assert result.curated["label"].iloc[7] == "yes"


def test_sample_positions_are_those_of_pandas_sample() -> None:
    n = INFER_SAMPLE * 3 + 7
    picked = pd.Series(np.arange(n)).sample(INFER_SAMPLE, random_state=0).to_numpy()
    assert np.array_equal(_sample_positions(n), picked)


@pytest.mark.parametrize("junk_every", [15, 8])  # about 93% and 87% numbers
def test_big_text_columns_are_typed_from_the_same_sample(junk_every: int) -> None:
    n = INFER_SAMPLE * 3
    values = np.round(np.random.default_rng(2).normal(size=n), 3).astype(str).astype(object)
    values[::junk_every] = "n/a?"
    table = pa.table({"x": values, "label": np.where(np.arange(n) % 2 == 0, "a", "b")})
    expected = infer_column_types(table.to_pandas())
    assert infer_column_types(table) == expected
    assert expected["x"] is (ColumnType.NUMERIC if junk_every == 15 else ColumnType.CATEGORICAL)
