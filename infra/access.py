"""Least privilege: one role per function granting exactly the lake zones, table actions and
key uses that function needs, and the cdk-nag acknowledgements that go with such roles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct

from mlcycle.adapters.registry import AUDIT_PREFIX
from mlcycle.lake_layout import Zone

TableAccess = Literal["none", "read", "write"]
_TABLE_ACTIONS: dict[TableAccess, list[str]] = {
    "none": [],
    "read": ["dynamodb:GetItem", "dynamodb:Query"],
    "write": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"],
}


@dataclass(frozen=True)
class Access:
    """What one function may touch: zones it reads, zones it writes, the registry table."""

    reads: tuple[Zone, ...] = ()
    writes: tuple[Zone, ...] = ()
    lists: tuple[Zone, ...] = ()  # zones whose keys it lists (needs s3:ListBucket)
    table: TableAccess = "none"
    scans_table: bool = False  # lists the whole registry (released models, the index page)
    metrics_namespace: str | None = None  # publishes CloudWatch metrics in this namespace


def function_role(
    scope: Construct,
    construct_id: str,
    *,
    access: Access,
    bucket: s3.IBucket,
    table: dynamodb.ITable,
    key: kms.IKey,
    log_group: logs.ILogGroup,
) -> iam.Role:
    """A Lambda execution role with exact actions on exact prefixes: no managed policies."""
    role = iam.Role(scope, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    log_group.grant_write(role)
    if access.reads:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[bucket.arn_for_objects(f"{zone.prefix}*") for zone in access.reads],
            )
        )
    if access.writes:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{zone.prefix}*") for zone in access.writes],
            )
        )
    if access.lists:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{z.prefix}*" for z in access.lists]}},
            )
        )
    if access.reads or access.writes:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
            )
        )
    if access.table != "none":
        actions = [
            *_TABLE_ACTIONS[access.table],
            *(["dynamodb:Scan"] if access.scans_table else []),
        ]
        role.add_to_policy(iam.PolicyStatement(actions=actions, resources=[table.table_arn]))
        if access.table == "write":
            # The audit trail is append-only: records are put once (conditionally), and no
            # role may change one afterwards.
            role.add_to_policy(
                iam.PolicyStatement(
                    effect=iam.Effect.DENY,
                    actions=["dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                    resources=[table.table_arn],
                    conditions={
                        "ForAnyValue:StringLike": {"dynamodb:LeadingKeys": [f"{AUDIT_PREFIX}*"]}
                    },
                )
            )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[key.key_arn],
            )
        )
    if access.metrics_namespace:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": access.metrics_namespace}},
            )
        )
    zones = sorted({*access.reads, *access.writes})
    acknowledge_prefixes(role, bucket, zones)
    acknowledge_tracing(role)
    return role


def acknowledge(scope: IConstruct | None, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag AwsSolutions finding on `scope` (and its children only)."""
    if scope is None:
        raise ValueError(f"nothing to acknowledge {rule} on")
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason))


def acknowledge_prefixes(role: iam.IRole, bucket: s3.IBucket, zones: list[Zone]) -> None:
    """Object ARNs end in `<zone>/*`: the narrowest resource S3 allows for a prefix."""
    bucket_id = Stack.of(bucket).get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
    for zone in zones:
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{zone.prefix}*]",
            f"Objects under the {zone.value} zone prefix only; S3 has no narrower "
            "resource for keys created at run time.",
        )


def acknowledge_tracing(role: iam.IRole) -> None:
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray (PutTraceSegments, PutTelemetryRecords), CloudWatch PutMetricData (limited to "
        "the mlcycle namespace by condition) and Logs delivery take no resource-level "
        "permissions; tests/infra checks no other action uses *.",
    )
