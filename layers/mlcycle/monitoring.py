"""Stage 9, monitoring: live traffic (or a given file) against the released model's baseline.

For one dataset: read the window of captured predictions, compare it with the training
baseline (`domain.monitor`), join late labels into a live metric, compare what the model
relies on live with what it relied on in training (`live_attribution`), write the drift
report (JSON and HTML) to the reports zone, and publish the numbers the alarms watch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from botocore.exceptions import ClientError

from mlcycle.adapters.capture import captured_since, labels
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.domain import live_fairness, monitor, performance_estimation
from mlcycle.domain.attribution import attribution_drift, attribution_shares
from mlcycle.domain.background import request_rows
from mlcycle.domain.drift_report import render_drift_report
from mlcycle.errors import MlcycleError
from mlcycle.lake_index import publish_index
from mlcycle.lake_layout import Zone, version_prefix
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.errors import InvalidRequestError, ModelUnavailableError
from mlcycle.serving.manifest import BACKGROUND_FILE, MANIFEST_FILE, ONNX_FILE, Manifest
from mlcycle.spec import ColumnType, MonitoringLimits, Task

NAMESPACE = "mlcycle"
MAX_DIMENSION = 1024  # characters in a CloudWatch dimension value
# Window rows explained for the live attribution (a seeded sample). Measured on one core
# with the churn forest (200 trees, 11 features): 0.65 s for 200 rows against its one-row
# background (exact, up to 2^11 coalitions a row), 3.5 s against an 8-row one (sampling).
ATTRIBUTION_ROWS = 200
ATTRIBUTION_CHUNK = 50  # rows per session.run: bounds the coalition arrays' memory


class NothingToMonitorError(MlcycleError):
    """The dataset has no model in production, so there is no baseline to compare with."""


def _released(dataset: str, registry: Registry) -> dict[str, Any]:
    release = registry.get_release(dataset) or {}
    version = release.get("production_version")
    entry = registry.get_version(dataset, int(version)) if version is not None else None
    if entry is None:
        raise NothingToMonitorError(f"{dataset!r} has no model in production to monitor")
    return entry


def _schema(entry: dict[str, Any]) -> ResolvedSchema:
    classes = entry.get("classes")
    task = Task(entry["task"])
    return ResolvedSchema(
        dataset=entry["dataset"],
        task=task,
        target=entry["target"],
        features={name: ColumnType(kind) for name, kind in entry["features"].items()},
        classes=classes,
        # older entries predate the stored positive class: theirs was the second label
        positive_class=entry.get("positive_class")
        or (classes[-1] if classes and task is Task.BINARY else None),
    )


def window_frame(records: list[dict[str, Any]], schema: ResolvedSchema) -> pd.DataFrame:
    """Captured instances as a frame typed like the curated data (what the baseline saw)."""
    rows = [r["instance"] for r in records if r.get("status", "ok") == "ok" and r.get("instance")]
    frame = pd.DataFrame(rows, columns=list(schema.features))
    for name, kind in schema.features.items():
        if kind is ColumnType.NUMERIC:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        elif kind is ColumnType.DATETIME:
            frame[name] = pd.to_datetime(frame[name], errors="coerce", utc=True, format="mixed")
            frame[name] = frame[name].dt.tz_localize(None)
        else:
            frame[name] = frame[name].astype("object").where(frame[name].notna(), None)
    return frame


def _predicted(record: dict[str, Any]) -> Any:
    prediction = record.get("prediction") or {}
    return prediction.get("label", prediction.get("value"))


def monitor_dataset(
    dataset: str,
    lake: Lake,
    registry: Registry,
    cloudwatch: Any,
    *,
    window_hours: float = 24.0,
    current: pd.DataFrame | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Compare the last `window_hours` of captured traffic (or `current`) with the baseline of
    the production model; returns the drift result's JSON with where the report went."""
    entry = _released(dataset, registry)
    schema = _schema(entry)
    # The limits and the primary metric are the evaluation contract of the model's own run
    # (the metrics stage wrote it from the spec), so a later spec edit cannot change them.
    contract = lake.get_json(
        lake.uri(f"{Zone.RUNS.prefix}dataset={dataset}/run={entry['run_id']}/metrics.json")
    )
    limits = MonitoringLimits.model_validate(contract["monitoring"])
    primary = str(contract["primary_metric"])
    artifacts = entry["artifacts"]
    baseline = lake.get_json(artifacts.get("monitor_baseline_uri") or artifacts["baseline_uri"])
    now = now or datetime.now(UTC)
    predictions: Any = None
    joined: pd.DataFrame | None = None
    fair: dict[str, Any] | None = None
    served: list[dict[str, Any]] | None = None  # captured records (a given file has none)
    truth: pd.DataFrame | None = None
    instances: list[dict[str, Any]] | pd.DataFrame = current if current is not None else []
    if current is None:
        records = [
            r
            for r in captured_since(lake, dataset, now - timedelta(hours=window_hours))
            if int(r.get("model_version", -1)) == int(entry["version"])
        ]
        current = window_frame(records, schema)
        served = [r for r in records if r.get("status", "ok") == "ok" and r.get("instance")]
        instances = [r["instance"] for r in served]
        predictions = np.asarray([_predicted(r) for r in served], dtype=object)
        truth = labels(lake, dataset)
        if len(truth) and served:
            window = pd.DataFrame(
                {"request_id": [str(r["request_id"]) for r in served], "predicted": predictions}
            )
            for name in schema.classes or []:  # probabilities, for roc_auc and log loss
                window[f"p:{name}"] = [
                    (r["prediction"].get("probabilities") or {}).get(name) for r in served
                ]
            joined = window.merge(truth, on="request_id")
        if baseline.get("fairness"):  # the captured instances keep the sensitive fields
            fair = live_fairness.from_records(
                served, predictions, truth, schema, baseline["fairness"]
            )
    elif baseline.get("fairness"):
        fair = {"note": "fairness is measured on captured traffic, not on a given file"}
    result = monitor.feature_drift(current, baseline, schema, limits, predictions=predictions)
    document = result.to_json()
    if joined is not None and len(joined):
        probability_columns = [f"p:{name}" for name in schema.classes or []]
        probabilities = joined[probability_columns].to_numpy(dtype="float64")
        document["live"] = monitor.live_quality(
            joined["predicted"].to_numpy(),
            joined["label"].astype(str).to_numpy()
            if schema.is_classification
            else joined["label"].to_numpy(),
            schema.task,
            schema.classes,
            schema.positive_class,
            primary,
            probabilities=probabilities if probability_columns else None,
        )
    document["attribution"], note = live_attribution(
        lake, dataset, int(entry["version"]), baseline, instances
    )
    if note:
        document["attribution_note"] = note
    if fair is not None:
        document["fairness"] = fair
    # the primary metric expected from calibrated probabilities, before the labels arrive
    document["performance_estimate"] = performance_estimation.from_records(
        served,
        truth,
        baseline.get("performance_estimation"),
        schema.task,
        primary,
        min_rows=limits.min_samples,
    )
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    prefix = f"{Zone.REPORTS.prefix}dataset={dataset}/monitor/{stamp}/"
    document["model_version"] = int(entry["version"])
    document["report_uri"] = lake.uri(prefix + "drift.html")
    lake.put_json(prefix + "drift.json", document)
    lake.put_text(
        prefix + "drift.html",
        render_drift_report(document, title=f"{dataset} v{entry['version']}: drift at {stamp}"),
        content_type="text/html",
    )
    publish(cloudwatch, dataset, document, primary, now)
    publish_index(lake, registry)
    return document


