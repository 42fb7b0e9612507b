"""Many-part datasets, plan: list the parts beside the _SUCCESS marker, resolve the schema once
on a sample of them, and write the manifest the Distributed Map reads."""

from mlcycle import parts
from mlcycle.context import RunContext
from mlcycle.parts import PartsPlan
from mlcycle.runtime import lake, stage_handler


@stage_handler("plan_parts")
def lambda_handler(run: RunContext) -> PartsPlan:
    return parts.plan_parts(run, lake())
