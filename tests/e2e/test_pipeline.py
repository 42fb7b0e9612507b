"""The whole lifecycle, run by the synthesized state machine under moto, per task type."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
from palmerpenguins import load_penguins
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from mlcycle.cli import main
from mlcycle.local.runner import RunOutcome, run_local
from mlcycle.local.serve import LocalEndpoint
from tests.conftest import EXAMPLES, LIFECYCLE_STAGES

pytestmark = pytest.mark.slow

ALL_STAGES = LIFECYCLE_STAGES


def _run_dir(outcome: RunOutcome, zone: str) -> Path:
    matches = list(Path(outcome.out_dir, "lake", zone).glob(f"dataset=*/**/run={outcome.run_id}"))
    assert len(matches) == 1, matches
    return matches[0]


def _assert_succeeded(outcome: RunOutcome, *, canary: bool = False) -> None:
    assert outcome.status == "SUCCEEDED", outcome.error
    assert [s.name for s in outcome.stages] == ALL_STAGES + (["judge_canary"] if canary else [])
    assert all(s.status == "SUCCEEDED" and s.seconds is not None for s in outcome.stages)
    run_json = json.loads(Path(outcome.out_dir, "run.json").read_text())
    assert run_json["status"] == "SUCCEEDED"
    assert run_json["model_version"] == outcome.model_version


def test_binary_churn_matches_a_careful_scikit_learn_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = run_local(
        EXAMPLES / "customer-churn.csv",
        spec_file=EXAMPLES / "customer-churn.yaml",  # with a card: of what people know
        trials=1,  # the defaults: tests/e2e/test_decisions.py runs a search end to end
        out_dir=tmp_path,
    )
    _assert_succeeded(outcome)
    assert (outcome.task, outcome.target) == ("binary", "churned")
    assert outcome.gate == {"passed": True, "reason": outcome.gate["reason"]}
    assert (outcome.model_version, outcome.model_stage) == (1, "production")
    winner_auc = outcome.winner["metrics"]["roc_auc"]

    # A data scientist's own model on the very same split: the pipeline must be in line.
    features = _run_dir(outcome, "features")
    train = pd.read_parquet(features / "train_rows.parquet")
    holdout = pd.read_parquet(features / "holdout_rows.parquet")
    columns = [c for c in train.columns if c not in ("churned", "signup_date")]
    reference = HistGradientBoostingClassifier(random_state=0, categorical_features="from_dtype")
    to_model = lambda f: f[columns].astype(  # noqa: E731
        {c: "category" for c in columns if not pd.api.types.is_numeric_dtype(f[c])}
    )
    reference.fit(to_model(train), train["churned"])
    reference_auc = roc_auc_score(
        holdout["churned"] == "yes", reference.predict_proba(to_model(holdout))[:, 1]
    )
    assert winner_auc >= reference_auc - 0.02, (winner_auc, reference_auc)

    # The reports a data scientist opens, and the lineage the registry keeps.
    report = Path(outcome.out_dir, outcome.reports["profile"]).read_text()
    assert "monthly_charges" in report
    assert "<img" in report
    schema = json.loads((_run_dir(outcome, "runs") / "schema.json").read_text())
    assert schema["excluded"]["customer_id"].startswith("id-like")
    registry = json.loads(Path(outcome.out_dir, "registry.json").read_text())
    version = next(item for item in registry if item["sk"] == "VERSION#000001")
    assert version["lineage"]["source"]["key"] == "landing/customer-churn.csv"
    assert len(version["lineage"]["sha256"]) == 64

    # The version explains its predictions: exact Shapley values over every feature.
    assert version["artifacts"]["background_uri"].endswith("/background.json")
    request = (EXAMPLES / "predict-request.json").read_text()
    with LocalEndpoint(Path(outcome.out_dir)) as endpoint:
        _, predicted = endpoint.request("POST", "/v1/models/customer-churn:predict", request)
        status, explained = endpoint.request("POST", "/v1/models/customer-churn:explain", request)
    assert status == 200, explained
    features = json.loads((_run_dir(outcome, "runs") / "schema.json").read_text())["features"]
    for explanation, prediction in zip(
        explained["explanations"], predicted["predictions"], strict=True
    ):
        assert explanation["label"] == prediction["label"]
        assert set(explanation["contributions"]) == set(features)
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - explanation["output"]) <= 1e-6

    # The version's model card: linked from the registry, the endpoint and `mlcycle models`.
    card_uri = version["artifacts"]["model_card_uri"]
    page_uri = version["artifacts"]["model_card_report_uri"]
    reports = _run_dir(outcome, "reports")  # beside the evaluation report and the profile
    key = reports.relative_to(Path(outcome.out_dir, "lake")).as_posix()
    assert card_uri.endswith(f"/{key}/model_card.json")
    assert page_uri.endswith(f"/{key}/model_card.html")
    card = json.loads((reports / "model_card.json").read_text())
    details = card["additional_information"]["custom_details"]
    assert (details["model_name"], details["model_version"]) == ("customer-churn", "1")
    assert card["model_overview"]["model_owner"] == "retention-team"
    assert card["intended_uses"]["risk_rating"] == "Low"
    assert details["data_sha256"] == version["lineage"]["sha256"]
    assert details["excluded_columns"].startswith("customer_id: id-like")
    holdout = card["evaluation_details"][0]
    roc_auc = next(g for g in holdout["metric_groups"] if g["name"] == "roc_auc")
    assert roc_auc["metric_data"][0]["value"] == version["metrics"]["roc_auc"]
    page = (reports / "model_card.html").read_text()
    assert "retention-team" in page
    assert "check drift before trusting it elsewhere" in page  # the spec's caveats
    assert "not stated in the spec" not in page  # the demo's card: fills every field
    for neighbour in ("evaluation.html", "profile.html", "model_card.json"):
        assert f'<a href="{neighbour}">' in page
        assert (reports / neighbour).is_file()
    with LocalEndpoint(Path(outcome.out_dir)) as endpoint:
        status, described = endpoint.request("GET", "/v1/models/customer-churn")
    assert status == 200, described
    assert described["model_card"] == {"json": card_uri, "html": page_uri}
    index = Path(outcome.out_dir, "index.html").read_text()
    assert "/model_card.html" in index
    capsys.readouterr()
    assert main(["models", "--from", str(outcome.out_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"customer-churn v1 model card: {reports / 'model_card.html'}" in printed


def test_multiclass_penguins_with_missing_values(tmp_path: Path) -> None:
    data = tmp_path / "penguins.csv"
    load_penguins().to_csv(data, index=False)
    outcome = run_local(data, target="species", trials=1, out_dir=tmp_path / "out")
    _assert_succeeded(outcome)
    assert outcome.task == "multiclass"
    assert outcome.winner["metrics"]["balanced_accuracy"] > 0.95
    assert outcome.model_stage == "production"
    # the monitor's estimate before labels: every class's probability calibrated on the holdout
    baseline = json.loads((_run_dir(outcome, "models") / "monitor_baseline.json").read_text())
    calibration = baseline["performance_estimation"]
    penguins = {"Adelie", "Chinstrap", "Gentoo"}
    assert set(calibration["calibrators"]) == set(calibration["classes"]) == penguins
    assert calibration["rows"] > 0


def test_regression_inferred_from_a_numeric_target_on_gzip_input(tmp_path: Path) -> None:
    data = tmp_path / "charges.csv.gz"
    data.write_bytes(gzip.compress((EXAMPLES / "customer-churn.csv").read_bytes()))
    outcome = run_local(data, target="monthly_charges", trials=1, out_dir=tmp_path / "out")
    _assert_succeeded(outcome)
    assert outcome.task == "regression"
    assert set(outcome.winner["metrics"]) == {"rmse", "mae", "r2"}
    assert outcome.winner["metrics"]["r2"] > 0.5
    baseline = json.loads((_run_dir(outcome, "models") / "monitor_baseline.json").read_text())
    assert baseline["performance_estimation"] is None  # regression is not estimated


def test_a_second_run_is_compared_with_production_and_versioned(tmp_path: Path) -> None:
    data = tmp_path / "penguins.csv"
    penguins = load_penguins()
    penguins.to_csv(data, index=False)
    first = run_local(data, target="species", trials=1, out_dir=tmp_path / "out")
    penguins.sample(frac=1.0, random_state=3).to_csv(data, index=False)  # a new object version
    second = run_local(data, target="species", trials=1, out_dir=tmp_path / "out")
    _assert_succeeded(second, canary=True)
    assert (first.model_version, second.model_version) == (1, 2)
    assert "production v1" in second.gate["reason"]
    # No traffic reached the local canary while it baked: promoted on its offline evaluation.
    assert second.model_stage == "production"
    registry = json.loads(Path(second.out_dir, "registry.json").read_text())
    stages = {item["version"]: item["stage"] for item in registry if "version" in item}
    assert stages == {1: "archived", 2: "production"}


def test_a_malformed_upload_fails_clearly_and_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "broken.csv"
    data.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    code = main(
        ["run", str(data), "--target", "y", "--trials", "1", "--out", str(tmp_path / "out")]
    )
    printed = capsys.readouterr().out
    assert code == 1
    assert "FAILED at collect_data: BadInputError:" in printed
    assert "Traceback" not in printed
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_json["status"] == "FAILED"
    assert run_json["error"]["stage"] == "collect_data"
    assert run_json["error"]["type"] == "BadInputError"
    statuses = {s["name"]: s["status"] for s in run_json["stages"]}
    assert statuses["define_problem"] == "SUCCEEDED"
    assert statuses["collect_data"] == "FAILED"
    assert statuses["process_data"] == "NOT_RUN"
    kept = list((tmp_path / "out" / "lake" / "quarantine").rglob("broken.csv"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == data.read_bytes()
    error = json.loads((kept[0].parent / "error.json").read_text())
    assert error["message"] == run_json["error"]["message"]
