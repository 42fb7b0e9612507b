"""Thousands of generated requests against the predict handler with a real small model.

Valid requests must answer 200 with exactly what onnxruntime, run offline on the same
instances, answers; invalid ones 4xx naming each problem (instance and field); nothing 5xx.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from mlcycle.serving import runtime
from mlcycle.serving.manifest import FeatureSpec
from tests.integration.test_predict import (
    BUCKET,
    FEATURES,
    MODEL,
    TABLE,
    api_event,
    call,
    create_resources,
    export_toy_model,
    publish,
)

PREDICT = f"/v1/models/{MODEL}:predict"
MAX_INSTANCES = 1000  # the handler's default limit
EXAMPLES = 4000
FLOAT32_MAX = float(np.finfo(np.float32).max)

# --- valid instances -------------------------------------------------------------------------

numbers = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(-1e30, 1e30, allow_nan=False, allow_infinity=False),
)
dates = st.one_of(
    st.none(),
    st.dates(date(1900, 1, 1), date(2100, 12, 31)).map(date.isoformat),
    st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)).map(
        datetime.isoformat
    ),
    st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)).map(datetime.isoformat),
)


def _category(spec: FeatureSpec) -> st.SearchStrategy[Any]:
    # known values, unseen ones (a warning, not an error), integer codes, or missing
    return st.one_of(st.none(), st.sampled_from(spec.categories), st.text(max_size=12))


def _valid_value(spec: FeatureSpec) -> st.SearchStrategy[Any]:
    if spec.kind == "numeric":
        return numbers
    if spec.kind == "datetime":
        return dates
    return _category(spec)


valid_instance = st.fixed_dictionaries({f.name: _valid_value(f) for f in FEATURES})
valid_instances = st.lists(valid_instance, min_size=1, max_size=40)

# --- invalid ones: each breaks at least one rule ----------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
any_json = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NUMERIC = [f.name for f in FEATURES if f.kind == "numeric"]
CATEGORICAL = [f.name for f in FEATURES if f.kind == "categorical"]


@st.composite
def broken_instance(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid instance with one thing wrong, and the field the answer must name."""
    instance = draw(valid_instance)
    kind = draw(
        st.sampled_from(
            ["missing", "unknown", "numeric type", "not finite", "too large", "date", "category"]
        )
    )
    if kind == "missing":
        field = draw(st.sampled_from(sorted(instance)))
        del instance[field]
    elif kind == "unknown":
        field = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in instance))
        instance[field] = draw(any_json)
    elif kind == "numeric type":
        field = draw(st.sampled_from(NUMERIC))
        instance[field] = draw(
            st.one_of(st.booleans(), st.text(max_size=8), st.lists(st.integers(), max_size=2))
        )
    elif kind == "not finite":
        field = draw(st.sampled_from(NUMERIC))
        instance[field] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    elif kind == "too large":
        field = draw(st.sampled_from(NUMERIC))
        instance[field] = draw(st.sampled_from([1e39, -1e300, 10**40]))
    elif kind == "date":
        field = "signup_date"
        instance[field] = draw(
            st.one_of(
                st.integers(),
                st.booleans(),
                st.text(max_size=12).filter(lambda t: not _is_date(t)),
            )
        )
    else:
        field = draw(st.sampled_from(CATEGORICAL))
        instance[field] = draw(
            st.one_of(st.booleans(), st.floats(), st.lists(st.none(), max_size=2))
        )
    return instance, field


def _is_date(text: str) -> bool:
    try:
        _days(text)
    except ValueError:
        return False
    return True


@st.composite
def invalid_batch(draw: st.DrawFn) -> tuple[list[Any], set[tuple[int, str]]]:
    """A batch with broken instances mixed in; the (instance, field) pairs to be named."""
    batch: list[Any] = draw(st.lists(valid_instance, max_size=5))
    expected: set[tuple[int, str]] = set()
    for _ in range(draw(st.integers(1, 3))):
        instance, field = draw(broken_instance())
        position = draw(st.integers(0, len(batch)))
        batch.insert(position, instance)
        expected = {(i + (i >= position), f) for i, f in expected} | {(position, field)}
    return batch, expected


