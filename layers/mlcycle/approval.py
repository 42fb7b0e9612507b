"""Human approval between registration and release.

When the spec says `release: {approval: required}`, the state machine waits (a
`.waitForTaskToken` task) after registering a model that passed its gate: `request_approval`
records the request on the version (stage `pending_approval`, the task token, the deadline)
and notifies the reviewers; `decide` is a person's answer, sent back as the task's output,
and the release stage acts on it. No traffic reaches the version before it is approved.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry, now_iso
from mlcycle.context import RESUME_KEY, ApprovalDecision, RunContext, required
from mlcycle.lake_layout import Zone, run_prefix

__all__ = ["RESUME_KEY", "ApprovalError", "decide", "pending_request", "request_approval"]

PENDING = "pending_approval"
REQUEST_FILE = "approval_request.json"  # the run context the wait was entered with

Notify = Callable[[str, str], None]  # (subject, message)


class ApprovalError(Exception):
    """The version is not waiting for a decision, or its request can no longer be answered."""


def request_approval(
    ctx: RunContext, lake: Lake, registry: Registry, token: str, notify: Notify
) -> dict[str, Any]:
    """Record that `ctx`'s model waits for a person, with the token that answers the wait.

    Asked again for a version already waiting (a local run resumed in a later process), the
    request keeps its deadline and the reviewers are not notified twice.
    """
    dataset = required(ctx.problem, "define_problem").dataset
    registration = required(ctx.registration, "register_model")
    version = registration.model_version
    entry = registry.get_version(dataset, version) or {}
    earlier = entry.get("approval") if entry.get("stage") == PENDING else None
    requested_at = earlier["requested_at"] if earlier else now_iso()
    expires_at = (
        earlier["expires_at"]
        if earlier
        else (
            datetime.now(UTC) + timedelta(seconds=registration.approval_timeout_seconds)
        ).isoformat(timespec="seconds")
    )
    context_uri = lake.put_json(
        run_prefix(Zone.RUNS, dataset, ctx.run_id) + REQUEST_FILE, ctx.model_dump(mode="json")
    )
    evaluated = required(ctx.evaluate, "evaluate_models")
    approval = {
        "token": token,
        "requested_at": requested_at,
        "expires_at": expires_at,
        "run_id": ctx.run_id,
        "context_uri": context_uri,
        "report_uri": evaluated.report_uri,
    }
    card = (entry.get("artifacts") or {}).get("model_card_report_uri")
    if card:
        approval["model_card_uri"] = card
    reason = (
        f"asked again after the run resumed; waiting until {expires_at}"
        if earlier
        else f"passed its gate ({evaluated.gate.reason}); waiting for approval until {expires_at}"
    )
    if not earlier:
        notify(
            f"mlcycle: v{version} of {dataset} waits for approval"[:100],
            _message(dataset, version, evaluated.gate.reason, approval),
        )
    # Last: a version is pending only once its reviewers have been told.
    registry.set_stage(dataset, version, PENDING, reason, fields={"approval": approval})
    return {"dataset": dataset, "model_version": version, "expires_at": expires_at}


def _message(dataset: str, version: int, gate: str, approval: dict[str, Any]) -> str:
    lines = [
        f"Model v{version} of {dataset} passed its gate and serves no traffic until a person "
        "decides.",
        f"Gate: {gate}",
        f"Evaluation report: {approval.get('report_uri')}",
    ]
    if approval.get("model_card_uri"):
        lines.append(f"Model card: {approval['model_card_uri']}")
    lines += [
        f"Decide before {approval['expires_at']} (then it is rejected):",
        f'  mlcycle approve {dataset} {version} --reason "..."',
        f'  mlcycle reject {dataset} {version} --reason "..."',
    ]
    return "\n".join(lines)


def pending_request(registry: Registry, dataset: str, version: int) -> dict[str, Any]:
    """The open approval request of a version, or an ApprovalError saying why there is none."""
    entry = registry.get_version(dataset, version)
    if entry is None:
        raise ApprovalError(f"{dataset!r} has no version {version}")
    if entry.get("stage") != PENDING or not entry.get("approval"):
        raise ApprovalError(
            f"v{version} of {dataset} is {entry.get('stage')} ({entry.get('stage_reason')}), "
            "not waiting for approval"
        )
    return dict(entry["approval"])


def decide(
    registry: Registry,
    stepfunctions: Any,
    dataset: str,
    version: int,
    decision: Literal["approved", "rejected"],
    reason: str,
) -> ApprovalDecision:
    """Answer the waiting run: approve or reject, as `registry.actor`, with a reason."""
    if not reason.strip():
        raise ApprovalError("say why: --reason is recorded in the audit trail")
    request = pending_request(registry, dataset, version)
    answer = ApprovalDecision(
        decision=decision, actor=registry.actor, reason=reason.strip(), decided_at=now_iso()
    )
    try:
        stepfunctions.send_task_success(taskToken=request["token"], output=answer.model_dump_json())
    except (
        stepfunctions.exceptions.TaskTimedOut,
        stepfunctions.exceptions.TaskDoesNotExist,
        stepfunctions.exceptions.InvalidToken,
    ) as error:
        raise ApprovalError(
            f"the approval request of v{version} of {dataset} can no longer be answered "
            f"(it expired at {request['expires_at']}, or its run ended): {error}"
        ) from error
    return answer


def rejection_reason(decision: ApprovalDecision, expires_at: str | None) -> str:
    """The stage reason of a version that was not approved."""
    if decision.decision == "timed_out":
        return f"not approved by {expires_at or 'its deadline'}: the approval request timed out"
    return f"rejected by {decision.actor}: {decision.reason}"
