"""What every handler shares: Powertools' logger, metrics and tracer, settings and adapters."""

from __future__ import annotations

import contextvars
import functools
import io
import os
import sys
import warnings
from collections.abc import Callable
from functools import cache
from typing import IO, Any, TypeVar, cast

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field

from mlcycle.adapters.catalog import Catalog
from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.context import RunContext

# Retries with backoff on throttling and 5xx, on top of the state machine's own retries.
BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


class _Stdout(io.TextIOBase):
    """Writes to whatever sys.stdout is now (Lambda's stdout; a log file for local runs)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(stream=cast(IO[str], _Stdout()))
# Most stages publish no metric of their own; Powertools warns on every such flush.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
metrics = Metrics()
tracer = Tracer()


class Settings(BaseModel):
    """The function's environment, parsed once per invocation so a bad deploy fails loudly."""

    model_config = ConfigDict(extra="ignore")

    lake_bucket: str = Field(alias="LAKE_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    code_version: str = Field("unknown", alias="MLCYCLE_CODE_VERSION")
    state_machine_arn: str | None = Field(None, alias="STATE_MACHINE_ARN")
    glue_database: str | None = Field(None, alias="GLUE_DATABASE")  # process_data's only


def settings() -> Settings:
    return Settings.model_validate(dict(os.environ))


@cache
def client(service: str) -> Any:
    """One boto3 client per service per container, reused across invocations."""
    return boto3.client(service, config=BOTO_CONFIG)  # type: ignore[call-overload]


def lake() -> Lake:
    return Lake(client("s3"), settings().lake_bucket)


def catalog() -> Catalog:
    config = settings()
    if not config.glue_database:
        raise RuntimeError("GLUE_DATABASE is not set: the function was deployed without it")
    return Catalog(client("glue"), config.glue_database, config.lake_bucket)


# The stage and function running now (per thread: locally, the training Map's run at once).
_running: contextvars.ContextVar[str] = contextvars.ContextVar("mlcycle_actor", default="")


# The invoked function's configured memory (Lambda's context says it; locally, the template's).
_memory_mb: contextvars.ContextVar[int] = contextvars.ContextVar("mlcycle_memory_mb", default=0)


def memory_mb() -> int:
    """The memory of the function running now, in MB (what sizes a stage's row budget)."""
    memory = _memory_mb.get()
    if not memory:
        raise RuntimeError("memory_mb() is only known inside a stage handler")
    return memory


def registry() -> Registry:
    # Stage changes are audited with the function that made them: its role is the identity.
    return Registry(
        client("dynamodb"), settings().registry_table, actor=_running.get() or "pipeline"
    )


Model = TypeVar("Model", bound=BaseModel)
StageFunction = Callable[[Model], BaseModel | dict[str, Any]]


def stage_handler(
    stage: str, *, event_model: type[BaseModel] = RunContext
) -> Callable[[StageFunction[Any]], Callable[[dict[str, Any], LambdaContext], dict[str, Any]]]:
    """Turn `function(parsed event) -> result` into a Lambda handler with Powertools around it.

    The event is parsed at the edge (a malformed event fails with the model's field errors);
    domain exceptions propagate so Step Functions records their type and message.
    """

    def decorate(
        function: StageFunction[Any],
    ) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
        @logger.inject_lambda_context(clear_state=True)
        @tracer.capture_lambda_handler(capture_response=False)
        @metrics.log_metrics
        @functools.wraps(function)
        def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            parsed = parse(event=event, model=event_model)
            logger.append_keys(stage=stage, run_id=getattr(parsed, "run_id", None))
            _running.set(f"pipeline:{stage} ({context.function_name})")
            _memory_mb.set(int(context.memory_limit_in_mb))
            result = function(parsed)
            logger.info("stage finished")
            return result.model_dump(mode="json") if isinstance(result, BaseModel) else result

        return handler

    return decorate