# --- requests --------------------------------------------------------------------------------


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            [
                *("route", "binary", "non-json", "body", "huge", "invalid", "valid"),
                *("invalid", "valid", "valid"),
            ]
        )
    )
    request: dict[str, Any] = {"kind": kind, "method": "POST", "path": PREDICT}
    if kind == "valid":
        request["instances"] = draw(valid_instances)
        request["body"] = json.dumps({"instances": request["instances"]})
    elif kind == "invalid":
        batch, expected = draw(invalid_batch())
        request["expected"] = expected
        request["body"] = json.dumps({"instances": batch})  # NaN/Infinity as JSON extensions
    elif kind == "huge":
        n = draw(st.integers(MAX_INSTANCES + 1, 3 * MAX_INSTANCES))
        request["body"] = json.dumps({"instances": [draw(valid_instance)] * n})
    elif kind == "body":  # any JSON document, rarely a usable one
        request["body"] = json.dumps(
            draw(
                st.one_of(
                    any_json,
                    st.fixed_dictionaries({"instances": any_json}),
                    st.fixed_dictionaries(
                        {"instances": st.lists(valid_instance, max_size=2)},
                        optional={"x": any_json},
                    ),
                )
            )
        )
    elif kind == "non-json":
        request["body"] = draw(st.one_of(st.none(), st.text(max_size=60)))
    elif kind == "binary":
        # base64-encoded, as API Gateway sends binary media types; the API declares none, so
        # only text reaches the function (non-UTF-8 bytes: see the test below)
        request["binary"] = draw(st.text(max_size=60)).encode()
    else:
        request["method"] = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
        request["path"] = draw(
            st.one_of(
                st.just(PREDICT),
                st.just(f"/v1/models/{MODEL}"),
                st.just("/health"),
                st.text(max_size=30).map(lambda t: "/" + t),
                st.text(max_size=20).map(lambda t: f"/v1/models/{t}:predict"),
            )
        )
        request["body"] = draw(
            st.one_of(st.none(), st.just('{"instances": []}'), st.text(max_size=20))
        )
    return request


def _event(request: dict[str, Any]) -> dict[str, Any]:
    event = api_event(request["method"], request["path"], raw=request.get("body"))
    if "binary" in request:
        event["body"] = base64.b64encode(request["binary"]).decode()
        event["isBase64Encoded"] = True
    return event


# --- the offline model -----------------------------------------------------------------------


def _days(text: str) -> float:
    """The serving contract for dates: ISO 8601, naive = UTC, as days since 1970-01-01."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() / 86400


def _offline_feeds(instances: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for f in FEATURES:
        values = [i[f.name] for i in instances]
        if f.kind == "categorical":
            feeds[f.name] = np.array([["" if v is None else v] for v in values], dtype=object)
        elif f.kind == "datetime":
            feeds[f.name] = np.array(
                [[np.nan if v is None else _days(v)] for v in values], np.float32
            )
        else:
            feeds[f.name] = np.array([[np.nan if v is None else v] for v in values], np.float32)
    return feeds


def _check(request: dict[str, Any], status: int, body: dict[str, Any], session: Any) -> None:
    assert status < 500, (status, body)
    assert isinstance(body, dict)
    kind = request["kind"]
    if kind == "valid":
        assert status == 200, body
        assert body["model_version"] == 1
        instances = request["instances"]
        labels, probabilities = session.run(None, _offline_feeds(instances))
        assert len(body["predictions"]) == len(instances)
        for prediction, label, row in zip(body["predictions"], labels, probabilities, strict=True):
            assert prediction["label"] == label
            assert list(prediction["probabilities"]) == ["no", "yes"]
            served = np.array(list(prediction["probabilities"].values()), np.float32)
            assert served.tolist() == row.tolist()
        unseen = {
            (i, name)
            for i, instance in enumerate(instances)
            for name, value in instance.items()
            if name in CATEGORICAL
            and value not in (None, "")
            and value not in next(f for f in FEATURES if f.name == name).categories
        }
        assert {(w["instance"], w["field"]) for w in body.get("warnings", [])} == unseen
        return
    if status == 200:  # a usable body, or a GET of the model or health
        assert kind in ("body", "route"), (request, body)
        return
    assert "error" in body, body
    if kind in ("invalid", "huge", "body", "non-json", "binary") and request["path"] == PREDICT:
        assert status in (400, 413), body
        problems = body["problems"]
        assert problems
        assert all({"instance", "field", "problem"} <= set(p) for p in problems)
        assert all(p["problem"] for p in problems)
        if kind == "invalid":
            named = {(p["instance"], p["field"]) for p in problems}
            assert request["expected"] <= named, (request["expected"], problems)
        if kind == "huge":
            assert status == 413
            assert problems[0]["field"] == "instances"
    else:
        assert status in (400, 404, 405, 409, 413), body
        assert body.get("message") or body.get("problems"), body


@contextlib.contextmanager
def _serving(onnx: bytes, manifest: Any) -> Iterator[None]:
    """The toy model published and released in moto, the endpoint's runtime fresh around it."""
    with mock_aws():
        create_resources()
        publish(onnx, manifest)
        runtime.reset()
        try:
            yield
        finally:
            runtime.reset()


