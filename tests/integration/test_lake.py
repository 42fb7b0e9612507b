from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq

from mlcycle.adapters.lake import Lake


def test_parquet_is_zstd_and_round_trips(lake: Lake) -> None:
    frame = pd.DataFrame({"a": [1.5, None, 3.0], "b": ["x", None, "z"]})
    uri = lake.put_parquet("curated/dataset=d/run=r/part-0000.parquet", frame)
    assert uri == "s3://lake/curated/dataset=d/run=r/part-0000.parquet"
    back = lake.get_parquet(uri)
    assert back["a"].isna().tolist() == [False, True, False]
    assert back["b"].tolist()[0] == "x"
    assert lake.get_parquet(uri, columns=["a"]).columns.tolist() == ["a"]
    metadata = pq.ParquetFile(io.BytesIO(lake.get_bytes(uri))).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_json_refuses_nan_and_reads_versions(lake: Lake) -> None:
    lake.put_json("runs/x.json", {"v": 1})
    first = lake.s3.head_object(Bucket="lake", Key="runs/x.json")["VersionId"]
    lake.put_json("runs/x.json", {"v": 2})
    assert lake.get_json("s3://lake/runs/x.json") == {"v": 2}
    assert lake.get_bytes("s3://lake/runs/x.json", version_id=first).startswith(b"{")
    assert lake.exists("runs/x.json")
    assert not lake.exists("runs/x")
