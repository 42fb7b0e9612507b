"""Stage 8, integration: the winner becomes a registry version with lineage and artifacts."""

from mlcycle import stages
from mlcycle.context import RegisterResult, RunContext
from mlcycle.runtime import lake, registry, settings, stage_handler


@stage_handler("register_model")
def lambda_handler(run: RunContext) -> RegisterResult:
    return stages.register_model(run, lake(), registry(), settings().code_version)
