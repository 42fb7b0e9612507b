"""The queryable lake: a Glue database over the curated zone and an Athena workgroup.

Tables are not declared here. A dataset's columns are known only once its upload is processed,
and its partitions are runs (`dt=<date>/run=<id>/`) whose ids no projection can enumerate, so
the processing stage creates or updates the dataset's table and registers each run's partition
through the Glue API (`grant_catalog_writes`). Partition projection would still need the
table's columns at synth, and with `run` injected every query would have to name a run.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.access import acknowledge
from mlcycle.lake_layout import Zone

# What the processing stage does to the catalog, and nothing more.
CATALOG_WRITE_ACTIONS = [
    "glue:GetTable",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:CreatePartition",
    "glue:UpdatePartition",
]
# What a query through the workgroup reads of the catalog.
CATALOG_READ_ACTIONS = [
    "glue:GetDatabase",
    "glue:GetDatabases",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
]
QUERY_ACTIONS = [
    "athena:StartQueryExecution",
    "athena:StopQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:GetQueryResultsStream",
    "athena:ListQueryExecutions",
    "athena:GetWorkGroup",
    "athena:BatchGetQueryExecution",
]
# Athena stops a query past this many bytes scanned: a guard on a careless SELECT *.
BYTES_SCANNED_CUTOFF = 100 * 1024**3


class Catalog(Construct):
    """The Glue database the curated zone is catalogued in, and the workgroup to query it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        key: kms.IKey,
        database_name: str,
        workgroup_name: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.bucket = bucket
        self.database_name = database_name
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database_name,
                description="mlcycle's curated zone: one table per dataset, one partition per run",
                location_uri=bucket.s3_url_for_object(Zone.CURATED.prefix),
            ),
        )
        self.database.apply_removal_policy(removal_policy)
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=workgroup_name,
            description="Queries over mlcycle's lake; results encrypted with the lake's key",
            state="ENABLED",
            recursive_delete_option=removal_policy is RemovalPolicy.DESTROY,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                # A client cannot send results elsewhere or unencrypted.
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=bucket.s3_url_for_object(Zone.QUERY_RESULTS.prefix),
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=key.key_arn
                    ),
                    expected_bucket_owner=stack.account,
                ),
            ),
        )
        self.workgroup.apply_removal_policy(removal_policy)
        self.query_policy = self._query_policy(key)
        CfnOutput(self, "DatabaseName", value=database_name)
        CfnOutput(self, "WorkGroupName", value=workgroup_name)
        CfnOutput(self, "QueryPolicyArn", value=self.query_policy.managed_policy_arn)

    def _arns(self) -> list[str]:
        """The catalog, the database, and the database's tables (any dataset's)."""
        stack = Stack.of(self)

        def arn(resource: str, name: str | None = None) -> str:
            return stack.format_arn(
                service="glue",
                resource=resource,
                resource_name=name,
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )

        return [
            arn("catalog"),
            arn("database", self.database_name),
            arn("table", f"{self.database_name}/*"),
        ]

    def grant_catalog_writes(self, function: lambda_.Function) -> None:
        """Let `function` create and update the database's tables and their partitions."""
        function.add_environment("GLUE_DATABASE", self.database_name)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=CATALOG_WRITE_ACTIONS, resources=self._arns())
        )
        acknowledge(
            function.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:glue:<AWS::Region>:"
            f"<AWS::AccountId>:table/{self.database_name}/*]",
            "One table per dataset, created when its first upload is processed; the names "
            "are not known at deploy time, and the database bounds them.",
        )

    def _query_policy(self, key: kms.IKey) -> iam.ManagedPolicy:
        """Attach to a data scientist's role: query the curated zone through the workgroup."""
        stack = Stack.of(self)
        workgroup_arn = stack.format_arn(
            service="athena",
            resource="workgroup",
            resource_name=self.workgroup.name,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        results = Zone.QUERY_RESULTS.prefix
        policy = iam.ManagedPolicy(
            self,
            "QueryPolicy",
            description="Query mlcycle's curated zone with Athena (attach to a data scientist)",
            statements=[
                iam.PolicyStatement(actions=QUERY_ACTIONS, resources=[workgroup_arn]),
                iam.PolicyStatement(actions=CATALOG_READ_ACTIONS, resources=self._arns()),
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[
                        self.bucket.arn_for_objects(f"{Zone.CURATED.prefix}*"),
                        self.bucket.arn_for_objects(f"{results}*"),
                    ],
                ),
                iam.PolicyStatement(
                    actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[self.bucket.arn_for_objects(f"{results}*")],
                ),
                iam.PolicyStatement(
                    actions=["s3:GetBucketLocation"], resources=[self.bucket.bucket_arn]
                ),
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[self.bucket.bucket_arn],
                    conditions={
                        "StringLike": {"s3:prefix": [f"{Zone.CURATED.prefix}*", f"{results}*"]}
                    },
                ),
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
                ),
            ],
        )
        bucket_id = stack.get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        for resource, why in (
            (f"<{bucket_id}.Arn>/{Zone.CURATED.prefix}*", "the curated zone's objects"),
            (f"<{bucket_id}.Arn>/{results}*", "the workgroup's own results"),
            (
                f"arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>:table/"
                f"{self.database_name}/*",
                "the database's tables, one per dataset, created at run time",
            ),
        ):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{resource}]",
                f"Only {why}: S3 and Glue have no narrower resource for names made at run time.",
            )
        return policy
