"""A person's approval between the gate and any traffic, locally and across processes.

`mlcycle run` with `release: {approval: required}` ends waiting (exit 3) with nothing served;
`mlcycle approve` in a later process continues that run into its release, `mlcycle reject`
ends it, an unanswered request times out into a rejection, and `mlcycle history` says who did
what and why. The decision against a deployed stack goes through the same calls (here moto).
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from mlcycle.adapters.registry import Registry
from mlcycle.approval import decide
from mlcycle.cli import main
from mlcycle.deployed import deployed_registry
from mlcycle.lake_layout import Zone
from mlcycle.local.approvals import decide_local, history_local
from mlcycle.local.runner import deliver_events, follow_execution, local_aws, run_local
from mlcycle.local.serve import released_models

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "customer-churn.csv"


def _spec(tmp_path: Path, **release: Any) -> Path:
    spec = tmp_path / "churn.yaml"
    document = {
        "dataset": "customer-churn",
        "target": "churned",
        "candidates": ["linear"],  # one quick candidate: the approval is what is tested
        "search": {"trials": 1},
        "release": {"approval": "required", "bake_seconds": 1, "max_waits": 1, **release},
    }
    spec.write_text(yaml.safe_dump(document))
    return spec


def _registry(out: Path) -> list[dict[str, Any]]:
    return list(json.loads((out / "registry.json").read_text()))


def _version(out: Path, version: int = 1) -> dict[str, Any]:
    return next(i for i in _registry(out) if i.get("sk") == f"VERSION#{version:06d}")


def _mlcycle(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, as a person would run it."""
    return subprocess.run(
        [sys.executable, "-m", "mlcycle.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=600,
        check=False,
    )


def test_a_run_waits_and_a_later_process_approves_it(tmp_path: Path, assembly: Path) -> None:
    out = tmp_path / "out"
    waiting = _mlcycle("run", str(DATA), "--spec", str(_spec(tmp_path)), "--out", str(out))
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    assert "mlcycle approve customer-churn 1" in waiting.stdout
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "WAITING_FOR_APPROVAL"
    assert run["approval"]["version"] == 1
    assert [s["status"] for s in run["stages"]][-2:] == ["WAITING", "NOT_RUN"]
    assert _version(out)["stage"] == "pending_approval"
    assert released_models(out) == {}  # nothing serves before a person decides

    approved = _mlcycle(
        "approve", "customer-churn", "1", "--from", str(out), "--reason", "reviewed the report"
    )
    assert approved.returncode == 0, approved.stdout + approved.stderr
    run = json.loads((out / "run.json").read_text())
    assert (run["status"], run["model_stage"]) == ("SUCCEEDED", "production")
    # the stages before the wait come from the first process, the rest from the second
    assert {s["name"]: s["status"] for s in run["stages"]}["define_problem"] == "SUCCEEDED"
    assert {s["name"]: s["status"] for s in run["stages"]}["release_model"] == "SUCCEEDED"
    assert released_models(out) == {"customer-churn": 1}

    history = _mlcycle("history", "customer-churn", "--from", str(out))
    assert history.returncode == 0, history.stderr
    assert "reviewed the report" in history.stdout
    trail = history_local(out, "customer-churn")
    assert [r["stage"] for r in trail] == [
        "candidate",
        "pending_approval",
        "pending_approval",  # asked again when the later process resumed the run
        "approved",
        "production",
    ]
    approval = trail[3]
    assert approval["actor"] == getpass.getuser()
    assert approval["reason"] == f"approved by {getpass.getuser()}: reviewed the report"
    assert approval["recorded_by"].startswith("pipeline:release_model")
    assert all(r["actor"].startswith("pipeline:") for r in trail if r is not approval)


def test_a_rejected_model_never_serves(tmp_path: Path, assembly: Path) -> None:
    out = tmp_path / "out"
    outcome = run_local(DATA, spec_file=_spec(tmp_path), out_dir=out, assembly=assembly)
    assert outcome.status == "WAITING_FOR_APPROVAL"
    rejected = decide_local(out, "customer-churn", 1, "rejected", "tenure is a proxy for age")
    assert (rejected.status, rejected.model_stage) == ("SUCCEEDED", "rejected")
    entry = _version(out)
    assert entry["stage"] == "rejected"
    assert entry["stage_reason"] == f"rejected by {getpass.getuser()}: tenure is a proxy for age"
    assert released_models(out) == {}
    # nor by hand, nor by deciding again
    assert main(["promote", "customer-churn", "1", "--from", str(out)]) == 1
    assert main(["approve", "customer-churn", "1", "--from", str(out), "--reason", "oops"]) == 1
    assert released_models(out) == {}


def test_an_unanswered_request_times_out_into_a_rejection(tmp_path: Path, assembly: Path) -> None:
    out = tmp_path / "out"
    spec = _spec(tmp_path, approval_timeout_hours=2 / 3600)  # two seconds
    outcome = run_local(DATA, spec_file=spec, out_dir=out, assembly=assembly)
    assert outcome.status == "WAITING_FOR_APPROVAL"
    assert outcome.approval is not None
    deadline = datetime.fromisoformat(outcome.approval["expires_at"])
    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.5)
    late = decide_local(out, "customer-churn", 1, "approved", "sorry, I was away")
    assert late.model_stage == "rejected"
    entry = _version(out)
    assert entry["stage"] == "rejected"
    assert entry["stage_reason"] == (
        f"not approved by {outcome.approval['expires_at']}: the approval request timed out"
    )
    (timed_out,) = [r for r in history_local(out, "customer-churn") if r["stage"] == "rejected"]
    assert timed_out["actor"].startswith("pipeline:release_model")  # nobody decided
    assert released_models(out) == {}


