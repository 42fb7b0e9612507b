"""Batch scoring: an upload under score/<dataset>/ is scored by the dataset's production model.

Plan (read the file once, write Parquet chunks and a JSON manifest of them), a Distributed Map
over the manifest (one child execution per chunk, `max_concurrency` at once), finish (summary,
and CSV for a CSV upload). The manifest is read with a JSON ItemReader and children return
small results: no ItemBatcher and no ResultWriter, which moto's interpreter does not run, so the
same definition runs locally.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.access import Access
from infra.pipeline import (
    acknowledge_map_children,
    allow_invoking,
    manifest_map,
    stage_state_machine,
    stage_task,
    upload_trigger,
)
from infra.stage_functions import StageFunctions
from mlcycle.lake_layout import Zone

# A scoring run is minutes, not the pipeline's days of approval and canary.
SCORING_TIMEOUT = Duration.hours(6)
# The plan downloads the upload to /tmp before streaming it (and a gzip's decompressed copy):
# Lambda's most, so an upload of several GB fits.
PLAN_EPHEMERAL_STORAGE_MB = 10240

ACCESS: dict[str, Access] = {
    "start_scoring": Access(),
    # the upload, the production manifest; the chunks go to the run's documents
    "plan_scoring": Access(reads=(Zone.SCORE, Zone.MODELS), writes=(Zone.RUNS,), table="read"),
    # a sample of each chunk's rows goes to the capture zone, for the monitor
    "score_part": Access(
        reads=(Zone.RUNS, Zone.MODELS), writes=(Zone.PREDICTIONS, Zone.QUARANTINE, Zone.CAPTURE)
    ),
    "finish_scoring": Access(reads=(Zone.PREDICTIONS,), writes=(Zone.PREDICTIONS,)),
}


class Scoring(Construct):
    """Functions, the scoring state machine, and the rule that starts it for score/ uploads."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: StageFunctions,
        dead_letters: sqs.IQueue,
        chunk_rows: int,
        max_concurrency: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self._factory = functions
        bucket = functions.bucket
        self.functions: dict[str, lambda_.DockerImageFunction] = {}
        plan = self._task("plan_scoring", "Plan scoring", "$.plan")
        self.functions["plan_scoring"].add_environment("SCORING_CHUNK_ROWS", str(chunk_rows))
        plan_function = self.functions["plan_scoring"].node.default_child
        assert isinstance(plan_function, lambda_.CfnFunction)
        plan_function.ephemeral_storage = lambda_.CfnFunction.EphemeralStorageProperty(
            size=PLAN_EPHEMERAL_STORAGE_MB
        )
        # its chunks are tagged transient, for the lake's lifecycle rule to expire
        self.functions["plan_scoring"].add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObjectTagging"],
                resources=[bucket.arn_for_objects(f"{Zone.RUNS.prefix}*")],
            )
        )
        score = manifest_map(
            self,
            "Score chunks",
            bucket=bucket,
            manifest="chunks_key",
            item="chunk",
            max_concurrency=max_concurrency,
        )
        score.item_processor(self._task("score_part", "Score part", "$"))
        finish = self._task("finish_scoring", "Finish scoring", "$.summary")
        definition = plan.next(score).next(finish).next(sfn.Succeed(self, "Scored"))

        self.state_machine = stage_state_machine(
            self, definition, functions=functions, timeout=SCORING_TIMEOUT
        )
        machine = self.state_machine
        for function in self.functions.values():
            allow_invoking(machine, function)
        acknowledge_map_children(machine, bucket)  # the chunk manifests, the children

        self.start = self._function("start_scoring")
        self.start.add_environment("SCORING_STATE_MACHINE_ARN", machine.state_machine_arn)
        self.upload_rule = upload_trigger(
            self,
            "ScoreUploadRule",
            function=self.start,
            machine=machine,
            bucket=bucket,
            prefix=Zone.SCORE.prefix,
            dead_letters=dead_letters,
            description="Starts a batch scoring run for each object created under score/",
            why="Executions of the scoring state machine, named at run time from the upload.",
        )

    def _function(self, name: str) -> lambda_.DockerImageFunction:
        function = self._factory.create(self, name, ACCESS[name])
        self.functions[name] = function
        return function

    def _task(self, name: str, state: str, result_path: str) -> tasks.LambdaInvoke:
        return stage_task(self, state, self._function(name), result_path)
