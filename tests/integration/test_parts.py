"""Many-part uploads in moto: what starts a run, what the plan reads, and clear errors."""

from __future__ import annotations

import io
import re

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlcycle import parts, stages
from mlcycle.adapters.catalog import Catalog, glue_type
from mlcycle.adapters.lake import Lake
from mlcycle.context import ProblemResult, RunContext, Source
from mlcycle.errors import BadInputError
from mlcycle.samples import customer_churn
from mlcycle.spec import ColumnType, Task

FOLDER = "landing/churn/2026-12-01/"


def test_only_a_marker_in_a_folder_of_parts_starts_a_run() -> None:
    for key in (
        f"{FOLDER}part-00000.csv",  # waits for the marker
        "landing/churn/_SUCCESS",  # a marker outside a folder of parts
    ):
        result = stages.start_run(None, "arn", "lake", key, "v1", 10)
        assert result["started"] is False
        assert "_SUCCESS" in result["ignored"]


def _context(lake: Lake) -> RunContext:
    spec_uri = lake.put_json(
        "runs/dataset=churn/run=r1/spec.json",
        {"dataset": "churn", "target": "churned", "task": "binary", "positive_class": "yes"},
    )
    return RunContext(
        run_id="r1",
        source=Source(bucket="lake", key=f"{FOLDER}_SUCCESS"),
        problem=ProblemResult(
            dataset="churn",
            spec_uri=spec_uri,
            task=Task.BINARY,
            target="churned",
            started_at="2026-12-01T00:00:00+00:00",
        ),
    )


def _csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def test_the_plan_lists_data_files_only_and_resolves_one_schema_over_unlike_parts(
    lake: Lake,
) -> None:
    frame = customer_churn(900, seed=5)
    first, second = frame.iloc[:600], frame.iloc[600:].copy()
    # the second part's reader sees text in a numeric column: int64 in one part, string in
    # the other, still one numeric feature
    second["tenure_months"] = second["tenure_months"].astype(str)
    second.loc[second.index[:3], "tenure_months"] = "n/a"
    lake.put_bytes(f"{FOLDER}part-00000.csv", _csv(first))
    lake.put_bytes(f"{FOLDER}part-00001.csv", _csv(second))
    lake.put_bytes(f"{FOLDER}_committed_1", b"{}")
    lake.put_bytes(f"{FOLDER}.part-00000.csv.crc", b"x")
    lake.put_bytes(f"{FOLDER}nested/part-00009.csv", _csv(first))  # not this folder's part
    lake.put_bytes(f"{FOLDER}_SUCCESS", b"")
    plan = parts.plan_parts(_context(lake), lake)
    items = lake.get_json(lake.uri(plan.parts_key))
    assert [i["key"] for i in items] == [f"{FOLDER}part-00000.csv", f"{FOLDER}part-00001.csv"]
    assert [i["part"] for i in items] == [0, 1]
    schema = lake.get_json(plan.schema_uri)
    assert schema["features"]["tenure_months"] == ColumnType.NUMERIC.value
    assert schema["classes"] == ["no", "yes"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"_committed_1": b"{}"}, "no part files beside the marker"),
        ({"part-00000.csv": b""}, "1 empty part file(s): landing/churn/2026-12-01/part-00000.csv"),
    ],
)
def test_a_folder_without_usable_parts_is_a_clear_error(
    lake: Lake, files: dict[str, bytes], message: str
) -> None:
    for name, body in files.items():
        lake.put_bytes(FOLDER + name, body)
    with pytest.raises(BadInputError, match=re.escape(message)):
        parts.plan_parts(_context(lake), lake)


def test_the_parts_steps_curate_each_part_and_the_merge_registers_one_partition(
    lake: Lake,
) -> None:
    frame = customer_churn(1_200, seed=8)
    pieces = [frame.iloc[:500], frame.iloc[500:900], frame.iloc[900:]]
    for part, piece in enumerate(pieces):
        lake.put_bytes(f"{FOLDER}part-{part:05d}.csv", _csv(piece))
    lake.put_bytes(f"{FOLDER}_SUCCESS", b"")
    glue = boto3.client("glue")
    glue.create_database(DatabaseInput={"Name": "lakedb"})
    ctx = _context(lake)
    plan = parts.plan_parts(ctx, lake)
    results = []
    for item in lake.get_json(lake.uri(plan.parts_key)):
        event = parts.PartEvent(plan=plan, part=parts.PartItem.model_validate(item))
        event.collected = parts.collect_part(event, lake)
        results.append(parts.process_part(event, lake))
    assert [r["rows"] for r in results] == [500, 400, 300]
    merged = parts.merge_parts(
        parts.MergeEvent(**ctx.model_dump(), plan=plan), lake, Catalog(glue, "lakedb", "lake")
    )
    assert merged.process is not None
    assert merged.collect is not None
    assert (merged.process.rows, merged.process.parts) == (1_200, 3)
    assert merged.collect.rows == 1_200
    assert merged.collect.parts_fingerprint == fingerprint_of(lake)
    # one partition over the run's curated prefix, holding every part's Parquet
    prefix = "curated/dataset=churn/dt=2026-12-01/run=r1/"
    assert merged.process.curated_uri == f"s3://lake/{prefix}"
    keys = lake.keys(prefix)
    assert [k.rsplit("/", 1)[1] for k in keys] == [f"part-{p:05d}.parquet" for p in range(3)]
    (partition,) = glue.get_partitions(DatabaseName="lakedb", TableName="churn")["Partitions"]
    assert partition["Values"] == ["2026-12-01", "r1"]
    assert partition["StorageDescriptor"]["Location"] == f"s3://lake/{prefix}"
    written = pq.read_schema(io.BytesIO(lake.get_bytes(lake.uri(keys[1]))))
    columns = partition["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == [n.lower() for n in written.names]
    assert [c["Type"] for c in columns] == [glue_type(f.type) for f in written]
    # exploration and feature engineering read the parts' documents, in part order
    docs = stages.part_documents(lake, merged.process)
    assert [d["part"] for d in docs] == [0, 1, 2]
    assert sum(sum(d["strata"].values()) for d in docs) == 1_200


def fingerprint_of(lake: Lake) -> str:
    return parts.fingerprint(parts.list_parts(lake.s3, "lake", FOLDER))
