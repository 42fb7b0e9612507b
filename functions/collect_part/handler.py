"""Many-part datasets, stage 2 for one part (a Distributed Map child): read and check it, copy
it unchanged to the raw zone."""

from mlcycle import parts
from mlcycle.parts import PartCollected, PartEvent
from mlcycle.runtime import lake, stage_handler


@stage_handler("collect_part", event_model=PartEvent)
def lambda_handler(event: PartEvent) -> PartCollected:
    return parts.collect_part(event, lake())
