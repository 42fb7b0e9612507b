"""The day-2 subcommands of `mlcycle`: monitor, simulate-drift, models, promote, rollback."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlcycle.adapters.registry import Registry
from mlcycle.approval import ApprovalError, decide
from mlcycle.deployed import StackError, deployed_registry
from mlcycle.domain.tables import read_table
from mlcycle.lake_layout import split_uri
from mlcycle.local.approvals import Decision, decide_local, history_local, local_actor
from mlcycle.local.operations import MonitorOutcome, monitor_local
from mlcycle.local.query import NoLakeError, QueryError, run_query
from mlcycle.local.runner import StageOutcome, local_aws, run_local
from mlcycle.local.scoring import score_command
from mlcycle.local.serve import released_models
from mlcycle.release import ReleaseConflictError, promote_by_hand, rollback_by_hand
from mlcycle.samples import customer_churn

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
DEMO = "customer-churn"


def _only_model(console: Console, source: Path, name: str | None) -> str | None:
    if name:
        return name
    models = sorted(released_models(source)) if (source / "registry.json").is_file() else []
    if len(models) != 1:
        console.print(
            f"[red]error:[/] name the model with --dataset (released: {models or 'none'})"
        )
        return None
    return models[0]


def _progress(console: Console) -> Callable[[StageOutcome], None]:
    def show(stage: StageOutcome) -> None:
        mark = "[green]✓[/]" if stage.status == "SUCCEEDED" else "[red]✗[/]"
        console.print(f"    {mark} {stage.name:<18} {stage.seconds or 0:6.2f}s")

    return show


def _print_monitor(console: Console, outcome: MonitorOutcome) -> int:
    summary = outcome.summary
    state = "[red]ALARM[/]" if summary["alarm"] else "[green]ok[/]"
    console.print(
        f"{outcome.dataset}: {summary['sample_size']} captured rows, drift {state}; "
        f"drifted features: {', '.join(summary['drifted_features']) or 'none'}"
    )
    bucket_and_key = summary["report_uri"].removeprefix("s3://").split("/", 1)[1]
    console.print(f"report: {outcome.out_dir / 'lake' / bucket_and_key}")
    for alarm in outcome.alarms:
        mark = "[red]ALARM[/]" if alarm.state == "ALARM" else "[green]OK[/]"
        console.print(f"  alarm {alarm.name}: {mark} ({alarm.reason})")
    decision = outcome.retraining_decision or {}
    if decision.get("status") == "skipped":
        console.print(f"[yellow]{decision['reason']}[/]: the alarm is left to a person")
    elif decision:
        console.print(f"retraining: {decision.get('reason')}")
    for run in outcome.retraining:
        console.print(
            f"retraining run {run.run_id}: {run.status}; model v{run.model_version} "
            f"is {run.model_stage} ({(run.gate or {}).get('reason', '')})"
        )
    return 0


def monitor(console: Console, args: argparse.Namespace) -> int:
    dataset = _only_model(console, args.source, args.dataset)
    if dataset is None:
        return 2
    current = labels = None
    if args.current is not None:
        frame = read_table(args.current.read_bytes(), args.current.name).to_pandas()
        target = _target(args.source, dataset)
        if target in frame.columns:  # known outcomes arrive as late labels
            labels = frame.pop(target).astype(str)
        current = frame
    outcome = monitor_local(
        args.source, dataset, current=current, labels=labels, on_stage=_progress(console)
    )
    return _print_monitor(console, outcome)


def _target(source: Path, dataset: str) -> str | None:
    for item in json.loads((source / "registry.json").read_text()):
        if item.get("dataset") == dataset and item.get("target"):
            return str(item["target"])
    return None


def simulate_drift(console: Console, args: argparse.Namespace) -> int:
    """The loop on the bundled data: the world moves, the monitor sees it, an alarm fires,
    retraining runs, and the gate and the canary decide."""
    if DEMO not in (
        released_models(args.source) if (args.source / "registry.json").is_file() else {}
    ):
        console.print("no released customer-churn model yet: running the lifecycle on the sample")
        run_local(
            EXAMPLES / "customer-churn.csv",
            spec_file=EXAMPLES / "customer-churn.yaml",
            out_dir=args.source,
            bake_seconds=2,
            on_stage=_progress(console),
        )
    world = drifted_customers(args.rows)
    console.print(
        f"sending {len(world)} requests of drifted traffic (prices x1.8, newer customers, "
        "all on the basic plan; high bills now drive churn)"
        f"{'' if args.no_labels else ', then their labels'}"
    )
    if args.no_labels:
        console.print("no labels arrive, and nothing is uploaded: there is nothing new to learn")
    outcome = monitor_local(
        args.source,
        DEMO,
        current=world.drop(columns=["customer_id", "churned"]),
        labels=None if args.no_labels else world["churned"],
        on_stage=_progress(console),
    )
    return _print_monitor(console, outcome)


def drifted_customers(rows: int, seed: int = 99) -> pd.DataFrame:
    """The world after a price rise and a competitor's cheaper offer: prices x1.8, newer
    customers all on the basic plan (covariate shift), and customers with high bills now
    leave far more often than the training data says (a changed concept, which only
    labeled traffic can teach a model)."""
    world = customer_churn(rows, seed=seed)
    world["monthly_charges"] = world["monthly_charges"] * 1.8
    world["tenure_months"] = world["tenure_months"] // 4
    world["plan"] = "basic"
    rng = np.random.default_rng(seed)
    price = world["monthly_charges"].to_numpy()
    leaves = rng.random(rows) < 0.85 / (1 + np.exp(-(price - 70) / 6))
    world["churned"] = np.where(leaves, "yes", world["churned"])
    return world


def models(console: Console, args: argparse.Namespace) -> int:
    items: list[dict[str, Any]] = json.loads((args.source / "registry.json").read_text())
    releases = {i["pk"]: i for i in items if i.get("sk") == "RELEASE"}
    table = Table(title=f"registry ({args.source})", header_style="bold")
    columns = ("model", "version", "stage", "algorithm", "primary metric", "threshold", "search")
    for column in (*columns, "run", "source"):
        table.add_column(column)
    for item in sorted(
        (i for i in items if str(i.get("sk", "")).startswith("VERSION#")),
        key=lambda i: (i["dataset"], i["version"]),
    ):
        metric = item.get("primary_metric")
        value = (item.get("metrics") or {}).get(metric)
        low_high = (item.get("intervals") or {}).get(metric)
        interval = f" [{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else ""
        lineage = item.get("lineage", {})
        threshold = item.get("threshold")
        search = item.get("search") or {}
        table.add_row(
            item["dataset"],
            str(item["version"]),
            item["stage"],
            item.get("algorithm", ""),
            f"{metric} {value:.4f}{interval}" if value is not None else "",
            f"{threshold:.3f} ({item.get('positive_class')})" if threshold is not None else "",
            f"{search['trials']} trials, {search['seconds']:.0f} s" if search else "",
            item.get("run_id", ""),
            _sources(lineage),
        )
    console.print(table)
    for item in sorted(
        (i for i in items if (i.get("artifacts") or {}).get("model_card_report_uri")),
        key=lambda i: (i["dataset"], i["version"]),
    ):
        # the lake is exported to DIR/lake/<key>, so the card opens from there
        page = args.source / "lake" / split_uri(item["artifacts"]["model_card_report_uri"])[1]
        console.print(f"{item['dataset']} v{item['version']} model card: {page}")
    for item in sorted((i for i in items if i.get("sk") == "RETRAINING"), key=lambda i: i["pk"]):
        console.print(
            f"{item['pk'].removeprefix('MODEL#')}: last alarm's retraining {item['status']} "
            f"at {item.get('at')}: {item.get('reason')}"
        )
    for pk, release in sorted(releases.items()):
        canary = release.get("canary_version")
        extra = f", canary v{canary} at {release.get('canary_weight')}" if canary else ""
        console.print(
            f"{pk.removeprefix('MODEL#')}: production v{release.get('production_version')}{extra}"
        )
    return 0


def _sources(lineage: dict[str, Any]) -> str:
    """What a version learned from: the upload, and a retraining run's labeled traffic."""
    upload = f"{lineage.get('source', {}).get('key', '')} ({lineage.get('sha256', '')[:12]})"
    traffic = lineage.get("traffic")
    if not traffic:
        return upload
    trained = (traffic.get("trained_on") or {}).get("rows", traffic.get("rows"))
    return (
        f"{upload} + {trained} labeled requests {str(traffic.get('first_at'))[:16]} to "
        f"{str(traffic.get('last_at'))[:16]} ({traffic.get('recent_rows')} more held back)"
    )


