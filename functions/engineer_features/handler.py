"""Stage 6, feature engineering: split, fitted transformer, feature matrices, drift baseline;
past the row budget its function's memory holds, on a stratified sample."""

from mlcycle import stages
from mlcycle.context import FeaturesResult, RunContext
from mlcycle.runtime import lake, memory_mb, stage_handler


@stage_handler("engineer_features")
def lambda_handler(run: RunContext) -> FeaturesResult:
    return stages.engineer_features(run, lake(), memory_mb=memory_mb())
