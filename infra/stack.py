"""The mlcycle stack: composes the units and wires them together; it defines nothing itself."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from infra.config import MlcycleConfig
from infra.endpoint import Endpoint
from infra.lake import Lake
from infra.pipeline import Pipeline
from infra.registry import Registry


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
        self.lake = Lake(
            self,
            "Lake",
            removal_policy=config.removal_policy,
            reports_expire_days=config.reports_expire_days,
            capture_expire_days=config.capture_expire_days,
            noncurrent_versions_expire_days=config.noncurrent_versions_expire_days,
        )
        self.registry = Registry(self, "Registry", removal_policy=config.removal_policy)
        self.pipeline = Pipeline(
            self,
            "Pipeline",
            bucket=self.lake.bucket,
            table=self.registry.table,
            sizing=config.sizing,
            landing_prefix=config.landing_prefix,
            log_retention=config.log_retention,
            max_training_concurrency=config.max_training_concurrency,
            removal_policy=config.removal_policy,
            code_version=code_version,
        )
        self.endpoint = Endpoint(
            self,
            "Endpoint",
            bucket=self.lake.bucket,
            table=self.registry.table,
            memory_mb=config.endpoint_memory_mb,
            throttle_rate=config.endpoint_throttle_rate,
            throttle_burst=config.endpoint_throttle_burst,
            max_instances=config.endpoint_max_instances,
            api_keys=config.endpoint_api_keys,
            log_retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
