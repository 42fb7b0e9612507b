"""`mlcycle score`: batch scoring of a file, locally, through the synthesized scoring state machine.

As on AWS: the file is uploaded to `score/<dataset>/`, the event goes through the synthesized
rule to the trigger, and the execution (plan, Distributed Map over the chunks, finish) is
followed to its end. The predictions stay in the local lake (`DIR/lake/predictions/...`) and
are copied to `--out` (Parquet, or CSV by its extension).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console

from mlcycle.adapters.lake import Lake
from mlcycle.batch_scoring import ScoringSummary, read_predictions, start_scoring
from mlcycle.deployed import (
    LAKE_BUCKET_OUTPUT,
    SCORING_STATE_MACHINE_OUTPUT,
    StackError,
    stack_output,
)
from mlcycle.lake_layout import Zone
from mlcycle.local.runner import deliver_events, local_aws
from mlcycle.local.serve import released_models

_POLL_SECONDS = 0.1


@dataclass
class ScoreOutcome:
    status: str  # SUCCEEDED or FAILED
    dataset: str
    run_id: str | None = None
    summary: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    out: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def score_local(
    data: Path,
    *,
    source: Path,
    model: str | None = None,
    out: Path | None = None,
    chunk_rows: int | None = None,
    assembly: Path | None = None,
) -> ScoreOutcome:
    """Score `data` with the production version of `model` (default: the only released one)
    in the local run `source`; `chunk_rows` overrides the deployed chunk size (tests)."""
    dataset = model or _only_released(source)
    started = time.monotonic()
    with local_aws(source, assembly=assembly) as aws:
        overrides = {"SCORING_CHUNK_ROWS": str(chunk_rows)} if chunk_rows else {}
        with mock.patch.dict(os.environ, overrides):
            aws.session.client("s3").put_object(
                Bucket=aws.deployment.lake_bucket,
                Key=f"{Zone.SCORE.prefix}{dataset}/{data.name}",
                Body=data.read_bytes(),
            )
            started_runs = deliver_events(aws.deployment, aws.session)
            if len(started_runs) != 1:
                raise RuntimeError(f"the upload started {len(started_runs)} runs, expected one")
            # (still inside the override: the execution runs its steps while it is followed)
            outcome = follow_scoring(
                aws.session, aws.deployment.lake_bucket, started_runs[0], dataset, out
            )
    outcome.seconds = round(time.monotonic() - started, 3)
    return outcome


def score_deployed(
    data: Path,
    *,
    stack: str,
    model: str,
    out: Path | None = None,
    session: boto3.Session | None = None,
) -> ScoreOutcome:
    """Score `data` on the deployed stack, with the caller's credentials: the same upload to
    score/<model>/ and the same scoring state machine, started under the name the upload's
    trigger gives it (whichever of the two starts it first, the other starts nothing)."""
    session = session or boto3.Session()
    started = time.monotonic()
    cloudformation = session.client("cloudformation")
    bucket = stack_output(cloudformation, stack, LAKE_BUCKET_OUTPUT)
    machine = stack_output(cloudformation, stack, SCORING_STATE_MACHINE_OUTPUT)
    s3 = session.client("s3")
    key = f"{Zone.SCORE.prefix}{model}/{data.name}"
    s3.upload_file(str(data), bucket, key)  # multipart past 8 MB, as `aws s3 cp`
    head = s3.head_object(Bucket=bucket, Key=key)
    run = start_scoring(
        session.client("stepfunctions"),
        machine,
        bucket=bucket,
        key=key,
        version=head.get("VersionId") or head["ETag"].strip('"'),  # as the event names it
        size=int(head["ContentLength"]),
    )
    outcome = follow_scoring(session, bucket, run["execution_arn"], model, out)
    outcome.seconds = round(time.monotonic() - started, 3)
    return outcome


def follow_scoring(
    session: boto3.Session, bucket: str, execution_arn: str, dataset: str, out: Path | None
) -> ScoreOutcome:
    """Wait for a scoring run to end; copy its predictions to `out`."""
    description = _wait(session.client("stepfunctions"), execution_arn)
    outcome = ScoreOutcome(
        status="SUCCEEDED" if description["status"] == "SUCCEEDED" else "FAILED",
        dataset=dataset,
        run_id=execution_arn.rsplit(":", 1)[-1],
    )
    if outcome.status != "SUCCEEDED":
        outcome.error = _error(description)
        return outcome
    summary = ScoringSummary.model_validate(json.loads(description["output"])["summary"])
    outcome.summary = summary.model_dump(mode="json")
    if out is not None:
        write_table(read_predictions(Lake(session.client("s3"), bucket), summary), out)
        outcome.out = str(out)
    return outcome


def write_table(table: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        pacsv.write_csv(table, out)
    else:
        pq.write_table(table, out, compression="zstd")


def _only_released(source: Path) -> str:
    models = sorted(released_models(source)) if (source / "registry.json").is_file() else []
    if len(models) != 1:
        raise ValueError(f"name the model with --model (released: {models or 'none'})")
    return models[0]


def _wait(sfn: Any, execution_arn: str) -> dict[str, Any]:
    while True:
        description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if description["status"] != "RUNNING":
            return description
        time.sleep(_POLL_SECONDS)


def _error(description: dict[str, Any]) -> dict[str, str]:
    """The failed step's error type and message (a Lambda's error arrives as JSON in cause)."""
    error, cause = description.get("error") or "ScoringFailed", description.get("cause") or ""
    try:
        document = json.loads(cause)
    except ValueError:
        document = None
    if isinstance(document, dict) and "errorMessage" in document:
        return {"type": str(document.get("errorType", error)), "message": document["errorMessage"]}
    return {"type": error, "message": cause or "see logs/handlers.log"}


def score_command(console: Console, args: argparse.Namespace) -> int:
    """`mlcycle score FILE [--model NAME] [--from DIR | --stack NAME] [--out FILE]`."""
    if not args.file.is_file():
        console.print(f"[red]error:[/] no such file: {args.file}")
        return 2
    if args.stack:
        if not args.model:
            console.print("[red]error:[/] name the model with --model when scoring on --stack")
            return 2
        dataset, where = args.model, f"stack {args.stack}"
    elif not (args.source / "registry.json").is_file():
        console.print(f"[red]error:[/] no local run in {args.source}: run `mlcycle run` first")
        return 2
    else:
        try:
            dataset = args.model or _only_released(args.source)
        except ValueError as problem:
            console.print(f"[red]error:[/] {problem}")
            return 2
        where = "local AWS: the scoring state machine in moto"
    console.print(
        f"[bold]mlcycle[/] score [cyan]{args.file}[/] with {dataset}'s production model ({where})"
    )
    try:
        outcome = (
            score_deployed(args.file, stack=args.stack, model=dataset, out=args.out)
            if args.stack
            else score_local(args.file, source=args.source, model=dataset, out=args.out)
        )
    except StackError as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    if outcome.status != "SUCCEEDED":
        failure = outcome.error or {}
        console.print(f"[red]FAILED[/]: {failure.get('type')}: {failure.get('message')}")
        return 1
    summary = outcome.summary or {}
    console.print(
        f"{summary['scored']} of {summary['rows']} rows scored by version "
        f"{summary['model_version']} in {len(summary['parts'])} part(s), "
        f"{summary['quarantined']} quarantined ({outcome.seconds:.1f} s)"
    )

    def shown(uri: str) -> str:  # a local lake's path, or the stack's s3:// URI
        return uri if args.stack else str(args.source / "lake" / uri.split("/", 3)[3])

    for uri in summary["parts"][:3]:
        console.print(f"  {shown(uri)}")
    for uri in summary["quarantine"][:3]:
        console.print(f"  quarantine: {shown(uri)}")
    if summary.get("csv_uri"):
        console.print(f"  csv: {shown(summary['csv_uri'])}")
    labels = f"{Zone.LABELS.prefix}dataset={dataset}/"
    console.print(
        f"  {summary.get('captured', 0)} row(s) captured for the monitor (`captured`): label "
        f"them by `request_id` under {labels if args.stack else args.source / 'lake' / labels}"
    )
    if outcome.out:
        console.print(f"predictions: {outcome.out}")
    return 0
