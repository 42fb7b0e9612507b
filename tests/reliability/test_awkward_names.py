"""Any column name works: awkward names through every stage, the ONNX graph, the endpoint
(instances keyed by the original names), the monitor and the reports (`tests/corpus`)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from mlcycle.cli import main
from tests.reliability.conftest import Run

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
RunUpload = Callable[..., Run]
EXCLUDED = "not a feature of the model (excluded in training); ignored"


def _spec(target: str) -> str:
    return f"target: {json.dumps(target)}\ncandidates: [linear]\nrelease: {{bake_seconds: 1}}\n"


def _succeeded(run: Run) -> dict[str, Any]:
    """The run succeeded; its production manifest."""
    assert run.outcome.status == "SUCCEEDED", run.outcome.error
    (manifest,) = (run.out / "lake" / "models").rglob("version=*/manifest.json")
    document: dict[str, Any] = json.loads(manifest.read_text())
    return document


def _predict(run: Run, instances: list[dict[str, Any]], capsys: Any) -> tuple[int, Any]:
    request = run.out.parent / "request.json"
    request.write_text(json.dumps({"instances": instances}))
    code = main(["predict", "--from", str(run.out), str(request)])
    return code, json.loads(capsys.readouterr().out)


def _monitor(run: Run, current: Path, capsys: Any) -> dict[str, Any]:
    assert main(["monitor", "--from", str(run.out), "--current", str(current)]) == 0
    capsys.readouterr()
    (drift,) = (run.out / "lake" / "reports").rglob("monitor/*/drift.json")
    document: dict[str, Any] = json.loads(drift.read_text())
    return document


def _instances(frame: pd.DataFrame, target: str, n: int = 3) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        frame.drop(columns=[target]).head(n).to_json(orient="records")
    )
    return rows


def test_awkward_names_through_every_stage_the_endpoint_and_the_monitor(
    run_upload: RunUpload, capsys: pytest.CaptureFixture[str]
) -> None:
    upload = CORPUS / "awkward-names.csv"
    run = run_upload(upload, spec=_spec("diagnosis (y)"))
    manifest = _succeeded(run)
    data = pd.read_csv(upload)
    # Spaces around a header are stripped, with a note; every other name is kept as it is.
    names = [c.strip() for c in data.columns if c not in ("row id", "constant", "diagnosis (y)")]
    assert run.runs_json("lineage.json")["notes"] == ["stripped spaces around column names"]
    assert list(run.runs_json("schema.json")["features"]) == names
    assert [f["name"] for f in manifest["features"]] == names
    assert all(f["input"] is None for f in manifest["features"])  # the graph takes the names
    assert manifest["excluded"] == ["row id", "constant"]

    # The endpoint: the original names; the excluded columns accepted and named in a warning.
    data.columns = [c.strip() for c in data.columns]
    code, response = _predict(run, _instances(data, "diagnosis (y)"), capsys)
    assert code == 0, response
    assert [p["label"] for p in response["predictions"]] != []
    assert {(w["field"], w["warning"]) for w in response["warnings"]} == {
        ("row id", EXCLUDED),
        ("constant", EXCLUDED),
    }
    code, response = _predict(
        run, [{**_instances(data, "diagnosis (y)", 1)[0], "größe?": 1}], capsys
    )
    assert code == 1
    assert [(p["field"], p["problem"][:13]) for p in response["problems"]] == [
        ("größe?", "unknown field")
    ]

    drift = _monitor(run, upload, capsys)
    assert [f["name"] for f in drift["features"]] == names
    (profile,) = (run.out / "lake" / "reports").rglob("profile.html")
    html = profile.read_text()
    assert "quote&quot;d" in html
    assert "price ($)" in html
    assert "emoji 😀" in html


def test_awkward_names_in_parquet(
    run_upload: RunUpload, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pd.read_csv(CORPUS / "awkward-names.csv")
    buffer = io.BytesIO()
    data.to_parquet(buffer, index=False)
    run = run_upload(buffer.getvalue(), name="awkward.parquet", spec=_spec("diagnosis (y)"))
    manifest = _succeeded(run)
    data.columns = [c.strip() for c in data.columns]
    names = [f["name"] for f in manifest["features"]]
    assert "leading space" in names
    assert "a very long column name " + "x" * 276 in names
    code, response = _predict(run, _instances(data, "diagnosis (y)"), capsys)
    assert code == 0, response
    assert len(response["predictions"]) == 3


def test_names_that_clash_inside_the_pipeline(
    run_upload: RunUpload, capsys: pytest.CaptureFixture[str]
) -> None:
    # `plan`=basic next to `plan_basic`, `d` next to `d__year`, `x` (with missing values)
    # next to `missingindicator_x`, and a target named `__target__`.
    upload = CORPUS / "internal-name-clashes.csv"
    run = run_upload(upload, spec=_spec("__target__"))
    manifest = _succeeded(run)
    data = pd.read_csv(upload)
    assert [f["name"] for f in manifest["features"]] == [
        c for c in data.columns if c != "__target__"
    ]
    (matrix,) = run.zone("features").glob("train.parquet")
    columns = list(pd.read_parquet(matrix).columns)
    # 4 numeric + 1 missing indicator + 2 one-hot + 5 date parts, and the target
    assert len(columns) == 13
    assert len(set(columns)) == 13
    code, response = _predict(run, _instances(data, "__target__"), capsys)
    assert code == 0, response
    assert "warnings" not in response


def test_breast_cancer_with_its_spaced_names(
    run_upload: RunUpload, capsys: pytest.CaptureFixture[str]
) -> None:
    """The known symptom: evaluate_models failed, the graph's inputs were `mean_radius`..."""
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["diagnosis"] = bunch.target.map({0: "malignant", 1: "benign"})
    upload = run_upload(
        frame.to_csv(index=False).encode(), name="breast-cancer.csv", spec=_spec("diagnosis")
    )
    manifest = _succeeded(upload)
    assert [f["name"] for f in manifest["features"]] == list(bunch.feature_names)
    assert upload.runs_json("evaluation.json") is not None
    code, response = _predict(upload, _instances(frame, "diagnosis", 5), capsys)
    assert code == 0, response
    labels = [p["label"] for p in response["predictions"]]
    assert labels == frame["diagnosis"].head(5).tolist()  # an easy table: these are right
    current = upload.out.parent / "current.csv"
    frame.sample(120, random_state=0).to_csv(current, index=False)
    drift = _monitor(upload, current, capsys)
    assert {f["name"] for f in drift["features"]} == set(bunch.feature_names)
    assert "worst concave points" in {f["name"] for f in drift["features"]}
