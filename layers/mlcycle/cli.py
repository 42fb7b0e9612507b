"""The `mlcycle` command: run the whole lifecycle locally, exactly as the stack runs it on AWS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlcycle.local.commands import OPERATIONS
from mlcycle.local.runner import WAITING, RunOutcome, StageOutcome, run_local

_MARK = {
    "SUCCEEDED": "[green]✓[/]",
    "FAILED": "[red]✗[/]",
    "NOT_RUN": "[dim]·[/]",
    "WAITING": "[yellow]…[/]",
}
EXIT_WAITING = 3  # `mlcycle run`: the model waits for a person's approval


def _from_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=Path("mlcycle-out"),
        help="the output of `mlcycle run` (default ./mlcycle-out)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlcycle", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the nine lifecycle stages on a data file in a local, in-process AWS",
        description="Upload DATA to the local lake as a user would and follow the run.",
    )
    run.add_argument(
        "data",
        type=Path,
        help="CSV (optionally gzip-compressed) or Parquet file; or a folder of such files, "
        "uploaded as the parts of one dataset named after the folder",
    )
    run.add_argument("--target", help="the column to predict (or give it in --spec)")
    run.add_argument("--task", choices=["auto", "binary", "multiclass", "regression"])
    run.add_argument("--spec", type=Path, help="a problem spec, YAML or JSON")
    run.add_argument(
        "--out", type=Path, default=Path("mlcycle-out"), help="local lake (default ./mlcycle-out)"
    )
    run.add_argument(
        "--bake-seconds", type=int, help="how long a canary bakes (default: the spec's release)"
    )
    run.add_argument(
        "--trials",
        type=int,
        help="hyperparameter trials per candidate (default: the spec's search; 1: defaults only)",
    )
    run.add_argument(
        "--approve",
        action="store_true",
        help="when the spec requires approval, approve in this process (scripted demos)",
    )
    serve = commands.add_parser(
        "serve",
        help="serve the released models of a local run over HTTP, as the API would",
        description="Run the prediction endpoint's handler on a local run's lake and registry.",
    )
    _from_option(serve)
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--host", default="127.0.0.1")
    predict = commands.add_parser(
        "predict",
        help='predict {"instances": [...]} from a file (or - for stdin) with a local run\'s model',
    )
    _from_option(predict)
    predict.add_argument("--model", help="the model (dataset) name; default: the only one")
    predict.add_argument("file", help='a JSON file {"instances": [...]}, or - for stdin')
    explain = commands.add_parser(
        "explain",
        help='explain {"instances": [...]} from a file (or - for stdin) with a local run\'s model',
        description="Shapley contributions of each feature to each instance's prediction.",
    )
    _from_option(explain)
    explain.add_argument("--model", help="the model (dataset) name; default: the only one")
    explain.add_argument("file", help='a JSON file {"instances": [...]}, or - for stdin')
    monitor = commands.add_parser(
        "monitor",
        help="compare captured traffic (or --current FILE) with the released model's baseline",
    )
    _from_option(monitor)
    monitor.add_argument("--dataset", help="the model (dataset) name; default: the only one")
    monitor.add_argument(
        "--current",
        type=Path,
        help="new data to send through the endpoint first (a target column becomes late labels)",
    )
    simulate = commands.add_parser(
        "simulate-drift",
        help="the whole loop on the bundled data: drifted traffic, alarm, retraining, release",
    )
    _from_option(simulate)
    simulate.add_argument("--rows", type=int, default=1000, help="drifted requests to send")
    simulate.add_argument(
        "--no-labels",
        action="store_true",
        help="no labels arrive for the drifted traffic: the alarm finds nothing new to learn",
    )
    models = commands.add_parser("models", help="the registry: versions, stages, metrics, lineage")
    _from_option(models)
    promote = commands.add_parser("promote", help="make a registered version production by hand")
    _from_option(promote)
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", default="promoted by hand", help="for the audit trail")
    rollback = commands.add_parser(
        "rollback", help="end a canary, or put the previous version back into production"
    )
    _from_option(rollback)
    rollback.add_argument("name")
    rollback.add_argument("--reason", default="rolled back by hand", help="for the audit trail")
    for verb, what in (("approve", "release"), ("reject", "never serve")):
        decide = commands.add_parser(
            verb,
            help=f"{verb} a model waiting for approval ({what} it), with a reason",
            description="Locally (--from DIR) the waiting run continues in this process; "
            "with --stack, the decision goes to the deployed stack as your IAM identity.",
        )
        decide.add_argument("dataset")
        decide.add_argument("version", type=int)
        decide.add_argument("--reason", required=True, help="recorded in the audit trail")
        _target_options(decide)
    history = commands.add_parser(
        "history", help="every stage change of a dataset's versions: when, who, why"
    )
    history.add_argument("dataset")
    _target_options(history)
    score = commands.add_parser(
        "score",
        help="score every row of a file with a model's production version (batch scoring)",
        description="Upload FILE to score/<model>/ of the local lake (or, with --stack, the "
        "deployed one) and follow the scoring state machine; the predictions are copied to "
        "--out.",
    )
    score.add_argument("file", type=Path, help="CSV (any encoding, delimiter, gzip) or Parquet")
    score.add_argument("--model", help="the model (dataset) name; default: the only one")
    score.add_argument("--out", type=Path, help="copy the predictions here (.parquet or .csv)")
    _target_options(score)
    query = commands.add_parser(
        "query",
        help="SQL over a local run's curated zone (DuckDB): one view per dataset, as in Athena",
        description="Each dataset is a view named as its Glue table (customer_churn), with the "
        "partition columns dt and run.",
    )
    query.add_argument("sql", help='e.g. "SELECT churned, count(*) FROM customer_churn GROUP BY 1"')
    _from_option(query)
    return parser


def _target_options(parser: argparse.ArgumentParser) -> None:
    _from_option(parser)
    parser.add_argument(
        "--stack", help="the deployed stack's name: use AWS with your credentials, not --from"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Outside a terminal (CI logs, pipes) rich would assume 80 columns and squeeze tables.
    width = None if sys.stdout.isatty() else 160
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)
    if args.command == "serve":
        return _serve(console, args.source, args.host, args.port)
    if args.command in ("predict", "explain"):
        return _predict(console, args.source, args.model, args.file, verb=args.command)
    if args.command in OPERATIONS:
        return OPERATIONS[args.command](console, args)
    if not args.data.is_file() and not args.data.is_dir():
        console.print(f"[red]error:[/] no such file or folder: {args.data}")
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

    def trials(algorithm: str, done: int, planned: int) -> None:
        console.print(f"      [dim]{algorithm}: trial {done} of {planned}[/]")

    console.print(f"[bold]mlcycle[/] run [cyan]{args.data}[/] (local AWS: moto, in-process)")
    console.print("[dim]synthesizing (or reusing cdk.out) and deploying the stack into moto[/]")
    outcome = run_local(
        args.data,
        target=args.target,
        task=args.task,
        spec_file=args.spec,
        bake_seconds=args.bake_seconds,
        trials=args.trials,
        out_dir=args.out,
        on_stage=progress,
        on_trial=trials,
        approve="approved with mlcycle run --approve" if args.approve else None,
    )
    summary(console, outcome)
    return {"SUCCEEDED": 0, WAITING: EXIT_WAITING}.get(outcome.status, 1)


def _serve(console: Console, source: Path, host: str, port: int) -> int:
    import threading

    from mlcycle.local.serve import released_models, serving

    if not (source / "registry.json").is_file():
        console.print(f"[red]error:[/] no local run in {source}: run `mlcycle run` first")
        return 2
    stop = threading.Event()
    with serving(source, host=host, port=port) as (_, server):
        address = f"http://{server.server_address[0]}:{server.server_address[1]}"
        console.print(f"[bold]mlcycle[/] endpoint on [cyan]{address}[/] (the predict function)")
        for name, version in released_models(source).items():
            console.print(f"  POST {address}/v1/models/{name}:predict   (version {version})")
            console.print(f"  POST {address}/v1/models/{name}:explain")
        console.print(f"  GET  {address}/v1/models/<name>   GET {address}/health")
        console.print("[dim]Ctrl-C stops; the capture is then flushed into the local lake[/]")
        try:
            stop.wait()
        except KeyboardInterrupt:
            console.print("stopping")
    console.print(f"capture written under {source / 'lake' / 'capture'}")
    return 0


def _predict(
    console: Console, source: Path, model: str | None, file: str, *, verb: str = "predict"
) -> int:
    """`mlcycle predict` and `mlcycle explain`: one request to the endpoint's `:<verb>`."""
    import json

    from mlcycle.local.serve import LocalEndpoint, released_models

    if not (source / "registry.json").is_file():
        console.print(f"[red]error:[/] no local run in {source}: run `mlcycle run` first")
        return 2
    if model is None:
        models = sorted(released_models(source))
        if len(models) != 1:
            console.print(f"[red]error:[/] name the model with --model (released: {models})")
            return 2
        model = models[0]
    if file == "-":
        body = sys.stdin.read()
    elif Path(file).is_file():
        body = Path(file).read_text()
    else:
        console.print(f"[red]error:[/] no such file: {file}")
        return 2
    with LocalEndpoint(source) as endpoint:
        status, response = endpoint.request("POST", f"/v1/models/{model}:{verb}", body)
    print(json.dumps(response, indent=2))
    return 0 if status < 400 else 1


