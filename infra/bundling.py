"""Lambda assets built on this machine with pip and file copies: synth needs no docker.

`cdk synth` runs these bundlers instead of a container. Each asset's hash is computed from
its inputs (requirements, source files), so an unchanged asset is neither rebuilt nor
re-uploaded, and pip only runs when a requirement changes (its output is cached).

Both assets ship bytecode compiled by an interpreter of the runtime's Python version. Lambda
cannot write its own (code and layers are read-only), so without it every cold start compiles
every module it imports: measured for the endpoint (bench/endpoint.py, without the AWS SDK),
0.93 s to the first answer without it against 0.35 s with it.
That is why the endpoint runs Python 3.13: this machine has a 3.13 interpreter to compile
with and no 3.14 one. The pipeline image (which compiles its own, in docker) runs 3.13 too:
Apache DataSketches, whose mergeable sketches profile a many-part dataset, has no 3.14 wheel
yet (apache/datasketches-python#65), and one Python everywhere is one less difference.
"""

from __future__ import annotations

import functools
import hashlib
import os
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

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_13  # the endpoint's (zip) functions and layers
LAMBDA_ARCHITECTURE = lambda_.Architecture.X86_64
PYTHON_VERSION = "3.13"
PIPELINE_PYTHON_VERSION = "3.13"  # infra/pipeline.Dockerfile's base image
# Lambda's python3.13 runs on Amazon Linux 2023 (glibc 2.34): these wheels load there.
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux2014_x86_64"]


def lambda_platform_pip_args(python_version: str = PYTHON_VERSION) -> list[str]:
    """pip options that pick wheels for Lambda's Python and CPU instead of this machine's."""
    return [
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
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


def _runs_as(executable: str, version: str) -> bool:
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return False
    return result.returncode == 0 and result.stdout.strip() == version


@functools.cache
def runtime_python() -> str:
    """An interpreter of the runtime's Python version: $MLCYCLE_RUNTIME_PYTHON, else
    python3.13 on the PATH, else one installed by pyenv."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        os.environ.get("MLCYCLE_RUNTIME_PYTHON"),
        shutil.which(f"python{PYTHON_VERSION}"),
        *map(str, sorted(pyenv.glob(f"{PYTHON_VERSION}.*/bin/python{PYTHON_VERSION}"))),
    ]
    for candidate in candidates:
        if candidate and _runs_as(candidate, PYTHON_VERSION):
            return candidate
    raise RuntimeError(
        f"the endpoint's Lambda code is compiled to bytecode by Python {PYTHON_VERSION}, and "
        f"none was found: install python{PYTHON_VERSION} or set MLCYCLE_RUNTIME_PYTHON to one"
    )


def compile_bytecode(folder: Path) -> None:
    """Compile every module under `folder` for the runtime. Unchecked hash-based .pyc files
    (PEP 552): Lambda uses them as they are, whatever the sources' timestamps in the zip."""
    subprocess.run(
        [
            runtime_python(),
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(folder),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


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
                    *lambda_platform_pip_args(),
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
            for path in (staging / "python").rglob("__pycache__"):  # pip's, for this Python
                shutil.rmtree(path, ignore_errors=True)
            compile_bytecode(staging / "python")
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
        compile_bytecode(Path(output_dir))
        return True


def _destination(file: Path) -> Path:
    layers = PROJECT_ROOT / "layers"
    return file.relative_to(layers if file.is_relative_to(layers) else PROJECT_ROOT)


def asset_hash_of_requirements(requirements: Path) -> str:
    return _digest(
        [
            requirements.read_bytes(),
            " ".join(PLATFORMS).encode(),
            PYTHON_VERSION.encode(),
            b"bytecode",  # layers cached before they carried bytecode are rebuilt
        ]
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
        [
            PYTHON_VERSION.encode(),
            *(part for f in files for part in (str(_destination(f)).encode(), f.read_bytes())),
        ]
    )
    return lambda_.Code.from_asset(
        str(PROJECT_ROOT / "functions"),
        asset_hash=digest,
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=_NO_DOCKER, local=CopySources(sources)),
    )
