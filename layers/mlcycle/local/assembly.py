"""The CDK cloud assembly the local runner executes: synthesized once, reused while fresh."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlcycle

# What the template is synthesized from; a change to any of these makes cdk.out stale.
_SOURCES = ("infra", "functions", "cdk.json", "pyproject.toml")
_STAMP = ".mlcycle-sources.sha256"


class SynthError(RuntimeError):
    """`cdk synth` failed; the message carries its output."""


def project_root() -> Path:
    """The repository holding cdk.json: the package's own checkout (editable install)."""
    root = Path(mlcycle.__file__).resolve().parents[2]
    if not (root / "cdk.json").is_file():
        raise SynthError(f"no cdk.json beside the mlcycle package (looked in {root})")
    return root


def sources_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = root / name
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(root)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def ensure_assembly(root: Path | None = None, *, out: Path | None = None) -> Path:
    """Synthesize the app into `out` (default `<root>/cdk.out`) unless it is already fresh."""
    root = root or project_root()
    out = out or root / "cdk.out"
    digest = sources_digest(root)
    stamp = out / _STAMP
    if _fresh(out, stamp, digest):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # One synth at a time into `out` (parallel test workers, two `mlcycle` commands at once):
    # the others wait, then find it fresh.
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _fresh(out, stamp, digest):
            return out
        _synth(root, out)
        stamp.write_text(digest)
    return out


def _fresh(out: Path, stamp: Path, digest: str) -> bool:
    return stamp.is_file() and stamp.read_text() == digest and (out / "manifest.json").is_file()


def _synth(root: Path, out: Path) -> None:
    env = {
        **os.environ,
        "CDK_OUTDIR": str(out),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        # The context the cdk CLI passes: cdk.json's, plus the asset paths it always records.
        "CDK_CONTEXT_JSON": json.dumps(
            {
                **json.loads((root / "cdk.json").read_text())["context"],
                "aws:cdk:enable-asset-metadata": True,
            }
        ),
    }
    result = subprocess.run(
        [sys.executable, "-m", "infra.app"], cwd=root, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SynthError(f"cdk synth failed:\n{result.stderr[-4000:]}")


def load_template(assembly: Path, stack_name: str | None = None) -> tuple[str, dict[str, Any]]:
    """The (stack name, template) of the assembly's one stack, or the one named."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    stacks = {
        name: artifact["properties"]["templateFile"]
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    if stack_name is None:
        if len(stacks) != 1:
            raise SynthError(
                f"the assembly holds {len(stacks)} stacks; name one of {sorted(stacks)}"
            )
        stack_name = next(iter(stacks))
    return stack_name, json.loads((assembly / stacks[stack_name]).read_text())


def function_assets(
    assembly: Path, template: dict[str, Any], handler: str
) -> tuple[Path, list[Path]]:
    """The folders of the function whose handler is `handler`: its code, and its layers'."""
    resources = template["Resources"]
    (function,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == handler
    ]
    layers = [resources[ref["Ref"]] for ref in function["Properties"].get("Layers", [])]
    return assembly / function["Metadata"]["aws:asset:path"], [
        assembly / layer["Metadata"]["aws:asset:path"] for layer in layers
    ]
