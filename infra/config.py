"""Deployment configuration: every knob a platform team turns, decided in app.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy
from aws_cdk.aws_logs import RetentionDays


@dataclass(frozen=True, kw_only=True)
class FunctionSizing:
    memory_mb: int
    timeout: Duration


# Heavy stages get Lambda's ceiling; light ones stay small so they start fast and cost little.
_LIGHT = FunctionSizing(memory_mb=512, timeout=Duration.minutes(1))
_MEDIUM = FunctionSizing(memory_mb=2048, timeout=Duration.minutes(5))
_HEAVY = FunctionSizing(memory_mb=10240, timeout=Duration.minutes(15))


def _default_sizing() -> dict[str, FunctionSizing]:
    return {
        "start_run": _LIGHT,
        "define_problem": _LIGHT,
        "collect_data": _MEDIUM,
        "process_data": _HEAVY,
        # many-part datasets: the plan reads a few parts one at a time, each part is one child
        "plan_parts": _HEAVY,
        "collect_part": _MEDIUM,
        "process_part": _HEAVY,
        "merge_parts": _MEDIUM,
        "define_metrics": _LIGHT,
        "explore_data": _HEAVY,
        "engineer_features": _HEAVY,
        "train_model": _HEAVY,
        "evaluate_models": _HEAVY,
        "register_model": _LIGHT,
        "request_approval": _LIGHT,
        "release_model": _LIGHT,
        "judge_canary": _MEDIUM,
        "record_failure": _LIGHT,
        "monitor": _HEAVY,
        "retrain": _LIGHT,
        "start_scoring": _LIGHT,
        "plan_scoring": _HEAVY,  # streams the upload (~0.5 GB at any size): memory buys vCPUs
        "score_part": _MEDIUM,  # one chunk
        "finish_scoring": _MEDIUM,
    }


@dataclass(frozen=True, kw_only=True)
class MlcycleConfig:
    """One environment's settings. Constructs receive the parts they need as typed arguments."""

    env_name: str
    removal_policy: RemovalPolicy = RemovalPolicy.DESTROY
    landing_prefix: str = "landing/"
    log_retention: RetentionDays = RetentionDays.ONE_MONTH
    reports_expire_days: int = 365
    capture_expire_days: int = 90
    noncurrent_versions_expire_days: int = 30
    max_training_concurrency: int = 4
    access_logs_expire_days: int = 365
    # Caps each pipeline function's concurrency; None leaves the account pool shared (a new
    # account's pool is 10, and reserving from it fails the deployment).
    reserved_concurrency: int | None = None
    endpoint_memory_mb: int = 1024  # a full vCPU share for onnxruntime; cold starts halve
    endpoint_throttle_rate: int = 100  # requests per second, steady
    endpoint_throttle_burst: int = 200
    endpoint_max_instances: int = 1000  # per request
    endpoint_api_keys: bool = False  # IAM authorization always; API keys as an option
    endpoint_p99_latency_ms: int = 500  # alarm above this (API Gateway latency, p99 over 5 min)
    alarm_email: str | None = None  # subscribed to the notifications topic when set
    approval_email: str | None = None  # subscribed to the approval requests topic when set
    monitor_every_hours: int = 1
    # Datasets whose drift and quality alarms the stack holds, thresholds read from their
    # spec files (project-relative paths) at synth.
    monitored_specs: tuple[str, ...] = ("examples/customer-churn.yaml",)
    scoring_chunk_rows: int = 200_000  # rows per batch scoring invocation
    scoring_max_concurrency: int = 10  # chunks scored at once (the Distributed Map's)
    part_max_concurrency: int = 10  # parts of a many-part upload processed at once
    sizing: dict[str, FunctionSizing] = field(default_factory=_default_sizing)


ENVIRONMENTS: dict[str, MlcycleConfig] = {
    "dev": MlcycleConfig(env_name="dev"),
    "prod": MlcycleConfig(
        env_name="prod",
        removal_policy=RemovalPolicy.RETAIN,
        log_retention=RetentionDays.ONE_YEAR,
        reports_expire_days=730,
        capture_expire_days=365,
        access_logs_expire_days=730,
        reserved_concurrency=10,
    ),
}
