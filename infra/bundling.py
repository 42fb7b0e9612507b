"""Lambda assets built on this machine with pip and file copies: synth needs no docker.

`cdk synth` runs these bundlers instead of a container. Each asset's hash is computed from
its inputs (requirements, source files), so an unchanged asset is neither rebuilt nor
re-uploaded, and pip only runs when a requirement changes (its output is cached).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CACHE = PROJECT_ROOT / ".cache" / "lambda-layers"

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
LAMBDA_ARCHITECTURE = lambda_.Architecture.X86_64
PYTHON_VERSION = "3.14"
# Lambda's python3.14 runs on Amazon Linux 2023 (glibc 2.34): these wheels all load there.
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux2014_x86_64"]

# pip options that pick wheels for Lambda's Python and CPU instead of this machine's.
LAMBDA_PLATFORM_PIP_ARGS = [
    "--only-binary=:all:",
    "--implementation",
    "cp",
    "--python-version",
    PYTHON_VERSION,
    *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
]

# Parts of the wheels that nothing imports at run time; dropping them keeps the layer small.
TRIM = [
    "onnxruntime/tools",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/datasets",
    "numpy/tests",
    "numpy/*/tests",
    "numpy/_pyinstaller",
    "numpy/f2py",
    "numpy/typing/tests",
]
# No container is ever started: local bundling always succeeds, so this image is never pulled.
_NO_DOCKER = DockerImage.from_registry("local-bundling-only")


def _digest(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@jsii.implements(ILocalBundling)
class PipInstall:
    """Install a requirements file for the Lambda platform into `<output>/python`."""

    def __init__(self, requirements: Path) -> None:
        self.requirements = requirements

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:
        cached = CACHE / asset_hash_of_requirements(self.requirements)
        if not cached.is_dir():
            staging = cached.with_suffix(".partial")
            shutil.rmtree(staging, ignore_errors=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    *LAMBDA_PLATFORM_PIP_ARGS,
                    "--target",
                    str(staging / "python"),
                    "--requirement",
                    str(self.requirements),
                ],
                check=True,
            )
            for pattern in TRIM:
                for path in (staging / "python").glob(pattern):
                    shutil.rmtree(path, ignore_errors=True)
            for path in (staging / "python").rglob("__pycache__"):
                shutil.rmtree(path, ignore_errors=True)
            staging.rename(cached)
        shutil.copytree(cached, output_dir, dirs_exist_ok=True)
        return True


@jsii.implements(ILocalBundling)
class CopySources:
    """Copy source files into the asset where Lambda imports them from: the package from
    `layers/` at the top (`mlcycle/...`), everything else at its project-relative path."""

    def __init__(self, sources: list[Path]) -> None:
        self.sources = sources

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:
        for source in self.sources:
            files = _files(source) if source.is_dir() else [source]
            for file in files:
                target = Path(output_dir) / _destination(file)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
        return True


def _destination(file: Path) -> Path:
    layers = PROJECT_ROOT / "layers"
    return file.relative_to(layers if file.is_relative_to(layers) else PROJECT_ROOT)


def asset_hash_of_requirements(requirements: Path) -> str:
    return _digest(
        [requirements.read_bytes(), " ".join(PLATFORMS).encode(), PYTHON_VERSION.encode()]
    )


def dependency_layer_code(requirements: Path) -> lambda_.Code:
    """A layer's code: the requirements installed with pip for the Lambda platform."""
    return lambda_.Code.from_asset(
        str(requirements.parent),
        asset_hash=asset_hash_of_requirements(requirements),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=_NO_DOCKER, local=PipInstall(requirements)),
    )


def source_code(sources: list[Path]) -> lambda_.Code:
    """A function's code: the given files and folders, at their project-relative paths."""
    files = [f for s in sources for f in (_files(s) if s.is_dir() else [s])]
    digest = _digest(
        part for f in files for part in (str(_destination(f)).encode(), f.read_bytes())
    )
    return lambda_.Code.from_asset(
        str(PROJECT_ROOT / "functions"),
        asset_hash=digest,
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=_NO_DOCKER, local=CopySources(sources)),
    )
