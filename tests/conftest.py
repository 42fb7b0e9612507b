"""Shared fixtures: fake AWS credentials, and one synthesized cloud assembly per session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# No test may reach AWS: moto answers every call, with credentials that mean nothing.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="mlcycle",
    POWERTOOLS_SERVICE_NAME="mlcycle",
    JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    CDK_DISABLE_CLI_TELEMETRY="true",
)

from mlcycle.local.assembly import ensure_assembly, load_template

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# The lifecycle's stage functions in the order a run goes through them.
LIFECYCLE_STAGES = [
    "define_problem",
    "collect_data",
    "process_data",
    "define_metrics",
    "explore_data",
    "engineer_features",
    "train_model",
    "evaluate_models",
    "register_model",
    "release_model",
]


@pytest.fixture(scope="session")
def assembly() -> Path:
    return ensure_assembly(ROOT)


@pytest.fixture(scope="session")
def template(assembly: Path) -> dict[str, Any]:
    return load_template(assembly)[1]
