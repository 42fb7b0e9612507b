"""Faults: transient errors are retried, lasting ones fail the run cleanly, and a broken model
artifact makes the endpoint answer 503 (never a prediction from another model) and raise the
metric its alarm watches.

How faults are injected under moto:
- Lambda's transient errors: the seam (`lambda_seam._invoke_in_process`) is monkeypatched so a
  stage's invocation returns a function error of type `Lambda.TooManyRequestsException`. moto's
  Step Functions interpreter names a failed Lambda task after the payload's `errorType`, so
  that is what the state's Retry matches. A throttle raised by moto's Lambda *API* cannot be
  used: moto 5.2.5 names every `ClientError` of a Lambda task `Exception`
  (`StateTaskLambda._from_error`), where AWS names it `Lambda.TooManyRequestsException`, and
  its interpreter's Lambda client makes one attempt only.
- Throttling inside a stage: the stage's own boto3 S3 client answers `503 SlowDown` twice (a
  `before-send` hook); the client's standard retry mode must absorb it.
- The Retry's waits are recorded, not slept (moto's retrier `time.sleep` and full jitter are
  patched), so the backoff is asserted exactly and the tests stay fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import numpy as np
import onnxruntime as ort
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto.awslambda.models import LambdaFunction
from moto.core.botocore_stubber import MockRawResponse
from moto.stepfunctions.parser.asl.component.common.retry import (
    jitter_strategy_decl,
    retrier_decl,
)

from mlcycle import runtime as stage_runtime
from mlcycle.lake_layout import version_prefix
from mlcycle.local import lambda_seam
from mlcycle.serving import runtime
from mlcycle.serving.manifest import Manifest
from tests.integration.test_predict import (
    BUCKET,
    INSTANCES,
    MODEL,
    TABLE,
    create_resources,
    direct_feeds,
    export_toy_model,
    predict,
    publish,
)
from tests.reliability.conftest import Run

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
TRANSIENT = {"errorType": "Lambda.TooManyRequestsException", "errorMessage": "Rate exceeded"}


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The Retry intervals moto's interpreter would sleep, recorded instead (no jitter)."""
    slept: list[float] = []
    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=slept.append))
    monkeypatch.setattr(jitter_strategy_decl, "random", SimpleNamespace(uniform=lambda a, b: b))
    return slept


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """`faults(stage, failures, error=...)`: the stage's first `failures` invocations (all of
    them when None) return `error` as the function's error; returns the stage's invocations,
    each "error" or "ran"."""
    # install() binds LambdaFunction._invoke_lambda to the module's function: restore it after.
    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", LambdaFunction._invoke_lambda)
    real = lambda_seam._invoke_in_process

    def inject(stage: str, failures: int | None, error: dict[str, str] = TRANSIENT) -> list[str]:
        calls: list[str] = []

        def invoke(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            handler = lambda_seam._handlers.get(self.function_name)
            if handler is None or f".{stage}." not in str(getattr(handler, "args", ())):
                return real(self, event)
            if failures is None or len(calls) < failures:
                calls.append("error")
                return json.dumps(error), True, ""
            calls.append("ran")
            return real(self, event)

        monkeypatch.setattr(lambda_seam, "_invoke_in_process", invoke)
        return calls

    return inject


# --- the pipeline ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_transient_lambda_error_is_retried_and_the_run_succeeds(
    run_upload: Callable[..., Run], faults: Callable[..., list[str]], waits: list[float]
) -> None:
    calls = faults("process_data", failures=2)
    run = run_upload(CORPUS / "target-missing-values.csv")
    assert run.outcome.status == "SUCCEEDED", run.outcome.error
    assert calls == ["error", "error", "ran"]
    assert waits == [2.0, 4.0]  # IntervalSeconds 2, BackoffRate 2
    assert run.context["process"]["rejected_rows"] == 3  # the stage's work was done once
    assert run.outcome.model_version == 1


@pytest.mark.slow
def test_a_stage_that_keeps_failing_fails_the_run_cleanly(
    run_upload: Callable[..., Run], faults: Callable[..., list[str]], waits: list[float]
) -> None:
    calls = faults("explore_data", failures=None)
    run = run_upload(CORPUS / "target-missing-values.csv")
    assert calls == ["error"] * 5  # the first attempt and MaxAttempts 4 retries
    assert waits == [2.0, 4.0, 8.0, 16.0]
    error = {"stage": "explore_data", "type": "Lambda.TooManyRequestsException"}
    assert run.outcome.status == "FAILED"
    assert run.outcome.error == {**error, "message": "Rate exceeded"}
    assert run.run_record()["status"] == "FAILED"
    assert run.run_record()["error"] == run.outcome.error
    kept = run.zone("quarantine") / run.upload.name
    assert kept.read_bytes() == run.upload.read_bytes()
    statuses = {s.name: s.status for s in run.outcome.stages}
    assert (statuses["process_data"], statuses["explore_data"]) == ("SUCCEEDED", "FAILED")
    assert statuses["engineer_features"] == "NOT_RUN"


