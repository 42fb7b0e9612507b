"""Batch scoring, finish: the run's summary, and a CSV of the predictions for a CSV upload."""

from mlcycle import batch_scoring
from mlcycle.batch_scoring import FinishEvent, ScoringSummary
from mlcycle.runtime import lake, stage_handler


@stage_handler("finish_scoring", event_model=FinishEvent)
def lambda_handler(event: FinishEvent) -> ScoringSummary:
    return batch_scoring.finish_scoring(event, lake())