@pytest.mark.slow  # ~25 s
def test_thousands_of_generated_requests(monkeypatch: Any) -> None:
    onnx, manifest = export_toy_model("binary")
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    monkeypatch.setenv("REGISTRY_TABLE", TABLE)
    monkeypatch.setenv("LAKE_BUCKET", BUCKET)
    monkeypatch.setenv("MODEL_NAME", MODEL)
    seen: dict[str, int] = {}
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests())
    def property(request: dict[str, Any]) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # the handler's logs and EMF
            status, body = call(_event(request))
        seen[request["kind"]] = seen.get(request["kind"], 0) + 1
        statuses[status] = statuses.get(status, 0) + 1
        _check(request, status, body, session)

    with _serving(onnx, manifest):
        property()
    assert sum(seen.values()) >= EXAMPLES
    assert min(seen.values()) >= 50, seen  # every kind of request was really sent
    assert statuses[200] >= EXAMPLES // 5, statuses
    assert statuses[400] >= EXAMPLES // 5, statuses
    assert statuses[413] >= 100, statuses
    assert statuses[404] >= 10, statuses
    assert max(statuses) < 500


def test_a_base64_body_that_is_not_utf8_is_a_400(monkeypatch: Any) -> None:
    onnx, manifest = export_toy_model("binary")
    monkeypatch.setenv("REGISTRY_TABLE", TABLE)
    monkeypatch.setenv("LAKE_BUCKET", BUCKET)
    with _serving(onnx, manifest):
        request = {"kind": "binary", "method": "POST", "path": PREDICT, "binary": b"\x80\xff"}
        with contextlib.redirect_stdout(io.StringIO()):
            status, body = call(_event(request))
    assert status == 400, body
    assert body["problems"][0]["field"] is None


# --- bodies generated by structure -----------------------------------------------------------

A_VALID_INSTANCE = {f.name: None for f in FEATURES}


@st.composite
def structural_body(draw: st.DrawFn) -> bytes:
    """Bodies that are wrong by their shape rather than their values: nesting thousands deep,
    keys given twice, other encodings, numbers JSON cannot hold, truncation, raw bytes."""
    depth = draw(st.integers(1, 6000))
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
    nested = opening * depth + "1" + closing * depth
    instance = json.dumps(A_VALID_INSTANCE)
    key = draw(st.sampled_from([f.name for f in FEATURES]))
    text = draw(
        st.sampled_from(
            [
                nested,
                '{"instances": ' + nested + "}",
                '{"instances": [' + nested + "]}",
                '{"instances": [' + instance[:-1] + f', "{key}": null' + "}]}",
                '{"instances": [' + instance + '], "instances": [' + instance + "]}",
                '{"instances": [' + instance.replace("null", "1e400", 1) + "]}",
                '{"instances": [' + instance.replace("null", "NaN", 1) + "]}",
                '{"instances": [' + instance.replace("null", "1" + "0" * 5000, 1) + "]}",
                '{"instances": [' + instance + "]} trailing",
                '{"instances": [' + instance,
            ]
        )
    )
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # cut anywhere, mid-character too
    return data


def test_bodies_wrong_by_structure_get_a_4xx_naming_the_problem(monkeypatch: Any) -> None:
    onnx, manifest = export_toy_model("binary")
    monkeypatch.setenv("REGISTRY_TABLE", TABLE)
    monkeypatch.setenv("LAKE_BUCKET", BUCKET)
    statuses: dict[int, int] = {}

    @settings(
        max_examples=400,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=structural_body())
    def property(data: bytes) -> None:
        request = {"kind": "structure", "method": "POST", "path": PREDICT, "binary": data}
        with contextlib.redirect_stdout(io.StringIO()):
            status, body = call(_event(request))
        statuses[status] = statuses.get(status, 0) + 1
        assert 400 <= status < 500, (data[:200], status, body)
        assert body["problems"][0]["problem"], body

    with _serving(onnx, manifest):
        property()
    assert set(statuses) <= {400, 413}, statuses
