"""Stage 9, release: the gate's winner reaches production directly (first model) or through a
canary that live traffic judges; a rejected model is never served."""

from __future__ import annotations

from datetime import datetime

from mlcycle.adapters.capture import captured_since
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry, now_iso
from mlcycle.approval import rejection_reason
from mlcycle.context import ReleaseResult, RunContext, required
from mlcycle.domain.canary import CanaryPolicy, judge, version_stats
from mlcycle.lake_index import publish_index
from mlcycle.lake_layout import Zone
from mlcycle.spec import ProblemSpec


class ReleaseConflictError(Exception):
    """Another release of the dataset is in progress; this one must not overwrite it."""


def _spec(ctx: RunContext, lake: Lake) -> ProblemSpec:
    return ProblemSpec.model_validate(
        lake.get_json(required(ctx.problem, "define_problem").spec_uri)
    )


def _finish_run(ctx: RunContext, lake: Lake, registry: Registry, result: ReleaseResult) -> None:
    registry.update_run(
        required(ctx.problem, "define_problem").dataset,
        ctx.run_id,
        {
            "status": "SUCCEEDED",
            "finished_at": now_iso(),
            "task": required(ctx.process, "process_data").task.value,
            "model_version": result.model_version,
            "model_stage": result.stage,
            "release": result.reason,
        },
    )
    publish_index(lake, registry)


def start_release(ctx: RunContext, lake: Lake, registry: Registry) -> ReleaseResult:
    """Rejected stays rejected; the first model goes to production; others start a canary."""
    dataset = required(ctx.problem, "define_problem").dataset
    registration = required(ctx.registration, "register_model")
    version = registration.model_version
    gate = required(ctx.evaluate, "evaluate_models").gate
    release = registry.get_release(dataset) or {}
    production = release.get("production_version")
    refused = _refusal(ctx, registry, dataset, version) if gate.passed else None
    if not gate.passed or refused is not None:
        result = ReleaseResult(
            action="done",
            model_version=version,
            stage="rejected",
            production_version=production,
            reason=refused or gate.reason,
        )
    elif production is None and _claim_first_release(registry, dataset, version):
        registry.set_stage(dataset, version, "production", f"first model: {gate.reason}")
        result = ReleaseResult(
            action="done",
            model_version=version,
            stage="production",
            production_version=version,
            reason=f"first model of {dataset}: {gate.reason}",
        )
    else:
        if production is None:  # another run released the first model in the meantime
            release = registry.get_release(dataset) or {}
            production = release["production_version"]
        policy = _spec(ctx, lake).release
        if release.get("canary_version") is not None:
            raise ReleaseConflictError(
                f"v{release['canary_version']} of {dataset} is being released as a canary; "
                f"v{version} was registered but not released (release it after that one ends)"
            )
        registry.start_canary(
            dataset, version=version, weight=policy.canary_weight, expected_production=production
        )
        registry.set_stage(dataset, version, "canary", gate.reason)
        return ReleaseResult(
            action="canary",
            model_version=version,
            stage="canary",
            production_version=int(production),
            reason=f"v{version} serves {policy.canary_weight:.0%} of traffic against "
            f"production v{production}",
            bake_seconds=policy.bake_seconds,
            started_at=now_iso(),
        )
    _finish_run(ctx, lake, registry, result)
    return result


def _refusal(ctx: RunContext, registry: Registry, dataset: str, version: int) -> str | None:
    """Why a person did not approve the version (rejected, or no answer in time), recorded
    on it; None when it was approved (recorded too) or no approval was asked for."""
    registration = required(ctx.registration, "register_model")
    if registration.approval != "required":
        return None
    decision = required(ctx.approval, "approval")
    if decision.decision == "approved":
        registry.set_stage(
            dataset,
            version,
            "approved",
            f"approved by {decision.actor}: {decision.reason}",
            actor=decision.actor,
        )
        return None
    request = (registry.get_version(dataset, version) or {}).get("approval") or {}
    reason = rejection_reason(decision, request.get("expires_at"))
    actor = decision.actor if decision.decision == "rejected" else None
    registry.set_stage(dataset, version, "rejected", reason, actor=actor)
    return reason


