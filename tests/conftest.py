"""Shared fixtures: fake AWS credentials, and one synthesized cloud assembly per session."""

from __future__ import annotations

import json
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
from mlcycle.local.template import Resolver

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


@pytest.fixture(scope="session")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's state machine definition, function ARNs replaced by handler names."""
    resolver = Resolver()
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            command = resource["Properties"].get("ImageConfig", {}).get("Command", ["-.-"])[0]
            resolver.define(logical_id, command, Arn=command.split(".")[1])
        elif resource["Type"] == "AWS::S3::Bucket":
            resolver.define(logical_id, logical_id, Arn=f"arn:aws:s3:::{logical_id}")
    (machine,) = [
        r["Properties"]
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and logical_id.startswith("Pipeline")
    ]
    return dict(json.loads(resolver.resolve(machine["DefinitionString"])))
