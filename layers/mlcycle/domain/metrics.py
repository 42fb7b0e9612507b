"""Stage 4: the evaluation contract, the rules every model of this run is judged by."""

from __future__ import annotations

from typing import Any

from mlcycle.errors import SpecError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import METRICS, ProblemSpec, Task

# Metrics with a natural range; a threshold outside it can never be met (or always is).
_BOUNDS: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "balanced_accuracy": (0.0, 1.0),
    "f1": (0.0, 1.0),
    "precision": (0.0, 1.0),
    "recall": (0.0, 1.0),
    "roc_auc": (0.0, 1.0),
    "pr_auc": (0.0, 1.0),
    "log_loss": (0.0, float("inf")),
    "brier": (0.0, 1.0),
    "rmse": (0.0, float("inf")),
    "mae": (0.0, float("inf")),
    "r2": (float("-inf"), 1.0),
}


def evaluation_contract(spec: ProblemSpec, schema: ResolvedSchema) -> dict[str, Any]:
    """Primary metric and direction, threshold, guardrails and monitoring limits."""
    primary = spec.metric_for(schema.task)
    _, greater_is_better = METRICS[primary]
    low, high = _BOUNDS[primary]
    if spec.threshold is not None and not low <= spec.threshold <= high:
        raise SpecError(
            f"threshold: {spec.threshold} is outside the range of {primary} ({low} to {high})"
        )
    return {
        "task": schema.task.value,
        "primary_metric": primary,
        "greater_is_better": greater_is_better,
        "threshold": spec.threshold,
        "decision": spec.decision.model_dump(mode="json") if schema.task is Task.BINARY else None,
        "gate": spec.gate.model_dump(mode="json"),
        "report_metrics": [name for name, (tasks, _) in METRICS.items() if schema.task in tasks],
        "guardrails": {
            "beat_baseline": "the winner must beat a dummy model fit on the same training rows",
            "not_worse_than_production": (
                "the winner must score at least as well as the production model on this holdout"
            ),
        },
        "monitoring": spec.monitoring.model_dump(mode="json"),
    }