def _by_hand(console: Console, args: argparse.Namespace, action: Callable[[Registry], str]) -> int:
    with local_aws(args.source) as aws:
        registry = Registry(
            aws.session.client("dynamodb"), aws.deployment.registry_table, actor=local_actor()
        )
        try:
            console.print(action(registry))
        except ReleaseConflictError as error:
            console.print(f"[red]error:[/] {error}")
            return 1
    return 0


def promote(console: Console, args: argparse.Namespace) -> int:
    return _by_hand(
        console,
        args,
        lambda registry: promote_by_hand(registry, args.name, args.version, args.reason),
    )


def rollback(console: Console, args: argparse.Namespace) -> int:
    return _by_hand(
        console, args, lambda registry: rollback_by_hand(registry, args.name, args.reason)
    )


def _decide(console: Console, args: argparse.Namespace, decision: Decision) -> int:
    """`mlcycle approve|reject`: locally the waiting run goes on here; on AWS the decision
    answers the waiting execution, which then records it and releases (or not)."""
    try:
        if args.stack:
            registry = deployed_registry(args.stack)
            answer = decide(
                registry,
                boto3.client("stepfunctions"),
                args.dataset,
                args.version,
                decision,
                args.reason,
            )
            console.print(
                f"v{args.version} of {args.dataset} {decision} by {answer.actor}; the waiting "
                f"run records it and {'releases it' if decision == 'approved' else 'ends'}"
            )
            return 0
        if not (args.source / "registry.json").is_file():
            console.print(f"[red]error:[/] no local run in {args.source}: run `mlcycle run` first")
            return 2
        console.print(f"{decision} as {local_actor()}: the waiting run continues")
        outcome = decide_local(
            args.source,
            args.dataset,
            args.version,
            decision,
            args.reason,
            on_stage=_progress(console),
        )
    except (ApprovalError, StackError) as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    from mlcycle.cli import summary  # the run's summary, as `mlcycle run` prints it

    summary(console, outcome)
    return 0 if outcome.status == "SUCCEEDED" else 1


