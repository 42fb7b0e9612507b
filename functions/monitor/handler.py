"""Stage 9, monitoring: hourly (or on demand with {"dataset": ...}), each released model's
live traffic against its training baseline; drift and quality metrics feed the alarms."""

from typing import Any

from pydantic import BaseModel, ConfigDict

from mlcycle import monitoring
from mlcycle.runtime import client, lake, logger, registry, stage_handler


class MonitorRequest(BaseModel):
    """A scheduled event (no dataset: every released model) or an on-demand request."""

    model_config = ConfigDict(extra="ignore")

    dataset: str | None = None
    window_hours: float = 24.0


@stage_handler("monitor", event_model=MonitorRequest)
def lambda_handler(request: MonitorRequest) -> dict[str, Any]:
    datasets = [request.dataset] if request.dataset else registry().released_datasets()
    summaries = {}
    for dataset in datasets:
        result = monitoring.monitor_dataset(
            dataset, lake(), registry(), client("cloudwatch"), window_hours=request.window_hours
        )
        summaries[dataset] = {
            "alarm": result["alarm"],
            "drifted_features": result["drifted_features"],
            "sample_size": result["sample_size"],
            "report_uri": result["report_uri"],
        }
        logger.info("monitored", extra={"dataset": dataset, "summary": summaries[dataset]})
    return summaries
