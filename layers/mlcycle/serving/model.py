"""A released model ready to predict: its manifest, an onnxruntime session and its inputs.

`load_model` refuses an artifact it cannot trust (`ModelUnavailableError`): a checksum that differs
from the manifest's, a manifest of another model or version, a graph whose inputs do not
match the manifest's features. The endpoint answers 503 then, never a wrong prediction.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from mlcycle.serving.errors import ModelUnavailableError
from mlcycle.serving.inputs import Batch, InputBuilder
from mlcycle.serving.manifest import Manifest

_ONNX_TYPES = {
    "numeric": "tensor(float)",
    "datetime": "tensor(float)",
    "categorical": "tensor(string)",
}


def session_options(threads: int = 1) -> ort.SessionOptions:
    """CPU options for Lambda. One intra-op thread: a request is a few rows, and thread hand-off
    costs more than it saves (bench/endpoint.py measures it); no spinning threads burning the
    vCPU between requests."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    return options


def _float32_text(values: np.ndarray) -> list[float]:
    """float32 values as the shortest decimals that read back as the same float32
    (0.8, not 0.800000011920929): exact, and readable."""
    return [float(str(v)) for v in values.astype(np.float32, copy=False).ravel()]


@dataclass
class LoadedModel:
    manifest: Manifest
    session: ort.InferenceSession
    builder: InputBuilder
    sha256: str
    loaded_at: float = field(default_factory=time.time)
    # `mlcycle.serving.explain.Explainer`, made by `ModelCache.explainer` on the first
    # explanation asked of this version (predictions never load it)
    explainer: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.manifest.model

    @property
    def version(self) -> int:
        return self.manifest.version

    def run(self, batch: Batch) -> list[dict[str, Any]]:
        """One prediction per instance: `{"label", "probabilities"}` or `{"value"}`."""
        manifest = self.manifest
        if manifest.task == "regression":
            (values,) = self.session.run([manifest.value_output or "variable"], batch.feeds)
            return [{"value": v} for v in _float32_text(np.asarray(values))]
        outputs = [manifest.label_output]
        if manifest.probability_output:
            outputs.append(manifest.probability_output)
        results = self.session.run(outputs, batch.feeds)
        labels = [str(label) for label in np.asarray(results[0]).ravel().tolist()]
        if not manifest.probability_output:
            return [{"label": label} for label in labels]
        probabilities = results[1]
        classes = manifest.classes
        if isinstance(probabilities, list):  # a ZipMap output: one {class: p} per row
            probabilities = np.asarray([[row[c] for c in classes] for row in probabilities])
        flat = _float32_text(probabilities)
        k = len(classes)
        if manifest.threshold is not None and manifest.positive_class is not None:
            labels = self._decide(flat, manifest.threshold, manifest.positive_class)
        return [
            {
                "label": label,
                "probabilities": dict(zip(classes, flat[i * k : (i + 1) * k], strict=True)),
            }
            for i, label in enumerate(labels)
        ]

    def _decide(self, flat: list[float], threshold: float, positive: str) -> list[str]:
        """The version's decision: the positive class where its probability (as answered,
        float32) reaches the threshold, the other class elsewhere."""
        classes = self.manifest.classes
        j, negative = classes.index(positive), classes[1 - classes.index(positive)]
        k = len(classes)
        return [positive if p >= threshold else negative for p in flat[j::k]]

    def describe(self) -> dict[str, Any]:
        """The model's public description (GET /v1/models/{name})."""
        manifest = self.manifest
        info: dict[str, Any] = {
            "model": manifest.model,
            "version": manifest.version,
            "task": manifest.task,
            "target": manifest.target,
            "features": [
                {"name": f.name, "kind": f.kind, "categories": list(f.categories)}
                for f in manifest.features
            ],
            "metrics": dict(manifest.metrics),
        }
        if manifest.task != "regression":
            info["classes"] = list(manifest.classes)
            info["positive_class"] = manifest.positive_class
        if manifest.threshold is not None:
            info["threshold"] = manifest.threshold
        if manifest.top_features:
            info["top_features"] = [dict(f) for f in manifest.top_features]
        if manifest.model_card:
            info["model_card"] = dict(manifest.model_card)
        if manifest.parity is not None:
            info["parity"] = {
                "rows": manifest.parity.rows,
                "labels_equal": manifest.parity.labels_equal,
                "max_abs_diff": manifest.parity.max_abs_diff,
                "tolerance": manifest.parity.tolerance,
            }
        return info


def parse_manifest(data: bytes, *, name: str, version: int) -> Manifest:
    try:
        manifest = Manifest.from_json(json.loads(data))
    except (ValueError, TypeError, KeyError) as error:
        raise ModelUnavailableError(
            f"the manifest of {name!r} version {version} is not a serving manifest: {error}",
            model=name,
            version=version,
        ) from None
    if manifest.model != name or manifest.version != version:
        raise ModelUnavailableError(
            f"the manifest under {name!r} version {version} describes {manifest.model!r} "
            f"version {manifest.version}",
            model=name,
            version=version,
        )
    return manifest


def load_model(manifest: Manifest, onnx: bytes, *, threads: int | None = None) -> LoadedModel:
    """Verify `onnx` against the manifest and open a session on it."""
    name, version = manifest.model, manifest.version
    digest = hashlib.sha256(onnx).hexdigest()
    if digest != manifest.onnx_sha256:
        raise ModelUnavailableError(
            f"the ONNX artifact of {name!r} version {version} has sha256 {digest}, but its "
            f"manifest says {manifest.onnx_sha256}; refusing to serve it",
            model=name,
            version=version,
        )
    if threads is None:
        threads = int(os.environ.get("ORT_INTRA_OP_THREADS", "1"))
    try:
        session = ort.InferenceSession(
            onnx, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelUnavailableError(
            f"onnxruntime cannot load {name!r} version {version}: {error}",
            model=name,
            version=version,
        ) from None
    _check_signature(manifest, session)
    return LoadedModel(manifest, session, InputBuilder(manifest), digest)


def _check_signature(manifest: Manifest, session: ort.InferenceSession) -> None:
    inputs = {i.name: i.type for i in session.get_inputs()}
    expected = {f.input or f.name: _ONNX_TYPES[f.kind] for f in manifest.features}
    outputs = {o.name for o in session.get_outputs()}
    wanted = (
        {manifest.value_output or "variable"}
        if manifest.task == "regression"
        else {
            manifest.label_output,
            *([manifest.probability_output] if manifest.probability_output else []),
        }
    )
    problems = [
        f"input {name!r} is {inputs.get(name, 'absent')}, the manifest needs {kind}"
        for name, kind in expected.items()
        if inputs.get(name) != kind
    ]
    problems += [f"input {name!r} is not a manifest feature" for name in inputs.keys() - expected]
    problems += [f"output {name!r} is absent" for name in sorted(wanted - outputs)]
    if problems:
        raise ModelUnavailableError(
            f"the ONNX graph of {manifest.model!r} version {manifest.version} does not match its "
            f"manifest: {'; '.join(problems)}",
            model=manifest.model,
            version=manifest.version,
        )
