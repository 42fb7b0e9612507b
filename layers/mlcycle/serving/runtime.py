"""The endpoint's own small runtime: settings, Powertools logger and metrics, AWS clients, the
model cache and the capture buffer, one of each per container.

Separate from `mlcycle.runtime` on purpose: that one imports the pipeline's adapters (pandas,
pyarrow); the endpoint ships onnxruntime, numpy and Powertools only. botocore is imported on
first use, not at import: a unit test of the handler never pays for it.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from mlcycle.serving.capture import CaptureBuffer, FlushResult
from mlcycle.serving.errors import ModelUnavailableError, ServingError
from mlcycle.serving.release import ModelCache


class _Stdout(io.TextIOBase):
    """Writes to whatever sys.stdout is now (Lambda's stdout; pytest's or a log file locally)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "mlcycle-predict"),
    stream=cast(IO[str], _Stdout()),
)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "mlcycle"))


class MisconfiguredError(ServingError):
    """The function's environment is wrong: the service is broken, so a 500 that says so."""

    status = 500
    error = "internal error"


@dataclass(frozen=True)
class Settings:
    """The endpoint's environment (see the README of the predict function for each)."""

    registry_table: str
    lake_bucket: str
    release_cache_seconds: float = 30.0
    max_instances: int = 1000
    capture_max_records: int = 500
    capture_max_seconds: float = 60.0
    capture_enabled: bool = True
    model_name: str | None = None  # the model this function is configured for, if one

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        missing = [name for name in ("REGISTRY_TABLE", "LAKE_BUCKET") if not env.get(name)]
        if missing:
            raise MisconfiguredError(f"the function is misconfigured: {', '.join(missing)} not set")
        try:
            return cls(
                registry_table=env["REGISTRY_TABLE"],
                lake_bucket=env["LAKE_BUCKET"],
                release_cache_seconds=float(env.get("RELEASE_CACHE_SECONDS", "30")),
                max_instances=int(env.get("MAX_INSTANCES", "1000")),
                capture_max_records=int(env.get("CAPTURE_MAX_RECORDS", "500")),
                capture_max_seconds=float(env.get("CAPTURE_MAX_SECONDS", "60")),
                capture_enabled=env.get("CAPTURE_ENABLED", "true").lower()
                not in {"0", "false", "no"},
                model_name=env.get("MODEL_NAME") or None,
            )
        except ValueError as error:
            raise MisconfiguredError(f"the function is misconfigured: {error}") from None


def _clients() -> tuple[Any, Any]:
    # botocore, not boto3: the endpoint needs two plain clients, and boto3 adds its resource
    # layer and s3transfer (with asyncio) to every cold start.
    import botocore.session
    from botocore.config import Config

    # Short timeouts: a stuck call must not hold a request for Lambda's whole timeout.
    config = Config(
        retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10
    )
    session = botocore.session.get_session()
    return session.create_client("dynamodb", config=config), session.create_client(
        "s3", config=config
    )


class Runtime:
    def __init__(self, settings: Settings, *, dynamodb: Any = None, s3: Any = None) -> None:
        if dynamodb is None or s3 is None:
            default_dynamodb, default_s3 = _clients()
            dynamodb, s3 = dynamodb or default_dynamodb, s3 or default_s3
        self.settings = settings
        self.s3 = s3
        self.models = ModelCache(
            dynamodb=dynamodb,
            s3=s3,
            table=settings.registry_table,
            bucket=settings.lake_bucket,
            ttl=settings.release_cache_seconds,
            on_load_failure=_load_failed,
        )
        self.capture = CaptureBuffer(
            self._put_capture,
            max_records=settings.capture_max_records,
            max_seconds=settings.capture_max_seconds,
        )

    def _put_capture(self, key: str, body: bytes) -> None:
        self.s3.put_object(
            Bucket=self.settings.lake_bucket,
            Key=key,
            Body=body,
            ContentType="application/x-ndjson",
            ContentEncoding="gzip",
        )

    def after_request(self) -> None:
        """Flush the capture if due (never raising), then the request's metrics."""
        try:
            report(self.capture.maybe_flush())
        finally:
            flush_metrics()

    def flush(self) -> FlushResult:
        """Write out the capture buffer now (tests, the local server's shutdown)."""
        result = self.capture.flush()
        report(result)
        return result


def _load_failed(name: str, version: int, error: ModelUnavailableError) -> None:
    logger.error(
        "model load failed", extra={"model": name, "version": version, "reason": str(error)}
    )
    # The alarm watches this metric per service, whatever the model: CloudWatch matches
    # dimension sets exactly, so it is published on its own with that one dimension.
    with single_metric(
        name="ModelLoadFailures",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions={"service": str(metrics.service)},
    ):
        pass


def report(result: FlushResult | None) -> None:
    if result is None:
        return
    if result.failed:
        logger.warning(
            "capture flush failed; records kept for the next try",
            extra={"failed": result.failed, "errors": result.errors},
        )
        metrics.add_metric(name="CaptureFailures", unit=MetricUnit.Count, value=1)
    if result.dropped:
        logger.warning(
            "capture buffer full; oldest records dropped", extra={"dropped": result.dropped}
        )
        metrics.add_metric(name="CaptureDropped", unit=MetricUnit.Count, value=result.dropped)


def flush_metrics() -> None:
    # Only when the request added some: an empty flush warns, and would leave dimensions behind.
    if metrics.metric_set:
        metrics.flush_metrics()
    else:
        metrics.dimension_set.clear()
        metrics.dimension_set.update(metrics.default_dimensions)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get() -> Runtime:
    """The container's runtime, built from the environment on first use."""
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = Runtime(Settings.from_env())
    return _runtime


def current() -> Runtime | None:
    """The runtime if one was built (health must not build one just to answer)."""
    return _runtime


def reset(runtime: Runtime | None = None) -> None:
    """Drop (or replace) the container's runtime: tests and the local server use it after
    changing the environment."""
    global _runtime
    _runtime = runtime
