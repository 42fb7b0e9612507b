"""`mlcycle serve` and `mlcycle predict`: the prediction endpoint over a local run's lake.

The lake and registry exported by `mlcycle run` (`DIR/lake/<key>`, `DIR/registry.json`) are
restored into an in-process moto, and the SAME handler as in Lambda answers API Gateway REST
proxy events built from each HTTP request. When `cdk.out` holds the predict function, the
stack is deployed from the template (the function's own environment is used); otherwise a
bucket and a table are created directly. On shutdown the capture buffer is flushed and the
capture objects are exported back into `DIR/lake`, where `mlcycle monitor` reads them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import boto3
from moto import mock_aws

from mlcycle.adapters.registry import create_table as create_registry_table
from mlcycle.lake_layout import Zone
from mlcycle.local import lambda_seam
from mlcycle.local.assembly import load_template, project_root
from mlcycle.local.deployment import DeployedFunction, LocalDeployment, deploy
from mlcycle.local.runner import LOCAL_ENVIRONMENT, restore_lake
from mlcycle.local.template import REGION

PREDICT_HANDLER = "functions.predict.handler.lambda_handler"
_LOCAL_BUCKET, _LOCAL_TABLE = "mlcycle-local-lake", "mlcycle-local-registry"
_ENVIRONMENT = LOCAL_ENVIRONMENT


class _Context:
    """The slice of Lambda's context object that Powertools reads."""

    function_name = "predict"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:predict"
    log_group_name = "/aws/lambda/predict"
    log_stream_name = "local"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def api_event(
    method: str, target: str, body: str | None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event for one HTTP request (`target`: path?query)."""
    url = urlsplit(target)
    query = dict(parse_qsl(url.query)) or None
    headers = dict(headers or {})
    return {
        "resource": "/{proxy+}",
        "path": url.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": url.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": url.path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _template_deployment(root: Path) -> tuple[LocalDeployment, dict[str, str]] | None:
    """Deploy `root/cdk.out` into moto if it has the predict function (never synthesizes)."""
    assembly = root / "cdk.out"
    if not assembly.is_dir():
        return None
    stack_name, template = load_template(assembly)
    handlers = [
        r.get("Properties", {}).get("Handler")
        for r in template.get("Resources", {}).values()
        if r.get("Type") == "AWS::Lambda::Function"
    ]
    if PREDICT_HANDLER not in handlers:
        return None
    deployment = deploy(stack_name, template, root=root, assembly=assembly)
    function = next(f for f in deployment.functions.values() if f.handler == PREDICT_HANDLER)
    return _view(stack_name, function.environment, deployment.rules), function.environment


def _view(stack_name: str, environment: dict[str, str], rules: list[Any]) -> LocalDeployment:
    """The deployment as `restore_lake` needs it: the lake and the registry the predict
    function reads (the stack may hold other buckets, such as access logs)."""
    function = DeployedFunction("Predict", "predict", "", PREDICT_HANDLER, environment)
    return LocalDeployment(
        stack_name=stack_name,
        buckets={"Lake": environment["LAKE_BUCKET"]},
        tables={"Registry": environment["REGISTRY_TABLE"]},
        functions={"predict": function},
        rules=rules,
    )


def _direct_deployment() -> tuple[LocalDeployment, dict[str, str]]:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=_LOCAL_BUCKET)
    create_registry_table(boto3.client("dynamodb", region_name=REGION), _LOCAL_TABLE)
    environment = {"LAKE_BUCKET": _LOCAL_BUCKET, "REGISTRY_TABLE": _LOCAL_TABLE}
    return _view("local", environment, []), environment


class LocalEndpoint:
    """The predict handler over a local lake, in an in-process moto. A context manager."""

    def __init__(
        self, out_dir: Path, *, root: Path | None = None, use_template: bool = True
    ) -> None:
        self.out_dir = out_dir
        self.root = root or project_root()
        self.use_template = use_template
        self.mode = ""  # "template" or "direct", once started
        self.template_error: str | None = None  # why the template could not be deployed
        self.deployment: LocalDeployment | None = None
        self._stack = contextlib.ExitStack()
        # One Lambda container answers one request at a time; so does this one.
        self._lock = threading.Lock()
        self._log = io.StringIO()

    def __enter__(self) -> LocalEndpoint:
        from mlcycle.serving import runtime

        if not (self.out_dir / "registry.json").is_file():
            raise FileNotFoundError(
                f"{self.out_dir / 'registry.json'} not found: run `mlcycle run` first "
                "(or point --from at its output)"
            )
        self._stack.enter_context(mock.patch.dict(os.environ, _ENVIRONMENT))
        self._stack.enter_context(mock_aws())
        found = None
        if self.use_template:
            try:
                found = _template_deployment(self.root)
            except Exception as error:  # a template mid-change must not stop local serving
                self.template_error = f"{type(error).__name__}: {error}"
        self.mode = "template" if found else "direct"
        deployment, environment = found or _direct_deployment()
        self.deployment = deployment
        restore_lake(deployment, boto3.Session(region_name=REGION), self.out_dir)
        self._stack.enter_context(mock.patch.dict(os.environ, environment))
        runtime.reset()
        self._stack.callback(runtime.reset)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
        finally:
            self._stack.close()

    @property
    def log(self) -> str:
        """What the handler wrote (JSON logs, EMF metrics), as Lambda would send to CloudWatch."""
        return self._log.getvalue()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        handler = lambda_seam.load_handler(self.root, PREDICT_HANDLER)
        with self._lock, contextlib.redirect_stdout(self._log):
            response: dict[str, Any] = handler(event, _Context())
        return response

    def request(
        self, method: str, target: str, body: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = self.invoke(api_event(method, target, body, headers))
        return response["statusCode"], json.loads(response["body"])

    def flush(self) -> list[Path]:
        """Flush the capture buffer and copy the capture objects into `out_dir/lake`."""
        from mlcycle.serving import runtime

        with self._lock, contextlib.redirect_stdout(self._log):
            rt = runtime.current()
            if rt is not None:
                rt.flush()
                runtime.flush_metrics()
        assert self.deployment is not None
        s3 = boto3.client("s3", region_name=REGION)
        written = []
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.deployment.lake_bucket, Prefix=Zone.CAPTURE.prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                path = self.out_dir / "lake" / obj["Key"]
                if path.exists():
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                body = s3.get_object(Bucket=self.deployment.lake_bucket, Key=obj["Key"])["Body"]
                path.write_bytes(body.read())
                written.append(path)
        return written


def released_models(out_dir: Path) -> dict[str, int]:
    """Model name -> production version, from a local run's registry export."""
    items = json.loads((out_dir / "registry.json").read_text())
    return {
        item["pk"].removeprefix("MODEL#"): int(item["production_version"])
        for item in items
        if item.get("sk") == "RELEASE" and item.get("production_version") is not None
    }


def make_server(endpoint: LocalEndpoint, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server turning each request into an API Gateway event for the handler."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "mlcycle-local"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = raw.decode("utf-8", errors="replace") if raw else None
            event = api_event(self.command, self.path, body, dict(self.headers.items()))
            response = endpoint.invoke(event)
            payload = (response.get("body") or "").encode()
            self.send_response(response["statusCode"])
            for name, value in (response.get("headers") or {}).items():
                self.send_header(name, value)
            for name, values in (response.get("multiValueHeaders") or {}).items():
                for value in values:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        # http.server dispatches on these names.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            if getattr(self.server, "verbose", False):
                super().log_message(format, *args)

    return ThreadingHTTPServer((host, port), Handler)


@contextlib.contextmanager
def serving(
    out_dir: Path, *, host: str = "127.0.0.1", port: int = 8080, use_template: bool = True
) -> Iterator[tuple[LocalEndpoint, ThreadingHTTPServer]]:
    """Start the endpoint and an HTTP server on a thread; stop both (and flush) on exit."""
    with LocalEndpoint(out_dir, use_template=use_template) as endpoint:
        server = make_server(endpoint, host, port)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield endpoint, server
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