def live_attribution(
    lake: Lake,
    dataset: str,
    version: int,
    baseline: dict[str, Any],
    instances: list[dict[str, Any]] | pd.DataFrame,
    *,
    rows: int = ATTRIBUTION_ROWS,
    seed: int = 0,
) -> tuple[dict[str, Any] | None, str | None]:
    """What the served version relies on in the window against training: the shares of
    attribution of a seeded sample of at most `rows` instances (as captured, or the rows of
    a given frame in request form), explained by the endpoint's explainer against the
    version's background, compared with the baseline's `attribution` (`attribution_drift`).

    (None, why) when it cannot be measured: a baseline from before attributions, a version
    without background summary, no instances, or served files that cannot be used (logged;
    the drift report never fails for it)."""
    reference = (baseline.get("attribution") or {}).get("shares")
    if not reference:
        return None, "no attribution baseline for this version"
    n = len(instances)
    if not n:
        return None, "no live rows to explain"
    prefix = version_prefix(dataset, version)
    # imported here: only a monitor with an attribution baseline loads onnxruntime
    from mlcycle.serving.explain import BackgroundError, Explainer
    from mlcycle.serving.model import load_model

    started = time.perf_counter()
    try:
        # read, not listed: the monitor may read the models zone but not list it
        background = lake.get_json(lake.uri(prefix + BACKGROUND_FILE))
    except ClientError as error:
        # without list permission S3 answers a missing key with AccessDenied, not NoSuchKey
        code = error.response.get("Error", {}).get("Code")
        if code in {"NoSuchKey", "404", "NotFound", "AccessDenied"}:
            return None, "the version has no background summary to explain against"
        logging.getLogger(__name__).warning(
            "no live attribution for %s v%s: %s", dataset, version, error
        )
        return None, f"the background summary of this version cannot be read: {code}"
    try:
        manifest = Manifest.from_json(lake.get_json(lake.uri(prefix + MANIFEST_FILE)))
        model = load_model(manifest, lake.get_bytes(lake.uri(prefix + ONNX_FILE)), threads=1)
        explainer = Explainer.for_model(model, background)
    except (ModelUnavailableError, BackgroundError, ValueError, TypeError, KeyError) as error:
        logging.getLogger(__name__).warning(
            "no live attribution for %s v%s: %s", dataset, version, error
        )
        return None, f"the served files of this version cannot be explained: {error}"
    chosen = np.arange(n)
    if n > rows:
        chosen = np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
    if isinstance(instances, pd.DataFrame):
        kinds = {f.name: ColumnType(f.kind) for f in manifest.features}
        sample = request_rows(instances.iloc[chosen], kinds)
    else:
        sample = [instances[int(i)] for i in chosen]
    contributions: list[dict[str, float]] = []
    methods: set[str] = set()
    for start in range(0, len(sample), ATTRIBUTION_CHUNK):
        batch = _batch(model.builder, sample[start : start + ATTRIBUTION_CHUNK])
        if batch is None:
            continue
        for explanation in explainer.explain(batch.feeds, model.run(batch)):
            contributions.append(explanation.contributions)
            methods.add(explanation.method)
    if not contributions:
        return None, "no live row could be explained"
    result = {
        "rows": len(contributions),
        "window_rows": n,
        "reference_rows": int((baseline["attribution"] or {}).get("rows") or 0),
        "method": sorted(methods),
        **attribution_drift(reference, attribution_shares(contributions)),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return result, None


def _batch(builder: Any, instances: list[dict[str, Any]]) -> Any:
    """The instances as graph inputs, leaving out any the input builder refuses (captured
    ones were accepted, so normally none; a row of a given frame may be); None if none is
    left."""
    try:
        return builder.build(instances)
    except InvalidRequestError:
        kept = []
        for instance in instances:
            try:
                builder.build([instance])
            except InvalidRequestError:
                continue
            kept.append(instance)
        return builder.build(kept) if kept else None


def dimension(name: str) -> str:
    """A CloudWatch dimension value (1 to 1024 characters) for any column name: a longer
    name is cut, with a digest of the whole, so two long names sharing a start stay apart."""
    if not name:
        return "(unnamed)"
    if len(name) <= MAX_DIMENSION:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_DIMENSION - 13]}~{digest}"  # 1024 with "~" and 12 hex


