"""Many-part datasets: the parts' documents added up into the run's collect and process
results (lineage, counts, notes), and the run's partition of the Glue table."""

from mlcycle import parts
from mlcycle.context import RunContext
from mlcycle.parts import MergeEvent
from mlcycle.runtime import catalog, lake, stage_handler


@stage_handler("merge_parts", event_model=MergeEvent)
def lambda_handler(event: MergeEvent) -> RunContext:
    return parts.merge_parts(event, lake(), catalog())
