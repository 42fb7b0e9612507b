"""`mlcycle run`: one upload through the synthesized pipeline, locally, as it would run on AWS."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import yaml
from moto import mock_aws
from threadpoolctl import threadpool_limits

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.lake_index import listing
from mlcycle.lake_layout import MARKER, Zone, is_marker
from mlcycle.local import atomic_writes, lambda_seam
from mlcycle.local.assembly import ensure_assembly, load_template, project_root
from mlcycle.local.deployment import LocalDeployment, deploy
from mlcycle.local.template import REGION
from mlcycle.reports import render_index
from mlcycle.serving import runtime as serving_runtime
from mlcycle.spec import dataset_name
from mlcycle.training import SEARCH_SUFFIX, candidates_prefix

_POLL_SECONDS = 0.1
INDEX_FILE = "index.html"
# judge_canary runs only when a release goes through a canary, request_approval only when
# the spec asks for approval
OPTIONAL_STAGES = {"judge_canary", "request_approval"}
PARTS_STAGES = ("plan_parts", "merge_parts")  # and the Map between: collect_part+process_part
WAITING = "WAITING_FOR_APPROVAL"
# A canary bakes this long in local runs unless the spec or --bake-seconds says otherwise.
LOCAL_RELEASE = {"bake_seconds": 2, "max_waits": 1}
# Local stand-ins for what Lambda's environment provides; tracing has no X-Ray daemon here.
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}


@dataclass
class StageOutcome:
    name: str
    status: str  # SUCCEEDED, FAILED or NOT_RUN
    seconds: float | None = None


@dataclass
class RunOutcome:
    status: str  # SUCCEEDED, FAILED or WAITING_FOR_APPROVAL
    run_id: str | None
    dataset: str
    stages: list[StageOutcome] = field(default_factory=list)
    task: str | None = None
    target: str | None = None
    winner: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    model_version: int | None = None
    model_stage: str | None = None
    error: dict[str, str] | None = None
    reports: dict[str, str] = field(default_factory=dict)
    out_dir: str = ""
    # waiting: {"dataset", "version", "expires_at", "approve", "reject"} (the commands)
    approval: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[StageOutcome], None]
# Called with a version's open approval request; True when it answered (the run goes on),
# False to leave the run waiting for a person.
ApprovalCallback = Callable[[dict[str, Any]], bool]
# (algorithm, trials done, trials planned): the training Map's search, as it goes
TrialCallback = Callable[[str, int, int], None]


def run_local(
    data: Path,
    *,
    target: str | None = None,
    task: str | None = None,
    spec_file: Path | None = None,
    bake_seconds: int | None = None,
    trials: int | None = None,
    out_dir: Path = Path("mlcycle-out"),
    on_stage: ProgressCallback | None = None,
    on_trial: TrialCallback | None = None,
    approve: str | None = None,
    assembly: Path | None = None,
) -> RunOutcome:
    """Deploy the synthesized stack into moto, upload `data` and follow its execution.

    A run whose model waits for approval ends WAITING_FOR_APPROVAL (it continues with
    `mlcycle approve` in a later process), unless `approve` gives the reason to approve now."""
    spec_text, dataset = _spec_for(
        data,
        target=target,
        task=task,
        spec_file=spec_file,
        bake_seconds=bake_seconds,
        trials=trials,
    )
    with local_aws(out_dir, assembly=assembly) as aws:
        s3 = aws.session.client("s3")
        s3.put_object(
            Bucket=aws.deployment.lake_bucket,
            Key=f"{Zone.SPECS.prefix}{dataset}.yaml",
            Body=spec_text.encode(),
        )
        upload(s3, aws.deployment.lake_bucket, data, dataset)
        on_approval = None
        if approve is not None:
            from mlcycle.local.approvals import answer_with  # it builds on this module

            on_approval = answer_with(aws, "approved", approve)
        execution_arns = deliver_events(aws.deployment, aws.session)
        if len(execution_arns) != 1:
            raise RuntimeError(f"the upload started {len(execution_arns)} runs, expected one")
        outcome = follow_execution(
            aws.deployment,
            aws.session,
            execution_arns[0],
            dataset,
            on_stage,
            on_trial,
            on_approval=on_approval,
        )
    return write_outcome(outcome, out_dir)


def upload(s3: Any, bucket: str, data: Path, dataset: str) -> list[str]:
    """Upload a file to landing/, or a folder's files as the parts of one dataset (in a folder
    of their own under landing/<dataset>/, then the `_SUCCESS` marker that starts the run)."""
    if not data.is_dir():
        key = f"{Zone.LANDING.prefix}{data.name}"
        s3.put_object(Bucket=bucket, Key=key, Body=data.read_bytes())
        return [key]
    files = sorted(p for p in data.iterdir() if p.is_file() and not p.name.startswith(("_", ".")))
    if not files:
        raise ValueError(f"{data} holds no part files (names starting with _ or . are skipped)")
    folder = f"{Zone.LANDING.prefix}{dataset}/{datetime.now(UTC):%Y%m%dT%H%M%S}/"
    keys = [folder + p.name for p in files]
    for key, path in zip(keys, files, strict=True):
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    s3.put_object(Bucket=bucket, Key=folder + MARKER, Body=b"")
    return [*keys, folder + MARKER]


@dataclass
class LocalAws:
    """The stack deployed into an in-process moto, the handlers' environment set."""

    deployment: LocalDeployment
    session: boto3.Session
    template: dict[str, Any]

    def invoke(self, stage: str, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke one of the stack's functions through moto's Lambda API (in-process)."""
        function = next(f for f in self.deployment.functions.values() if f.stage == stage)
        response = self.session.client("lambda").invoke(
            FunctionName=function.name, Payload=json.dumps(event, default=str).encode()
        )
        result: dict[str, Any] = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise LocalInvokeError(
                f"{stage}: {result.get('errorType')}: {result.get('errorMessage')}"
            )
        return result


class LocalInvokeError(RuntimeError):
    """A function invoked locally raised; the message carries its error type and message."""


@contextlib.contextmanager
def local_aws(out_dir: Path, *, assembly: Path | None = None) -> Iterator[LocalAws]:
    """The synthesized stack in moto, with `out_dir`'s lake and registry restored into it;
    the lake and registry are exported back to `out_dir` on the way out."""
    root = project_root()
    assembly = assembly or ensure_assembly(root)
    stack_name, template = load_template(assembly)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    with (
        mock.patch.dict(os.environ, LOCAL_ENVIRONMENT),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        # Every Lambda of the run shares this process, and the training Map runs candidates
        # at once: native thread pools (OpenMP, BLAS) of their own would oversubscribe the
        # cores, which made gradient boosting 7x slower here. Lambda gives each its own.
        threadpool_limits(limits=1),
    ):
        lambda_seam.install()
        atomic_writes.install()
        deployment = deploy(stack_name, template, root=root, assembly=assembly)
        session = boto3.Session(region_name=REGION)
        restore_lake(deployment, session, out_dir)
        with (
            mock.patch.dict(os.environ, deployment.environment()),
            _handler_output(out_dir / "logs" / "handlers.log"),
        ):
            serving_runtime.reset()  # a new moto: the endpoint's caches start empty
            yield LocalAws(deployment, session, template)
        write_index(deployment, session, out_dir)
        export_lake(deployment, session, out_dir)


def write_index(deployment: LocalDeployment, session: boto3.Session, out_dir: Path) -> None:
    """DIR/index.html: the lake's index page, its links reaching into DIR/lake/reports/."""
    lake = Lake(session.client("s3"), deployment.lake_bucket)
    registry = Registry(session.client("dynamodb"), deployment.registry_table)
    page = render_index(listing(lake, registry, base=f"lake/{Zone.REPORTS.prefix}"))
    (out_dir / INDEX_FILE).write_text(page)


def write_outcome(outcome: RunOutcome, out_dir: Path) -> RunOutcome:
    """Record where the run's reports are and write DIR/run.json."""
    outcome.out_dir = str(out_dir)
    outcome.reports = {
        name: str(path.relative_to(out_dir)) for name, path in _reports(out_dir, outcome).items()
    }
    if (out_dir / INDEX_FILE).is_file():
        outcome.reports["index"] = INDEX_FILE
    (out_dir / "run.json").write_text(json.dumps(outcome.to_json(), indent=2))
    return outcome


def _spec_for(
    data: Path,
    *,
    target: str | None,
    task: str | None,
    spec_file: Path | None,
    bake_seconds: int | None,
    trials: int | None = None,
) -> tuple[str, str]:
    """The spec text to upload beside the data, and the dataset it belongs to."""
    dataset = dataset_name(f"{Zone.LANDING.prefix}{data.name}")
    if spec_file is not None:
        document = yaml.safe_load(spec_file.read_text())
    elif target:
        document = {"dataset": dataset, "task": task or "auto", "release": dict(LOCAL_RELEASE)}
    else:
        raise ValueError("name the target column with --target, or give a spec with --spec")
    if isinstance(document, dict):  # anything else is the spec stage's to reject, clearly
        document = {"dataset": dataset, **document}
        if target:
            document["target"] = target
        if task:
            document["task"] = task
        if bake_seconds is not None:
            document["release"] = {**(document.get("release") or {}), "bake_seconds": bake_seconds}
        if trials is not None:
            document["search"] = {**(document.get("search") or {}), "trials": trials}
        dataset = str(document["dataset"])
    return yaml.safe_dump(document, sort_keys=False), dataset


@contextlib.contextmanager
def _handler_output(log_file: Path) -> Iterator[None]:
    """Handlers log and emit EMF metrics on stdout, as in Lambda, and moto's interpreter logs
    each caught error; locally both go to a file instead of the terminal."""
    moto_logger = logging.getLogger("moto")
    with log_file.open("a") as stream, contextlib.redirect_stdout(stream):
        file_handler = logging.StreamHandler(stream)
        moto_logger.addHandler(file_handler)
        propagate, moto_logger.propagate = moto_logger.propagate, False
        try:
            yield
        finally:
            moto_logger.removeHandler(file_handler)
            moto_logger.propagate = propagate


def deliver_events(deployment: LocalDeployment, session: boto3.Session) -> list[str]:
    """Hand each event that matched a rule (moto delivers it to the rule's tap queue) to the
    rule's Lambda targets, as EventBridge would; returns the executions they started."""
    sqs, lam = session.client("sqs"), session.client("lambda")
    started: list[str] = []
    for rule in deployment.rules:
        for message in _messages(sqs, rule.tap_queue_url):
            for target in rule.lambda_targets:
                response = lam.invoke(FunctionName=target, Payload=message["Body"].encode())
                result = json.loads(response["Payload"].read())
                if response.get("FunctionError"):
                    raise RuntimeError(f"{target} failed: {result.get('errorMessage')}")
                arn = result.get("execution_arn")
                if arn and arn not in started:  # a run named twice is one run
                    started.append(arn)
            sqs.delete_message(QueueUrl=rule.tap_queue_url, ReceiptHandle=message["ReceiptHandle"])
    return started


def _messages(sqs: Any, queue_url: str) -> Iterator[dict[str, Any]]:
    """Every message in the queue (a folder of parts is more events than one receive holds)."""
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        yield from messages


def _state_stages(definition: dict[str, Any], deployment: LocalDeployment) -> dict[str, str]:
    """State name -> lifecycle stage (the handler folder of the function it invokes)."""
    by_arn = {function.arn: function.stage for function in deployment.functions.values()}
    mapping: dict[str, str] = {}
    for name, state in definition["States"].items():
        # a callback task (.waitForTaskToken) names its function in its parameters
        function = (state.get("Parameters") or {}).get("FunctionName", state.get("Resource"))
        if state["Type"] == "Task" and function in by_arn:
            mapping[name] = by_arn[function]
        elif state["Type"] == "Map":  # its children's stages, as one (the parts: collect, process)
            inner = _state_stages(state["ItemProcessor"], deployment)
            if inner:
                mapping[name] = "+".join(inner.values())
    return mapping


def follow_execution(
    deployment: LocalDeployment,
    session: boto3.Session,
    execution_arn: str,
    dataset: str,
    on_stage: ProgressCallback | None,
    on_trial: TrialCallback | None = None,
    *,
    on_approval: ApprovalCallback | None = None,
    run_id: str | None = None,
    stale_token: str | None = None,
) -> RunOutcome:
    """Follow an execution to its end, reporting stages as they finish; `run_id` when the
    execution continues a run under another name (a run resumed at its approval, whose
    earlier request's `stale_token` no execution waits on)."""
    sfn = session.client("stepfunctions")
    registry = Registry(session.client("dynamodb"), deployment.registry_table)
    run_id = run_id or execution_arn.rsplit(":", 1)[-1]
    answered = {stale_token} if stale_token else set()  # tokens handed to on_approval
    watch = _SearchWatch(session.client("s3"), deployment.lake_bucket, dataset, on_trial)
    definition = json.loads(
        sfn.describe_state_machine(stateMachineArn=deployment.state_machine_arn)["definition"]
    )
    stage_of = _state_stages(definition, deployment)
    pipeline = _stage_order(
        [stage for stage in stage_of.values() if stage != "record_failure"],
        many_parts=is_marker(
            json.loads(sfn.describe_execution(executionArn=execution_arn)["input"])["source"]["key"]
        ),
    )
    entered: dict[str, datetime] = {}
    finished: dict[str, StageOutcome] = {}
    seen = 0  # the history only grows: each poll handles the events it has not seen
    while True:
        description = sfn.describe_execution(executionArn=execution_arn)
        events = _history(sfn, execution_arn)
        for event in events[seen:]:
            details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
            if not details or details["name"] not in stage_of:
                continue
            stage = stage_of[details["name"]]
            if event["type"].endswith("StateEntered"):
                entered[stage] = event["timestamp"]
            elif event["type"].endswith("StateExited"):
                seconds = (event["timestamp"] - entered[stage]).total_seconds()
                # A caught failure exits the state too, with the error under $.error.
                failed = bool(json.loads(details.get("output") or "{}").get("error"))
                previous = finished.get(stage)  # a stage in a loop (the canary) adds up
                total = seconds + ((previous.seconds or 0.0) if previous else 0.0)
                finished[stage] = StageOutcome(
                    stage, "FAILED" if failed else "SUCCEEDED", round(total, 3)
                )
                if on_stage and stage != "record_failure":
                    on_stage(StageOutcome(stage, finished[stage].status, round(seconds, 3)))
        seen = len(events)
        if "train_model" in entered and "train_model" not in finished:
            watch.poll(run_id)
        if description["status"] != "RUNNING":
            break
        if "request_approval" in entered and "request_approval" not in finished:
            request = _open_request(registry, dataset, run_id, answered)
            if request is not None:
                answered.add(request["token"])
                if on_approval is None or not on_approval(request):
                    # moto's state dies with this process: the run resumes from the exported
                    # lake and registry (`mlcycle approve`), so this execution ends here.
                    sfn.stop_execution(executionArn=execution_arn, cause="waiting for approval")
                    return _waiting(deployment, session, dataset, request, finished, pipeline)
        time.sleep(_POLL_SECONDS)

    outcome = RunOutcome(status=description["status"], run_id=run_id, dataset=dataset)
    if description["status"] == "SUCCEEDED":
        _fill_success(outcome, json.loads(description["output"]))
    else:
        outcome.status = "FAILED"
        _fill_failure(outcome, deployment, session, run_id, dataset)
    for stage in pipeline:
        if stage in finished:
            outcome.stages.append(finished[stage])
        elif stage not in OPTIONAL_STAGES:
            outcome.stages.append(StageOutcome(stage, "NOT_RUN"))
    return outcome


def _stage_order(stages: list[str], *, many_parts: bool) -> list[str]:
    """The stages of the path this run takes, in lifecycle order (the definition lists them
    in its own order: the approval after the release it precedes, the parts path late)."""
    per_part = [s for s in stages if "+" in s]  # the parts' Map: collect_part+process_part
    parts = [*PARTS_STAGES, *per_part]
    order = [s for s in stages if s not in parts and s != "request_approval"]
    at = order.index("collect_data")
    path = [PARTS_STAGES[0], *per_part, PARTS_STAGES[1]] if many_parts else order[at : at + 2]
    order[at : at + 2] = path
    if "request_approval" in stages:
        order.insert(order.index("release_model"), "request_approval")
    return order


def _open_request(
    registry: Registry, dataset: str, run_id: str, answered: set[str]
) -> dict[str, Any] | None:
    """The approval request this run is waiting on, once its Lambda has recorded it."""
    for version in registry.list_versions(dataset):
        request = version.get("approval") or {}
        if (
            version.get("stage") == "pending_approval"
            and request.get("run_id") == run_id
            and request.get("token") not in answered
        ):
            return {**request, "dataset": dataset, "version": int(version["version"])}
    return None


def _waiting(
    deployment: LocalDeployment,
    session: boto3.Session,
    dataset: str,
    request: dict[str, Any],
    finished: dict[str, StageOutcome],
    pipeline: list[str],
) -> RunOutcome:
    lake = Lake(session.client("s3"), deployment.lake_bucket)
    outcome = RunOutcome(status=WAITING, run_id=request["run_id"], dataset=dataset)
    _fill_success(outcome, lake.get_json(request["context_uri"]))
    outcome.model_stage = "pending_approval"
    version = request["version"]
    outcome.approval = {
        "dataset": dataset,
        "version": version,
        "expires_at": request["expires_at"],
        "approve": f'mlcycle approve {dataset} {version} --reason "..."',
        "reject": f'mlcycle reject {dataset} {version} --reason "..."',
    }
    finished = {**finished, "request_approval": StageOutcome("request_approval", "WAITING")}
    outcome.stages = [
        finished.get(stage, StageOutcome(stage, "NOT_RUN"))
        for stage in pipeline
        if stage in finished or stage not in OPTIONAL_STAGES
    ]
    return outcome


class _SearchWatch:
    """Reports each candidate's search document (`training.SEARCH_SUFFIX`) when it changes."""

    def __init__(self, s3: Any, bucket: str, dataset: str, callback: TrialCallback | None):
        self.s3, self.bucket, self.dataset, self.callback = s3, bucket, dataset, callback
        self.seen: dict[str, tuple[int, int]] = {}

    def poll(self, run_id: str) -> None:
        if self.callback is None:
            return
        prefix = candidates_prefix(self.dataset, run_id)
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        for obj in listed.get("Contents", []):
            if not obj["Key"].endswith(SEARCH_SUFFIX):
                continue
            body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
            document = json.loads(body)
            progress = (int(document.get("done", 0)), int(document.get("planned", 0)))
            if self.seen.get(obj["Key"]) != progress:
                self.seen[obj["Key"]] = progress
                self.callback(str(document.get("algorithm")), *progress)


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _fill_success(outcome: RunOutcome, context: dict[str, Any]) -> None:
    process, evaluate = context.get("process") or {}, context.get("evaluate") or {}
    release = context.get("release") or {}
    outcome.task = process.get("task")
    outcome.target = (context.get("problem") or {}).get("target")
    if evaluate:
        outcome.winner = {
            "algorithm": evaluate["winner"],
            "metrics": evaluate["metrics"],
            "intervals": evaluate.get("intervals") or {},
            "threshold": evaluate.get("threshold"),
        }
        outcome.gate = evaluate["gate"]
    outcome.model_version = (context.get("registration") or {}).get("model_version")
    outcome.model_stage = release.get("stage")


def _fill_failure(
    outcome: RunOutcome,
    deployment: LocalDeployment,
    session: boto3.Session,
    run_id: str,
    dataset: str,
) -> None:
    record = Registry(session.client("dynamodb"), deployment.registry_table).get_run(
        dataset, run_id
    )
    if record and record.get("error"):
        outcome.error = record["error"]
        outcome.task = record.get("task")
        outcome.target = record.get("target")
    else:
        outcome.error = {
            "stage": "unknown",
            "type": "RunFailed",
            "message": "the run failed before it could record why; see logs/handlers.log",
        }


def restore_lake(deployment: LocalDeployment, session: boto3.Session, out_dir: Path) -> None:
    """Load an earlier run's exported lake and registry, so runs build on each other."""
    s3 = session.client("s3")
    lake = out_dir / "lake"
    for path in sorted(lake.rglob("*")) if lake.is_dir() else []:
        if path.is_file():
            key = path.relative_to(lake).as_posix()
            s3.put_object(Bucket=deployment.lake_bucket, Key=key, Body=path.read_bytes())
    registry = out_dir / "registry.json"
    if registry.is_file():
        table = session.resource("dynamodb").Table(deployment.registry_table)
        with table.batch_writer() as batch:
            for item in json.loads(registry.read_text(), parse_float=Decimal):
                batch.put_item(Item=item)
    sqs = session.client("sqs")
    for rule in deployment.rules:  # restored landing/ objects are history, not new uploads
        sqs.purge_queue(QueueUrl=rule.tap_queue_url)


def export_lake(deployment: LocalDeployment, session: boto3.Session, out_dir: Path) -> None:
    """Copy the lake (latest object versions) and the registry table into `out_dir`."""
    s3 = session.client("s3")
    lake = out_dir / "lake"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=deployment.lake_bucket):
        for obj in page.get("Contents", []):
            path = lake / obj["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            body = s3.get_object(Bucket=deployment.lake_bucket, Key=obj["Key"])["Body"].read()
            path.write_bytes(body)
    table = session.resource("dynamodb").Table(deployment.registry_table)
    scanned = table.scan()
    items = list(scanned["Items"])
    while "LastEvaluatedKey" in scanned:  # the audit trail grows with every stage change
        scanned = table.scan(ExclusiveStartKey=scanned["LastEvaluatedKey"])
        items += scanned["Items"]
    (out_dir / "registry.json").write_text(json.dumps(items, indent=2, default=_number))


def _number(value: Any) -> Any:
    return int(value) if value == int(value) else float(value)


def _reports(out_dir: Path, outcome: RunOutcome) -> dict[str, Path]:
    run = f"run={outcome.run_id}"
    found: dict[str, Path] = {}
    for path in sorted((out_dir / "lake").rglob("*")):
        if run not in path.parts:
            continue
        if path.name == "profile.html":
            found["profile"] = path
        elif path.name == "evaluation.html":
            found["evaluation"] = path
        elif path.name == "model_card.html":
            found["model_card"] = path
        elif path.name == "error.json":
            found["error"] = path
    return found
