"""The spec's decision, search and gate sections, and the positive class of a binary target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlcycle.domain.process import resolve_schema
from mlcycle.errors import BadInputError, SpecError
from mlcycle.spec import (
    Costs,
    DecisionPolicy,
    GatePolicy,
    Objective,
    ProblemSpec,
    SearchPolicy,
    parse_spec,
)

BASE = "dataset: churn\ntarget: label\n"


def parse(extra: str) -> ProblemSpec:
    return parse_spec(BASE + extra)


def error_of(extra: str) -> str:
    with pytest.raises(SpecError) as info:
        parse(extra)
    return str(info.value)


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_as_documented():
    spec = parse("")
    assert spec.decision == DecisionPolicy()
    assert spec.decision.threshold == "auto"
    assert spec.decision.optimize is Objective.F1
    assert spec.decision.costs is None
    assert spec.decision.min_precision is None
    assert spec.decision.min_recall is None
    assert spec.search == SearchPolicy(trials=4, budget_seconds=300, cv_folds=3, max_rows=50_000)
    assert spec.gate == GatePolicy(min_improvement=0.0, confidence=None)
    assert spec.positive_class is None


def test_a_full_decision_section_parses():
    spec = parse(
        "decision:\n"
        "  optimize: cost\n"
        "  costs: {false_positive: 1, false_negative: 25, true_positive: -2}\n"
        "  min_recall: 0.6\n"
        "search: {trials: 12, budget_seconds: 120, cv_folds: 5, max_rows: 5000}\n"
        "gate: {min_improvement: 0.01, confidence: 0.9}\n"
        "positive_class: churned\n"
    )
    assert spec.decision.optimize is Objective.COST
    assert spec.decision.costs == Costs(false_positive=1, false_negative=25, true_positive=-2)
    assert spec.decision.costs.true_negative == 0.0
    assert spec.decision.min_recall == 0.6
    assert spec.search.trials == 12
    assert spec.search.cv_folds == 5
    assert spec.gate.confidence == 0.9
    assert spec.gate.min_improvement == 0.01
    assert spec.positive_class == "churned"


def test_a_numeric_threshold_is_kept_as_a_number():
    spec = parse("decision: {threshold: 0.3}")
    assert spec.decision.threshold == 0.3
    assert not isinstance(spec.decision.threshold, str)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("decision: {optimize: cost}", "optimize: cost needs the costs of each outcome"),
        ("decision: {threshold: 1.5}", "decision.threshold: 1.5 must be between 0 and 1"),
        ("decision: {threshold: 0}", "must be between 0 and 1 (or auto)"),
        ("decision: {threshold: 1}", "must be between 0 and 1 (or auto)"),
        ("decision: {threshold: high}", "decision.threshold"),
        ("decision: {costs: {false_positive: 0}}", "every cost is 0"),
        ("decision: {costs: {false_postive: 1}}", "decision.costs.false_postive"),
        ("decision: {optimise: f1}", "decision.optimise: Extra inputs are not permitted"),
        ("decision: {optimize: accuracy}", "decision.optimize"),
        ("decision: {min_precision: 0}", "decision.min_precision: Input should be greater than 0"),
        ("decision: {min_recall: 1.2}", "decision.min_recall"),
        ("search: {trials: 0}", "search.trials: Input should be greater than or equal to 1"),
        ("search: {trials: 500}", "search.trials"),
        ("search: {budget_seconds: 900}", "search.budget_seconds"),
        ("search: {budget_seconds: 0}", "search.budget_seconds"),
        ("search: {cv_folds: 1}", "search.cv_folds"),
        ("search: {max_rows: 10}", "search.max_rows"),
        ("search: {trails: 3}", "search.trails: Extra inputs are not permitted"),
        ("gate: {confidence: 0.4}", "gate.confidence"),
        ("gate: {confidence: 1}", "gate.confidence"),
        ("gate: {min_improvement: -0.1}", "gate.min_improvement"),
        ("gate: {confidense: 0.9}", "gate.confidense: Extra inputs are not permitted"),
    ],
)
def test_invalid_sections_name_the_field(extra, expected):
    message = error_of(extra)
    assert message.startswith("spec is invalid: ")
    assert expected in message


def test_costs_without_optimize_cost_are_accepted_but_must_not_all_be_zero():
    spec = parse("decision: {costs: {false_negative: 3}}")
    assert spec.decision.optimize is Objective.F1
    assert spec.decision.costs == Costs(false_negative=3)
    assert "every cost is 0" in error_of("decision: {costs: {}}")


def test_a_decision_error_names_its_field_once():
    message = error_of("decision: {optimize: cost}")
    assert "decision: decision." not in message


# --- the positive class -----------------------------------------------------------------------


def spec(**fields: object) -> ProblemSpec:
    return ProblemSpec.model_validate({"dataset": "test", "target": "label", **fields})


def labelled(labels: object, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "label": labels})


IDX = np.arange(60)


@pytest.mark.parametrize("as_arrow", [False, True])
def test_the_positive_class_defaults_to_the_minority(as_arrow):
    df = labelled(np.where(IDX % 10 == 0, "no", "yes"))  # "no" is the rare, first label
    data = pa.Table.from_pandas(df, preserve_index=False) if as_arrow else df
    schema = resolve_schema(data, spec())
    assert schema.classes == ["no", "yes"]
    assert schema.positive_class == "no"
    assert schema.positive_class_reason == "the minority class (10.0% of the rows)"


def test_the_minority_may_be_the_second_label():
    schema = resolve_schema(labelled(np.where(IDX % 3 == 0, "yes", "no")), spec())
    assert schema.positive_class == "yes"
    assert schema.positive_class_reason == "the minority class (33.3% of the rows)"


def test_numeric_and_boolean_targets_name_their_minority():
    ints = resolve_schema(labelled(np.where(IDX % 4 == 0, 1, 0)), spec())
    assert (ints.classes, ints.positive_class) == (["0", "1"], "1")
    assert ints.positive_class_reason == "the minority class (25.0% of the rows)"
    bools = resolve_schema(labelled(IDX % 4 != 0), spec())
    assert (bools.classes, bools.positive_class) == (["false", "true"], "false")


def test_the_share_counts_only_labelled_rows():
    # 15 rows "yes", 9 rows without a label, 36 rows "no": 15 / 51
    labels = pd.Series(
        ["yes" if i % 4 == 0 else None if i % 5 == 0 else "no" for i in range(60)], dtype="object"
    )
    schema = resolve_schema(labelled(labels), spec())
    assert schema.positive_class == "yes"
    assert schema.positive_class_reason == "the minority class (29.4% of the rows)"


def test_the_spec_positive_class_wins_over_the_minority():
    df = labelled(np.where(IDX % 10 == 0, "no", "yes"))
    schema = resolve_schema(df, spec(positive_class="yes"))
    assert schema.positive_class == "yes"
    assert schema.positive_class_reason == "set in the spec"


def test_balanced_classes_keep_the_second_label():
    schema = resolve_schema(labelled(np.where(IDX % 2 == 0, "a", "b")), spec())
    assert schema.positive_class == "b"
    assert schema.positive_class_reason == "the classes are balanced: the second in sorted order"


def test_a_positive_class_that_is_not_a_class_is_refused():
    with pytest.raises(BadInputError, match="positive_class 'maybe' is not a class"):
        resolve_schema(labelled(np.where(IDX % 2 == 0, "no", "yes")), spec(positive_class="maybe"))


def test_a_positive_class_on_a_multiclass_target_is_refused():
    with pytest.raises(BadInputError, match="applies to binary tasks only"):
        resolve_schema(labelled(np.array(["a", "b", "c"])[IDX % 3]), spec(positive_class="a"))


def test_regression_and_multiclass_have_no_positive_class():
    multi = resolve_schema(labelled(np.array(["a", "b", "c"])[IDX % 3]), spec())
    assert multi.positive_class is None
    assert multi.positive_class_reason is None
    reg = resolve_schema(labelled(np.linspace(0, 1, 60)), spec(task="regression"))
    assert reg.positive_class is None
