"""`mlcycle serve` and `mlcycle predict`: the prediction endpoint over a local run's lake.

The lake and registry exported by `mlcycle run` (`DIR/lake/<key>`, `DIR/registry.json`) are
restored into the synthesized stack deployed in an in-process moto (`local_aws`), and its
predict function, the same handler as in Lambda, answers API Gateway REST proxy events built
from each HTTP request. On shutdown the capture buffer is flushed and the lake, capture
included, is exported back into `DIR/lake`, where `mlcycle monitor` reads it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mlcycle.local.runner import LocalAws, local_aws
from mlcycle.serving import runtime


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


class LocalEndpoint:
    """The stack's predict function over a local lake (`local_aws`), one request at a time as
    one Lambda container answers. A context manager; on exit the capture is flushed and the
    lake, capture included, is exported back into `out_dir`."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.aws: LocalAws | None = None
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()

    def __enter__(self) -> LocalEndpoint:
        if not (self.out_dir / "registry.json").is_file():
            raise FileNotFoundError(
                f"{self.out_dir / 'registry.json'} not found: run `mlcycle run` first "
                "(or point --from at its output)"
            )
        self.aws = self._stack.enter_context(local_aws(self.out_dir))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
        finally:
            self._stack.close()

    @property
    def log(self) -> str:
        """What the handlers wrote (JSON logs, EMF metrics), as Lambda would send CloudWatch."""
        path = self.out_dir / "logs" / "handlers.log"
        return path.read_text() if path.is_file() else ""

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self.aws is not None, "use LocalEndpoint as a context manager"
        with self._lock:
            return self.aws.invoke("predict", event)

    def request(
        self, method: str, target: str, body: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = self.invoke(api_event(method, target, body, headers))
        return response["statusCode"], json.loads(response["body"])

    def flush(self) -> None:
        """Write the endpoint's capture buffer and metrics out now."""
        with self._lock:
            current = runtime.current()
            if current is not None:
                current.flush()
                runtime.flush_metrics()


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
    out_dir: Path, *, host: str = "127.0.0.1", port: int = 8080
) -> Iterator[tuple[LocalEndpoint, ThreadingHTTPServer]]:
    """Start the endpoint and an HTTP server on a thread; stop both (and flush) on exit."""
    with LocalEndpoint(out_dir) as endpoint:
        server = make_server(endpoint, host, port)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield endpoint, server
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
