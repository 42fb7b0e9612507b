"""Stage 1, problem definition: validate the dataset's spec and open the run record."""

from mlcycle import stages
from mlcycle.context import ProblemResult, RunContext
from mlcycle.runtime import lake, registry, stage_handler


@stage_handler("define_problem")
def lambda_handler(run: RunContext) -> ProblemResult:
    return stages.define_problem(run, lake(), registry())
