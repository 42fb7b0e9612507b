from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.adapters.registry import create_table as create_registry_table
from mlcycle.local import atomic_writes


@pytest.fixture
def aws() -> Iterator[None]:
    atomic_writes.install()  # racing conditional writes: one wins, as in DynamoDB
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


@pytest.fixture
def lake(aws: None) -> Lake:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="lake")
    s3.put_bucket_versioning(Bucket="lake", VersioningConfiguration={"Status": "Enabled"})
    return Lake(s3, "lake")


@pytest.fixture
def registry(aws: None) -> Registry:
    dynamodb = boto3.client("dynamodb")
    create_registry_table(dynamodb, "registry")
    return Registry(dynamodb, "registry")
