"""Request validation and input building: every bad-request kind names instance and field."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from mlcycle.serving.errors import MAX_PROBLEMS, InvalidRequestError
from mlcycle.serving.inputs import InputBuilder, days_since_epoch, parse_instances
from mlcycle.serving.manifest import FeatureSpec, Manifest

MANIFEST = Manifest(
    model="churn",
    version=3,
    task="binary",
    target="churned",
    features=[
        FeatureSpec("tenure", "numeric"),
        FeatureSpec("plan", "categorical", ["basic", "premium"]),
        FeatureSpec("signup", "datetime"),
    ],
    onnx_sha256="0" * 64,
    classes=["no", "yes"],
)
GOOD = {"tenure": 12, "plan": "basic", "signup": "2024-01-02"}
BUILDER = InputBuilder(MANIFEST)


def problems_of(instances: list[Any]) -> list[tuple[int | None, str | None]]:
    with pytest.raises(InvalidRequestError) as caught:
        BUILDER.build(instances)
    assert caught.value.status == 400
    return [(p.instance, p.field) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("instance", "field", "words"),
    [
        ({**GOOD, "tenure": "abc"}, "tenure", "expected a number, got string 'abc'"),
        ({**GOOD, "tenure": True}, "tenure", "expected a number, got boolean true"),
        ({**GOOD, "tenure": [1]}, "tenure", "expected a number, got array"),
        ({**GOOD, "tenure": math.nan}, "tenure", "expected a finite number"),
        ({**GOOD, "tenure": math.inf}, "tenure", "expected a finite number"),
        ({**GOOD, "tenure": 1e39}, "tenure", "outside the float32 range"),
        ({k: v for k, v in GOOD.items() if k != "plan"}, "plan", "missing feature"),
        ({**GOOD, "colour": "red"}, "colour", "unknown field"),
        ({**GOOD, "plan": 1.5}, "plan", "expected a string, got number 1.5"),
        ({**GOOD, "plan": False}, "plan", "expected a string, got boolean false"),
        ({**GOOD, "signup": "last tuesday"}, "signup", "cannot parse string 'last tuesday'"),
        ({**GOOD, "signup": "2024-13-01"}, "signup", "cannot parse"),
        ({**GOOD, "signup": 19000}, "signup", "expected an ISO-8601 date string, got number"),
    ],
)
def test_each_bad_value_is_named(instance: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        BUILDER.build([GOOD, instance])
    (problem,) = caught.value.problems
    assert (problem.instance, problem.field) == (1, field)
    assert words in problem.problem


def test_every_offending_instance_and_field_is_reported() -> None:
    bad = [
        {**GOOD, "tenure": "x", "signup": "never"},
        GOOD,
        "not an object",
        {"plan": "basic", "extra": 1},
    ]
    assert problems_of(bad) == [
        (0, "tenure"),
        (0, "signup"),
        (2, None),
        (3, "tenure"),
        (3, "signup"),
        (3, "extra"),
    ]


def test_problems_are_capped_in_the_body() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        BUILDER.build([{**GOOD, "tenure": "x"}] * (MAX_PROBLEMS + 5))
    body = caught.value.body()
    assert len(body["problems"]) == MAX_PROBLEMS
    assert body["problems_truncated"] == 5
    assert body["error"] == "invalid request"


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        (None, 400, None, "the body is empty"),
        ("", 400, None, "the body is empty"),
        ("{nope", 400, None, "not valid JSON"),
        ("[1, 2]", 400, None, "got array"),
        ('"text"', 400, None, "got string"),
        ("{}", 400, "instances", "missing"),
        ('{"instances": {}}', 400, "instances", "expected a list, got object"),
        ('{"instances": []}', 400, "instances", "empty"),
        ('{"instances": [{}], "extra": 1}', 400, "extra", "unknown field"),
        (json.dumps({"instances": [GOOD] * 11}), 413, "instances", "exceed the limit of 10"),
    ],
)
def test_bad_bodies(body: str | None, status: int, field: str | None, words: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_instances(body, max_instances=10)
    assert caught.value.status == status
    assert caught.value.problems[0].field == field
    assert words in caught.value.problems[0].problem


def test_valid_instances_become_the_contract_arrays() -> None:
    instances = parse_instances(
        json.dumps(
            {
                "instances": [
                    GOOD,
                    {"tenure": None, "plan": None, "signup": None},
                    {"tenure": 2.5, "plan": "gold", "signup": "2024-01-02T12:00:00+00:00"},
                    {"tenure": 0, "plan": 7, "signup": "2024-01-02T14:00:00+02:00"},
                ]
            }
        ),
        max_instances=10,
    )
    batch = BUILDER.build(instances)
    tenure, plan, signup = batch.feeds["tenure"], batch.feeds["plan"], batch.feeds["signup"]
    assert tenure.dtype == np.float32
    assert tenure.shape == (4, 1)
    assert np.isnan(tenure[1, 0])
    assert tenure[:, 0].tolist()[2:] == [2.5, 0.0]
    assert plan.dtype == object
    assert plan[:, 0].tolist() == ["basic", "", "gold", "7"]
    days = 19724.0  # 2024-01-02
    assert signup[:, 0].tolist()[0] == days
    assert np.isnan(signup[1, 0])
    assert signup[2, 0] == np.float32(days + 0.5)
    assert signup[3, 0] == np.float32(days + 0.5)
    assert batch.unknown_categories == [(2, "plan", "gold"), (3, "plan", "7")]


def test_numeric_features_become_separate_contiguous_columns() -> None:
    builder = InputBuilder(
        Manifest(
            model="m",
            version=1,
            task="regression",
            target="y",
            features=[FeatureSpec("a", "numeric"), FeatureSpec("b", "numeric")],
            onnx_sha256="0" * 64,
        )
    )
    valid = builder.build([{"a": 1, "b": 2.5}, {"a": -3, "b": 4}, {"a": 0.5, "b": 0}]).feeds
    with_a_null = builder.build([{"a": 1, "b": 2.5}, {"a": -3, "b": None}]).feeds
    for feeds in (valid, with_a_null):  # one conversion for all, or one per feature
        assert all(f.flags.c_contiguous and f.dtype == np.float32 for f in feeds.values())
    assert valid["a"][:, 0].tolist() == [1.0, -3.0, 0.5]
    assert valid["b"][:, 0].tolist() == [2.5, 4.0, 0.0]
    assert with_a_null["a"][:, 0].tolist() == [1.0, -3.0]
    assert with_a_null["b"][0, 0] == 2.5
    assert np.isnan(with_a_null["b"][1, 0])


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("1970-01-01", 0.0),
        ("1970-01-02", 1.0),
        ("1969-12-31", -1.0),
        ("1970-01-01T06:00:00", 0.25),
        ("1970-01-01T06:00:00Z", 0.25),
        ("1970-01-01T08:00:00+02:00", 0.25),
        ("1970-01-01 06:00", 0.25),
    ],
)
def test_days_since_epoch(text: str, days: float) -> None:
    assert days_since_epoch(text) == pytest.approx(days)


def test_excluded_columns_are_ignored_with_a_warning_and_unknown_ones_refused() -> None:
    builder = InputBuilder(Manifest(**{**vars(MANIFEST), "excluded": ["customer id", "notes"]}))
    batch = builder.build([{**GOOD, "customer id": "C1"}, GOOD, {**GOOD, "notes": None}])
    assert set(batch.feeds) == {"tenure", "plan", "signup"}
    assert batch.warnings == [
        {
            "instance": i,
            "field": f,
            "warning": "not a feature of the model (excluded in training); ignored",
        }
        for i, f in [(0, "customer id"), (2, "notes")]
    ]
    with pytest.raises(InvalidRequestError) as caught:
        builder.build([{**GOOD, "customer id": "C1", "colour": "red"}])
    assert [(p.instance, p.field) for p in caught.value.problems] == [(0, "colour")]
    assert "unknown field" in caught.value.problems[0].problem


def test_awkward_names_are_fields_and_an_input_name_is_the_feed() -> None:
    manifest = Manifest(
        **{
            **vars(MANIFEST),
            "features": [
                FeatureSpec("mean radius", "numeric"),
                FeatureSpec("label", "numeric", input="label1"),  # the graph's output's name
                FeatureSpec("größe 😀", "categorical", ["ä"]),
                FeatureSpec('when? "$"', "datetime"),
            ],
        }
    )
    instance = {"mean radius": 1.5, "label": 2, "größe 😀": "ä", 'when? "$"': "1970-01-02"}
    batch = InputBuilder(manifest).build([instance])
    assert list(batch.feeds) == ["mean radius", "label1", "größe 😀", 'when? "$"']
    assert batch.feeds["label1"].tolist() == [[2.0]]
    assert batch.feeds['when? "$"'].tolist() == [[1.0]]
    assert batch.warnings == []


def test_a_body_nested_thousands_deep_is_a_400_not_a_crash() -> None:
    for body in ("[" * 5000, '{"instances": ' + "[" * 3000 + "]" * 3000 + "}"):
        with pytest.raises(InvalidRequestError) as raised:
            parse_instances(body, max_instances=10)
        assert raised.value.status == 400
        assert "nests arrays or objects too deeply" in raised.value.problems[0].problem


def test_a_key_given_twice_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_instances('{"instances": [{"plan": "a", "plan": "b"}]}', max_instances=10)
    (problem,) = raised.value.problems
    assert problem.field == "plan"
    assert "appears twice" in problem.problem
