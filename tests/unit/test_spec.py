from __future__ import annotations

import pytest

from mlcycle.errors import SpecError
from mlcycle.spec import Algorithm, Task, dataset_name, parse_spec


def test_minimal_spec_gets_sensible_defaults() -> None:
    spec = parse_spec("dataset: churn\ntarget: churned\n")
    assert spec.task is Task.AUTO
    assert spec.candidates == list(Algorithm)
    assert spec.holdout_fraction == 0.2
    assert spec.monitoring.psi_threshold == 0.2
    assert spec.metric_for(Task.BINARY) == "roc_auc"
    assert spec.metric_for(Task.REGRESSION) == "rmse"


def test_json_is_accepted_too() -> None:
    spec = parse_spec('{"dataset": "houses", "target": "price", "task": "regression"}')
    assert spec.task is Task.REGRESSION


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("dataset: Churn!\ntarget: y\n", "dataset"),
        ("dataset: churn\n", "target: Field required"),
        ("dataset: churn\ntarget: y\ntask: clustering\n", "task"),
        ("dataset: churn\ntarget: y\nholdout_fraction: 1.5\n", "holdout_fraction"),
        ("dataset: churn\ntarget: y\ncandidates: [svm]\n", "candidates.0"),
        ("dataset: churn\ntarget: y\nfeatures: [a, y]\n", "features: the target 'y'"),
        ("dataset: churn\ntarget: y\nprimary_metric: auc\n", "primary_metric: unknown metric"),
        (
            "dataset: churn\ntarget: y\ntask: regression\nprimary_metric: roc_auc\n",
            "does not apply",
        ),
        ("dataset: churn\ntarget: y\ncolour: blue\n", "colour: Extra inputs"),
        ("- just\n- a list\n", "must be a mapping"),
        ("dataset: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_wrong_spec_names_the_field(text: str, names: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(text, source="specs/churn.yaml")
    assert names in str(error.value)
    assert "specs/churn.yaml" in str(error.value)


def test_metric_that_does_not_fit_the_inferred_task_is_an_error() -> None:
    spec = parse_spec("dataset: churn\ntarget: y\nprimary_metric: rmse\n")
    with pytest.raises(SpecError, match="primary_metric: 'rmse' does not apply"):
        spec.metric_for(Task.BINARY)


@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("landing/penguins.csv", "penguins"),
        ("landing/customer-churn.csv.gz", "customer-churn"),
        ("landing/Sales Data/2024-05.parquet", "sales-data"),
        ("landing/houses/part-1.csv", "houses"),
    ],
)
def test_dataset_name_comes_from_the_folder_or_the_file_stem(key: str, dataset: str) -> None:
    assert dataset_name(key) == dataset


def test_retraining_learns_from_the_upload_and_its_labeled_traffic_by_default() -> None:
    spec = parse_spec("dataset: churn\ntarget: churned\n")
    assert spec.retraining.sources == ["upload", "labeled_traffic"]
    assert (spec.retraining.min_new_labels, spec.retraining.recent_fraction) == (50, 0.3)
    with pytest.raises(SpecError, match=r"retraining\.sources: the upload is the base"):
        parse_spec("dataset: churn\ntarget: churned\nretraining: {sources: [labeled_traffic]}\n")
    with pytest.raises(SpecError, match=r"retraining\.recent_fraction"):
        parse_spec("dataset: churn\ntarget: churned\nretraining: {recent_fraction: 1.0}\n")
