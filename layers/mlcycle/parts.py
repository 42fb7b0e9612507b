"""Many-part datasets: the parts of one upload, collected and processed in parallel.

A dataset may arrive as part files in a folder under landing/ (what Spark, Glue and Athena
write); the `_SUCCESS` marker they write last starts one run over the folder:

    landing/<dataset>/<batch>/part-00000.csv ... part-00019.csv, then _SUCCESS

`plan_parts` lists the parts, resolves the schema once on a sample of them and writes a JSON
manifest; a Distributed Map collects (`collect_part`) and processes (`process_part`) each part
in its own invocations, each writing its curated Parquet and a document of what it did (rows,
rejects, rows per class, a mergeable profile); `merge_parts` adds the documents up into the
run's collect and process results, so the stages after it run as for one file.

    raw/dataset=<name>/dt=<date>/run=<id>/<part file>          each part, unchanged
    curated/dataset=<name>/dt=<date>/run=<id>/part-NNNNN.parquet
    runs/dataset=<name>/run=<id>/parts/part-NNNNN.json        the part's document
    quarantine/dataset=<name>/run=<id>/rejected_rows-NNNNN.parquet

Duplicates are dropped within a part, not across parts (that needs a key-hashed pass over all
of them); a part's own row order is kept, parts follow their key order.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from mlcycle.adapters.catalog import Catalog
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import now_iso
from mlcycle.context import CollectResult, ProcessResult, RunContext, required
from mlcycle.domain import process, profile_parts, sampling, tables
from mlcycle.errors import BadInputError
from mlcycle.lake_layout import MARKER, Zone, file_name, run_prefix, s3_uri
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ProblemSpec
from mlcycle.stages import PART_ERRORS, finish_processing, run_key, run_spec

SCHEMA_SAMPLE_PARTS = 8  # parts read to resolve the schema, spread over the folder
SCHEMA_SAMPLE_ROWS = 200_000  # rows of them the schema is resolved on
PART_DOCS = "parts/"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PartItem(_Model):
    """One part file, as the manifest lists it."""

    part: int
    key: str
    version_id: str | None = None
    size: int
    etag: str | None = None  # with the key and size, the part's fingerprint (list_parts)


class PartsPlan(_Model):
    dataset: str
    run_id: str
    dt: str
    bucket: str  # the landing bucket
    prefix: str  # the folder holding the parts and the marker
    parts: int
    parts_key: str  # the JSON array of `PartItem`s the Distributed Map reads
    spec_uri: str
    schema_uri: str  # resolved once, on a sample of the parts; every part is cleaned to it
    docs_prefix: str
    errors_prefix: str  # a part that fails on its data says why here (see record_failure)


class PartCollected(_Model):
    raw_uri: str
    raw_version_id: str | None
    sha256: str
    bytes: int
    rows: int
    format: str
    notes: list[str]


class PartEvent(_Model):
    """One item of the Distributed Map (after `collect_part`, with what it collected)."""

    plan: PartsPlan
    part: PartItem
    collected: PartCollected | None = None


class MergeEvent(RunContext):
    plan: PartsPlan


def list_parts(s3: Any, bucket: str, prefix: str) -> list[PartItem]:
    """The data files of a folder of parts, in key order."""
    items: list[PartItem] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if _is_data(obj["Key"], prefix):
                items.append(
                    PartItem(
                        part=len(items),
                        key=obj["Key"],
                        size=obj["Size"],
                        etag=obj.get("ETag", "").strip('"') or None,
                    )
                )
    return items


def fingerprint(parts: list[PartItem]) -> str:
    """What identifies a folder's content without reading it: a digest of each part's name,
    size and ETag (a retrain asks whether the folder changed since production's training)."""
    listed = sorted((file_name(p.key), p.size, p.etag) for p in parts)
    return hashlib.sha256(json.dumps(listed).encode()).hexdigest()


def _is_data(key: str, prefix: str) -> bool:
    """Hadoop's convention: names starting with `_` or `.` are metadata (`_SUCCESS`,
    `_committed_*`, `.crc`), not data; nested folders are not parts of this one."""
    rest = key[len(prefix) :]
    return bool(rest) and "/" not in rest and not rest.startswith(("_", "."))


# -- plan ------------------------------------------------------------------------------------


def plan_parts(ctx: RunContext, lake: Lake) -> PartsPlan:
    """List the marker's parts, resolve the schema on a sample of them, write the manifest."""
    problem = required(ctx.problem, "define_problem")
    source = ctx.source
    prefix = source.key[: -len(MARKER)]
    items = list_parts(lake.s3, source.bucket, prefix)
    if not items:
        raise BadInputError(
            f"{source.key}: no part files beside the marker (names starting with _ or . are "
            "metadata, and parts in nested folders are not read)"
        )
    empty = [item.key for item in items if item.size == 0]
    if empty:
        raise BadInputError(f"{len(empty)} empty part file(s): {', '.join(empty[:5])}")
    spec = run_spec(ctx, lake)
    schema = process.resolve_schema(_schema_sample(lake, source.bucket, items), spec)
    return PartsPlan(
        dataset=problem.dataset,
        run_id=ctx.run_id,
        dt=problem.started_at[:10],
        bucket=source.bucket,
        prefix=prefix,
        parts=len(items),
        parts_key=_key_of(
            lake.put_json(run_key(ctx, "parts.json"), [i.model_dump() for i in items])
        ),
        spec_uri=problem.spec_uri,
        schema_uri=lake.put_json(run_key(ctx, "schema.json"), schema.model_dump(mode="json")),
        docs_prefix=run_key(ctx, PART_DOCS),
        errors_prefix=run_key(ctx, PART_ERRORS),
    )


def _schema_sample(lake: Lake, bucket: str, items: list[PartItem]) -> pa.Table:
    """The first rows of up to `SCHEMA_SAMPLE_PARTS` parts spread over the folder, read one at
    a time (memory holds one part), as one table."""
    count = min(SCHEMA_SAMPLE_PARTS, len(items))
    chosen = sorted({round(i * (len(items) - 1) / max(count - 1, 1)) for i in range(count)})
    rows = math.ceil(SCHEMA_SAMPLE_ROWS / len(chosen))
    heads = []
    for part in chosen:
        item = items[part]
        table = _read_part(lake.get_bytes(s3_uri(bucket, item.key)), item.key).table
        # a copy of the head, so the rest of the part can be freed before the next one
        heads.append(table.take(np.arange(min(rows, table.num_rows))))
    return _concat(heads)


def _concat(tables_: list[pa.Table]) -> pa.Table:
    """Parts' tables as one; a column typed differently by two parts' readers is text."""
    try:
        return pa.concat_tables(tables_, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        names = list(dict.fromkeys(n for t in tables_ for n in t.column_names))
        as_text = [pa.table({n: t[n].cast(pa.string()) for n in t.column_names}) for t in tables_]
        return pa.concat_tables(as_text, promote_options="permissive").select(names)


def _read_part(data: bytes, key: str) -> tables.ReadResult:
    try:
        return tables.read_upload(data, file_name(key))
    except BadInputError as exc:
        raise BadInputError(f"part {key}: {exc}") from exc


def _key_of(uri: str) -> str:
    return uri.split("/", 3)[3]


# -- per part --------------------------------------------------------------------------------


@contextlib.contextmanager
def _said_by_part(lake: Lake, event: PartEvent, stage: str) -> Iterator[None]:
    """A part's bad data fails its child execution; what was wrong is also kept where the
    failure path finds it, since neither a Distributed Map's error (a tolerated-failure
    threshold) nor moto's (no error at all) carries the child's."""
    try:
        yield
    except BadInputError as exc:
        item = event.part
        message = str(exc) if str(exc).startswith("part ") else f"part {item.key}: {exc}"
        lake.put_json(
            event.plan.errors_prefix + f"part-{item.part:05d}.json",
            {
                "part": item.part,
                "key": item.key,
                "stage": stage,
                "type": type(exc).__name__,
                "message": message,
            },
        )
        raise BadInputError(message) from exc


def collect_part(event: PartEvent, lake: Lake) -> PartCollected:
    """Check the part is a readable table and copy it, unchanged, to the run's raw zone."""
    plan, item = event.plan, event.part
    data = lake.get_bytes(s3_uri(plan.bucket, item.key), version_id=item.version_id)
    with _said_by_part(lake, event, "collect_part"):
        read = tables.read_upload(data, file_name(item.key))
    raw_key = run_prefix(Zone.RAW, plan.dataset, plan.run_id, dt=plan.dt) + file_name(item.key)
    copy_source = {"Bucket": plan.bucket, "Key": item.key}
    copied = lake.s3.copy_object(Bucket=lake.bucket, Key=raw_key, CopySource=copy_source)
    return PartCollected(
        raw_uri=lake.uri(raw_key),
        raw_version_id=copied.get("VersionId"),
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        rows=read.table.num_rows,
        format=read.format,
        notes=read.notes,
    )


def process_part(event: PartEvent, lake: Lake) -> dict[str, Any]:
    """Clean the part to the run's schema, store its curated Parquet and its document."""
    plan, item = event.plan, event.part
    collected = required(event.collected, "collect_part")
    spec = ProblemSpec.model_validate(lake.get_json(plan.spec_uri))
    schema = ResolvedSchema.model_validate(lake.get_json(plan.schema_uri))
    data = lake.get_bytes(collected.raw_uri, version_id=collected.raw_version_id)
    table = tables.read_table(data, file_name(item.key), dictionary_encode=True)
    with _said_by_part(lake, event, "process_part"):
        processed = process.curate(table, spec, schema=schema, min_rows=1)
    name = f"part-{item.part:05d}"
    parquet = process.parquet_bytes(processed.curated)
    curated_key = run_prefix(Zone.CURATED, plan.dataset, plan.run_id, dt=plan.dt) + (
        f"{name}.parquet"
    )
    lake.put_bytes(curated_key, parquet, content_type="application/vnd.apache.parquet")
    rejected_uri = None
    if processed.rejected.num_rows:
        rejected_uri = lake.put_parquet(
            run_prefix(Zone.QUARANTINE, plan.dataset, plan.run_id)
            + f"rejected_rows-{name}.parquet",
            processed.rejected,
        )
    # the rows as every later stage reads them back, for the profile and the sample's counts
    frame = pq.read_table(io.BytesIO(parquet)).to_pandas()
    document = {
        "part": item.part,
        "source": item.model_dump(),
        "collected": collected.model_dump(),
        "curated_key": curated_key,
        "rows": processed.curated.num_rows,
        "rejected_rows": processed.rejected.num_rows,
        "rejected_uri": rejected_uri,
        "duplicates_dropped": processed.duplicates_dropped,
        "coerced": processed.coerced,
        "notes": processed.notes,
        "strata": sampling.strata(frame, schema.target, stratified=schema.is_classification),
        "profile": profile_parts.partial_profile(frame, schema),
    }
    lake.put_json(plan.docs_prefix + f"{name}.json", document)
    # the Map's results stay small: the merge reads the documents
    return {"part": item.part, "rows": document["rows"], "rejected_rows": document["rejected_rows"]}


# -- merge -----------------------------------------------------------------------------------


def merge_parts(event: MergeEvent, lake: Lake, catalog: Catalog | None = None) -> RunContext:
    """Add the parts' documents up into the run's collect and process results."""
    plan = event.plan
    ctx = RunContext.model_validate(event.model_dump(exclude={"plan"}))
    docs = lake.get_json_under(plan.docs_prefix)
    if len(docs) != plan.parts:  # a child failed (moto's Map carries on where AWS's stops)
        raise BadInputError(f"{plan.parts - len(docs)} of {plan.parts} parts failed")
    schema = ResolvedSchema.model_validate(lake.get_json(plan.schema_uri))
    rows = sum(doc["rows"] for doc in docs)
    if rows < process.MIN_ROWS:
        raise BadInputError(
            f"only {rows} usable rows in {plan.parts} parts; at least {process.MIN_ROWS} are "
            "needed to train and evaluate"
        )
    collected = [doc["collected"] for doc in docs]
    # one digest of the parts' digests, in part order: the upload's identity in lineage
    sha256 = hashlib.sha256("\n".join(c["sha256"] for c in collected).encode()).hexdigest()
    formats = sorted({c["format"] for c in collected})
    lineage = {
        "source": ctx.source.model_dump(),
        "sha256": sha256,
        "bytes": sum(c["bytes"] for c in collected),
        "rows": sum(c["rows"] for c in collected),
        "format": "+".join(formats),
        "parts": [{**doc["source"], **doc["collected"]} for doc in docs],
        "collected_at": now_iso(),
        "notes": _notes(docs, "collected"),
    }
    if ctx.traffic is not None:
        lineage["traffic"] = ctx.traffic.model_dump()
    raw_prefix = run_prefix(Zone.RAW, plan.dataset, plan.run_id, dt=plan.dt)
    curated_prefix = run_prefix(Zone.CURATED, plan.dataset, plan.run_id, dt=plan.dt)
    rejected = sum(doc["rejected_rows"] for doc in docs)
    duplicates = sum(doc["duplicates_dropped"] for doc in docs)
    ctx.collect = CollectResult(
        raw_uri=lake.uri(raw_prefix),
        raw_version_id=None,
        lineage_uri=lake.put_json(run_key(ctx, "lineage.json"), lineage),
        sha256=sha256,
        rows=lineage["rows"],
        format=lineage["format"],
        notes=lineage["notes"],
        parts_fingerprint=fingerprint([PartItem.model_validate(d["source"]) for d in docs]),
    )
    notes = [f"{plan.parts} parts, processed in parallel; duplicates dropped within each part"]
    if duplicates:
        notes.append(f"dropped {duplicates} exact duplicate row(s)")
    if rejected:
        notes.append(f"moved {rejected} row(s) to quarantine (see each part's document)")
    notes += _notes(docs, "coerced")
    result = ProcessResult(
        curated_uri=lake.uri(curated_prefix),
        schema_uri=plan.schema_uri,
        task=schema.task,
        rows=rows,
        features=len(schema.features),
        rejected_rows=rejected,
        rejected_uri=lake.uri(run_prefix(Zone.QUARANTINE, plan.dataset, plan.run_id))
        if rejected
        else None,
        duplicates_dropped=duplicates,
        notes=notes,
        parts=plan.parts,
        parts_uri=lake.uri(plan.docs_prefix),
    )
    if catalog is not None:
        first = lake.get_bytes(lake.uri(docs[0]["curated_key"]))
        catalog.register_run(
            plan.dataset, plan.dt, plan.run_id, pq.read_schema(io.BytesIO(first)), schema
        )
    ctx.process = finish_processing(ctx, lake, result, schema)
    return ctx


def _notes(docs: list[dict[str, Any]], kind: str) -> list[str]:
    """Notes the parts share said once with how many parts said them; coercions summed."""
    if kind == "coerced":
        totals: dict[str, int] = {}
        for doc in docs:
            for column, n in doc["coerced"].items():
                totals[column] = totals.get(column, 0) + n
        return [
            f"{c!r}: {n} value(s) could not be read and became empty" for c, n in totals.items()
        ]
    counts: dict[str, int] = {}
    for doc in docs:
        for note in doc["collected"]["notes"]:
            counts[note] = counts.get(note, 0) + 1
    return [note if n == 1 else f"{note} ({n} parts)" for note, n in counts.items()]
