"""Stage 7b, offline evaluation: holdout metrics, the winner, and the gate's verdict."""

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import evaluation
from mlcycle.context import EvaluateResult, RunContext
from mlcycle.runtime import lake, metrics, registry, stage_handler


@stage_handler("evaluate_models")
def lambda_handler(run: RunContext) -> EvaluateResult:
    result = evaluation.evaluate_models(run, lake(), registry())
    metrics.add_metric(name="GatePassed", unit=MetricUnit.Count, value=int(result.gate.passed))
    return result