def _claim_first_release(registry: Registry, dataset: str, version: int) -> bool:
    """Make `version` the first production model, unless another run just did (False)."""
    try:
        registry.set_release(dataset, production_version=version, expected_production=None)
    except registry.dynamodb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def judge_canary(ctx: RunContext, lake: Lake, registry: Registry) -> ReleaseResult:
    """Compare the canary's captured traffic with production's; promote, roll back or wait."""
    dataset = required(ctx.problem, "define_problem").dataset
    current = required(ctx.release, "release_model")
    canary, production = current.model_version, int(required(current.production_version, "release"))
    policy = _spec(ctx, lake).release
    started_at = datetime.fromisoformat(required(current.started_at, "release"))
    records = list(captured_since(lake, dataset, started_at))
    verdict = judge(
        version_stats(records, canary),
        version_stats(records, production),
        CanaryPolicy(
            min_requests=policy.min_requests,
            max_error_rate_increase=policy.max_error_rate_increase,
            max_latency_ratio=policy.max_latency_ratio,
            max_prediction_psi=policy.max_prediction_psi,
            max_waits=policy.max_waits,
        ),
        waits_so_far=current.waits,
    )
    if verdict.decision == "wait":
        return current.model_copy(update={"waits": current.waits + 1, "reason": verdict.reason})
    if verdict.decision == "promote":
        registry.promote_canary(dataset, version=canary)
        registry.set_stage(dataset, canary, "production", verdict.reason)
        registry.set_stage(dataset, production, "archived", f"replaced by v{canary}")
        result = current.model_copy(
            update={
                "action": "done",
                "stage": "production",
                "production_version": canary,
                "reason": verdict.reason,
            }
        )
    else:
        registry.end_canary(dataset, version=canary)
        registry.set_stage(dataset, canary, "rolled_back", verdict.reason)
        result = current.model_copy(
            update={"action": "done", "stage": "rolled_back", "reason": verdict.reason}
        )
    lake.put_json(
        f"{Zone.RUNS.prefix}dataset={dataset}/run={ctx.run_id}/canary.json", verdict.to_json()
    )
    _finish_run(ctx, lake, registry, result)
    return result


def promote_by_hand(registry: Registry, dataset: str, version: int, reason: str) -> str:
    """Make `version` production now (ending a canary of it); the old production is archived."""
    release = registry.get_release(dataset) or {}
    entry = registry.get_version(dataset, version)
    if entry is None:
        raise ReleaseConflictError(f"{dataset!r} has no version {version}")
    if entry.get("stage") == "pending_approval":
        raise ReleaseConflictError(
            f"v{version} of {dataset} is waiting for approval; decide with "
            f"`mlcycle approve {dataset} {version}` (or reject) instead"
        )
    if entry.get("stage") == "rejected":
        raise ReleaseConflictError(
            f"v{version} of {dataset} was rejected by its gate ({entry.get('stage_reason')}); "
            "a rejected model is never served"
        )
    current = release.get("production_version")
    if release.get("canary_version") == version:
        registry.promote_canary(dataset, version=version)
    else:
        if release.get("canary_version") is not None:
            raise ReleaseConflictError(
                f"v{release['canary_version']} is in canary; roll it back or promote it first"
            )
        registry.set_release(dataset, production_version=version, expected_production=current)
    registry.set_stage(dataset, version, "production", reason)
    if current is not None and int(current) != version:
        registry.set_stage(dataset, int(current), "archived", f"replaced by v{version} by hand")
    return f"v{version} of {dataset} is production"


def rollback_by_hand(registry: Registry, dataset: str, reason: str) -> str:
    """End a canary; without one, put the latest archived version back into production."""
    release = registry.get_release(dataset) or {}
    canary = release.get("canary_version")
    if canary is not None:
        registry.end_canary(dataset, version=int(canary))
        registry.set_stage(dataset, int(canary), "rolled_back", reason)
        production = release["production_version"]
        return f"canary v{canary} of {dataset} rolled back; production stays v{production}"
    current = release.get("production_version")
    archived = [v for v in registry.list_versions(dataset) if v.get("stage") == "archived"]
    if current is None or not archived:
        raise ReleaseConflictError(f"{dataset!r} has no earlier version to roll back to")
    previous = max(int(v["version"]) for v in archived)
    registry.set_release(dataset, production_version=previous, expected_production=current)
    registry.set_stage(dataset, previous, "production", f"rolled back to: {reason}")
    registry.set_stage(dataset, int(current), "rolled_back", reason)
    return f"v{current} of {dataset} rolled back; v{previous} is production again"
