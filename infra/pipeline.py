"""The lifecycle pipeline: one Lambda per stage, chained by one Step Functions state machine."""

from __future__ import annotations

import itertools

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.access import Access, acknowledge, acknowledge_prefixes, acknowledge_tracing
from infra.stage_functions import StageFunctions
from mlcycle.context import RESUME_KEY
from mlcycle.lake_layout import MARKER, Zone

# (handler folder, state name, result path) in lifecycle order; training is the Map between.
# A many-part upload (its `_SUCCESS` marker) takes the parts path instead of collect and
# process: plan, a Distributed Map collecting and processing each part, merge.
ONE_FILE_STAGES = [
    ("collect_data", "Collect data", "$.collect"),
    ("process_data", "Process data", "$.process"),
]
STAGES_BEFORE_TRAINING = [
    ("define_metrics", "Define metrics", "$.metrics"),
    ("explore_data", "Explore data", "$.explore"),
    ("engineer_features", "Engineer features", "$.features"),
]
STAGES_AFTER_TRAINING = [
    ("evaluate_models", "Evaluate models", "$.evaluate"),
    ("register_model", "Register model", "$.registration"),
]
# Then, when the spec asks, the wait for a person's approval; then the release, and the
# canary loop: bake, judge (promote, roll back, or bake again), until done.
APPROVAL_STATE = "Wait for approval"
# A run restarted at the approval (`{RESUME_KEY: true, ...the run context}`) is how a local run
# waiting for approval continues in a later process, whose moto holds no execution.
# The longest run the spec allows: a 30-day approval, 48 one-day canary bakes, the stages.
RUN_TIMEOUT = Duration.days(80)

# Lambda's own transient faults; domain errors (BadInputError, ...) are never retried.
TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
]
TIMEOUT_ERRORS = ["States.Timeout", "Sandbox.Timedout"]

# What each function reads and writes; its role grants exactly this and nothing else.
ACCESS: dict[str, Access] = {
    "start_run": Access(),
    "define_problem": Access(
        reads=(Zone.SPECS,), writes=(Zone.RUNS,), lists=(Zone.SPECS,), table="write"
    ),
    "collect_data": Access(reads=(Zone.LANDING,), writes=(Zone.RAW, Zone.RUNS)),
    "process_data": Access(
        reads=(Zone.RAW, Zone.RUNS), writes=(Zone.CURATED, Zone.RUNS, Zone.QUARANTINE)
    ),
    "plan_parts": Access(
        reads=(Zone.LANDING, Zone.RUNS), writes=(Zone.RUNS,), lists=(Zone.LANDING,)
    ),
    "collect_part": Access(reads=(Zone.LANDING,), writes=(Zone.RAW, Zone.RUNS)),
    "process_part": Access(
        reads=(Zone.RAW, Zone.RUNS), writes=(Zone.CURATED, Zone.RUNS, Zone.QUARANTINE)
    ),
    "merge_parts": Access(
        reads=(Zone.RUNS, Zone.CURATED, Zone.RAW), writes=(Zone.RUNS,), lists=(Zone.RUNS,)
    ),
    "define_metrics": Access(reads=(Zone.RUNS,), writes=(Zone.RUNS,)),
    # a many-part run's profile merges the parts' documents (runs zone)
    "explore_data": Access(
        reads=(Zone.CURATED, Zone.RUNS), writes=(Zone.REPORTS,), lists=(Zone.RUNS,)
    ),
    "engineer_features": Access(
        reads=(Zone.CURATED, Zone.RUNS), writes=(Zone.FEATURES,), lists=(Zone.RUNS,)
    ),
    "train_model": Access(reads=(Zone.FEATURES, Zone.RUNS), writes=(Zone.MODELS,)),
    "evaluate_models": Access(
        reads=(Zone.FEATURES, Zone.MODELS, Zone.RUNS),
        writes=(Zone.MODELS, Zone.RUNS, Zone.REPORTS),
        table="read",
    ),
    # its model card goes beside the evaluation report (reports/.../model_card.json, .html)
    "register_model": Access(
        reads=(Zone.RUNS, Zone.MODELS), writes=(Zone.MODELS, Zone.REPORTS), table="write"
    ),
    # The stages that end a run rewrite the lake's index page (reports/index.html).
    "request_approval": Access(writes=(Zone.RUNS,), table="write"),
    "release_model": Access(
        reads=(Zone.RUNS, Zone.REPORTS),
        writes=(Zone.REPORTS,),
        lists=(Zone.REPORTS,),
        table="write",
        scans_table=True,
    ),
    "judge_canary": Access(
        reads=(Zone.CAPTURE, Zone.RUNS, Zone.REPORTS),
        writes=(Zone.RUNS, Zone.REPORTS),
        lists=(Zone.CAPTURE, Zone.REPORTS),
        table="write",
        scans_table=True,
    ),
    # a many-part upload: its parts are kept too, and the parts that failed say why
    "record_failure": Access(
        reads=(Zone.LANDING, Zone.REPORTS, Zone.RUNS),
        writes=(Zone.QUARANTINE, Zone.REPORTS),
        lists=(Zone.REPORTS, Zone.LANDING, Zone.RUNS),
        table="write",
        scans_table=True,
    ),
}


