"""Judging a canary: its live traffic against production's over the same window.

Inputs are the endpoint's capture records (one per prediction or failed prediction) of the
two versions. The verdict compares what users saw: error rate, tail latency, and whether the
canary predicts a different distribution than production on the same kind of traffic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from mlcycle.domain.features import psi

Decision = Literal["promote", "rollback", "wait"]


@dataclass(frozen=True)
class CanaryPolicy:
    """Limits a canary must stay within to be promoted (from the spec's `release` section)."""

    min_requests: int = 50  # fewer canary requests than this is not evidence either way
    max_error_rate_increase: float = 0.01  # absolute: canary error rate - production's
    max_latency_ratio: float = 1.5  # canary p99 / production p99
    max_prediction_psi: float = 0.2
    max_waits: int = 3  # bake periods to wait for enough traffic before deciding anyway


@dataclass
class VersionStats:
    version: int
    requests: int = 0
    errors: int = 0
    p99_latency_ms: float | None = None
    prediction_shares: dict[str, float] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class Verdict:
    decision: Decision
    reason: str
    canary: VersionStats
    production: VersionStats | None
    prediction_psi: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _bucket(prediction: Mapping[str, Any], value_edges: list[float] | None) -> str:
    if "label" in prediction:
        return str(prediction["label"])
    value = float(prediction.get("value", np.nan))
    if value_edges is None or not np.isfinite(value):
        return "value"
    return f"bin{int(np.searchsorted(value_edges, value, side='right'))}"


def version_stats(
    records: Iterable[Mapping[str, Any]], version: int, value_edges: list[float] | None = None
) -> VersionStats:
    """Requests, errors, p99 latency and prediction shares of one version's capture records.

    A record is `{"model_version", "status"?, "latency_ms"?, "prediction"?}`; a record whose
    status is "error" counts as a failed request. Batch-scored rows (`batch`) are left out:
    they are not the live split the canary is judged on, and their population is another."""
    stats = VersionStats(version=version)
    latencies: list[float] = []
    shares: Counter[str] = Counter()
    for record in records:
        if int(record.get("model_version", -1)) != version or record.get("batch"):
            continue
        stats.requests += 1
        if record.get("status", "ok") == "error":
            stats.errors += 1
            continue
        if record.get("latency_ms") is not None:
            latencies.append(float(record["latency_ms"]))
        if record.get("prediction"):
            shares[_bucket(record["prediction"], value_edges)] += 1
    if latencies:
        stats.p99_latency_ms = float(np.percentile(latencies, 99))
    total = sum(shares.values())
    stats.prediction_shares = {k: v / total for k, v in sorted(shares.items())} if total else {}
    return stats


def judge(
    canary: VersionStats,
    production: VersionStats | None,
    policy: CanaryPolicy,
    *,
    waits_so_far: int,
) -> Verdict:
    """Promote, roll back, or wait for more traffic; the reason says which limit decided."""
    if canary.requests < policy.min_requests:
        if waits_so_far < policy.max_waits:
            return Verdict(
                "wait",
                f"canary v{canary.version} has {canary.requests} requests, fewer than "
                f"{policy.min_requests}; waiting (bake {waits_so_far + 1} of {policy.max_waits})",
                canary,
                production,
            )
        return Verdict(
            "promote",
            f"canary v{canary.version} saw only {canary.requests} requests in "
            f"{policy.max_waits} bake periods: promoted on its offline evaluation alone",
            canary,
            production,
        )
    problems: list[str] = []
    baseline_errors = production.error_rate if production and production.requests else 0.0
    if canary.error_rate - baseline_errors > policy.max_error_rate_increase:
        problems.append(
            f"error rate {canary.error_rate:.1%} against production's {baseline_errors:.1%}"
        )
    if (
        production is not None
        and production.p99_latency_ms
        and canary.p99_latency_ms is not None
        and canary.p99_latency_ms > policy.max_latency_ratio * production.p99_latency_ms
    ):
        problems.append(
            f"p99 latency {canary.p99_latency_ms:.1f} ms against production's "
            f"{production.p99_latency_ms:.1f} ms"
        )
    drift = None
    if production is not None and production.prediction_shares and canary.prediction_shares:
        keys = sorted(set(production.prediction_shares) | set(canary.prediction_shares))
        drift = psi(
            [production.prediction_shares.get(k, 0.0) for k in keys],
            [canary.prediction_shares.get(k, 0.0) for k in keys],
        )
        if drift > policy.max_prediction_psi:
            problems.append(
                f"prediction distribution PSI {drift:.3f} above {policy.max_prediction_psi}"
            )
    if problems:
        return Verdict(
            "rollback",
            f"canary v{canary.version} rolled back: " + "; ".join(problems),
            canary,
            production,
            drift,
        )
    return Verdict(
        "promote",
        f"canary v{canary.version} served {canary.requests} requests within every limit",
        canary,
        production,
        drift,
    )
