"""The data lake: one versioned, encrypted bucket whose prefixes are the lake's zones."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.access import acknowledge
from mlcycle.lake_layout import TRANSIENT_TAG, Zone

TRANSIENT_EXPIRE_DAYS = 7


class Lake(Construct):
    """Zones are prefixes of one bucket so a run's artifacts share one policy, key and log."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy,
        key: kms.IKey,
        access_logs_expire_days: int,
        reports_expire_days: int,
        capture_expire_days: int,
        noncurrent_versions_expire_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        destroy = removal_policy is RemovalPolicy.DESTROY
        # S3 delivers server access logs only to a bucket encrypted with S3-managed keys.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs", expiration=Duration.days(access_logs_expire_days)
                )
            ],
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the access-log bucket; logging its own access would recurse.",
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            versioned=True,  # raw data is immutable; lineage records the version id
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,  # one KMS call per object batch, not per request
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="lake/",
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            event_bridge_enabled=True,  # uploads to landing/ start the pipeline
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(noncurrent_versions_expire_days),
                ),
                s3.LifecycleRule(
                    id="expire-reports",
                    prefix=Zone.REPORTS.prefix,
                    expiration=Duration.days(reports_expire_days),
                ),
                s3.LifecycleRule(
                    id="expire-capture",
                    prefix=Zone.CAPTURE.prefix,
                    expiration=Duration.days(capture_expire_days),
                ),
                s3.LifecycleRule(  # Athena's results: a query's output, kept as reports are
                    id="expire-query-results",
                    prefix=Zone.QUERY_RESULTS.prefix,
                    expiration=Duration.days(reports_expire_days),
                ),
                s3.LifecycleRule(  # working copies: batch scoring's chunks of an upload
                    id="expire-transient",
                    tag_filters={TRANSIENT_TAG: "true"},
                    expiration=Duration.days(TRANSIENT_EXPIRE_DAYS),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
        )