class Pipeline(Construct):
    """Functions, state machine, and the rule that starts a run for each upload to landing/."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: StageFunctions,
        landing_prefix: str,
        max_training_concurrency: int,
        max_part_concurrency: int = 10,
        approval_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._factory = functions
        self._key = functions.key
        bucket = functions.bucket
        self.functions: dict[str, lambda_.DockerImageFunction] = {}
        # Reviewers subscribe here: each message names a model waiting for approval.
        self.approvals = sns.Topic(
            self, "ApprovalRequests", master_key=functions.key, enforce_ssl=True
        )
        if approval_email:
            self.approvals.add_subscription(subscriptions.EmailSubscription(approval_email))

        self.state_machine = self._state_machine(max_training_concurrency, max_part_concurrency)
        self.start_run = self._function("start_run")
        self.start_run.add_environment("STATE_MACHINE_ARN", self.state_machine.state_machine_arn)
        # Events that cannot be delivered, or whose run cannot be started, are kept here.
        self.dead_letters = sqs.Queue(
            self,
            "StartRunDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.dead_letters,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the upload trigger.",
        )
        self.upload_rule = upload_trigger(
            self,
            "LandingUploadRule",
            function=self.start_run,
            machine=self.state_machine,
            bucket=bucket,
            prefix=landing_prefix,
            dead_letters=self.dead_letters,
            description="Starts a lifecycle run for each object created under the landing prefix",
            why="Executions of this one state machine, named at run time from the upload.",
        )

    def _function(self, name: str) -> lambda_.DockerImageFunction:
        function = self._factory.create(self, name, ACCESS[name])
        self.functions[name] = function
        return function

    def _task(self, name: str, state: str, result_path: str) -> tasks.LambdaInvoke:
        return stage_task(self, state, self._function(name), result_path)

    def _state_machine(
        self, max_training_concurrency: int, max_part_concurrency: int
    ) -> sfn.StateMachine:
        failed = sfn.Fail(self, "Run failed", error="RunFailed", cause="See the run record")
        record_failure = tasks.LambdaInvoke(
            self,
            "Record failure",
            lambda_function=self._function("record_failure"),
            payload_response_only=True,
            result_path="$.failure",
            retry_on_service_exceptions=False,
        )
        add_retries(record_failure)
        record_failure.next(failed)

        def guarded(state: tasks.LambdaInvoke | sfn.Map | sfn.DistributedMap, stage: str) -> None:
            # Every stage fails into one path that records which stage failed and why.
            mark = sfn.Pass(
                self,
                f"{state.node.id} failed",
                result=sfn.Result.from_string(stage),
                result_path="$.failed_stage",
            )
            mark.next(record_failure)
            state.add_catch(mark, errors=["States.ALL"], result_path="$.error")

        define_problem = self._task("define_problem", "Define problem", "$.problem")
        guarded(define_problem, "define_problem")
        one_file = [self._task(*stage) for stage in ONE_FILE_STAGES]
        for task, (name, _, _) in zip(one_file, ONE_FILE_STAGES, strict=True):
            guarded(task, name)
        one_file[0].next(one_file[1])
        plan, per_part, merge = self._parts_path(max_part_concurrency)
        guarded(plan, "plan_parts")
        guarded(per_part, "process_part")
        guarded(merge, "merge_parts")
        plan.next(per_part).next(merge)
        define_problem.next(
            sfn.Choice(self, "Many parts?")
            .when(sfn.Condition.string_matches("$.source.key", f"*/{MARKER}"), plan)
            .otherwise(one_file[0])
        )

        chain: list[tasks.LambdaInvoke | sfn.MapBase] = []
        for name, state, result_path in STAGES_BEFORE_TRAINING:
            task = self._task(name, state, result_path)
            guarded(task, name)
            chain.append(task)
        one_file[1].next(chain[0])
        merge.next(chain[0])

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
        release = self._task("release_model", "Release model", "$.release")
        guarded(release, "release_model")
        wait = self._approval_task(then=release)
        guarded(wait, "request_approval")
        needs_approval = (
            sfn.Choice(self, "Approval required?")
            .when(sfn.Condition.string_equals("$.registration.approval", "required"), wait)
            .otherwise(release)
        )

        succeeded = sfn.Succeed(self, "Run succeeded")
        judge = self._task("judge_canary", "Judge canary", "$.release")
        guarded(judge, "judge_canary")
        bake = sfn.Wait(
            self, "Bake canary", time=sfn.WaitTime.seconds_path("$.release.bake_seconds")
        )
        in_canary = (
            sfn.Choice(self, "Canary in progress?")
            .when(sfn.Condition.string_equals("$.release.action", "canary"), bake.next(judge))
            .otherwise(succeeded)
        )
        judge.next(in_canary)

        for current, following in itertools.pairwise(chain):
            current.next(following)
        chain[-1].next(needs_approval)
        release.next(in_canary)
        definition = (
            sfn.Choice(self, "Resume at approval?")
            .when(sfn.Condition.is_present(f"$.{RESUME_KEY}"), wait)
            .otherwise(define_problem)
        )

        machine = stage_state_machine(
            self, definition, functions=self._factory, timeout=RUN_TIMEOUT
        )
        for function in self.functions.values():
            allow_invoking(machine, function)
        acknowledge_map_children(machine, self._factory.bucket)
        return machine

    def _parts_path(
        self, max_concurrency: int
    ) -> tuple[tasks.LambdaInvoke, sfn.DistributedMap, tasks.LambdaInvoke]:
        """Plan (the manifest of parts), one child execution per part (collect, then
        process), merge (the run's collect and process results, in place of the Map's)."""
        plan = self._task("plan_parts", "Plan parts", "$.plan")
        per_part = manifest_map(
            self,
            "Collect and process parts",
            bucket=self._factory.bucket,
            manifest="parts_key",
            item="part",
            max_concurrency=max_concurrency,
        )
        per_part.item_processor(
            self._task("collect_part", "Collect part", "$.collected").next(
                self._task("process_part", "Process part", "$")
            )
        )
        # its output is the whole run context, without the plan and the Map's results
        merge = self._task("merge_parts", "Merge parts", "$")
        return plan, per_part, merge

    def _approval_task(self, *, then: sfn.IChainable) -> tasks.LambdaInvoke:
        """Record the request, notify the reviewers, and wait for `mlcycle approve` or
        `reject` (SendTaskSuccess with the decision); no answer in time is a rejection."""
        function = self._function("request_approval")
        function.add_environment("APPROVAL_TOPIC_ARN", self.approvals.topic_arn)
        # grant_publish would add kms:GenerateDataKey*: these are the two actions SNS needs.
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.approvals.topic_arn])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self._key.key_arn]
            )
        )
        wait = tasks.LambdaInvoke(
            self,
            APPROVAL_STATE,
            lambda_function=function,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {"token": sfn.JsonPath.task_token, "run": sfn.JsonPath.entire_payload}
            ),
            result_path="$.approval",
            task_timeout=sfn.Timeout.at("$.registration.approval_timeout_seconds"),
            retry_on_service_exceptions=False,
        )
        # Only Lambda's own faults are retried: a timeout is the reviewers' answer.
        add_retries(wait, retry_timeouts=False)
        timed_out = sfn.Pass(
            self,
            "Approval timed out",
            result=sfn.Result.from_object({"decision": "timed_out", "actor": "step functions"}),
            result_path="$.approval",
        )
        wait.add_catch(timed_out, errors=["States.Timeout"], result_path="$.approval_error")
        wait.next(then)
        timed_out.next(then)
        return wait


def stage_state_machine(
    scope: Construct,
    definition: sfn.IChainable,
    *,
    functions: StageFunctions,
    timeout: Duration,
) -> sfn.StateMachine:
    """A STANDARD, traced state machine logging every event (without its data: run contexts
    name data, the lake keeps them) to an encrypted log group of its own."""
    machine = sfn.StateMachine(
        scope,
        "StateMachine",
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        state_machine_type=sfn.StateMachineType.STANDARD,
        tracing_enabled=True,
        timeout=timeout,
        logs=sfn.LogOptions(
            destination=logs.LogGroup(
                scope,
                "StateMachineLogs",
                retention=functions.log_retention,
                removal_policy=functions.removal_policy,
                encryption_key=functions.key,
            ),
            level=sfn.LogLevel.ALL,
            include_execution_data=False,
        ),
    )
    # Log delivery (CreateLogDelivery and friends) and X-Ray take no resource ARNs.
    acknowledge_tracing(machine.role)
    return machine


def allow_invoking(machine: sfn.StateMachine, function: lambda_.Function) -> None:
    """Acknowledge CDK's Lambda task grant: the versions of this one function."""
    acknowledge(
        machine.role,
        f"AwsSolutions-IAM5[Resource::<{logical_id(function)}.Arn>:*]",
        "Invoking the versions of this state's own function (CDK's Lambda task grant); no "
        "other function is reachable.",
    )