def approve(console: Console, args: argparse.Namespace) -> int:
    return _decide(console, args, "approved")


def reject(console: Console, args: argparse.Namespace) -> int:
    return _decide(console, args, "rejected")


def history(console: Console, args: argparse.Namespace) -> int:
    """The audit trail: every stage change of the dataset's versions, oldest first."""
    try:
        if args.stack:
            trail = deployed_registry(args.stack).history(args.dataset)
        elif (args.source / "registry.json").is_file():
            trail = history_local(args.source, args.dataset)
        else:
            console.print(f"[red]error:[/] no local run in {args.source}: run `mlcycle run` first")
            return 2
    except StackError as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    if not trail:
        console.print(f"no recorded stage changes for {args.dataset!r}")
        return 1
    table = Table(title=f"history of {args.dataset}", header_style="bold")
    for column in ("when (UTC)", "version", "stage", "from", "who", "why"):
        table.add_column(column, overflow="fold")
    for record in trail:
        who = record["actor"]
        if record.get("recorded_by"):
            who += f" (recorded by {record['recorded_by']})"
        table.add_row(
            str(record["at"])[:19].replace("T", " "),
            f"v{record['version']}",
            record["stage"],
            record.get("previous_stage") or "",
            who,
            record.get("reason", ""),
        )
    console.print(table)
    return 0


def query(console: Console, args: argparse.Namespace) -> int:
    """SQL over the local curated zone (DuckDB), one view per dataset, printed as a table."""
    try:
        result = run_query(args.source, args.sql)
    except NoLakeError as error:
        console.print(f"[red]error:[/] {error}: run `mlcycle run` first")
        return 2
    except QueryError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        return 1
    table = Table(*result.columns, box=None)
    for row in result.rows:
        table.add_row(*("NULL" if value is None else escape(str(value)) for value in row))
    console.print(table)
    console.print(f"[dim]{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}[/]")
    return 0


OPERATIONS: dict[str, Callable[[Console, argparse.Namespace], int]] = {
    "monitor": monitor,
    "simulate-drift": simulate_drift,
    "models": models,
    "promote": promote,
    "rollback": rollback,
    "approve": approve,
    "reject": reject,
    "history": history,
    "score": score_command,
    "query": query,
}
