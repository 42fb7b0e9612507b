"""The `mlcycle` command: run the whole lifecycle locally, exactly as the stack runs it on AWS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlcycle.local.runner import RunOutcome, StageOutcome, run_local

_MARK = {"SUCCEEDED": "[green]✓[/]", "FAILED": "[red]✗[/]", "NOT_RUN": "[dim]·[/]"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlcycle", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the nine lifecycle stages on a data file in a local, in-process AWS",
        description="Upload DATA to the local lake as a user would and follow the run.",
    )
    run.add_argument("data", type=Path, help="CSV (optionally gzip-compressed) or Parquet file")
    run.add_argument("--target", help="the column to predict (or give it in --spec)")
    run.add_argument("--task", choices=["auto", "binary", "multiclass", "regression"])
    run.add_argument("--spec", type=Path, help="a problem spec, YAML or JSON")
    run.add_argument(
        "--out", type=Path, default=Path("mlcycle-out"), help="local lake (default ./mlcycle-out)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    if not args.data.is_file():
        console.print(f"[red]error:[/] no such file: {args.data}")
        return 2
    if args.spec is not None and not args.spec.is_file():
        console.print(f"[red]error:[/] no such spec file: {args.spec}")
        return 2
    if args.spec is None and not args.target:
        console.print("[red]error:[/] name the target column with --target, or give --spec")
        return 2

    def progress(stage: StageOutcome) -> None:
        seconds = f"{stage.seconds:6.2f}s" if stage.seconds is not None else ""
        console.print(f"  {_MARK[stage.status]} {stage.name:<18} {seconds}")

    console.print(f"[bold]mlcycle[/] run [cyan]{args.data}[/] (local AWS: moto, in-process)")
    console.print("[dim]synthesizing (or reusing cdk.out) and deploying the stack into moto[/]")
    outcome = run_local(
        args.data,
        target=args.target,
        task=args.task,
        spec_file=args.spec,
        out_dir=args.out,
        on_stage=progress,
    )
    _summary(console, outcome)
    return 0 if outcome.status == "SUCCEEDED" else 1


def _summary(console: Console, outcome: RunOutcome) -> None:
    table = Table(title=f"run {outcome.run_id}", show_header=True, header_style="bold")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for stage in outcome.stages:
        seconds = f"{stage.seconds:.2f}" if stage.seconds is not None else "-"
        table.add_row(stage.name, f"{_MARK[stage.status]} {stage.status.lower()}", seconds)
    console.print(table)
    out = Path(outcome.out_dir)
    if outcome.status == "SUCCEEDED":
        winner = outcome.winner or {}
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in (winner.get("metrics") or {}).items())
        console.print(f"task [bold]{outcome.task}[/], target [bold]{outcome.target}[/]")
        console.print(f"winner [bold]{winner.get('algorithm')}[/]: {metrics}")
        gate = outcome.gate or {}
        verdict = "[green]passed[/]" if gate.get("passed") else "[red]failed[/]"
        console.print(f"gate {verdict}: {gate.get('reason')}")
        console.print(
            f"model version [bold]{outcome.model_version}[/] is [bold]{outcome.model_stage}[/]"
        )
    else:
        error = outcome.error or {}
        console.print(
            f"[red]FAILED[/] at {error.get('stage')}: {error.get('type')}: {error.get('message')}"
        )
    for name, path in outcome.reports.items():
        console.print(f"{name}: {out / path}")
    console.print(f"outcome: {out / 'run.json'}")


if __name__ == "__main__":
    sys.exit(main())
