"""Stage 9, canary judgement: after each bake period, promote, roll back or wait for traffic."""

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import release
from mlcycle.context import ReleaseResult, RunContext
from mlcycle.runtime import lake, metrics, registry, stage_handler


@stage_handler("judge_canary")
def lambda_handler(run: RunContext) -> ReleaseResult:
    result = release.judge_canary(run, lake(), registry())
    if result.stage == "production":
        metrics.add_metric(name="CanariesPromoted", unit=MetricUnit.Count, value=1)
    elif result.stage == "rolled_back":
        metrics.add_metric(name="CanariesRolledBack", unit=MetricUnit.Count, value=1)
    return result
