"""The container-image Lambda functions of the pipeline and the monitor: one image, one command
per function, each with its own log group and least-privilege role."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.access import Access, function_role
from infra.config import FunctionSizing

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The image holds the package and the handlers; everything else in the repo stays out of it.
IMAGE_CONTEXT_EXCLUDES = [
    "*",
    "!infra/pipeline.Dockerfile",
    "!pyproject.toml",
    "!requirements.lock",
    "!README.md",
    "!layers",
    "!functions",
    "**/__pycache__",
    "**/*.egg-info",
]


@dataclass(kw_only=True)
class StageFunctions:
    """What every image function shares: where it reads and writes, its key, its settings."""

    bucket: s3.IBucket
    table: dynamodb.ITable
    key: kms.IKey
    sizing: dict[str, FunctionSizing]
    log_retention: logs.RetentionDays
    removal_policy: RemovalPolicy
    reserved_concurrency: int | None
    code_version: str
    environment: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.environment = {
            "LAKE_BUCKET": self.bucket.bucket_name,
            "REGISTRY_TABLE": self.table.table_name,
            "MLCYCLE_CODE_VERSION": self.code_version,
            "POWERTOOLS_SERVICE_NAME": "mlcycle",
            "POWERTOOLS_METRICS_NAMESPACE": "mlcycle",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }

    def create(self, scope: Construct, name: str, access: Access) -> lambda_.DockerImageFunction:
        """The function running `functions/<name>/handler.py`, allowed exactly `access`."""
        size = self.sizing[name]
        log_group = logs.LogGroup(
            scope,
            f"{_camel(name)}Logs",
            retention=self.log_retention,
            removal_policy=self.removal_policy,
            encryption_key=self.key,
        )
        role = function_role(
            scope,
            f"{_camel(name)}Role",
            access=access,
            bucket=self.bucket,
            table=self.table,
            key=self.key,
            log_group=log_group,
        )
        return lambda_.DockerImageFunction(
            scope,
            _camel(name),
            description=f"mlcycle stage: {name}",
            code=lambda_.DockerImageCode.from_image_asset(
                str(PROJECT_ROOT),
                file="infra/pipeline.Dockerfile",
                cmd=[f"functions.{name}.handler.lambda_handler"],
                exclude=IMAGE_CONTEXT_EXCLUDES,
            ),
            role=role,
            memory_size=size.memory_mb,
            timeout=size.timeout,
            environment=dict(self.environment),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            reserved_concurrent_executions=self.reserved_concurrency,
        )


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
