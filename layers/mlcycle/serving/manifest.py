"""The serving manifest: everything the endpoint needs to know about a model, beside its ONNX file.

Written by the training side when a model is exported (`model.onnx`, `background.json` and
`manifest.json` under `models/dataset=<name>/version=<n>/`), read by the endpoint. Plain JSON,
validated on load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FeatureKind = Literal["numeric", "categorical", "datetime"]
ServingTask = Literal["binary", "multiclass", "regression"]

ONNX_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
# the background summary explanations are measured against (mlcycle.serving.explain); a
# version registered before explanations has none
BACKGROUND_FILE = "background.json"


@dataclass(frozen=True)
class FeatureSpec:
    """One model input. The ONNX graph has one input per feature, named like the feature, of
    shape [None, 1]: float32 for numeric (NaN = missing) and datetime (days since 1970-01-01,
    UTC, fractional; NaN = missing), string for categorical ("" = missing)."""

    name: str
    kind: FeatureKind
    categories: list[str] = field(default_factory=list)  # categorical: values seen in training
    input: str | None = None  # the ONNX input name, when it differs from `name`


@dataclass(frozen=True)
class Parity:
    """How closely the ONNX graph reproduced scikit-learn on the whole holdout."""

    rows: int
    labels_equal: bool  # classification: every predicted label equal
    max_abs_diff: float  # probabilities (classification) or values (regression)
    tolerance: float


@dataclass(frozen=True)
class Manifest:
    model: str  # the dataset name; the endpoint path is /v1/models/{model}:predict
    version: int
    task: ServingTask
    target: str
    features: list[FeatureSpec]
    onnx_sha256: str
    classes: list[str] = field(default_factory=list)  # classification, in probability order
    positive_class: str | None = None
    # binary: the label is positive_class where its probability >= threshold (None: argmax)
    threshold: float | None = None
    label_output: str = "label"  # ONNX output names
    probability_output: str | None = "probabilities"
    value_output: str | None = None  # regression
    metrics: dict[str, float] = field(default_factory=dict)
    parity: Parity | None = None
    excluded: list[str] = field(default_factory=list)  # columns the data had, not features
    # what the model relies on most ({"name", "share"} of attribution on the holdout)
    top_features: list[dict[str, Any]] = field(default_factory=list)
    # the version's model card: {"json": model_card.json URI, "html": model_card.html URI}
    model_card: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Manifest:
        features = [FeatureSpec(**f) for f in document["features"]]
        parity = Parity(**document["parity"]) if document.get("parity") else None
        return cls(**{**document, "features": features, "parity": parity})
