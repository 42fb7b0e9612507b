"""Where everything lives in the lake: one place that knows the key layout.

Zones are prefixes of the lake bucket. Keys are Hive-partitioned (`dataset=`, `dt=`, `run=`)
so Athena and Glue can read the curated zone without a crawler guessing partitions.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePosixPath


class Zone(StrEnum):
    LANDING = "landing"  # user uploads; an Object Created event here starts a run
    SPECS = "specs"  # problem specs, one per dataset: specs/<dataset>.yaml
    RAW = "raw"  # unchanged copies of uploads, never rewritten
    CURATED = "curated"
    FEATURES = "features"
    MODELS = "models"
    REPORTS = "reports"
    RUNS = "runs"  # per-run documents: validated spec, lineage, schema, contract, evaluation
    CAPTURE = "capture"  # the endpoint's predictions, buffered per container
    LABELS = "labels"  # ground truth arriving later: labels/dataset=<name>/..., by request id
    QUARANTINE = "quarantine"
    QUERY_RESULTS = "query-results"  # what Athena writes for the lake's workgroup
    SCORE = "score"  # files to score in bulk: score/<dataset>/<file> starts a scoring run
    PREDICTIONS = "predictions"  # batch scoring's output: predictions/dataset=<name>/run=<id>/

    @property
    def prefix(self) -> str:
        return f"{self.value}/"


# Objects tagged so are working copies (batch scoring's chunks): a lifecycle rule expires them.
TRANSIENT_TAG = "mlcycle-transient"

SPEC_SUFFIXES = (".yaml", ".yml", ".json")

# What Spark, Glue and Athena write last into a folder of part files: it starts one run over
# them (mlcycle.parts).
MARKER = "_SUCCESS"


def is_marker(key: str) -> bool:
    """A `_SUCCESS` marker in a folder of parts: `landing/<dataset>/<folder>/.../_SUCCESS`."""
    path = PurePosixPath(key)
    return path.name == MARKER and len(path.parts) >= 4


def is_part(key: str) -> bool:
    """A file in a folder of parts (it waits for the folder's marker), or a marker outside one."""
    path = PurePosixPath(key)
    return (len(path.parts) >= 4 or path.name == MARKER) and not is_marker(key)


def spec_keys(dataset: str) -> list[str]:
    """Candidate keys of a dataset's problem spec, in the order they are looked up."""
    return [f"{Zone.SPECS.prefix}{dataset}{suffix}" for suffix in SPEC_SUFFIXES]


def run_prefix(zone: Zone, dataset: str, run_id: str, *, dt: str | None = None) -> str:
    """`<zone>/dataset=<name>/[dt=<date>/]run=<id>/`."""
    date_part = f"dt={dt}/" if dt else ""
    return f"{zone.prefix}dataset={dataset}/{date_part}run={run_id}/"


def version_prefix(dataset: str, version: int) -> str:
    return f"{Zone.MODELS.prefix}dataset={dataset}/version={version:06d}/"


def file_name(key: str) -> str:
    return PurePosixPath(key).name


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
