"""Stage 9, release: a model that passed its gate goes to production; others never serve."""

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import stages
from mlcycle.context import ReleaseResult, RunContext
from mlcycle.runtime import metrics, registry, stage_handler


@stage_handler("release_model")
def lambda_handler(run: RunContext) -> ReleaseResult:
    result = stages.release_model(run, registry())
    released = int(result.stage == "production")
    metrics.add_metric(name="ModelsReleased", unit=MetricUnit.Count, value=released)
    return result
