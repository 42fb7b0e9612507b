"""Stage 9 end to end under moto: releases, drift, alarms, retraining, late labels."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcycle.adapters.registry import Registry
from mlcycle.cli import main
from mlcycle.lake_layout import version_prefix
from mlcycle.local.commands import drifted_customers
from mlcycle.local.operations import monitor_local, send_traffic
from mlcycle.local.runner import (
    RunOutcome,
    deliver_events,
    follow_execution,
    local_aws,
    run_local,
)
from mlcycle.samples import customer_churn
from mlcycle.serving.manifest import ONNX_FILE
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.slow
DATASET = "customer-churn"


def _churn_run(out: Path, tmp_path: Path, **spec_changes: object) -> RunOutcome:
    spec = yaml.safe_load((EXAMPLES / "customer-churn.yaml").read_text())
    # one candidate, one trial: these tests are about releases, not the search
    spec.update(
        release={"bake_seconds": 1, "max_waits": 1},
        candidates=["linear"],
        search={"trials": 1},
        **spec_changes,
    )
    spec_file = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    data = tmp_path / "customer-churn.csv"
    customer_churn(3000, seed=len(list(tmp_path.glob("spec-*")))).to_csv(data, index=False)
    return run_local(data, spec_file=spec_file, out_dir=out)


def _items(out: Path) -> list[dict[str, Any]]:
    return list(json.loads((out / "registry.json").read_text()))


def _registry(out: Path) -> dict[int, str]:
    return {i["version"]: i["stage"] for i in _items(out) if str(i["sk"]).startswith("VERSION#")}


def test_first_model_to_production_and_a_worse_one_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    first = _churn_run(out, tmp_path)
    assert (first.model_version, first.model_stage) == (1, "production")
    worse = _churn_run(out, tmp_path, threshold=0.99)  # no model reaches it: gate fails
    assert worse.status == "SUCCEEDED"
    assert (worse.model_version, worse.model_stage) == (2, "rejected")
    assert worse.gate["passed"] is False
    assert "below the threshold 0.990" in worse.gate["reason"]
    assert _registry(out) == {1: "production", 2: "rejected"}

    # By hand: the registry lists both; a rejected model cannot be promoted, and with no
    # earlier version there is nothing to roll back to.
    assert main(["models", "--from", str(out)]) == 0
    listed = capsys.readouterr().out
    assert "customer-churn │ 2       │ rejected" in listed
    assert main(["promote", "--from", str(out), "customer-churn", "2"]) == 1
    assert "v2 of customer-churn was rejected by its gate" in capsys.readouterr().out
    assert main(["rollback", "--from", str(out), "customer-churn"]) == 1
    assert "no earlier version to roll back to" in capsys.readouterr().out
    assert _registry(out) == {1: "production", 2: "rejected"}


def test_drift_retrains_on_the_labeled_traffic_and_the_retrained_model_wins_where_it_changed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    assert _churn_run(out, tmp_path).model_stage == "production"

    # The world moves: prices up, customers newer, everyone on the basic plan, and high bills
    # now drive churn (`mlcycle simulate-drift`'s world); the labels arrive later.
    world = drifted_customers(1000)
    traffic = world.drop(columns=["customer_id", "churned"])
    outcome = monitor_local(out, "customer-churn", current=traffic, labels=world["churned"])

    assert outcome.summary["alarm"] is True
    assert {"monthly_charges", "tenure_months", "plan"} <= set(outcome.summary["drifted_features"])
    fired = {a.name for a in outcome.alarms if a.state == "ALARM"}
    assert "mlcycle-dev-retrain-customer-churn-drift" in fired
    (retrain,) = outcome.retraining
    assert retrain.status == "SUCCEEDED"
    assert retrain.run_id.startswith("customer-churn-retrain-")
    assert retrain.model_version == 2
    assert retrain.gate is not None
    assert retrain.gate["passed"], retrain.gate

    # v2 learned from the upload and the older 70% of the labeled traffic, and was judged on
    # the newest 30%, which neither model trained on: there it beats v1.
    (v2,) = [i for i in _items(out) if i.get("sk") == "VERSION#000002"]
    lineage = v2["lineage"]
    assert lineage["source"]["key"] == "landing/customer-churn.csv"
    assert (lineage["traffic"]["rows"], lineage["traffic"]["recent_rows"]) == (700, 300)
    assert lineage["traffic"]["trained_on"]["rows"] == 700
    assert lineage["traffic"]["requests"] == 1000
    evaluation = json.loads(
        Path(out, retrain.reports["evaluation"]).with_suffix(".json").read_text()
    )
    recent = evaluation["recent"]
    assert (recent["rows"], recent["production_version"], recent["passed"]) == (300, 1, True)
    assert recent["comparison"]["difference"] > 0
    assert recent["comparison"]["low"] > 0, recent["comparison"]  # credibly better there
    assert "on the 300 most recent labeled requests" in retrain.gate["reason"]
    assert "no worse than production v1" in retrain.gate["reason"]
    page = Path(out, retrain.reports["evaluation"]).read_text()
    assert "On the most recent labeled traffic" in page
    assert "Against production" in page

    # More drifted traffic, no labels and no upload: nothing new to learn, so nothing trains.
    quiet = monitor_local(
        out,
        "customer-churn",
        current=drifted_customers(200, seed=5).drop(columns=["customer_id", "churned"]),
    )
    assert any(a.state == "ALARM" for a in quiet.alarms)
    assert quiet.retraining == []
    assert quiet.retraining_decision is not None
    assert quiet.retraining_decision["status"] == "skipped"
    assert quiet.retraining_decision["reason"].startswith(
        "retraining skipped: no new data since v2"
    )
    assert _registry(out) == {1: "archived", 2: "production"}

    # the first monitor's report (the second is the quiet one's)
    reports = sorted((out / "lake" / "reports" / "dataset=customer-churn" / "monitor").glob("*"))
    drift = json.loads((reports[0] / "drift.json").read_text())
    assert drift["live"]["n_labels"] == 1000
    assert 0.5 < drift["live"]["metrics"]["roc_auc"] <= 1.0
    # the estimate from calibrated probabilities (CBPE), published and alarmed on, beside the
    # realized metric; this world's concept moved too, so it is not expected to track it here
    estimate = drift["performance_estimate"]
    assert (estimate["metric"], estimate["rows"]) == ("roc_auc", 1000)
    assert estimate["labelled"]["rows"] == 1000
    assert estimate["labelled"]["realized"] == pytest.approx(drift["live"]["metrics"]["roc_auc"])
    assert "mlcycle-dev-retrain-customer-churn-estimated-quality" in {
        a.name for a in outcome.alarms if a.value is not None
    }
    assert (reports[0] / "drift.html").read_text().count("<img") >= 3
    # what the model relies on, live (a seeded 200 of the 400 captured requests) against the
    # holdout's attribution the evaluation stage stored in the monitor baseline
    attribution = drift["attribution"]
    assert (attribution["rows"], attribution["window_rows"]) == (200, 1000)
    assert attribution["reference_rows"] > 0
    for side in ("reference", "live"):
        assert sum(f[side] for f in attribution["features"]) == pytest.approx(1.0)
    assert attribution["top_live"]
    assert attribution["top_reference"]
    assert (
        "What the model relies on, live against training" in (reports[0] / "drift.html").read_text()
    )


def _canary_with_traffic(
    tmp_path: Path, *, break_canary: bool
) -> tuple[RunOutcome, list[int], dict[str, Any]]:
    """v1 in production, then v2 (the same rows again: it ties v1 and passes its gate) as a
    canary for half the clients while 80 requests arrive; optionally its artifact breaks."""
    out = tmp_path / "out"
    assert _churn_run(out, tmp_path).model_stage == "production"
    spec = yaml.safe_load((EXAMPLES / "customer-churn.yaml").read_text())
    spec["release"] = {
        "bake_seconds": 8,
        "max_waits": 2,
        "canary_weight": 0.5,
        "min_requests": 20,
        "max_latency_ratio": 50,  # a shared test machine's latency is no evidence
    }
    # as v1 was trained: the same rows make the same model
    spec.update(candidates=["linear"], search={"trials": 1})
    with local_aws(out) as aws:
        s3 = aws.session.client("s3")
        bucket = aws.deployment.lake_bucket
        s3.put_object(Bucket=bucket, Key="specs/customer-churn.yaml", Body=yaml.safe_dump(spec))
        data = (tmp_path / "customer-churn.csv").read_bytes()
        s3.put_object(Bucket=bucket, Key="landing/customer-churn.csv", Body=data)
        (execution_arn,) = deliver_events(aws.deployment, aws.session)
        followed: dict[str, RunOutcome] = {}
        follower = threading.Thread(
            target=lambda: followed.update(
                run=follow_execution(aws.deployment, aws.session, execution_arn, DATASET, None)
            )
        )
        follower.start()
        registry = Registry(aws.session.client("dynamodb"), aws.deployment.registry_table)
        deadline = time.monotonic() + 300
        while (registry.get_release(DATASET) or {}).get("canary_version") != 2:
            assert follower.is_alive(), f"the run ended before its canary: {followed}"
            assert time.monotonic() < deadline, "the canary never started"
            time.sleep(0.2)
        if break_canary:  # it no longer matches its manifest's checksum
            s3.put_object(Bucket=bucket, Key=version_prefix(DATASET, 2) + ONNX_FILE, Body=b"x")
        statuses: list[int] = []
        traffic = customer_churn(80, seed=8).drop(columns=["customer_id", "churned"])
        send_traffic(aws, DATASET, traffic, statuses=statuses)
        follower.join(timeout=300)
    run = followed["run"]
    canary = json.loads(
        next((out / "lake" / "runs").rglob(f"run={run.run_id}/canary.json")).read_text()
    )
    assert _registry(out)[1] == ("archived" if not break_canary else "production")
    return run, statuses, canary


def test_a_healthy_canary_with_live_traffic_is_promoted(tmp_path: Path) -> None:
    run, statuses, canary = _canary_with_traffic(tmp_path, break_canary=False)
    assert set(statuses) == {200}
    assert (run.status, run.model_version, run.model_stage) == ("SUCCEEDED", 2, "production")
    assert canary["decision"] == "promote"
    assert canary["canary"]["requests"] >= 20
    assert canary["production"]["requests"] >= 20
    assert "within every limit" in canary["reason"]


def test_a_canary_whose_errors_rise_is_rolled_back(tmp_path: Path) -> None:
    run, statuses, canary = _canary_with_traffic(tmp_path, break_canary=True)
    # Clients routed to the canary got a clear 503; the others were served by production.
    assert set(statuses) == {200, 503}
    assert (run.status, run.model_version, run.model_stage) == ("SUCCEEDED", 2, "rolled_back")
    assert canary["decision"] == "rollback"
    assert "error rate 100.0% against production's 0.0%" in canary["reason"]