def publish(
    cloudwatch: Any, dataset: str, document: dict[str, Any], primary: str, at: datetime
) -> None:
    """The numbers the drift and quality alarms watch, per dataset (and per feature)."""
    dims = [{"Name": "dataset", "Value": dataset}]
    data: list[dict[str, Any]] = [
        {"MetricName": "SampleSize", "Value": float(document["sample_size"]), "Unit": "Count"},
    ]
    if document.get("enough_samples"):
        data.append({"MetricName": "DriftedFeatures", "Value": float(document["n_drifted"])})
        for feature in document["features"]:
            data.append(
                {
                    "MetricName": "FeaturePSI",
                    "Value": float(feature["psi"]),
                    "Dimensions": [*dims, {"Name": "feature", "Value": dimension(feature["name"])}],
                }
            )
        if document.get("prediction"):
            data.append(
                {"MetricName": "PredictionPSI", "Value": float(document["prediction"]["psi"])}
            )
    live = document.get("live") or {}
    if live.get("metrics", {}).get(primary) is not None:
        data.append({"MetricName": "LiveMetric", "Value": float(live["metrics"][primary])})
    estimate = (document.get("performance_estimate") or {}).get("value")
    if estimate is not None:  # CBPE: the same metric, before the labels
        data.append({"MetricName": "EstimatedMetric", "Value": float(estimate)})
    # the worst judged group's min(DI, 1/DI): one alarm below min_disparate_impact
    worst = (document.get("fairness") or {}).get("worst_disparate_impact")
    if worst is not None:
        data.append({"MetricName": "DisparateImpact", "Value": float(worst["value"])})
    for datum in data:
        datum.setdefault("Dimensions", dims)
        datum["Timestamp"] = at
    for start in range(0, len(data), 500):  # PutMetricData takes up to 1000 values a call
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[start : start + 500])
