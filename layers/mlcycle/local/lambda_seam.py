"""The one seam between moto and the handlers: Lambda invocations run in this process.

moto runs a Lambda function by starting a docker container in
`moto.awslambda.models.LambdaFunction._invoke_lambda`. Locally there is no docker, so that
method is replaced by one that imports the function's handler from the project (as Lambda
would from the image or zip) and calls it with a Lambda-shaped context. Everything around it
(the invoke API, Step Functions' task integration, error propagation) stays moto's own.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from moto.awslambda.models import LambdaFunction

Handler = Callable[[dict[str, Any], Any], Any]

_handlers: dict[str, Handler] = {}  # function name -> handler callable
_modules: dict[Path, ModuleType] = {}
_lock = threading.Lock()
_original_invoke = LambdaFunction._invoke_lambda


@dataclass
class LambdaContext:
    """What the Lambda runtime hands a handler; Powertools reads these attributes."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    invoked_function_arn: str
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(root: Path, handler: str) -> Handler:
    """`functions.collect_data.handler.lambda_handler` -> the function, loaded from root."""
    module_name, _, attribute = handler.rpartition(".")
    path = root.joinpath(*module_name.split(".")).with_suffix(".py")
    if not path.is_file():
        raise FileNotFoundError(f"handler {handler!r}: no file {path}")
    with _lock:
        module = _modules.get(path)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            _modules[path] = module
    function: Handler = getattr(module, attribute)
    return function


def register(function_name: str, root: Path, handler: str) -> None:
    """Run `function_name` with `handler` from `root`, imported at its first invocation
    (as Lambda's init phase does, inside the function's environment)."""
    _handlers[function_name] = functools.partial(_load_and_call, root, handler)


def _load_and_call(root: Path, handler: str, event: dict[str, Any], context: Any) -> Any:
    return load_handler(root, handler)(event, context)


def _invoke_in_process(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    handler = _handlers.get(self.function_name)
    if handler is None:
        return _original_invoke(self, event)
    payload = json.loads(event) if isinstance(event, str | bytes) else (event or {})
    context = LambdaContext(
        function_name=self.function_name,
        memory_limit_in_mb=int(self.memory_size),
        timeout_seconds=int(self.timeout),
        invoked_function_arn=self.function_arn,
    )
    try:
        result = handler(payload, context)
    except Exception as exc:  # the Lambda runtime reports any exception as the function's error
        error = {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "requestId": context.aws_request_id,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
        return json.dumps(error), True, ""
    return json.dumps(result), False, ""


def install() -> None:
    """Route moto's Lambda invocations to in-process handlers (idempotent)."""
    LambdaFunction._invoke_lambda = _invoke_in_process  # type: ignore[method-assign]


def seam_is_intact() -> bool:
    """moto still runs functions through the method this module replaces."""
    return callable(_original_invoke) and _original_invoke.__name__ == "_invoke_lambda"
