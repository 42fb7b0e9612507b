"""Stage 3, processing and storage: typed, deduplicated, curated Parquet; rejects quarantined."""

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import stages
from mlcycle.context import ProcessResult, RunContext
from mlcycle.runtime import catalog, lake, metrics, stage_handler


@stage_handler("process_data")
def lambda_handler(run: RunContext) -> ProcessResult:
    result = stages.process_data(run, lake(), catalog())
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=result.rejected_rows)
    metrics.add_metric(
        name="DuplicatesDropped", unit=MetricUnit.Count, value=result.duplicates_dropped
    )
    return result
