"""The queryable lake: the Glue table and partitions process_data registers (moto's Glue keeps
them as AWS's would), and `mlcycle query` over the exported curated zone with DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.adapters.catalog import (
    Catalog,
    glue_columns,
    glue_type,
    table_name,
    uncatalogued,
)
from mlcycle.cli import main
from mlcycle.local import runner
from mlcycle.local.query import NoLakeError, QueryError, curated_datasets, run_query
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, Task
from tests.conftest import EXAMPLES

QUICK_SPEC = "target: churned\ncandidates: [linear]\nsearch: {trials: 1}\n"
SCHEMA = ResolvedSchema(
    dataset="toy-set",
    task=Task.BINARY,
    target="label",
    features={"x": ColumnType.NUMERIC, "Colour": ColumnType.CATEGORICAL},
    excluded={"id": "id-like: every value is distinct"},
    classes=["a", "b"],
    positive_class="b",
)


# --- the Glue adapter ---------------------------------------------------------------------------


def test_glue_types_are_what_athena_reads_from_parquet() -> None:
    cases = {
        pa.int64(): "bigint",
        pa.int32(): "int",
        pa.float64(): "double",
        pa.float32(): "float",
        pa.bool_(): "boolean",
        pa.string(): "string",
        pa.dictionary(pa.int32(), pa.string()): "string",
        pa.timestamp("us"): "timestamp",
        pa.timestamp("ns", tz="UTC"): "timestamp",
        pa.date32(): "date",
        pa.decimal128(10, 2): "decimal(10,2)",
    }
    assert {str(t): glue_type(t) for t in cases} == {str(t): g for t, g in cases.items()}
    with pytest.raises(TypeError, match="no Glue type"):
        glue_type(pa.list_(pa.int64()))
    assert table_name("customer-churn") == "customer_churn"
    assert table_name("Penguins_2024") == "penguins_2024"


def _arrow(**columns: pa.Array) -> pa.Schema:
    return pa.table(columns).schema


def test_columns_athena_cannot_read_by_name_are_left_out_of_the_table() -> None:
    long = "x" * 256
    names = ["Age", "age", long, "two\nlines", "größe", "price ($)", "tab\there"]
    schema = pa.schema([(name, pa.float64()) for name in names])
    assert uncatalogued(schema) == ["age", long, "two\nlines"]
    catalogued = [c["Name"] for c in glue_columns(schema, SCHEMA)]
    assert catalogued == ["age", "größe", "price ($)", "tab\there"]  # the first Age, lowercased


def test_a_dataset_gets_one_table_and_each_run_a_partition(aws: None) -> None:
    glue = boto3.client("glue")
    glue.create_database(DatabaseInput={"Name": "lakedb"})
    catalog = Catalog(glue, "lakedb", "lake")
    first = _arrow(
        id=pa.array([1]), x=pa.array([1.0]), Colour=pa.array(["red"]), label=pa.array(["a"])
    )
    assert catalog.register_run("toy-set", "2026-01-01", "r1", first, SCHEMA) == "toy_set"
    catalog.register_run("toy-set", "2026-01-01", "r1", first, SCHEMA)  # a retried stage
    versions = glue.get_table_versions(DatabaseName="lakedb", TableName="toy_set")
    assert len(versions["TableVersions"]) == 1  # the same schema makes no new version
    # A later upload without `id` and with a new column: both runs stay queryable.
    second = _arrow(x=pa.array([1.0]), label=pa.array(["a"]), extra=pa.array([True]))
    catalog.register_run("toy-set", "2026-01-02", "r2", second, SCHEMA)

    versions = glue.get_table_versions(DatabaseName="lakedb", TableName="toy_set")
    assert len(versions["TableVersions"]) == 2
    table = glue.get_table(DatabaseName="lakedb", Name="toy_set")["Table"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == [
        ("x", "double"),
        ("label", "string"),
        ("extra", "boolean"),
        ("id", "bigint"),
        ("colour", "string"),
    ]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["dt", "run"]
    assert table["StorageDescriptor"]["Location"] == "s3://lake/curated/dataset=toy-set/"
    assert table["Parameters"]["classification"] == "parquet"
    assert table["Parameters"]["mlcycle.uncatalogued_columns"] == "[]"
    partitions = glue.get_partitions(DatabaseName="lakedb", TableName="toy_set")["Partitions"]
    assert sorted((p["Values"], p["StorageDescriptor"]["Location"]) for p in partitions) == [
        (["2026-01-01", "r1"], "s3://lake/curated/dataset=toy-set/dt=2026-01-01/run=r1/"),
        (["2026-01-02", "r2"], "s3://lake/curated/dataset=toy-set/dt=2026-01-02/run=r2/"),
    ]
    comments = {c["Name"]: c["Comment"] for c in glue_columns(first, SCHEMA)}
    assert comments == {
        "id": "not a feature: id-like: every value is distinct",
        "x": "feature (numeric)",
        "colour": "feature (categorical)",
        "label": "target (binary)",
    }


# --- a local run: the Glue table matches the Parquet it wrote -------------------------------------


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One quick `run_local` of the sample, with moto's Glue as it was when the run ended."""
    tmp = tmp_path_factory.mktemp("catalog")
    spec = tmp / "spec.yaml"
    spec.write_text(QUICK_SPEC)
    captured: dict[str, Any] = {}
    follow = runner.follow_execution

    def spy(deployment: Any, session: Any, *args: Any, **kwargs: Any) -> Any:
        outcome = follow(deployment, session, *args, **kwargs)
        glue = session.client("glue")
        (database,) = deployment.databases.values()
        captured["database"] = database
        captured["tables"] = glue.get_tables(DatabaseName=database)["TableList"]
        captured["partitions"] = {
            name: glue.get_partitions(DatabaseName=database, TableName=name)["Partitions"]
            for name in (t["Name"] for t in captured["tables"])
        }
        captured["bucket"] = deployment.lake_bucket
        return outcome

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "follow_execution", spy)
        outcome = runner.run_local(
            EXAMPLES / "customer-churn.csv", spec_file=spec, out_dir=tmp / "out"
        )
    assert outcome.status == "SUCCEEDED", outcome.error
    captured["run_id"] = outcome.run_id
    return tmp / "out", captured


