"""Stage 7a, training: one candidate algorithm per invocation (an item of the Map state)."""

from mlcycle import training
from mlcycle.context import CandidateResult, TrainEvent
from mlcycle.runtime import lake, stage_handler


@stage_handler("train_model", event_model=TrainEvent)
def lambda_handler(event: TrainEvent) -> CandidateResult:
    return training.train_model(event.run, event.algorithm, lake())