def test_the_decision_against_a_deployed_stack_acts_as_the_callers_identity(
    tmp_path: Path, assembly: Path
) -> None:
    out = tmp_path / "out"
    spec = _spec(tmp_path)
    with local_aws(out, assembly=assembly) as aws:
        # The stack as CloudFormation describes it: the output `--stack` looks the table up by.
        boto3.client("cloudformation").create_stack(
            StackName="mlcycle-prod",
            TemplateBody=json.dumps(
                {
                    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                    "Outputs": {"RegistryTableName": {"Value": aws.deployment.registry_table}},
                }
            ),
        )
        s3 = aws.session.client("s3")
        bucket = aws.deployment.lake_bucket
        s3.put_object(
            Bucket=bucket, Key=f"{Zone.SPECS.prefix}customer-churn.yaml", Body=spec.read_bytes()
        )
        s3.put_object(
            Bucket=bucket, Key=f"{Zone.LANDING.prefix}{DATA.name}", Body=DATA.read_bytes()
        )
        (execution,) = deliver_events(aws.deployment, aws.session)

        def approve_as_the_caller(request: dict[str, Any]) -> bool:
            registry = deployed_registry("mlcycle-prod", aws.session)
            answer = decide(
                registry,
                aws.session.client("stepfunctions"),
                request["dataset"],
                request["version"],
                "approved",
                "risk review passed",
            )
            return answer.decision == "approved"

        outcome = follow_execution(
            aws.deployment,
            aws.session,
            execution,
            "customer-churn",
            None,
            on_approval=approve_as_the_caller,
        )
        registry = Registry(aws.session.client("dynamodb"), aws.deployment.registry_table)
        trail = registry.history("customer-churn")
        caller = aws.session.client("sts").get_caller_identity()["Arn"]
    assert outcome.model_stage == "production"
    approved = next(r for r in trail if r["stage"] == "approved")
    assert approved["actor"] == caller  # the IAM identity, not a local user name
    assert caller.startswith("arn:aws:")
    assert approved["reason"] == f"approved by {caller}: risk review passed"