def test_the_glue_table_and_partition_match_the_curated_parquet(
    local_run: tuple[Path, dict[str, Any]],
) -> None:
    out, glue = local_run
    (part,) = (out / "lake" / "curated").rglob("*.parquet")
    written = pq.read_schema(part)
    (table,) = glue["tables"]
    assert table["Name"] == "customer_churn"
    assert table["DatabaseName"] == glue["database"] == "mlcycle_dev"
    columns = table["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == [name.lower() for name in written.names]
    assert [c["Type"] for c in columns] == [glue_type(f.type) for f in written]
    assert {c["Name"]: c["Comment"] for c in columns}["churned"] == "target (binary)"
    (partition,) = glue["partitions"]["customer_churn"]
    key = part.parent.relative_to(out / "lake").as_posix()
    assert partition["StorageDescriptor"]["Location"] == f"s3://{glue['bucket']}/{key}/"
    dt, run = (segment.split("=", 1)[1] for segment in part.parent.parts[-2:])
    assert partition["Values"] == [dt, run]
    assert run == glue["run_id"]
    assert partition["StorageDescriptor"]["Columns"] == columns


def test_query_answers_as_pandas_does_on_the_same_parquet(
    local_run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, glue = local_run
    (part,) = (out / "lake" / "curated").rglob("*.parquet")
    frame = pd.read_parquet(part)
    expected = (
        frame.groupby("plan", observed=True)
        .agg(n=("churned", "size"), churn_rate=("churned", lambda s: (s == "yes").mean()))
        .sort_index()
    )
    sql = (
        "SELECT plan, count(*) AS n, avg(CASE WHEN churned = 'yes' THEN 1.0 ELSE 0.0 END) "
        "AS churn_rate, min(dt) AS dt, min(run) AS run FROM customer_churn "
        "GROUP BY plan ORDER BY plan"
    )
    result = run_query(out, sql)
    assert result.columns == ["plan", "n", "churn_rate", "dt", "run"]
    assert [row[0] for row in result.rows] == list(expected.index)
    assert [row[1] for row in result.rows] == expected["n"].tolist()
    assert [row[2] for row in result.rows] == pytest.approx(expected["churn_rate"].tolist())
    assert {row[4] for row in result.rows} == {glue["run_id"]}
    # The view under the dataset's own name, and the whole table with its partition columns.
    whole = run_query(out, 'SELECT * FROM "customer-churn"')
    assert whole.columns == [*frame.columns, "dt", "run"]
    assert len(whole.rows) == len(frame)

    assert main(["query", sql, "--from", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "churn_rate" in printed
    assert f"{len(expected)} rows" in printed


# --- the views over an exported lake, and the command's errors ----------------------------------


def _write(lake: Path, dataset: str, dt: str, run: str, frame: pd.DataFrame) -> None:
    folder = lake / "curated" / f"dataset={dataset}" / f"dt={dt}" / f"run={run}"
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "part-0000.parquet")


def test_each_dataset_is_a_view_over_all_its_runs_by_column_name(tmp_path: Path) -> None:
    source = tmp_path / "k=v"  # a `k=v` folder above the lake is no partition
    lake = source / "lake"
    _write(lake, "toy-set", "2026-01-01", "r1", pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}))
    _write(lake, "toy-set", "2026-01-02", "r2", pd.DataFrame({"y": ["c"], "z": [True]}))
    _write(lake, "penguins", "2026-01-01", "p1", pd.DataFrame({"mass": [3750]}))
    (lake / "curated" / "dataset=empty").mkdir()
    assert sorted(curated_datasets(source)) == ["penguins", "toy-set"]

    result = run_query(source, "SELECT * FROM toy_set ORDER BY dt, y")
    assert result.columns == ["x", "y", "z", "dt", "run"]
    assert result.types[-2:] == ["VARCHAR", "VARCHAR"]  # strings, as Athena's partition keys
    assert result.rows == [
        (1.0, "a", None, "2026-01-01", "r1"),
        (2.0, "b", None, "2026-01-01", "r1"),
        (None, "c", True, "2026-01-02", "r2"),
    ]
    assert run_query(source, "SELECT sum(mass) FROM penguins").rows == [(3750,)]


def test_bad_sql_exits_1_with_duckdbs_message_and_no_run_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(NoLakeError):
        run_query(tmp_path, "SELECT 1")
    assert main(["query", "SELECT 1", "--from", str(tmp_path)]) == 2
    assert "run `mlcycle run` first" in capsys.readouterr().out

    _write(tmp_path / "lake", "toy", "2026-01-01", "r1", pd.DataFrame({"x": [1]}))
    with pytest.raises(QueryError, match="syntax error"):
        run_query(tmp_path, "SELEC x FROM toy")
    assert main(["query", "SELECT nope FROM toy", "--from", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert "error:" in printed
    assert "nope" in printed
