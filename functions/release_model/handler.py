"""Stage 9, release: the first model goes to production, a later one starts a canary, and a
model that failed its gate is never served."""

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import release
from mlcycle.context import ReleaseResult, RunContext
from mlcycle.runtime import lake, metrics, registry, stage_handler


@stage_handler("release_model")
def lambda_handler(run: RunContext) -> ReleaseResult:
    result = release.start_release(run, lake(), registry())
    metrics.add_metric(name="ReleasesStarted", unit=MetricUnit.Count, value=1)
    return result
