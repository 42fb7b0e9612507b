"""`model_card.json`: valid SageMaker Model Card content (the schema vendored from the SDK, and
what that schema leaves to the SDK's classes), filled from the spec's `card:` and from what
the run measured. Pure: no AWS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from mlcycle.domain.model_card import (
    FACETS,
    HUMAN_FIELDS,
    RISK_RATINGS,
    SECTIONS,
    build_model_card,
)
from mlcycle.spec import ModelCardInfo
from tests.card_fixtures import FULL_CARD, card_inputs, model_card_doc

KINDS = ["binary", "binary_imbalanced", "multiclass", "regression"]
SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data" / "sagemaker_model_card_schema.json").read_text()
)
# sagemaker.model_card.schema_constraints (the SDK's v2 classes)
OBJECTIVE_FUNCTIONS = {"Maximize", "Minimize"}
SDK_FACETS = {"Loss", "Accuracy", "RMSE", "MAE", "AUC"}


def _job(card: dict[str, Any], name: str) -> dict[str, Any]:
    return next(j for j in card["evaluation_details"] if j["name"] == name)


def _group(job: dict[str, Any], name: str) -> dict[str, Any]:
    group = next(g for g in job["metric_groups"] if g["name"] == name)
    return {m["name"]: m["value"] for m in group["metric_data"]}


@pytest.mark.parametrize("kind", KINDS)
def test_the_card_is_valid_sagemaker_model_card_content(kind: str) -> None:
    card = model_card_doc(kind)
    errors = [f"{list(e.path)}: {e.message}" for e in Draft7Validator(SCHEMA).iter_errors(card)]
    assert errors == []
    assert list(card) == list(SECTIONS)
    # what the schema file cannot say (see tests/data/README.md): the SDK's constraints
    objective = card["training_details"]["objective_function"]
    assert set(objective) == {"function", "notes"}
    function = objective["function"]
    assert function["function"] in OBJECTIVE_FUNCTIONS
    assert function.get("facet", "AUC") in SDK_FACETS
    assert len(function["condition"]) <= 63
    assert len(card["model_overview"]["model_artifact"]) <= 15
    assert len(card["training_details"]["training_job_details"]["training_datasets"]) <= 15
    assert all(
        isinstance(v, str) for v in card["additional_information"]["custom_details"].values()
    )
    json.dumps(card, allow_nan=False)  # plain JSON, as CreateModelCard's Content must be


def test_the_mapped_facets_are_the_sdks() -> None:
    assert set(FACETS.values()) <= SDK_FACETS
    assert set(RISK_RATINGS.values()) == set(SCHEMA["definitions"]["risk_rating"]["enum"])
    assert set(RISK_RATINGS) == set(ModelCardInfo.model_fields["risk_rating"].annotation.__args__)


def test_what_people_wrote_goes_to_the_schemas_fields() -> None:
    card = model_card_doc("binary")
    overview, uses = card["model_overview"], card["intended_uses"]
    assert overview["model_owner"] == FULL_CARD["owner"]
    assert overview["model_description"] == FULL_CARD["description"]
    assert uses["purpose_of_model"] == FULL_CARD["purpose"]
    # a list is one string, an item per line (a line break inside an item is a space)
    assert uses["intended_uses"] == "- review queue ordering\n- second reading of archived cases"
    assert uses["risk_rating"] == "High"
    assert uses["explanations_for_risk_rating"] == FULL_CARD["risk_rating_reason"]
    assert card["business_details"] == {
        "business_problem": FULL_CARD["business_problem"],
        "business_stakeholders": FULL_CARD["stakeholders"],
    }
    extra = card["additional_information"]
    assert extra["ethical_considerations"] == FULL_CARD["ethical_considerations"]
    assert extra["caveats_and_recommendations"] == FULL_CARD["caveats"]
    assert extra["custom_details"]["out_of_scope_uses"] == (
        "- diagnosis without a pathologist\n- screening of other tissues"
    )
    # every human field is filled in this spec, and each is where HUMAN_FIELDS says
    sections = {**card, "custom_details": extra["custom_details"]}
    for (section, field), spec_field in HUMAN_FIELDS.items():
        assert sections[section][field], spec_field


def test_what_nobody_wrote_is_absent_not_invented() -> None:
    card = model_card_doc("multiclass")  # a spec without card:
    for section, field in HUMAN_FIELDS:
        holder = (
            card["additional_information"]["custom_details"]
            if section == "custom_details"
            else card[section]
        )
        assert field not in holder, (section, field)
    assert card["intended_uses"]["risk_rating"] == "Unknown"
    assert card["business_details"] == {}
    # the measured fields are there all the same
    assert card["model_overview"]["problem_type"] == "Multiclass Classification"
    assert "judged on" in card["intended_uses"]["factors_affecting_model_efficiency"].lower()


def test_long_text_is_cut_to_the_schemas_limit() -> None:
    description = model_card_doc("binary_imbalanced")["model_overview"]["model_description"]
    assert len(description) == 1024
    assert description.endswith("…")


def test_the_run_measured_facts_are_filled_in() -> None:
    inputs = card_inputs("binary")
    entry, doc = inputs["entry"], inputs["evaluation"]
    card = build_model_card(**inputs)
    overview = card["model_overview"]
    assert overview["problem_type"] == "Binary Classification"
    assert "scikit-learn LogisticRegression" in overview["algorithm_type"]
    assert overview["model_artifact"] == inputs["model_artifacts"]
    assert overview["model_creator"].endswith(entry["lineage"]["code_version"])

    training = card["training_details"]
    assert training["objective_function"]["function"] == {
        "function": "Maximize",
        "facet": "AUC",
        "condition": "roc_auc, 3-fold CV of the training split",
    }
    job = training["training_job_details"]
    assert job["training_datasets"] == [
        inputs["lineage"]["raw_uri"],
        "s3://lake/landing/fixture.csv?versionId=3HL4kqtJl",
    ]
    assert {p["name"]: p["value"] for p in job["hyper_parameters"]} == {
        k: json.dumps(v) for k, v in entry["params"].items()
    }
    assert job["training_metrics"][0] == {
        "name": "cross-validated roc_auc",
        "value": 0.97,
        "notes": "mean over 3 folds of the training split",
    }
    assert f"Trained on {doc['train_rows']:,} rows" in training["training_observations"]

    holdout = _job(card, "holdout metrics")
    assert holdout["datasets"] == inputs["holdout_datasets"]
    assert holdout["metric_groups"][0]["name"] == "roc_auc"  # primary first
    for name, value in entry["metrics"].items():
        low, high = entry["intervals"][name]
        assert _group(holdout, name) == {
            "value": value,
            "low": low,
            "high": high,
            "baseline": doc["baseline"][name],
        }

    decision = _job(card, "decision")["metric_groups"][0]["metric_data"]
    threshold, positive = decision[0], decision[1]
    assert threshold["value"] == entry["threshold"] == doc["decision"]["threshold"]
    assert threshold["notes"] == doc["decision"]["threshold_source"]
    assert positive["value"] == doc["decision"]["positive_class"]
    assert positive["notes"] == doc["decision"]["positive_class_reason"]

    gate = _job(card, "gate")
    assert gate["evaluation_observation"] == f"PASSED: {doc['gate']['reason']}"
    checks = _group(gate, "checks")
    assert checks["gate passed"] is True
    assert all(checks[c["name"]] == c["passed"] for c in doc["gate"]["checks"])

    (chart,) = _job(card, "explanations")["metric_groups"][0]["metric_data"]
    assert chart["type"] == "bar_chart"
    assert chart["x_axis_name"] == [f["name"] for f in entry["top_features"]]
    assert chart["value"] == [f["share"] for f in entry["top_features"]]

    details = card["additional_information"]["custom_details"]
    assert details["model_name"] == entry["dataset"]
    assert details["model_version"] == "3"
    assert details["data_sha256"] == "ab" * 32
    assert details["data_rows"] == str(inputs["lineage"]["rows"])
    assert details["train_rows"] == str(doc["train_rows"])
    assert details["holdout_rows"] == str(doc["holdout_rows"])
    assert details["rejected_rows"] == "3"
    assert details["excluded_columns"] == "patient_id: id-like: a different value in every row"
    assert details["positive_class"] == doc["decision"]["positive_class"]
    assert details["evaluation_report_uri"].endswith("/evaluation.html")
    assert details["model_card_report_uri"].endswith("/model_card.html")


def test_a_rejected_model_and_its_comparison_with_production() -> None:
    inputs = card_inputs("binary_imbalanced")
    card = build_model_card(**inputs)
    gate = _job(card, "gate")
    assert gate["evaluation_observation"].startswith("REJECTED: ")
    assert _group(gate, "checks")["gate passed"] is False
    comparison = _group(gate, "paired comparison with production v2")
    assert comparison["probability of improving"] == 0.78
    assert card["additional_information"]["custom_details"]["stage_at_registration"] == "rejected"


def test_regression_has_no_decision_and_minimizes_its_error() -> None:
    card = model_card_doc("regression")
    names = [j["name"] for j in card["evaluation_details"]]
    assert "decision" not in names
    function = card["training_details"]["objective_function"]["function"]
    assert (function["function"], function["facet"]) == ("Minimize", "RMSE")
    assert "Ridge" in card["model_overview"]["algorithm_type"]


def test_fairness_from_the_evaluation_is_in_the_card() -> None:
    inputs = card_inputs("binary_imbalanced")
    fairness = inputs["evaluation"]["fairness"]
    card = build_model_card(**inputs)
    jobs = {j["name"]: j for j in card["evaluation_details"] if j["name"].startswith("fairness")}
    assert set(jobs) == {f"fairness: {f}" for f in fairness["features"]}
    clinic = jobs["fairness: clinic"]
    found = fairness["features"]["clinic"]
    assert clinic["metadata"]["reference_group"] == found["reference_group"]
    assert [g["name"] for g in clinic["metric_groups"]] == [g["group"] for g in found["groups"]]
    for measure in found["measures"]:
        row = _group(clinic, measure["group"])
        for name in ("DI", "DPPL", "CI", "DPL"):
            if measure.get(name) is not None:
                assert row[name] == measure[name], (measure["group"], name)
    for group in found["groups"]:
        row = _group(clinic, group["group"])
        assert row["count"] == group["count"]
        assert row["selection_rate"] == group["selection_rate"]
        assert row["small"] is group["small"]
    # each feature's job says its own violations (they name the group and the value)
    for v in fairness["violations"]:
        for name, job in jobs.items():
            said = v["reason"] in job["evaluation_observation"]
            assert said is (name == f"fairness: {v['feature']}"), (name, v["reason"])
    assert "fairness" not in card["additional_information"]["custom_details"]


def test_multiclass_fairness_keeps_each_class_rate() -> None:
    card = model_card_doc("multiclass")
    (job,) = [j for j in card["evaluation_details"] if j["name"].startswith("fairness")]
    names = {m["name"] for g in job["metric_groups"] for m in g["metric_data"]}
    assert {"selection_rates barolo", "DPPL grignolino", "accuracy_difference"} <= names


def test_without_fairness_the_card_says_it_was_not_evaluated() -> None:
    inputs = card_inputs("binary")
    del inputs["evaluation"]["fairness"]
    card = build_model_card(**inputs)
    assert not [j for j in card["evaluation_details"] if j["name"].startswith("fairness")]
    assert card["additional_information"]["custom_details"]["fairness"].startswith("not evaluated")
    assert Draft7Validator(SCHEMA).is_valid(card)


def test_a_run_from_before_explanations_and_decisions_still_has_a_card() -> None:
    inputs = card_inputs("binary")
    inputs["entry"]["top_features"] = []
    inputs["entry"]["search"] = {}
    for key in ("decision", "parity", "fairness"):
        del inputs["evaluation"][key]
    card = build_model_card(**inputs)
    names = [j["name"] for j in card["evaluation_details"]]
    assert names == ["holdout metrics", "candidates", "gate"]
    assert Draft7Validator(SCHEMA).is_valid(card)