def summary(console: Console, outcome: RunOutcome) -> None:
    table = Table(title=f"run {outcome.run_id}", show_header=True, header_style="bold")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for stage in outcome.stages:
        seconds = f"{stage.seconds:.2f}" if stage.seconds is not None else "-"
        table.add_row(stage.name, f"{_MARK[stage.status]} {stage.status.lower()}", seconds)
    console.print(table)
    out = Path(outcome.out_dir)
    if outcome.status in ("SUCCEEDED", WAITING):
        winner = outcome.winner or {}
        intervals = winner.get("intervals") or {}
        metrics = ", ".join(
            f"{k} {v:.3f}"
            + (f" [{intervals[k][0]:.3f}, {intervals[k][1]:.3f}]" if k in intervals else "")
            for k, v in (winner.get("metrics") or {}).items()
        )
        console.print(f"task [bold]{outcome.task}[/], target [bold]{outcome.target}[/]")
        console.print(f"winner [bold]{winner.get('algorithm')}[/]: {metrics}")
        if winner.get("threshold") is not None:
            console.print(
                f"decision threshold {winner['threshold']:.3f} (see the evaluation report)"
            )
        gate = outcome.gate or {}
        verdict = "[green]passed[/]" if gate.get("passed") else "[red]failed[/]"
        console.print(f"gate {verdict}: {gate.get('reason')}")
        console.print(
            f"model version [bold]{outcome.model_version}[/] is [bold]{outcome.model_stage}[/]"
        )
        if outcome.approval:
            waiting = outcome.approval
            console.print(
                f"[yellow]waiting for approval[/] until {waiting['expires_at']}; no traffic "
                "reaches it before. Decide with:"
            )
            console.print(f"  {waiting['approve']} --from {out}")
            console.print(f"  {waiting['reject']} --from {out}")
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
