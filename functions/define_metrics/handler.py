"""Stage 4, metrics definition: the evaluation contract every model of the run is judged by."""

from mlcycle import stages
from mlcycle.context import MetricsResult, RunContext
from mlcycle.runtime import lake, stage_handler


@stage_handler("define_metrics")
def lambda_handler(run: RunContext) -> MetricsResult:
    return stages.define_metrics(run, lake())
