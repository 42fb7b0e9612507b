"""The deployed stack, reached with the caller's own credentials (`--stack NAME`): what the
day-2 commands need to find it, and who the caller is for the audit trail."""

from __future__ import annotations

from typing import Any

import boto3

from mlcycle.adapters.registry import Registry

# CloudFormation outputs of the stack
REGISTRY_TABLE_OUTPUT = "RegistryTableName"
LAKE_BUCKET_OUTPUT = "LakeBucketName"
SCORING_STATE_MACHINE_OUTPUT = "ScoringStateMachineArn"


class StackError(Exception):
    """The stack cannot be found, or is not an mlcycle stack."""


def stack_output(cloudformation: Any, stack: str, name: str) -> str:
    """One of the stack's outputs."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except cloudformation.exceptions.ClientError as error:
        raise StackError(f"no stack {stack!r} with these credentials: {error}") from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if name not in outputs:
        raise StackError(
            f"stack {stack!r} has no {name} output: is it an mlcycle stack deployed from this "
            "version?"
        )
    return str(outputs[name])


def registry_table(cloudformation: Any, stack: str) -> str:
    """The registry table's name, from the stack's outputs."""
    return stack_output(cloudformation, stack, REGISTRY_TABLE_OUTPUT)


def caller(session: boto3.Session) -> str:
    """The caller's IAM identity (its ARN): the actor of what it decides."""
    return str(session.client("sts").get_caller_identity()["Arn"])


def deployed_registry(stack: str, session: boto3.Session | None = None) -> Registry:
    """The stack's registry, acting as the caller."""
    session = session or boto3.Session()
    table = registry_table(session.client("cloudformation"), stack)
    return Registry(session.client("dynamodb"), table, actor=caller(session))
