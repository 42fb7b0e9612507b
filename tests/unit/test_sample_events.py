"""Every sample event under events/ parses with the model its handler parses, so none goes stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    S3EventNotificationEventBridgeModel,
)
from pydantic import BaseModel

from functions.monitor.handler import MonitorRequest
from functions.request_approval.handler import ApprovalRequest
from functions.retrain.handler import AlarmStateChange
from mlcycle.batch_scoring import FinishEvent, ScorePartEvent
from mlcycle.context import RunContext, TrainEvent
from mlcycle.parts import PartEvent
from tests.conftest import ROOT

MODELS: dict[str, type[BaseModel]] = {
    "start_run": S3EventNotificationEventBridgeModel,
    "train_model": TrainEvent,
    "predict": APIGatewayProxyEventModel,
    "monitor": MonitorRequest,
    "retrain": AlarmStateChange,
    "request_approval": ApprovalRequest,
    "start_scoring": S3EventNotificationEventBridgeModel,
    "score_part": ScorePartEvent,
    "finish_scoring": FinishEvent,
    "collect_part": PartEvent,
    "process_part": PartEvent,
}
EVENTS = sorted((ROOT / "events").glob("*/*.json"))


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_event_parses_for_its_handler(path: Path) -> None:
    function = path.parent.name
    assert (ROOT / "functions" / function / "handler.py").is_file()
    parse(event=json.loads(path.read_text()), model=MODELS.get(function, RunContext))


def test_there_are_sample_events() -> None:
    assert {p.parent.name for p in EVENTS} >= {"start_run", "define_problem", "train_model"}
