"""`mlcycle query`: SQL over a local run's exported curated zone, with DuckDB.

Each dataset is a view named as its Glue table on AWS (`customer_churn`; also under its dataset
name, `"customer-churn"`, when that differs), with the table's columns: the Parquet's, then the
partition columns `dt` and `run` as strings. So SQL that DuckDB and Athena share runs on both.
moto's Athena runs no SQL, hence DuckDB here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.adapters.catalog import table_name
from mlcycle.lake_layout import Zone

if TYPE_CHECKING:
    import duckdb

_FILE_COLUMN = "__mlcycle_file"  # the Parquet file each row came from, dropped from the view
# The partition values from the file's path, read from its end (DIR itself may hold `k=v`).
_PARTITION_PATTERNS = {"dt": "/dt=([^/]*)/run=[^/]*/[^/]*$", "run": "/run=([^/]*)/[^/]*$"}


class NoLakeError(LookupError):
    """DIR holds no exported curated zone (no local run has written one)."""


class QueryError(ValueError):
    """DuckDB rejected the SQL; the message is DuckDB's."""


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def curated_datasets(source: Path) -> dict[str, Path]:
    """Dataset name -> its folder `DIR/lake/curated/dataset=<name>/`, for those with Parquet."""
    curated = source / "lake" / Zone.CURATED.value
    found = {}
    for folder in sorted(curated.glob("dataset=*")) if curated.is_dir() else []:
        if folder.is_dir() and any(folder.glob("dt=*/run=*/*.parquet")):
            found[folder.name.removeprefix("dataset=")] = folder
    return found


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sql(name: str, folder: Path) -> str:
    """`CREATE VIEW name AS ...` over every run's Parquet of one dataset (by column name, as
    Athena reads partitions whose columns differ)."""
    files = _literal((folder / "dt=*" / "run=*" / "*.parquet").as_posix())
    partitions = ", ".join(
        f"regexp_extract({_FILE_COLUMN}, {_literal(pattern)}, 1) AS {key}"
        for key, pattern in _PARTITION_PATTERNS.items()
    )
    return (
        f"CREATE VIEW {_quoted(name)} AS SELECT * EXCLUDE ({_FILE_COLUMN}), {partitions} "
        f"FROM read_parquet({files}, union_by_name = true, hive_partitioning = false, "
        f"filename = {_literal(_FILE_COLUMN)})"
    )


def connect(source: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per dataset of DIR's curated zone."""
    import duckdb  # the local CLI's dependency (dev extra), never the Lambda image's

    datasets = curated_datasets(source)
    if not datasets:
        raise NoLakeError(f"no curated data in {source / 'lake' / Zone.CURATED.value}")
    connection = duckdb.connect()
    for dataset, folder in datasets.items():
        for name in dict.fromkeys([table_name(dataset), dataset]):
            connection.execute(view_sql(name, folder))
    return connection


def run_query(source: Path, sql: str) -> QueryResult:
    import duckdb

    connection = connect(source)
    try:
        relation = connection.sql(sql)
        if relation is None:  # a statement with no result (SET, CREATE, ...)
            return QueryResult([], [], [])
        return QueryResult(
            list(relation.columns), [str(t) for t in relation.types], relation.fetchall()
        )
    except duckdb.Error as error:
        raise QueryError(str(error)) from error
    finally:
        connection.close()
