"""The lifecycle pipeline: one Lambda per stage, chained by one Step Functions state machine."""

from __future__ import annotations

import itertools
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import FunctionSizing

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The image holds the package and the handlers; everything else in the repo stays out of it.
IMAGE_CONTEXT_EXCLUDES = [
    "*",
    "!infra/pipeline.Dockerfile",
    "!pyproject.toml",
    "!README.md",
    "!layers",
    "!functions",
    "**/__pycache__",
    "**/*.egg-info",
]

# (handler folder, state name, result path) in lifecycle order; training is the Map between.
STAGES_BEFORE_TRAINING = [
    ("define_problem", "Define problem", "$.problem"),
    ("collect_data", "Collect data", "$.collect"),
    ("process_data", "Process data", "$.process"),
    ("define_metrics", "Define metrics", "$.metrics"),
    ("explore_data", "Explore data", "$.explore"),
    ("engineer_features", "Engineer features", "$.features"),
]
STAGES_AFTER_TRAINING = [
    ("evaluate_models", "Evaluate models", "$.evaluate"),
    ("register_model", "Register model", "$.registration"),
    ("release_model", "Release model", "$.release"),
]

# Lambda's own transient faults; domain errors (BadInputError, ...) are never retried.
TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
]
TIMEOUT_ERRORS = ["States.Timeout", "Sandbox.Timedout"]


class Pipeline(Construct):
    """Functions, state machine, and the rule that starts a run for each upload to landing/."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        table: dynamodb.ITableV2,
        sizing: dict[str, FunctionSizing],
        landing_prefix: str,
        log_retention: logs.RetentionDays,
        max_training_concurrency: int,
        removal_policy: RemovalPolicy,
        code_version: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._bucket = bucket
        self._table = table
        self._sizing = sizing
        self._log_retention = log_retention
        self._removal_policy = removal_policy
        self._environment = {
            "LAKE_BUCKET": bucket.bucket_name,
            "REGISTRY_TABLE": table.table_name,
            "MLCYCLE_CODE_VERSION": code_version,
            "POWERTOOLS_SERVICE_NAME": "mlcycle",
            "POWERTOOLS_METRICS_NAMESPACE": "mlcycle",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        self.functions: dict[str, lambda_.DockerImageFunction] = {}

        self.state_machine = self._state_machine(max_training_concurrency)
        self.start_run = self._function("start_run")
        self.start_run.add_environment("STATE_MACHINE_ARN", self.state_machine.state_machine_arn)
        self.state_machine.grant_start_execution(self.start_run)
        self.upload_rule = events.Rule(
            self,
            "LandingUploadRule",
            description="Starts a lifecycle run for each object created under the landing prefix",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [bucket.bucket_name]},
                    "object": {"key": [{"prefix": landing_prefix}]},
                },
            ),
            targets=[targets.LambdaFunction(self.start_run, retry_attempts=4)],
        )
        for function in self.functions.values():
            bucket.grant_read_write(function)
            table.grant_read_write_data(function)

    def _function(self, name: str) -> lambda_.DockerImageFunction:
        size = self._sizing[name]
        log_group = logs.LogGroup(
            self,
            f"{_camel(name)}Logs",
            retention=self._log_retention,
            removal_policy=self._removal_policy,
        )
        function = lambda_.DockerImageFunction(
            self,
            _camel(name),
            description=f"mlcycle stage: {name}",
            code=lambda_.DockerImageCode.from_image_asset(
                str(PROJECT_ROOT),
                file="infra/pipeline.Dockerfile",
                cmd=[f"functions.{name}.handler.lambda_handler"],
                exclude=IMAGE_CONTEXT_EXCLUDES,
            ),
            memory_size=size.memory_mb,
            timeout=size.timeout,
            environment=dict(self._environment),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
        )
        self.functions[name] = function
        return function

    def _task(self, name: str, state: str, result_path: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            state,
            lambda_function=self._function(name),
            payload_response_only=True,
            result_path=result_path,
            retry_on_service_exceptions=False,
        )
        _add_retries(task)
        return task

    def _state_machine(self, max_training_concurrency: int) -> sfn.StateMachine:
        failed = sfn.Fail(self, "Run failed", error="RunFailed", cause="See the run record")
        record_failure = tasks.LambdaInvoke(
            self,
            "Record failure",
            lambda_function=self._function("record_failure"),
            payload_response_only=True,
            result_path="$.failure",
            retry_on_service_exceptions=False,
        )
        _add_retries(record_failure)
        record_failure.next(failed)

        def guarded(state: tasks.LambdaInvoke | sfn.Map, stage: str) -> None:
            # Every stage fails into one path that records which stage failed and why.
            mark = sfn.Pass(
                self,
                f"{state.node.id} failed",
                result=sfn.Result.from_string(stage),
                result_path="$.failed_stage",
            )
            mark.next(record_failure)
            state.add_catch(mark, errors=["States.ALL"], result_path="$.error")

        chain: list[tasks.LambdaInvoke | sfn.Map] = []
        for name, state, result_path in STAGES_BEFORE_TRAINING:
            task = self._task(name, state, result_path)
            guarded(task, name)
            chain.append(task)

        train = sfn.Map(
            self,
            "Train candidates",
            items_path="$.features.candidates",
            item_selector={
                "algorithm": sfn.JsonPath.string_at("$$.Map.Item.Value"),
                "run": sfn.JsonPath.object_at("$"),
            },
            max_concurrency=max_training_concurrency,
            result_path="$.candidates",
        )
        train.item_processor(self._task("train_model", "Train model", "$"))
        guarded(train, "train_model")
        chain.append(train)

        for name, state, result_path in STAGES_AFTER_TRAINING:
            task = self._task(name, state, result_path)
            guarded(task, name)
            chain.append(task)

        definition: sfn.IChainable = chain[0]
        for current, following in itertools.pairwise(chain):
            current.next(following)
        chain[-1].next(sfn.Succeed(self, "Run succeeded"))

        return sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            timeout=Duration.hours(2),
            logs=sfn.LogOptions(
                destination=logs.LogGroup(
                    self,
                    "StateMachineLogs",
                    retention=self._log_retention,
                    removal_policy=self._removal_policy,
                ),
                level=sfn.LogLevel.ERROR,
            ),
        )


def _add_retries(task: tasks.LambdaInvoke) -> None:
    task.add_retry(
        errors=TRANSIENT_ERRORS,
        interval=Duration.seconds(2),
        max_attempts=4,
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
    )
    task.add_retry(errors=TIMEOUT_ERRORS, interval=Duration.seconds(5), max_attempts=1)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
