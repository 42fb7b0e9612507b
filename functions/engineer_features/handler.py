"""Stage 6, feature engineering: split, fitted transformer, feature matrices, drift baseline."""

from mlcycle import stages
from mlcycle.context import FeaturesResult, RunContext
from mlcycle.runtime import lake, stage_handler


@stage_handler("engineer_features")
def lambda_handler(run: RunContext) -> FeaturesResult:
    return stages.engineer_features(run, lake())
