"""The pins shared by local development, the pipeline image and the endpoint layer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from infra.bundling import PIPELINE_PYTHON_VERSION, lambda_platform_pip_args
from infra.endpoint import SERVING_REQUIREMENTS
from tests.conftest import ROOT

LOCK = ROOT / "requirements.lock"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if match := re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip()):
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_the_lock_resolves_for_the_lambda_platform(tmp_path: Path) -> None:
    """Every pin has a wheel for Lambda's Python and CPU, and they are consistent together:
    the image build cannot fail on a missing wheel. Needs the package index, not docker."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            *lambda_platform_pip_args(PIPELINE_PYTHON_VERSION),
            "--target",
            str(tmp_path),
            "--requirement",
            str(LOCK),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_lock_pins_every_runtime_dependency_and_the_venv_matches_it() -> None:
    from importlib.metadata import version

    pins = _pins(LOCK)
    for name in ("pandas", "pyarrow", "scikit-learn", "skl2onnx", "onnxruntime", "numpy"):
        assert name in pins, name
        assert version(name) == pins[name], name


def test_the_endpoint_layer_uses_the_same_versions_as_the_lock() -> None:
    lock = _pins(LOCK)
    for name, pinned in _pins(SERVING_REQUIREMENTS).items():
        if name in lock:
            assert pinned == lock[name], name