@pytest.mark.slow
def test_a_stage_that_times_out_is_retried_once_then_fails_cleanly(
    run_upload: Callable[..., Run], faults: Callable[..., list[str]], waits: list[float]
) -> None:
    """Lambda reports a timed-out invocation as `Sandbox.Timedout`; moto runs handlers
    in-process without enforcing timeouts, so the timeout is injected as that error."""
    timeout = {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 900.00 s"}
    calls = faults("engineer_features", failures=None, error=timeout)
    run = run_upload(CORPUS / "target-missing-values.csv")
    assert calls == ["error", "error"]  # the first attempt and one retry
    assert waits == [5.0]
    assert run.outcome.status == "FAILED"
    assert run.outcome.error == {
        "stage": "engineer_features",
        "type": "Sandbox.Timedout",
        "message": "Task timed out after 900.00 s",
    }
    kept = run.zone("quarantine") / run.upload.name
    assert kept.read_bytes() == run.upload.read_bytes()


@pytest.mark.slow
def test_an_error_that_is_not_transient_is_not_retried(
    run_upload: Callable[..., Run], faults: Callable[..., list[str]], waits: list[float]
) -> None:
    crash = {"errorType": "MemoryError", "errorMessage": "out of memory reading the upload"}
    calls = faults("engineer_features", failures=1, error=crash)
    run = run_upload(CORPUS / "target-missing-values.csv")
    assert calls == ["error"]
    assert waits == []
    assert run.outcome.error == {
        "stage": "engineer_features",
        "type": "MemoryError",
        "message": "out of memory reading the upload",
    }


@pytest.fixture
def throttled_s3() -> Iterator[list[str]]:
    """The stages' S3 client answers GetObject on landing/ with 503 SlowDown, twice."""
    stage_runtime.client.cache_clear()  # a fresh client, hooked, for the stages to share
    answered: list[str] = []

    def slow_down(request: Any, **kwargs: Any) -> AWSResponse | None:
        if request.method != "GET" or "/landing/" not in request.url or len(answered) >= 2:
            return None
        answered.append(request.url)
        body = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
        return AWSResponse(request.url, 503, HTTPHeaders(), MockRawResponse(body))

    stage_runtime.client("s3").meta.events.register_first("before-send.s3.GetObject", slow_down)
    try:
        yield answered
    finally:
        stage_runtime.client.cache_clear()


@pytest.mark.slow
def test_s3_throttling_inside_a_stage_is_absorbed_by_the_client_retries(
    run_upload: Callable[..., Run], throttled_s3: list[str]
) -> None:
    run = run_upload(CORPUS / "semicolon.csv")
    assert run.outcome.status == "SUCCEEDED", run.outcome.error
    assert len(throttled_s3) == 2
    assert all("/landing/semicolon.csv?versionId=" in url for url in throttled_s3)
    assert stage_runtime.BOTO_CONFIG.retries == {"mode": "standard", "total_max_attempts": 6}


# --- the endpoint ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy() -> tuple[bytes, Manifest]:
    return export_toy_model("binary")


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    monkeypatch.setenv("REGISTRY_TABLE", TABLE)
    monkeypatch.setenv("LAKE_BUCKET", BUCKET)
    monkeypatch.setenv("RELEASE_CACHE_SECONDS", "0")
    with mock_aws():
        create_resources()
        runtime.reset()
        yield
        runtime.reset()


def _emf(out: str, metric: str) -> list[dict[str, Any]]:
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return [b for b in blobs if metric in b]


def _put(key: str, body: bytes) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)


def _delete(key: str) -> None:
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=key)


