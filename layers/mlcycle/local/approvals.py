"""Approval on a local lake: a run waiting for a person continues in a later process.

moto keeps its executions in memory, so the process of `mlcycle run` cannot wait days for
`mlcycle approve`. The waiting run leaves its run context in the lake (the approval request's
`context_uri`); deciding restores the lake into a new moto, starts the same synthesized state
machine at its approval (`infra.pipeline.RESUME_KEY`), answers the new wait with the decision,
and follows the run to its end: release, canary, or rejection, exactly as on AWS.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import AUDIT_PREFIX, Registry
from mlcycle.approval import RESUME_KEY, ApprovalError, decide, pending_request
from mlcycle.local.runner import (
    ApprovalCallback,
    LocalAws,
    ProgressCallback,
    RunOutcome,
    StageOutcome,
    follow_execution,
    local_aws,
    write_outcome,
)

Decision = Literal["approved", "rejected"]


def local_actor() -> str:
    """Who decides locally: the user running the command."""
    return getpass.getuser()


def answer_with(aws: LocalAws, decision: Decision, reason: str) -> ApprovalCallback:
    """An approval callback that decides at once (`mlcycle run --approve`)."""
    registry = Registry(
        aws.session.client("dynamodb"), aws.deployment.registry_table, actor=local_actor()
    )
    stepfunctions = aws.session.client("stepfunctions")

    def answer(request: dict[str, Any]) -> bool:
        decide(registry, stepfunctions, request["dataset"], request["version"], decision, reason)
        return True

    return answer


def decide_local(
    out_dir: Path,
    dataset: str,
    version: int,
    decision: Decision,
    reason: str,
    *,
    on_stage: ProgressCallback | None = None,
) -> RunOutcome:
    """Answer a run of `out_dir` that waits for approval, and follow it to its end."""
    if not reason.strip():
        raise ApprovalError("say why: --reason is recorded in the audit trail")
    with local_aws(out_dir) as aws:
        registry = Registry(aws.session.client("dynamodb"), aws.deployment.registry_table)
        request = pending_request(registry, dataset, version)
        context = Lake(aws.session.client("s3"), aws.deployment.lake_bucket).get_json(
            request["context_uri"]
        )
        left = datetime.fromisoformat(request["expires_at"]) - datetime.now(UTC)
        # The resumed wait keeps the request's deadline; past it, the wait times out at once
        # and the run records the rejection, as it would have on AWS.
        context["registration"]["approval_timeout_seconds"] = max(1, int(left.total_seconds()))
        expired = left.total_seconds() <= 0
        sfn = aws.session.client("stepfunctions")
        started = sfn.start_execution(
            stateMachineArn=aws.deployment.state_machine_arn,
            name=f"{context['run_id'][:60]}-approval-{datetime.now(UTC):%H%M%S}",
            input=json.dumps({**context, RESUME_KEY: True}),
        )
        answer = answer_with(aws, decision, reason)
        outcome = follow_execution(
            aws.deployment,
            aws.session,
            started["executionArn"],
            dataset,
            on_stage,
            # expired: leave the wait unanswered, so it times out into the rejection
            on_approval=(lambda _: True) if expired else answer,
            run_id=context["run_id"],
            stale_token=request["token"],
        )
    return write_outcome(_with_earlier_stages(outcome, out_dir), out_dir)


def _with_earlier_stages(outcome: RunOutcome, out_dir: Path) -> RunOutcome:
    """The stages that ran before the wait, from the run's earlier outcome, before those the
    resumed execution ran."""
    earlier_file = out_dir / "run.json"
    if not earlier_file.is_file():
        return outcome
    earlier = json.loads(earlier_file.read_text())
    if earlier.get("run_id") != outcome.run_id:
        return outcome
    ran = {s.name: s for s in outcome.stages if s.status != "NOT_RUN"}
    merged = [ran.pop(s["name"], None) or StageOutcome(**s) for s in earlier["stages"]]
    outcome.stages = merged + list(ran.values())
    return outcome


def history_local(out_dir: Path, dataset: str) -> list[dict[str, Any]]:
    """The audit trail of a dataset in an exported registry, oldest first."""
    items = json.loads((out_dir / "registry.json").read_text())
    trail = [i for i in items if i.get("pk") == f"{AUDIT_PREFIX}{dataset}"]
    return sorted(trail, key=lambda i: str(i["sk"]))
