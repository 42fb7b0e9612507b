"""Batch scoring, plan: stream the upload once, pin the production version, write the chunks and
the manifest the Distributed Map reads."""

import os

from mlcycle import batch_scoring
from mlcycle.batch_scoring import ScoringPlan, ScoringSettings
from mlcycle.context import RunContext
from mlcycle.runtime import lake, registry, stage_handler


@stage_handler("plan_scoring")
def lambda_handler(run: RunContext) -> ScoringPlan:
    settings = ScoringSettings.model_validate(dict(os.environ))
    return batch_scoring.plan_scoring(
        run,
        lake(),
        registry(),
        chunk_rows=settings.chunk_rows,
        capture_rows=settings.capture_rows,
    )
