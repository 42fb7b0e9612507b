"""The mlcycle stack: composes the units and wires them together; it defines nothing itself."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.access import acknowledge
from infra.catalog import Catalog
from infra.config import MlcycleConfig
from infra.endpoint import Endpoint
from infra.lake import Lake
from infra.monitoring import Monitoring
from infra.pipeline import Pipeline
from infra.registry import Registry
from infra.scoring import Scoring
from infra.stage_functions import StageFunctions
from mlcycle.deployed import (
    LAKE_BUCKET_OUTPUT,
    REGISTRY_TABLE_OUTPUT,
    SCORING_STATE_MACHINE_OUTPUT,
)


class MlcycleStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MlcycleConfig,
        code_version: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # One customer-managed key for the lake, the registry and the logs ($1 a month).
        self.key = kms.Key(
            self,
            "Key",
            description=f"mlcycle {config.env_name}: lake, registry and logs",
            enable_key_rotation=True,
            removal_policy=config.removal_policy,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                resources=["*"],  # in a key policy, * is this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": self.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        self.lake = Lake(
            self,
            "Lake",
            removal_policy=config.removal_policy,
            key=self.key,
            access_logs_expire_days=config.access_logs_expire_days,
            reports_expire_days=config.reports_expire_days,
            capture_expire_days=config.capture_expire_days,
            noncurrent_versions_expire_days=config.noncurrent_versions_expire_days,
        )
        # CDK's own handler that turns on the bucket's EventBridge notifications at deploy time.
        acknowledge(
            self.node.find_child("BucketNotificationsHandler050a0587b7544547bf325f094a3db834"),
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "CDK's bucket-notifications custom resource; it runs once per deployment and only "
            "needs to write its logs.",
        )
        self.registry = Registry(
            self, "Registry", removal_policy=config.removal_policy, key=self.key
        )
        self.functions = StageFunctions(
            bucket=self.lake.bucket,
            table=self.registry.table,
            key=self.key,
            sizing=config.sizing,
            log_retention=config.log_retention,
            removal_policy=config.removal_policy,
            reserved_concurrency=config.reserved_concurrency,
            code_version=code_version,
        )
        self.pipeline = Pipeline(
            self,
            "Pipeline",
            functions=self.functions,
            landing_prefix=config.landing_prefix,
            max_training_concurrency=config.max_training_concurrency,
            max_part_concurrency=config.part_max_concurrency,
            approval_email=config.approval_email,
        )
        # The curated zone as Glue tables (written by process_data) and an Athena workgroup.
        self.catalog = Catalog(
            self,
            "Catalog",
            bucket=self.lake.bucket,
            key=self.key,
            database_name=self.stack_name.lower().replace("-", "_"),
            workgroup_name=self.stack_name,
            removal_policy=config.removal_policy,
        )
        for writer in ("process_data", "merge_parts"):
            self.catalog.grant_catalog_writes(self.pipeline.functions[writer])
        self.scoring = Scoring(
            self,
            "Scoring",
            functions=self.functions,
            dead_letters=self.pipeline.dead_letters,
            chunk_rows=config.scoring_chunk_rows,
            max_concurrency=config.scoring_max_concurrency,
        )
        self.endpoint = Endpoint(
            self,
            "Endpoint",
            bucket=self.lake.bucket,
            table=self.registry.table,
            key=self.key,
            memory_mb=config.endpoint_memory_mb,
            throttle_rate=config.endpoint_throttle_rate,
            throttle_burst=config.endpoint_throttle_burst,
            max_instances=config.endpoint_max_instances,
            api_keys=config.endpoint_api_keys,
            log_retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        # What `mlcycle approve|reject|history|score --stack NAME` looks up with the caller's role.
        CfnOutput(self, REGISTRY_TABLE_OUTPUT, value=self.registry.table.table_name)
        CfnOutput(self, LAKE_BUCKET_OUTPUT, value=self.lake.bucket.bucket_name)
        CfnOutput(
            self,
            SCORING_STATE_MACHINE_OUTPUT,
            value=self.scoring.state_machine.state_machine_arn,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            stack_name=self.stack_name,
            functions=self.functions,
            pipeline_functions=dict(self.pipeline.functions),
            state_machine=self.pipeline.state_machine,
            dead_letters=self.pipeline.dead_letters,
            api=self.endpoint.api,
            predict=self.endpoint.function,
            key=self.key,
            schedule=Duration.hours(config.monitor_every_hours),
            alarm_email=config.alarm_email,
            p99_latency_ms=config.endpoint_p99_latency_ms,
            monitored_specs=config.monitored_specs,
        )