def stage_task(
    scope: Construct, state: str, function: lambda_.IFunction, result_path: str
) -> tasks.LambdaInvoke:
    """A state that invokes a stage function with the run context and keeps its answer under
    `result_path`, retrying Lambda's own transient faults."""
    task = tasks.LambdaInvoke(
        scope,
        state,
        lambda_function=function,
        payload_response_only=True,
        result_path=result_path,
        retry_on_service_exceptions=False,
    )
    add_retries(task)
    return task


def add_retries(task: tasks.LambdaInvoke, *, retry_timeouts: bool = True) -> None:
    task.add_retry(
        errors=TRANSIENT_ERRORS,
        interval=Duration.seconds(2),
        max_attempts=4,
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
    )
    if retry_timeouts:
        task.add_retry(errors=TIMEOUT_ERRORS, interval=Duration.seconds(5), max_attempts=1)


def logical_id(construct: Construct) -> str:
    return Stack.of(construct).get_logical_id(construct.node.default_child)  # type: ignore[arg-type]


def executions_of(machine: sfn.StateMachine) -> str:
    return Stack.of(machine).format_arn(
        service="states",
        resource="execution",
        resource_name=f"{machine.state_machine_name}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def upload_trigger(
    scope: Construct,
    rule_id: str,
    *,
    function: lambda_.IFunction,
    machine: sfn.StateMachine,
    bucket: s3.IBucket,
    prefix: str,
    dead_letters: sqs.IQueue,
    description: str,
    why: str,
) -> events.Rule:
    """The rule that invokes `function` for each object created under `prefix`, allowed to
    start (and look up) executions of `machine` only; what it cannot take goes to
    `dead_letters`."""
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["states:StartExecution"], resources=[machine.state_machine_arn]
        )
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["states:DescribeExecution"], resources=[executions_of(machine)]
        )
    )
    assert function.role is not None
    acknowledge(
        function.role,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
        f"<AWS::AccountId>:execution:<{logical_id(machine)}.Name>:*]",
        why,
    )
    function.configure_async_invoke(
        on_failure=destinations.SqsDestination(dead_letters), retry_attempts=2
    )
    return events.Rule(
        scope,
        rule_id,
        description=description,
        event_pattern=events.EventPattern(
            source=["aws.s3"],
            detail_type=["Object Created"],
            detail={
                "bucket": {"name": [bucket.bucket_name]},
                "object": {"key": [{"prefix": prefix}]},
            },
        ),
        targets=[
            targets.LambdaFunction(function, retry_attempts=4, dead_letter_queue=dead_letters)
        ],
    )


