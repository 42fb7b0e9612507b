"""Batch-scored rows as captured traffic, so that the monitor's drift, late labels and
retraining see batch runs as they see the endpoint's requests.

Every scored row gets a request id, `<run id>:<row>`, in the predictions' `request_id` column:
the key a label is uploaded with (`labels/dataset=<name>/`, `request_id,label`). A seeded
sample of the run's rows, `capture_rows` of them at most (10,000 by default), is written to the
capture zone in the endpoint's record format, one object per chunk; the predictions'
`captured` column says which rows. Why a sample and not every row: the monitor reads its
window into memory, and its statistics do not need millions of rows. At 10,000 rows the noise
PSI of ten bins is about 0.001 and the KS statistic chance reaches about 0.02, against limits
of 0.2 and 0.15; a 10M-row run is then 50 objects of 200 records, not 10M records.

The sample is spread over the chunks in proportion to their rows (`capture_quota`: the run's
total is exact), drawn uniformly inside each from a seed of the run id and the part, so a
retried chunk captures the same rows. Each record keeps its sampling rate
(`batch.sample_rate`), and `batch` tells batch records from the endpoint's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.serving.manifest import Manifest

REQUEST_COLUMN = "request_id"
CAPTURED_COLUMN = "captured"
DEFAULT_CAPTURE_ROWS = 10_000
Json = dict[str, Any]


def request_ids(run_id: str, rows: pa.Array) -> pa.Array:
    """`<run id>:<row>` for each row number."""
    return pc.binary_join_element_wise(run_id, pc.cast(rows, pa.string()), ":")


def capture_quota(offset: int, rows: int, total: int, capture_rows: int) -> int:
    """How many of the rows [offset, offset + rows) of a `total`-row run are captured: the
    chunk's share of min(capture_rows, total), rounded so that the shares add up exactly."""
    wanted = min(capture_rows, total)
    if not wanted or not rows:
        return 0
    return wanted * (offset + rows) // total - wanted * offset // total


def capture_mask(rows: int, quota: int, *, run_id: str, part: int) -> np.ndarray:
    """`quota` of `rows` chosen uniformly, the same for the same run and part."""
    mask = np.zeros(rows, dtype=bool)
    take = min(quota, rows)
    if take:
        seed = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big")
        mask[np.random.default_rng([seed, part]).choice(rows, take, replace=False)] = True
    return mask


def capture_records(
    instances: pa.Table,
    predictions: pa.Table,
    manifest: Manifest,
    *,
    at: datetime,
    run_id: str,
    sample_rate: float,
) -> list[Json]:
    """The endpoint's capture records (`mlcycle.serving.capture`) of the captured rows:
    `instances` are their input rows, `predictions` their rows of the predictions table."""
    stamp = at.isoformat(timespec="milliseconds")
    answers = _answers(predictions, manifest)
    ids = predictions.column(REQUEST_COLUMN).to_pylist()
    rows = predictions.column("row").to_pylist()
    records = []
    for instance, answer, request_id, row in zip(
        instances.to_pylist(), answers, ids, rows, strict=True
    ):
        records.append(
            {
                "time": stamp,
                "request_id": request_id,
                "model": manifest.model,
                "model_version": manifest.version,
                "status": "ok",
                "latency_ms": None,
                "instance": {k: _json(v) for k, v in instance.items()},
                "prediction": answer,
                "batch": {"run_id": run_id, "row": row, "sample_rate": sample_rate},
            }
        )
    return records


def encode(records: list[Json]) -> bytes:
    """gzip JSON lines, as the endpoint's capture buffer writes them."""
    lines = [json.dumps(r, separators=(",", ":"), allow_nan=True) for r in records]
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)


def instance_columns(manifest: Manifest, columns: list[str]) -> list[str]:
    """What a client would send: every column of the file but the target."""
    return [c for c in columns if c != manifest.target]


def _answers(predictions: pa.Table, manifest: Manifest) -> list[Json]:
    """What `:predict` answers for these rows (`LoadedModel.run`): float32 probabilities as
    their shortest decimals."""
    if manifest.task == "regression":
        return [{"value": _decimal(v)} for v in predictions.column("prediction").to_numpy()]
    labels = predictions.column("label").to_pylist()
    if not manifest.probability_output:
        return [{"label": label} for label in labels]
    columns = [predictions.column(f"probability_{name}").to_numpy() for name in manifest.classes]
    return [
        {
            "label": label,
            "probabilities": {
                name: _decimal(column[i])
                for name, column in zip(manifest.classes, columns, strict=True)
            },
        }
        for i, label in enumerate(labels)
    ]


def _decimal(value: np.floating[Any]) -> float:
    return float(str(np.float32(value)))


def _json(value: Any) -> Any:
    """A value as a client sends it in JSON: dates as ISO-8601 text, no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
