"""Model cards for the card tests, built by `mlcycle.domain.model_card` from the realistic
evaluation documents of `tests.reports_fixtures` and a registry entry, lineage and schema
shaped as the pipeline writes them.

`card_inputs(kind)` / `model_card_doc(kind)`, kind as in `evaluation_doc`: "binary" has a
spec whose `card:` is filled in, "binary_imbalanced" a hostile one (markup, `$`, long text),
"multiclass" and "regression" none at all.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from mlcycle.domain.model_card import build_model_card
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, ProblemSpec, Task
from tests.reports_fixtures import HOSTILE, evaluation_doc

Json = dict[str, Any]
REPORTS = "s3://lake/reports/dataset={dataset}/run={run}/"
_ALGORITHM = {"logistic_regression": "linear", "ridge": "linear"}

FULL_CARD: Json = {
    "owner": "oncology-ml",
    "description": "Flags biopsies whose cell measurements look malignant",
    "business_problem": "Pathologists review flagged biopsies first",
    "stakeholders": "pathology, patients, hospital quality board",
    "purpose": "order the review queue",
    "intended_uses": ["review queue ordering", "second reading\nof archived cases"],
    "out_of_scope_uses": ["diagnosis without a pathologist", "screening of other tissues"],
    "risk_rating": "high",
    "risk_rating_reason": "a missed malignancy delays treatment",
    "ethical_considerations": "the clinic a patient attends must not change the flag",
    "caveats": "measured on one hospital's archive",
}
HOSTILE_CARD: Json = {
    "owner": HOSTILE[0],
    "description": "x" * 1500,  # over the schema's 1,024 characters
    "intended_uses": [HOSTILE[1], HOSTILE[2]],
    "risk_rating": "medium",
}


def card_inputs(kind: str) -> Json:
    """The keyword arguments of `build_model_card` for one kind of run."""
    doc = copy.deepcopy(evaluation_doc(kind))
    winner = next(c for c in doc["candidates"] if c["winner"])
    task = Task(doc["task"])
    names = [f["name"] for f in doc["importance"]["features"]]
    card = {"binary": FULL_CARD, "binary_imbalanced": HOSTILE_CARD}.get(kind, {})
    spec = ProblemSpec(
        dataset="fixture",
        target=doc["target"],
        task=task,
        card=card,
        fairness={"sensitive_features": list(doc["fairness"]["features"])}
        if doc.get("fairness")
        else None,
    )
    decision = doc.get("decision") or {}
    schema = ResolvedSchema(
        dataset="fixture",
        task=task,
        target=doc["target"],
        features={n: ColumnType.NUMERIC for n in names},
        excluded={"patient_id": "id-like: a different value in every row"},
        sensitive={
            name: ColumnType.NUMERIC if found.get("kind") == "numeric" else ColumnType.CATEGORICAL
            for name, found in (doc.get("fairness") or {}).get("features", {}).items()
        },
        classes=doc.get("classes"),
        positive_class=decision.get("positive_class"),
        positive_class_reason=decision.get("positive_class_reason"),
    )
    reports = REPORTS.format(dataset=doc["dataset"], run=doc["run_id"])
    entry = {
        "pk": f"MODEL#{doc['dataset']}",
        "sk": "VERSION#000003",
        "dataset": doc["dataset"],
        "version": 3,
        "created_at": "2024-06-01T12:03:00+00:00",
        "stage": "candidate" if doc["gate"]["passed"] else "rejected",
        "stage_reason": doc["gate"]["reason"],
        "task": task.value,
        "target": doc["target"],
        "algorithm": _ALGORITHM.get(winner["algorithm"], winner["algorithm"]),
        "params": winner["params"],
        "search": {"trials": 3, "seconds": 1.25, "cv_score": 0.97, "uri": reports + "search"},
        "metrics": {k: v["value"] for k, v in winner["metrics"].items()},
        "intervals": {k: [v["low"], v["high"]] for k, v in winner["metrics"].items()},
        "positive_class": decision.get("positive_class"),
        "threshold": decision.get("threshold"),
        "top_features": [
            {"name": f["name"], "share": round(0.5 / (i + 1), 4)}
            for i, f in enumerate(doc["importance"]["features"][:5])
        ],
        "primary_metric": doc["primary_metric"],
        "gate": {"passed": doc["gate"]["passed"], "reason": doc["gate"]["reason"]},
        "run_id": doc["run_id"],
        "lineage": {"code_version": "0.1.0+g1234abc"},
        "onnx_sha256": doc["onnx"]["sha256"],
        "artifacts": {
            "model_card_uri": reports + "model_card.json",
            "model_card_report_uri": reports + "model_card.html",
        },
    }
    lineage = {
        "source": {"bucket": "lake", "key": "landing/fixture.csv", "version_id": "3HL4kqtJl"},
        "sha256": "ab" * 32,
        "bytes": 125_631,
        "rows": doc["train_rows"] + doc["holdout_rows"] + 4,
        "format": "csv",
        "raw_uri": "s3://lake/raw/dataset=fixture/dt=2024-06-01/run=r/fixture.csv",
        "collected_at": "2024-06-01T12:00:01+00:00",
    }
    processing = {"rows": doc["train_rows"] + doc["holdout_rows"], "rejected_rows": 3}
    return {
        "entry": entry,
        "spec": spec,
        "schema": schema,
        "lineage": lineage,
        "evaluation": doc,
        "processing": processing,
        "model_artifacts": [
            "s3://lake/models/dataset=fixture/version=000003/model.onnx",
            "s3://lake/models/dataset=fixture/version=000003/manifest.json",
        ],
        "holdout_datasets": ["s3://lake/features/dataset=fixture/run=r/holdout_rows.parquet"],
        "links": {
            "model_card": reports + "model_card.json",
            "model_card_report": reports + "model_card.html",
            "evaluation_report": reports + "evaluation.html",
            "data_profile": reports + "profile.html",
        },
        "generated_at": "2024-06-01T12:03:01+00:00",
    }


@cache
def _card(kind: str) -> Json:
    return build_model_card(**card_inputs(kind))


def model_card_doc(kind: str) -> Json:
    """The card for one kind of run (a fresh copy: tests may change it)."""
    return copy.deepcopy(_card(kind))
