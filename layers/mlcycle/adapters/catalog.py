"""The Glue Data Catalog over the curated zone: one table per dataset, one partition per run.

Tables cannot be declared at synth (datasets arrive with any columns), so the processing stage
creates or updates its dataset's table and registers the run's partition as it writes it:
columns and types from the curated Parquet's Arrow schema, comments from the resolved schema.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from mlcycle.lake_layout import Zone, s3_uri
from mlcycle.schema import ResolvedSchema

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient

# Hive partition columns of a curated key: curated/dataset=<name>/dt=<date>/run=<id>/.
PARTITION_KEYS = ("dt", "run")
PARQUET_STORAGE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    },
}
_COMMENT_LIMIT = 255  # Glue's limit on a column comment
_NAME_LIMIT = 255  # ... and on a column name, which must be one line
_GLUE_NAME = re.compile(r"[^\x00-\x08\x0a-\x1f]+")


def table_name(dataset: str) -> str:
    """The dataset's table (and `mlcycle query` view): Athena names are lowercase letters,
    digits and underscores, so `customer-churn` is `customer_churn`."""
    return re.sub(r"[^a-z0-9_]", "_", dataset.lower())


def glue_type(arrow_type: pa.DataType) -> str:
    """The Hive/Athena type Athena reads an Arrow column of this type as from Parquet."""
    if pa.types.is_dictionary(arrow_type):
        return glue_type(arrow_type.value_type)
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    for width, name in ((8, "tinyint"), (16, "smallint"), (32, "int"), (64, "bigint")):
        if pa.types.is_integer(arrow_type) and arrow_type.bit_width == width:
            return name
    if pa.types.is_float32(arrow_type):
        return "float"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_decimal(arrow_type):
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "binary"
    raise TypeError(f"no Glue type for the Arrow type {arrow_type}")


def _comment(column: str, schema: ResolvedSchema) -> str:
    if column == schema.target:
        return f"target ({schema.task.value})"
    if column in schema.features:
        role = f"feature ({schema.features[column].value})"
    elif column in schema.excluded:
        role = f"not a feature: {schema.excluded[column]}"
    else:
        role = "column"
    if column in schema.sensitive:
        role += "; sensitive attribute"
    return role[:_COMMENT_LIMIT]


def uncatalogued(arrow_schema: pa.Schema) -> list[str]:
    """Columns Athena cannot read by name, left out of the table (the Parquet keeps them): a
    name Glue refuses (over 255 characters, or a line break in it), or one equal to an earlier
    column's but for case (Athena matches Parquet columns by lowercased name)."""
    seen: set[str] = set()
    left_out = []
    for name in arrow_schema.names:
        if len(name) > _NAME_LIMIT or not _GLUE_NAME.fullmatch(name) or name.lower() in seen:
            left_out.append(name)
        seen.add(name.lower())
    return left_out


def glue_columns(arrow_schema: pa.Schema, schema: ResolvedSchema) -> list[dict[str, str]]:
    """The Parquet file's columns in file order, as Glue columns (names lowercased, as Athena
    reads them), but for those `uncatalogued`."""
    left_out = set(uncatalogued(arrow_schema))
    return [
        {
            "Name": field.name.lower(),
            "Type": glue_type(field.type),
            "Comment": _comment(field.name, schema),
        }
        for field in arrow_schema
        if field.name not in left_out
    ]


class Catalog:
    """One Glue database; each dataset's table lives at `curated/dataset=<name>/`."""

    def __init__(self, glue: GlueClient, database: str, bucket: str) -> None:
        self.glue = glue
        self.database = database
        self.bucket = bucket

    def register_run(
        self, dataset: str, dt: str, run_id: str, arrow_schema: pa.Schema, schema: ResolvedSchema
    ) -> str:
        """Create or update the dataset's table, then add (or refresh) the run's partition.

        The table keeps the newest upload's columns first, then columns earlier uploads had
        and this one lacks, so older partitions stay queryable; each partition carries its
        own columns, as Athena reads them. Returns the table's name."""
        table = table_name(dataset)
        columns = glue_columns(arrow_schema, schema)
        location = s3_uri(self.bucket, f"{Zone.CURATED.prefix}dataset={dataset}/")
        existing = self._table(table)
        kept = existing["StorageDescriptor"]["Columns"] if existing else []
        names = {c["Name"] for c in columns}
        table_input: Any = {
            "Name": table,
            "Description": f"mlcycle's curated zone of the dataset {dataset}, one run per "
            "partition",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                "classification": "parquet",
                "parquet.compression": "ZSTD",
                "EXTERNAL": "TRUE",
                "mlcycle.dataset": dataset,
                # what the newest upload has that Athena cannot read (Parquet keeps it)
                "mlcycle.uncatalogued_columns": json.dumps(uncatalogued(arrow_schema)),
            },
            "PartitionKeys": [{"Name": key, "Type": "string"} for key in PARTITION_KEYS],
            "StorageDescriptor": {
                "Columns": columns + [dict(c) for c in kept if c["Name"] not in names],
                "Location": location,
                **PARQUET_STORAGE,
            },
        }
        if existing is None:
            try:
                self.glue.create_table(DatabaseName=self.database, TableInput=table_input)
            except self.glue.exceptions.AlreadyExistsException:  # another run created it
                self.glue.update_table(DatabaseName=self.database, TableInput=table_input)
        elif _differs(existing, table_input):  # no new table version for the same schema
            self.glue.update_table(DatabaseName=self.database, TableInput=table_input)
        partition: Any = {
            "Values": [dt, run_id],
            "StorageDescriptor": {
                "Columns": columns,
                "Location": f"{location}dt={dt}/run={run_id}/",
                **PARQUET_STORAGE,
            },
        }
        try:
            self.glue.create_partition(
                DatabaseName=self.database, TableName=table, PartitionInput=partition
            )
        except self.glue.exceptions.AlreadyExistsException:  # a retried stage rewrote it
            self.glue.update_partition(
                DatabaseName=self.database,
                TableName=table,
                PartitionValueList=[dt, run_id],
                PartitionInput=partition,
            )
        return table

    def _table(self, table: str) -> dict[str, Any] | None:
        try:
            response = self.glue.get_table(DatabaseName=self.database, Name=table)
        except self.glue.exceptions.EntityNotFoundException:
            return None
        return cast(dict[str, Any], response["Table"])


def _differs(existing: dict[str, Any], table_input: dict[str, Any]) -> bool:
    def shape(table: dict[str, Any]) -> Any:
        descriptor = table["StorageDescriptor"]
        return (
            [(c["Name"], c["Type"], c.get("Comment")) for c in descriptor["Columns"]],
            descriptor["Location"],
            table.get("Parameters", {}),
            [k["Name"] for k in table.get("PartitionKeys", [])],
        )

    return bool(shape(existing) != shape(table_input))
