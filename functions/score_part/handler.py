"""Batch scoring, one chunk (a Distributed Map child): its predictions part and quarantine."""

import os

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle import batch_scoring
from mlcycle.batch_scoring import PartResult, ScorePartEvent, ScoringSettings
from mlcycle.runtime import lake, metrics, stage_handler


@stage_handler("score_part", event_model=ScorePartEvent)
def lambda_handler(event: ScorePartEvent) -> PartResult:
    settings = ScoringSettings.model_validate(dict(os.environ))
    result = batch_scoring.score_part(event, lake(), threads=settings.onnx_threads)
    metrics.add_metric(name="RowsScored", unit=MetricUnit.Count, value=result.scored)
    metrics.add_metric(name="RowsQuarantined", unit=MetricUnit.Count, value=result.quarantined)
    return result
