"""Stage 5, exploration: a profile of the curated data, as JSON and a self-contained page."""

from mlcycle import stages
from mlcycle.context import ExploreResult, RunContext
from mlcycle.runtime import lake, stage_handler


@stage_handler("explore_data")
def lambda_handler(run: RunContext) -> ExploreResult:
    return stages.explore_data(run, lake())
