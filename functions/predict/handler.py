"""The prediction endpoint (`:predict`, `:explain`, model info, health): API Gateway (REST,
proxy integration) -> Powertools router -> `mlcycle.serving.api`. Imports neither pandas nor
scikit-learn nor pyarrow."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle.serving import api, runtime
from mlcycle.serving.errors import InvalidRequestError, Problem, ServingError
from mlcycle.serving.runtime import logger

app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type="application/json", body=body)


def _request_id() -> str:
    return str(app.current_event.request_context.request_id or app.lambda_context.aws_request_id)


def _client_key() -> str | None:
    """Who is asking, for stable canary routing: an explicit header, else the caller."""
    event = app.current_event
    identity = event.request_context.identity
    return (
        event.headers.get("x-client-id")  # the headers are case-insensitive
        or identity.user_arn
        or identity.caller
        or identity.source_ip
    )


def _body() -> str | None:
    try:
        body: str | None = app.current_event.decoded_body
    except UnicodeDecodeError as error:
        problem = f"the body is not UTF-8 text: {error}"
        raise InvalidRequestError([Problem(instance=None, field=None, problem=problem)]) from error
    return body


# Powertools matches `<name>` with a pattern that allows ':', then backtracks to the verb
# (`:predict`, `:explain`); a name cannot contain ':', so a path matches one route at most.
@app.post("/v1/models/<name>:predict")
def predict(name: str) -> Response:
    return _json(200, api.predict(name, _body(), _request_id(), _client_key))


@app.post("/v1/models/<name>:explain")
def explain(name: str) -> Response:
    return _json(200, api.explain(name, _body(), _request_id(), _client_key))


@app.get("/v1/models/<name>")
def describe(name: str) -> Response:
    return _json(200, api.describe(name))


@app.get("/health")
def health() -> Response:
    body = api.health()
    return _json(200 if body["status"] == "ok" else 503, body)


@app.exception_handler(ServingError)
def serving_error(error: ServingError) -> Response:
    if error.status >= 500:
        logger.error(error.message, extra={"error": error.error})
    return _json(error.status, error.body())


@app.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response:
    logger.exception("unexpected error")  # the traceback goes to the log, never to the client
    return _json(500, {"error": "internal error", "request_id": _request_id()})


@app.not_found
def not_found(error: Exception) -> Response:
    event = app.current_event
    return _json(
        404, {"error": "not found", "message": f"no route for {event.http_method} {event.path}"}
    )


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return app.resolve(event, context)
    finally:
        rt = runtime.current()
        if rt is not None:
            rt.after_request()
        else:
            runtime.flush_metrics()