def manifest_map(
    scope: Construct,
    state: str,
    *,
    bucket: s3.IBucket,
    manifest: str,
    item: str,
    max_concurrency: int,
) -> sfn.DistributedMap:
    """A Distributed Map over the JSON manifest a plan wrote (`$.plan.<manifest>`, a key in the
    runs zone): one STANDARD child execution per item, given `{item: ..., "plan": ...}`, its
    small results under `$.parts`. No ItemBatcher, no ResultWriter: moto runs neither."""
    return sfn.DistributedMap(
        scope,
        state,
        item_reader=RunsZoneJsonReader(
            bucket=bucket, key=sfn.JsonPath.string_at(f"$.plan.{manifest}")
        ),
        item_selector={
            item: sfn.JsonPath.object_at("$$.Map.Item.Value"),
            "plan": sfn.JsonPath.object_at("$.plan"),
        },
        max_concurrency=max_concurrency,
        map_execution_type=sfn.StateMachineType.STANDARD,
        result_path="$.parts",
    )


def acknowledge_map_children(machine: sfn.StateMachine, bucket: s3.IBucket) -> None:
    """Acknowledge CDK's grants for a Distributed Map: its JSON manifests in the runs zone, and
    its own child executions (describe, stop, redrive) of this one state machine."""
    acknowledge_prefixes(machine.role, bucket, [Zone.RUNS])
    name = f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{logical_id(machine)}"}}]}}]}}'
    for suffix in (":*", "/*:*"):
        acknowledge(
            machine,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
            f"<AWS::AccountId>:execution:{name}{suffix}]",
            "The Distributed Map's own child executions of this one state machine.",
        )


class RunsZoneJsonReader(sfn.S3JsonItemReader):
    """A Distributed Map's JSON ItemReader, allowed to read the runs zone only (CDK's own
    reader grants GetObject on the whole bucket when the key is a path)."""

    def __init__(self, *, bucket: s3.IBucket, key: str) -> None:
        super().__init__(bucket=bucket, key=key)
        self._lake = bucket

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self._lake.arn_for_objects(f"{Zone.RUNS.prefix}*")],
            )
        ]
