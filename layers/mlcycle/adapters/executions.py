"""Starting a lifecycle run exactly once per name (Step Functions execution names are unique)."""

from __future__ import annotations

from typing import Any

from mlcycle.context import RunContext


def start_once(sfn: Any, state_machine_arn: str, context: RunContext) -> dict[str, Any]:
    """Start the run named `context.run_id` unless it exists; says whether this call started it.

    StartExecution accepts a running duplicate (same name and input) as a success, so the
    execution is looked up first: the answer is then true either way."""
    name = context.run_id
    execution_arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    result = {"execution_arn": execution_arn, "started": False, "run_id": name}
    try:
        sfn.describe_execution(executionArn=execution_arn)
        return result
    except sfn.exceptions.ExecutionDoesNotExist:
        pass
    try:
        sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=name,
            input=context.model_dump_json(exclude_none=True),
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        return result
    return {**result, "started": True}
