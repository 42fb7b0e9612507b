"""Reading and writing the lake bucket: bytes, JSON, Parquet (zstd) and joblib artifacts."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlcycle.lake_layout import s3_uri, split_uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Lake:
    """One bucket; keys come from `mlcycle.lake_layout`, URIs are `s3://bucket/key`."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return s3_uri(self.bucket, key)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        extra = {"ContentType": content_type} if content_type else {}
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)  # type: ignore[arg-type]
        return self.uri(key)

    def get_bytes(self, uri: str, *, version_id: str | None = None) -> bytes:
        bucket, key = split_uri(uri)
        extra = {"VersionId": version_id} if version_id else {}
        response = self.s3.get_object(Bucket=bucket, Key=key, **extra)  # type: ignore[arg-type]
        return response["Body"].read()

    def exists(self, key: str) -> bool:
        response = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        return any(obj["Key"] == key for obj in response.get("Contents", []))

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, in key order."""
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            found += [obj["Key"] for obj in page.get("Contents", [])]
        return found

    def put_json(self, key: str, document: Any) -> str:
        body = json.dumps(document, indent=2, allow_nan=False, default=str).encode()
        return self.put_bytes(key, body, content_type="application/json")

    def get_json(self, uri: str) -> Any:
        return json.loads(self.get_bytes(uri))

    def get_json_under(self, prefix: str) -> list[Any]:
        """Every JSON document under `prefix`, in key order."""
        return [self.get_json(self.uri(key)) for key in self.keys(prefix)]

    def put_text(self, key: str, text: str, *, content_type: str) -> str:
        return self.put_bytes(key, text.encode(), content_type=content_type)

    def put_parquet(self, key: str, frame: pd.DataFrame | pa.Table) -> str:
        table = (
            frame
            if isinstance(frame, pa.Table)
            else pa.Table.from_pandas(frame, preserve_index=False)
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return self.put_bytes(key, buffer.getvalue(), content_type="application/vnd.apache.parquet")

    def get_parquet(self, uri: str, *, columns: list[str] | None = None) -> pd.DataFrame:
        table = pq.read_table(io.BytesIO(self.get_bytes(uri)), columns=columns)
        return table.to_pandas()

    def put_artifact(self, key: str, obj: Any) -> str:
        """A fitted scikit-learn object, joblib-serialized."""
        buffer = io.BytesIO()
        joblib.dump(obj, buffer, compress=3)
        return self.put_bytes(key, buffer.getvalue(), content_type="application/octet-stream")

    def get_artifact(self, uri: str) -> Any:
        return joblib.load(io.BytesIO(self.get_bytes(uri)))
