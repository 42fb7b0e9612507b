"""The model registry and run records: one DynamoDB table, written with conditional writes."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct


class Registry(Construct):
    """Keys: `MODEL#<dataset>` / `VERSION#<n>` or `RELEASE`; `RUN#<dataset>` / `<run id>`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy, key: kms.IKey
    ):
        super().__init__(scope, construct_id)
        # Table (not TableV2): a customer-managed key on TableV2 needs a region-bound stack,
        # and this stack stays environment-agnostic so synth needs no account.
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,  # nothing to pay while idle
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            removal_policy=removal_policy,
        )
