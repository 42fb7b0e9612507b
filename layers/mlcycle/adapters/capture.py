"""Reading what the endpoint captured (gzip JSON lines under capture/) and late labels."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from mlcycle.adapters.lake import Lake
from mlcycle.lake_layout import Zone


def _keys(lake: Lake, prefix: str) -> Iterator[str]:
    for page in lake.s3.get_paginator("list_objects_v2").paginate(
        Bucket=lake.bucket, Prefix=prefix
    ):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def captured_since(lake: Lake, dataset: str, since: datetime) -> Iterator[dict[str, Any]]:
    """The capture records of a dataset from `since` on (its day partitions only)."""
    day = since.date()
    while day <= datetime.now(UTC).date():
        for key in _keys(lake, f"{Zone.CAPTURE.prefix}dataset={dataset}/dt={day.isoformat()}/"):
            for line in gzip.decompress(lake.get_bytes(lake.uri(key))).splitlines():
                record = json.loads(line)
                if datetime.fromisoformat(record["time"]) >= since:
                    yield record
        day += timedelta(days=1)


def labels(lake: Lake, dataset: str) -> pd.DataFrame:
    """Ground truth uploaded under labels/dataset=<name>/: CSV or JSON lines with the columns
    `request_id` and `label`; a request labelled twice keeps its latest label."""
    frames = []
    for key in sorted(_keys(lake, f"{Zone.LABELS.prefix}dataset={dataset}/")):
        body = lake.get_bytes(lake.uri(key))
        if key.endswith(".gz"):
            body = gzip.decompress(body)
        if ".json" in key:
            frame = pd.read_json(io.BytesIO(body), lines=True, dtype={"request_id": str})
        else:
            frame = pd.read_csv(io.BytesIO(body), dtype={"request_id": str})
        if {"request_id", "label"} <= set(frame.columns):
            frames.append(frame[["request_id", "label"]])
    if not frames:
        return pd.DataFrame({"request_id": pd.Series(dtype=str), "label": pd.Series(dtype=object)})
    return pd.concat(frames).drop_duplicates("request_id", keep="last")
