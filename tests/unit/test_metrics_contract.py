from __future__ import annotations

import pytest

from mlcycle.domain.metrics import evaluation_contract
from mlcycle.errors import SpecError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, Task, parse_spec


def _schema(task: Task) -> ResolvedSchema:
    return ResolvedSchema(dataset="d", task=task, target="y", features={"x": ColumnType.NUMERIC})


def test_contract_for_a_binary_task() -> None:
    spec = parse_spec("dataset: d\ntarget: y\nthreshold: 0.7\n")
    contract = evaluation_contract(spec, _schema(Task.BINARY))
    assert contract["primary_metric"] == "roc_auc"
    assert contract["greater_is_better"] is True
    assert contract["threshold"] == 0.7
    assert contract["report_metrics"] == [
        "accuracy",
        "balanced_accuracy",
        "f1",
        "precision",
        "recall",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
    ]
    assert contract["monitoring"]["psi_threshold"] == 0.2
    assert contract["decision"] == {
        "threshold": "auto",
        "optimize": "f1",
        "costs": None,
        "min_precision": None,
        "min_recall": None,
    }


def test_a_regression_contract_has_no_decision() -> None:
    contract = evaluation_contract(parse_spec("dataset: d\ntarget: y\n"), _schema(Task.REGRESSION))
    assert contract["decision"] is None


def test_contract_for_regression_minimises_rmse() -> None:
    contract = evaluation_contract(parse_spec("dataset: d\ntarget: y\n"), _schema(Task.REGRESSION))
    assert (contract["primary_metric"], contract["greater_is_better"]) == ("rmse", False)
    assert contract["report_metrics"] == ["rmse", "mae", "r2"]


def test_a_threshold_out_of_the_metric_range_is_a_spec_error() -> None:
    spec = parse_spec("dataset: d\ntarget: y\nprimary_metric: roc_auc\nthreshold: 70\n")
    with pytest.raises(SpecError, match=r"threshold: 70\.0 is outside the range of roc_auc"):
        evaluation_contract(spec, _schema(Task.BINARY))
