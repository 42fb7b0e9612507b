"""Stage 2, data collection: check the upload is a table, copy it to raw with its lineage."""

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import stages
from mlcycle.context import CollectResult, RunContext
from mlcycle.runtime import lake, metrics, stage_handler


@stage_handler("collect_data")
def lambda_handler(run: RunContext) -> CollectResult:
    result = stages.collect_data(run, lake())
    metrics.add_metric(name="RowsCollected", unit=MetricUnit.Count, value=result.rows)
    return result
