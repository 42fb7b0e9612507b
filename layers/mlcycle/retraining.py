"""Retraining on an alarm: which dataset, what is new since production was trained, and the
run that learns from it (the latest upload plus the labeled traffic production saw).

An alarm with nothing new to learn from (no labeled traffic since production's training,
the same upload) trains nothing: the skip is recorded on the dataset and notified, and the
alarm is left for a person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mlcycle.adapters.capture import captured_since, labels
from mlcycle.adapters.executions import start_once
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry, now_iso
from mlcycle.context import RunContext, Source, TrafficSource
from mlcycle.domain.traffic import TIME_COLUMN, LabeledTraffic, join_labels, split_recent
from mlcycle.errors import MlcycleError
from mlcycle.lake_layout import MARKER, Zone, is_marker, run_prefix
from mlcycle.parts import fingerprint, list_parts
from mlcycle.spec import RetrainingPolicy
from mlcycle.spec_store import find_spec

Notify = Callable[[str, str], None]  # (subject, message)
TRAFFIC_FILE = "labeled_traffic.parquet"
RECENT_FILE = "recent_traffic.parquet"


class NothingToRetrainError(MlcycleError):
    """The alarm names no dataset, or the dataset has no successful run to retrain from."""


def alarm_dataset(detail: dict[str, Any]) -> str:
    """The `dataset` dimension of the alarm's metric (every model alarm carries one)."""
    for metric in detail.get("configuration", {}).get("metrics", []):
        dimensions = metric.get("metricStat", {}).get("metric", {}).get("dimensions", {})
        if dimensions.get("dataset"):
            return str(dimensions["dataset"])
    raise NothingToRetrainError(f"alarm {detail.get('alarmName')!r} names no dataset")


def retrain_on_alarm(
    detail: dict[str, Any],
    registry: Registry,
    sfn: Any,
    state_machine_arn: str,
    lake: Lake,
    notify: Notify,
) -> dict[str, Any]:
    """Start one run on the latest upload and the labeled traffic since it, unless nothing is
    new since production's training; alarms of the same hour start one run only."""
    dataset = alarm_dataset(detail)
    run = registry.latest_run(dataset, status="SUCCEEDED")
    if run is None or not run.get("source"):
        raise NothingToRetrainError(f"{dataset!r} has no successful run to retrain from")
    # The latest version of the latest upload's key: the newest data, not a pinned version.
    source = Source.model_validate({**run["source"], "version_id": None, "etag": None})
    at = datetime.fromisoformat(str(detail.get("state", {}).get("timestamp") or now_iso()))
    name = f"{dataset}-retrain-{at.astimezone(UTC):%Y%m%d%H}"
    spec = find_spec(lake, dataset)
    policy = spec.retraining
    production = _production(registry, dataset)
    new_upload = _new_upload(lake, source, production)
    traffic = None
    since = max(
        _upload_era(run, production, new_upload),
        datetime.now(UTC) - timedelta(days=policy.window_days),
    )
    if "labeled_traffic" in policy.sources:
        records = captured_since(lake, dataset, since)
        traffic = join_labels(records, labels(lake, dataset), spec.target)
    new_labels = _labeled_since(traffic, production)
    if not new_upload and new_labels < policy.min_new_labels:
        return _skip(registry, dataset, production, new_labels, policy, detail, notify)
    context = RunContext(run_id=name, source=source)
    if traffic is not None and new_labels >= policy.min_new_labels:
        context.traffic = _store(lake, dataset, name, traffic, policy, since)
    started = start_once(sfn, state_machine_arn, context)
    traffic_rows = context.traffic.rows if context.traffic else 0
    registry.record_retraining(
        dataset,
        {
            "status": "started",
            "run_id": name,
            "at": now_iso(),
            "alarm": detail.get("alarmName"),
            "reason": f"{'a new upload' if new_upload else 'the same upload'} and "
            f"{new_labels} labeled requests since production's training "
            f"({traffic_rows} to learn from, "
            f"{context.traffic.recent_rows if context.traffic else 0} held back to judge)",
        },
    )
    return {
        **started,
        "dataset": dataset,
        "reason": detail.get("state", {}).get("reason"),
        "traffic_rows": traffic_rows,
    }