BREAKAGES: dict[str, Callable[[Manifest, bytes], None]] = {
    "onnx missing": lambda m, _: _delete(version_prefix(MODEL, m.version) + "model.onnx"),
    "manifest missing": lambda m, _: _delete(version_prefix(MODEL, m.version) + "manifest.json"),
    "onnx truncated": lambda m, onnx: _put(
        version_prefix(MODEL, m.version) + "model.onnx", onnx[: len(onnx) // 2]
    ),
    "onnx corrupt, manifest updated to match": lambda m, onnx: publish(
        b"\x08\x07garbage", m, manifest_doc={**m.to_json(), "onnx_sha256": _sha(b"\x08\x07garbage")}
    ),
    "manifest not JSON": lambda m, _: _put(
        version_prefix(MODEL, m.version) + "manifest.json", b"{not json"
    ),
}
REASONS = {
    "onnx missing": "model.onnx of 'customer-churn' version 2 is missing",
    "manifest missing": "manifest.json of 'customer-churn' version 2 is missing",
    "onnx truncated": "the ONNX artifact of 'customer-churn' version 2 has sha256",
    "onnx corrupt, manifest updated to match": "onnxruntime cannot load 'customer-churn' version 2",
    "manifest not JSON": "the manifest of 'customer-churn' version 2 is not a serving manifest",
}


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_release_answers_503_never_the_previous_model(
    endpoint: None,
    toy: tuple[bytes, Manifest],
    breakage: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    onnx, manifest = toy
    publish(onnx, manifest)  # v1, served and cached
    status, body = predict({"instances": INSTANCES})
    assert (status, body["model_version"]) == (200, 1)

    onnx2, manifest2 = export_toy_model("binary", version=2)
    publish(onnx2, manifest2)  # v2 released ...
    BREAKAGES[breakage](manifest2, onnx2)  # ... and broken
    capsys.readouterr()
    for _ in range(3):
        status, body = predict({"instances": INSTANCES})
        assert status == 503, body
        assert body["error"] == "model unavailable"
        assert body["version"] == 2
        assert REASONS[breakage] in body["message"]
        assert "predictions" not in body
    blobs = _emf(capsys.readouterr().out, "ModelLoadFailures")
    # The cache TTL is 0 here, so each request tries (and fails) to load v2 again.
    assert [b["ModelLoadFailures"] for b in blobs] == [[1.0]] * 3
    assert {b["_aws"]["CloudWatchMetrics"][0]["Namespace"] for b in blobs} == {"mlcycle"}

    # Repaired: the same version is served again once the artifact is back.
    publish(onnx2, manifest2)
    status, body = predict({"instances": INSTANCES})
    assert (status, body["model_version"]) == (200, 2)
    session = ort.InferenceSession(onnx2, providers=["CPUExecutionProvider"])
    _, probabilities = session.run(None, direct_feeds(INSTANCES))
    served = [list(p["probabilities"].values()) for p in body["predictions"]]
    assert np.array(served, np.float32).tolist() == probabilities.tolist()


def _alarm(template: dict[str, Any], metric: str) -> dict[str, Any]:
    (alarm,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == metric
    ]
    return alarm


def _load_failure_blob(toy: tuple[bytes, Manifest], capsys: pytest.CaptureFixture[str]) -> Any:
    onnx, manifest = toy
    publish(onnx, manifest, manifest_doc={**manifest.to_json(), "onnx_sha256": "0" * 64})
    capsys.readouterr()
    assert predict({"instances": INSTANCES})[0] == 503
    (blob,) = _emf(capsys.readouterr().out, "ModelLoadFailures")
    return blob


def test_the_model_load_failures_alarm_watches_the_namespace_the_endpoint_writes(
    endpoint: None,
    toy: tuple[bytes, Manifest],
    template: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    alarm = _alarm(template, "ModelLoadFailures")
    blob = _load_failure_blob(toy, capsys)
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert alarm["Namespace"] == directive["Namespace"] == "mlcycle"
    assert {"Name": "ModelLoadFailures", "Unit": "Count"} in directive["Metrics"]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    predict_env = next(
        r["Properties"]["Environment"]["Variables"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("Handler") == "functions.predict.handler.lambda_handler"
    )
    assert predict_env["POWERTOOLS_METRICS_NAMESPACE"] == alarm["Namespace"]
    assert blob["service"] == predict_env["POWERTOOLS_SERVICE_NAME"] == "mlcycle"


def test_the_model_load_failures_alarm_matches_the_emitted_dimensions(
    endpoint: None,
    toy: tuple[bytes, Manifest],
    template: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    alarm = _alarm(template, "ModelLoadFailures")
    blob = _load_failure_blob(toy, capsys)
    wanted = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    emitted = [
        {name: blob[name] for name in names}
        for names in blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    ]
    assert wanted in emitted, (wanted, emitted)
