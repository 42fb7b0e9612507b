"""`mlcycle serve` answers over HTTP; `mlcycle predict` and `mlcycle explain` print the handler's
response."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from mlcycle.cli import main
from mlcycle.lake_layout import version_prefix
from mlcycle.local.serve import serving
from tests.integration.test_predict import BACKGROUND, INSTANCES, MODEL, export_toy_model


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `mlcycle run` leaves behind: DIR/lake/<key> and DIR/registry.json."""
    out = tmp_path_factory.mktemp("mlcycle-out")
    onnx, manifest = export_toy_model("binary")
    prefix = out / "lake" / version_prefix(MODEL, 1)
    prefix.mkdir(parents=True)
    (prefix / "model.onnx").write_bytes(onnx)
    (prefix / "background.json").write_text(json.dumps(BACKGROUND))
    (prefix / "manifest.json").write_text(json.dumps(manifest.to_json()))
    registry = [
        {"pk": f"MODEL#{MODEL}", "sk": "RELEASE", "production_version": 1},
        {"pk": f"MODEL#{MODEL}", "sk": "VERSION#000001", "version": 1},
    ]
    (out / "registry.json").write_text(json.dumps(registry))
    return out


def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_answers_over_http_and_exports_the_capture(local_run: Path) -> None:
    with serving(local_run, port=0) as (endpoint, server):
        host, port = server.server_address[:2]
        url = f"http://{host}:{port}/v1/models/{MODEL}:predict"
        status, body = _post(url, {"instances": INSTANCES[:2]})
        assert status == 200, body
        assert len(body["predictions"]) == 2
        status, body = _post(url, {"instances": [{"tenure_months": "x"}]})
        assert status == 400
        assert {"instance": 0, "field": "tenure_months"}.items() <= body["problems"][-1].items()
    assert '"_aws"' in endpoint.log  # EMF went to the endpoint's log, not the terminal
    (capture,) = (local_run / "lake" / "capture").rglob("*.jsonl.gz")
    assert f"dataset={MODEL}" in capture.parts


def test_predict_command_prints_the_response(
    local_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"instances": INSTANCES[:1]})))
    assert main(["predict", "--from", str(local_run), "-"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert response["model_version"] == 1
    request = local_run / "bad.json"
    request.write_text(json.dumps({"instances": []}))
    assert main(["predict", "--from", str(local_run), "--model", MODEL, str(request)]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "invalid request"


def test_explain_command_prints_the_explanations(
    local_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"instances": INSTANCES[:2]})))
    assert main(["explain", "--from", str(local_run), "-"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert (response["model_version"], response["method"]) == (1, "exact")
    for explanation in response["explanations"]:
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - explanation["output"]) <= 1e-6
    request = local_run / "bad-explain.json"
    request.write_text(json.dumps({"instances": [{"tenure_months": "x"}]}))
    assert main(["explain", "--from", str(local_run), "--model", MODEL, str(request)]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "invalid request"


def test_scoring_on_a_stack_names_the_model_and_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "batch.csv"
    batch.write_text("plan\nbasic\n")
    assert main(["score", str(batch), "--stack", "mlcycle-prod"]) == 2
    assert "name the model with --model when scoring on --stack" in capsys.readouterr().out
    with mock_aws():  # credentials that reach no such stack
        code = main(["score", str(batch), "--stack", "nope", "--model", "churn"])
    assert code == 1
    assert "no stack 'nope' with these credentials" in capsys.readouterr().out