def _production(registry: Registry, dataset: str) -> dict[str, Any] | None:
    release = registry.get_release(dataset) or {}
    version = release.get("production_version")
    return registry.get_version(dataset, int(version)) if version is not None else None


def _new_upload(lake: Lake, source: Source, production: dict[str, Any] | None) -> bool:
    """Whether the upload's current content is not what production was trained on (its
    SHA-256, streamed; version ids and ETags do not survive copies of the lake)."""
    if production is None:
        return True
    lineage = production.get("lineage") or {}
    if is_marker(source.key):  # a folder of parts: hashing them all is the whole dataset
        listed = list_parts(lake.s3, source.bucket, source.key[: -len(MARKER)])
        return fingerprint(listed) != lineage.get("parts_fingerprint")
    body = lake.s3.get_object(Bucket=source.bucket, Key=source.key)["Body"]
    digest = hashlib.sha256()
    for chunk in body.iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest() != lineage.get("sha256")


def _upload_era(
    run: dict[str, Any], production: dict[str, Any] | None, new_upload: bool
) -> datetime:
    """Since when traffic belongs with the latest upload: since production's training when
    it learned from that upload (or since its own traffic window, for a model retrained
    before), else since the latest run on the new upload started."""
    if production is not None and not new_upload:
        earlier = (production.get("lineage") or {}).get("traffic") or {}
        return datetime.fromisoformat(str(earlier.get("since") or production["created_at"]))
    return datetime.fromisoformat(str(run["started_at"]))


def _labeled_since(traffic: LabeledTraffic | None, production: dict[str, Any] | None) -> int:
    """Labeled requests production has not been trained on: since it was registered."""
    if traffic is None or not len(traffic.rows):
        return 0
    if production is None:
        return len(traffic.rows)
    trained = datetime.fromisoformat(str(production["created_at"]))
    return int((traffic.rows[TIME_COLUMN] > trained).sum())


def _skip(
    registry: Registry,
    dataset: str,
    production: dict[str, Any] | None,
    new_labels: int,
    policy: RetrainingPolicy,
    detail: dict[str, Any],
    notify: Notify,
) -> dict[str, Any]:
    version = production["version"] if production else None
    reason = (
        f"retraining skipped: no new data since v{version} (the same upload, "
        f"{new_labels} labeled requests since, {policy.min_new_labels} needed)"
    )
    record = {
        "status": "skipped",
        "reason": reason,
        "at": now_iso(),
        "alarm": detail.get("alarmName"),
        "production_version": version,
        "new_labels": new_labels,
    }
    registry.record_retraining(dataset, record)
    notify(
        f"mlcycle: {dataset} alarm, retraining skipped"[:100],
        f"{detail.get('alarmName')} fired: {detail.get('state', {}).get('reason')}\n"
        f"{reason}.\nThe alarm needs a person: look at the drift report, upload new data or "
        "labels (labels/dataset=<name>/), or retrain by hand.",
    )
    return {"dataset": dataset, "started": False, "skipped": True, "reason": reason}


def _store(
    lake: Lake,
    dataset: str,
    run_id: str,
    traffic: LabeledTraffic,
    policy: RetrainingPolicy,
    since: datetime,
) -> TrafficSource:
    """Write the traffic the run learns from, and its held-back recent slice, to the raw zone
    (immutable copies of a run's sources); feature engineering caps its share of training."""
    older, recent = split_recent(traffic.rows, policy.recent_fraction)
    prefix = run_prefix(Zone.RAW, dataset, run_id)
    summary = traffic.summary()
    return TrafficSource(
        uri=lake.put_parquet(prefix + TRAFFIC_FILE, older),
        recent_uri=lake.put_parquet(prefix + RECENT_FILE, recent) if len(recent) else None,
        rows=len(older),
        recent_rows=len(recent),
        first_at=summary["first_at"],
        last_at=summary["last_at"],
        requests=traffic.requests,
        unlabeled=traffic.unlabeled,
        since=since.isoformat(timespec="seconds"),
    )
