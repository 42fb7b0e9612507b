"""The predict handler's shape: a small import graph, routes that match the OpenAPI document."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT


def test_the_handler_imports_neither_pandas_nor_sklearn_nor_pyarrow() -> None:
    # nor the explainer: a container that only predicts never loads it
    code = (
        "import sys, functions.predict.handler\n"
        "heavy = {'pandas', 'sklearn', 'pyarrow', 'boto3', 'mlcycle.runtime', 'mlcycle.adapters',\n"
        "         'mlcycle.serving.explain'}  # loaded on the first explanation only\n"
        "found = heavy & set(sys.modules)\n"
        "assert not found, found\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def _handler_routes() -> set[tuple[str, str]]:
    from functions.predict.handler import app

    routes = app._dynamic_routes + app._static_routes
    return {(r.method.lower(), re.sub(r"<(\w+)>", r"{\1}", r.path)) for r in routes}


def test_handler_routes_match_the_openapi_paths() -> None:
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert document["openapi"].startswith("3.0")
    documented = {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert _handler_routes() == documented


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/models/customer-churn:predict", ("predict", {"name": "customer-churn"})),
        ("GET", "/v1/models/customer-churn", ("describe", {"name": "customer-churn"})),
        ("GET", "/health", ("health", {})),
        ("POST", "/v1/models/customer-churn", None),
        ("POST", "/v1/models/customer-churn:explain", ("explain", {"name": "customer-churn"})),
        ("POST", "/v1/models/customer-churn:classify", None),
    ],
)
def test_the_colon_route_matches(
    method: str, path: str, expected: tuple[str, dict[str, str]] | None
) -> None:
    from functions.predict.handler import app

    for route in app._dynamic_routes + app._static_routes:
        match = route.rule.match(path)
        if route.method == method and match:
            assert expected == (route.func.__name__, match.groupdict())
            return
    assert expected is None
