"""The prediction endpoint as synthesized: API, function, dependency layer and its size."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.bundling import runtime_python
from mlcycle.local.assembly import function_assets
from tests.conftest import ROOT

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
PREDICT_HANDLER = "functions.predict.handler.lambda_handler"


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def predict(template: dict[str, Any]) -> dict[str, Any]:
    (function,) = [
        r
        for r in _resources(template, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == PREDICT_HANDLER
    ]
    return function


@pytest.fixture(scope="module")
def predict_assets(template: dict[str, Any], assembly: Path) -> tuple[Path, Path]:
    """The predict function's code folder and its one layer's packages folder."""
    code, (layer,) = function_assets(assembly, template, PREDICT_HANDLER)
    return code, layer / "python"


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_predict_is_a_small_zip_function_with_the_onnx_layer(
    predict: dict[str, Any], predict_assets: tuple[Path, Path]
) -> None:
    properties = predict["Properties"]
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["x86_64"]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    variables = properties["Environment"]["Variables"]
    assert {"LAKE_BUCKET", "REGISTRY_TABLE", "MAX_INSTANCES"} <= set(variables)
    function_dir, layer_dir = predict_assets
    installed = {p.name for p in layer_dir.iterdir()}
    assert {"onnxruntime", "numpy", "aws_lambda_powertools"} <= installed
    # The endpoint must never carry the pipeline's heavy dependencies.
    assert not {"pandas", "sklearn", "pyarrow", "scipy"} & installed
    assert (function_dir / "functions" / "predict" / "handler.py").is_file()
    assert not (function_dir / "mlcycle" / "stages.py").exists()
    assert (function_dir / "mlcycle" / "serving" / "manifest.py").is_file()


def test_function_and_layers_fit_lambdas_unzipped_limit(
    template: dict[str, Any], assembly: Path
) -> None:
    code, layers = function_assets(assembly, template, PREDICT_HANDLER)
    folders = [code, *layers]
    total = sum(_folder_size(folder) for folder in folders)
    print(f"predict function + layers, unzipped: {total / 2**20:.1f} MiB")
    assert total < LAMBDA_UNZIPPED_LIMIT


# Run by the runtime's Python from the assets alone: which module sources had to be compiled.
_IMPORT_FROM_ASSETS = """
import importlib._bootstrap_external as external, json, sys
compiled = []
source_to_code = external.SourceLoader.source_to_code
def spy(self, data, path, **kwargs):
    compiled.append(path)
    return source_to_code(self, data, path, **kwargs)
external.SourceLoader.source_to_code = spy
from functions.predict.handler import lambda_handler
event = {"path": "/health", "httpMethod": "GET", "headers": {}, "requestContext": {}}
response = lambda_handler(event, None)
print(json.dumps({"compiled": compiled, "response": response}))
"""


def test_the_assets_run_on_the_runtime_python_from_their_own_bytecode(
    predict_assets: tuple[Path, Path],
) -> None:
    """Lambda cannot write bytecode, so the assets carry it; the handler imports onnxruntime
    and numpy, so this also proves the layer's wheels load on the runtime's Python."""
    function_dir, layer_dir = predict_assets
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{function_dir}:{layer_dir}",
        "PYTHONDONTWRITEBYTECODE": "1",  # read-only, as in Lambda
        "POWERTOOLS_METRICS_NAMESPACE": "mlcycle",
    }
    result = subprocess.run(
        [runtime_python(), "-c", _IMPORT_FROM_ASSETS],
        env=env,
        capture_output=True,
        text=True,
        cwd=function_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    shipped = [p for p in outcome["compiled"] if p.startswith((str(function_dir), str(layer_dir)))]
    assert shipped == []
    assert outcome["response"]["statusCode"] == 503  # no REGISTRY_TABLE here: misconfigured
    assert json.loads(outcome["response"]["body"])["status"] == "misconfigured"


def test_synth_says_what_to_install_when_no_runtime_python_is_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLCYCLE_RUNTIME_PYTHON", sys.executable)  # 3.11: the wrong version
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))  # no pyenv versions
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3.13
    runtime_python.cache_clear()
    try:
        with pytest.raises(
            RuntimeError, match=r"install python3\.13 or set MLCYCLE_RUNTIME_PYTHON"
        ):
            runtime_python()
    finally:
        runtime_python.cache_clear()


def test_every_method_is_iam_authorized_and_post_is_validated(template: dict[str, Any]) -> None:
    methods = _resources(template, "AWS::ApiGateway::Method").values()
    served = [m["Properties"] for m in methods if m["Properties"]["HttpMethod"] != "OPTIONS"]
    assert len(served) == 3
    for method in served:
        assert method["AuthorizationType"] == "AWS_IAM"
    (post,) = [m for m in served if m["HttpMethod"] == "POST"]
    assert "RequestValidatorId" in post
    assert set(post["RequestModels"]) == {"application/json"}
    (validator,) = _resources(template, "AWS::ApiGateway::RequestValidator").values()
    assert validator["Properties"]["ValidateRequestBody"] is True


def test_the_stage_is_throttled_traced_and_access_logged(template: dict[str, Any]) -> None:
    (stage,) = _resources(template, "AWS::ApiGateway::Stage").values()
    properties = stage["Properties"]
    assert properties["TracingEnabled"] is True
    assert "DestinationArn" in properties["AccessLogSetting"]
    (settings,) = properties["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 100
    assert settings["ThrottlingBurstLimit"] == 200


def test_gateway_rejections_name_the_problem(template: dict[str, Any]) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in _resources(template, "AWS::ApiGateway::GatewayResponse").values()
    }
    body = responses["BAD_REQUEST_BODY"]["ResponseTemplates"]["application/json"]
    assert "$context.error.validationErrorString" in body


def _gateway_routes(template: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of every API Gateway method, the path rebuilt from its resources."""
    resources = _resources(template, "AWS::ApiGateway::Resource")

    def path_of(ref: dict[str, Any]) -> str:
        if "Ref" not in ref:  # the API's root resource
            return ""
        resource = resources[ref["Ref"]]["Properties"]
        return f"{path_of(resource['ParentId'])}/{resource['PathPart']}"

    return {
        (method["Properties"]["HttpMethod"], path_of(method["Properties"]["ResourceId"]))
        for method in _resources(template, "AWS::ApiGateway::Method").values()
    }


def test_the_openapi_description_matches_the_deployed_routes(template: dict[str, Any]) -> None:
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    described = {
        # A path part cannot mix a variable and a literal in API Gateway: `{name}:predict` and
        # `{name}:explain` are served by the `{model}` resource and the function routes on the
        # verb.
        (method.upper(), re.sub(r"\{name\}(:\w+)?", "{model}", path))
        for path, item in document["paths"].items()
        for method in item
    }
    assert described == _gateway_routes(template)
