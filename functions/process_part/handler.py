"""Many-part datasets, stage 3 for one part (a Distributed Map child): curated Parquet cleaned
to the run's schema, rejects quarantined, and the part's document with its profile."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import parts
from mlcycle.parts import PartEvent
from mlcycle.runtime import lake, metrics, stage_handler


@stage_handler("process_part", event_model=PartEvent)
def lambda_handler(event: PartEvent) -> dict[str, Any]:
    result = parts.process_part(event, lake())
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=result["rejected_rows"])
    return result
