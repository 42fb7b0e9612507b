"""The endpoint's operations, independent of Lambda and of the HTTP router.

`predict` follows the V1 protocol of TF Serving / KServe: `{"instances": [{feature: value}]}`
in, `{"predictions": [...], "model_version": N}` out; `explain`, its `:explain` verb, takes the
same body and answers `{"explanations": [...], "model_version": N, "method": ...}`. Errors are
`ServingError`s; the handler maps them to responses in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mlcycle.serving import runtime
from mlcycle.serving.errors import InvalidRequestError, ModelUnavailableError, ServingError
from mlcycle.serving.inputs import Batch, parse_instances
from mlcycle.serving.model import LoadedModel


def _dimensions(name: str, version: int | None) -> None:
    # Dimensions are per EMF blob, and one blob is flushed per request: set them each time.
    runtime.metrics.add_dimension(name="model", value=name)
    runtime.metrics.add_dimension(name="model_version", value=str(version) if version else "none")


def _route(
    name: str, request_id: str, client: Callable[[], str | None] | None, *, count_failure: bool
) -> LoadedModel:
    """The version this client is routed to, with the request's metric dimensions set."""
    rt = runtime.get()
    try:
        model = rt.models.get(name, client)
    except ServingError as error:
        version = error.details.get("version")
        _dimensions(name, version)
        runtime.metrics.add_metric(name="ModelErrors", unit=MetricUnit.Count, value=1)
        failed = isinstance(error, ModelUnavailableError) and version is not None
        if count_failure and failed and rt.settings.capture_enabled:
            # The client was routed to a version that cannot answer: count it against that
            # version, so a canary whose artifact is broken is rolled back on its errors.
            rt.capture.add_failure(request_id=request_id, model=name, version=int(version))
        raise
    _dimensions(name, model.version)
    return model


def _inputs(model: LoadedModel, body: str | bytes | None) -> tuple[list[Any], Batch]:
    """The body's instances and the graph's inputs; the same 4xx for `:predict` and
    `:explain`."""
    try:
        instances = parse_instances(body, max_instances=runtime.get().settings.max_instances)
        return instances, model.builder.build(instances)
    except InvalidRequestError:
        runtime.metrics.add_metric(name="InvalidRequests", unit=MetricUnit.Count, value=1)
        raise


def predict(
    name: str,
    body: str | bytes | None,
    request_id: str,
    client: Callable[[], str | None] | None = None,
) -> dict[str, Any]:
    """Predictions of the version this client is routed to (production, or during a release
    the canary for a stable share of clients, by the key `client()` gives); the response names
    the version."""
    started = time.perf_counter()
    rt = runtime.get()
    metrics = runtime.metrics
    model = _route(name, request_id, client, count_failure=True)
    instances, batch = _inputs(model, body)
    try:
        predictions = model.run(batch)
    except Exception:
        if rt.settings.capture_enabled:
            rt.capture.add_failure(request_id=request_id, model=name, version=model.version)
        metrics.add_metric(name="InferenceErrors", unit=MetricUnit.Count, value=1)
        raise
    if rt.settings.capture_enabled:
        rt.capture.add(
            request_id=request_id,
            model=name,
            version=model.version,
            instances=instances,
            predictions=predictions,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    response: dict[str, Any] = {"predictions": predictions, "model_version": model.version}
    if batch.unknown_categories or batch.ignored:
        response["warnings"] = batch.warnings
    metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=len(instances))
    if batch.unknown_categories:  # absent = 0: one metric less to serialize per request
        metrics.add_metric(
            name="UnknownCategories", unit=MetricUnit.Count, value=len(batch.unknown_categories)
        )
    metrics.add_metric(
        name="Latency",
        unit=MetricUnit.Milliseconds,
        value=round((time.perf_counter() - started) * 1000, 3),
    )
    return response


def explain(
    name: str,
    body: str | bytes | None,
    request_id: str,
    client: Callable[[], str | None] | None = None,
) -> dict[str, Any]:
    """Shapley explanations (`mlcycle.serving.explain`) of the predictions of the version
    this client is routed to (the same routing as `predict`), each of the label that version
    answers. The body and its 4xx are predict's.

    Explanations are not captured: the capture is the record of the decisions served (what
    monitoring and retraining read), and an explanation decides nothing; a failed explanation
    does not count against a canary either (its predictions are what is judged)."""
    started = time.perf_counter()
    rt = runtime.get()
    metrics = runtime.metrics
    model = _route(name, request_id, client, count_failure=False)
    _, batch = _inputs(model, body)
    try:
        explainer = rt.models.explainer(model)
    except ServingError as error:
        if error.status >= 500:  # not a version without a background (409): nothing broke
            metrics.add_metric(name="ModelErrors", unit=MetricUnit.Count, value=1)
        raise
    try:
        predictions = model.run(batch)
        explanations = explainer.explain(batch.feeds, predictions)
    except Exception:
        metrics.add_metric(name="InferenceErrors", unit=MetricUnit.Count, value=1)
        raise
    methods = {e.method for e in explanations}
    response: dict[str, Any] = {
        "explanations": [e.to_json() for e in explanations],
        "model_version": model.version,
        "method": methods.pop() if len(methods) == 1 else "mixed",
    }
    if batch.unknown_categories or batch.ignored:
        response["warnings"] = batch.warnings
    metrics.add_metric(name="Explanations", unit=MetricUnit.Count, value=len(explanations))
    metrics.add_metric(
        name="ExplainLatency",
        unit=MetricUnit.Milliseconds,
        value=round((time.perf_counter() - started) * 1000, 3),
    )
    return response


def describe(name: str) -> dict[str, Any]:
    """The released version of `name`, its metrics and its feature schema."""
    return runtime.get().models.get(name).describe()


def health() -> dict[str, Any]:
    """Liveness, and what this container serves; never calls AWS."""
    rt = runtime.current()
    if rt is None:
        try:
            rt = runtime.get()
        except ServingError as error:
            return {"status": "misconfigured", "message": error.message, "models": []}
    return {
        "status": "ok",
        "configured_model": rt.settings.model_name,
        "models": [
            {"name": m.name, "version": m.version, "sha256": m.sha256} for m in rt.models.loaded
        ],
    }
