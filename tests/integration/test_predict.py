"""The predict handler against moto: a real (tiny) ONNX model, registry pointer, S3 artifacts."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import onnxruntime as ort
import pytest
from moto import mock_aws

from mlcycle.adapters.registry import create_table as create_registry_table
from mlcycle.lake_layout import version_prefix
from mlcycle.serving import runtime
from mlcycle.serving.manifest import FeatureSpec, Manifest
from tests.conftest import ROOT

BUCKET, TABLE, MODEL = "lake", "registry", "customer-churn"
NUMERIC = [
    "monthly_charges",
    "tenure_months",
    "support_tickets_90d",
    "avg_session_minutes",
    "last_login_days",
    "discount_pct",
    "satisfaction_score",
]
CATEGORICAL = {
    "plan": ["basic", "premium", "standard"],
    "region": ["central", "east", "north", "south", "west"],
    "payment_method": ["bank_transfer", "credit_card", "invoice", "paypal"],
}
FEATURES = [
    FeatureSpec("signup_date", "datetime"),
    *(FeatureSpec(name, "categorical", values) for name, values in CATEGORICAL.items()),
    *(FeatureSpec(name, "numeric") for name in NUMERIC),
]
_ROW = {
    "signup_date": "2023-06-01",
    "plan": "basic",
    "region": "north",
    "payment_method": "invoice",
    "monthly_charges": 19.99,
    "tenure_months": 3,
    "support_tickets_90d": 4,
    "avg_session_minutes": 6.5,
    "last_login_days": 30,
    "discount_pct": 0.0,
    "satisfaction_score": 1,
}
INSTANCES: list[dict[str, Any]] = [
    _ROW,
    {**_ROW, "plan": "premium", "tenure_months": 40.5, "signup_date": "2021-01-15T08:30:00+02:00"},
    dict.fromkeys(_ROW),  # every value missing
    {**_ROW, "plan": "gold", "signup_date": "2023-03-03T00:00:00Z", "satisfaction_score": None},
]


# --- a small model following the manifest contract ---------------------------------------


def export_toy_model(task: str = "binary", version: int = 1) -> tuple[bytes, Manifest]:
    """A scikit-learn pipeline trained on examples/customer-churn.csv, dates given as days
    since epoch (the serving contract), exported with skl2onnx; and its manifest."""
    import pandas as pd
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.read_csv(ROOT / "examples" / "customer-churn.csv", nrows=1000)
    frame["signup_date"] = (
        pd.to_datetime(frame["signup_date"]) - pd.Timestamp("1970-01-01")
    ) / pd.Timedelta(days=1)
    numeric = [*NUMERIC, "signup_date"]
    frame[numeric] = frame[numeric].astype(np.float32)
    transformer = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
        ]
    )
    initial_types = [
        (
            f.name,
            StringTensorType([None, 1]) if f.kind == "categorical" else FloatTensorType([None, 1]),
        )
        for f in FEATURES
    ]
    if task == "regression":
        pipeline = Pipeline([("t", transformer), ("m", LinearRegression())])
        pipeline.fit(frame, frame["monthly_charges"] * 12)
        onnx = convert_sklearn(pipeline, initial_types=initial_types, target_opset=17)
        outputs: dict[str, Any] = {"value_output": "variable", "probability_output": None}
        classes: list[str] = []
    else:
        pipeline = Pipeline([("t", transformer), ("m", LogisticRegression(max_iter=500))])
        pipeline.fit(frame, frame["churned"])
        onnx = convert_sklearn(
            pipeline,
            initial_types=initial_types,
            options={id(pipeline.steps[-1][1]): {"zipmap": False}},
            target_opset=17,
        )
        outputs = {}  # skl2onnx names them "label" and "probabilities", the manifest's defaults
        classes = ["no", "yes"]
    data = onnx.SerializeToString()
    manifest = Manifest(
        model=MODEL,
        version=version,
        task=task,  # type: ignore[arg-type]
        target="churned",
        features=FEATURES,
        onnx_sha256=hashlib.sha256(data).hexdigest(),
        classes=classes,
        positive_class="yes" if classes else None,
        metrics={"roc_auc": 0.81} if classes else {"rmse": 0.5},
        **outputs,
    )
    return data, manifest


def direct_feeds(instances: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The inputs built by hand, as the contract describes them."""
    from datetime import UTC, datetime

    def days(text: str | None) -> float:
        if text is None:
            return float("nan")
        moment = datetime.fromisoformat(text)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return (moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() / 86400

    feeds: dict[str, np.ndarray] = {}
    for f in FEATURES:
        values = [i[f.name] for i in instances]
        if f.kind == "categorical":
            feeds[f.name] = np.array([[v or ""] for v in values], dtype=object)
        elif f.kind == "datetime":
            feeds[f.name] = np.array([[days(v)] for v in values], np.float32)
        else:
            feeds[f.name] = np.array([[np.nan if v is None else v] for v in values], np.float32)
    return feeds


# A background summary of the toy model's version (the form training writes): two weighted
# rows, so one instance's explanation is exact (2 x (2^11 - 2) rows fit the default budget).
BACKGROUND: dict[str, Any] = {
    "rows": [
        {
            **_ROW,
            "plan": "standard",
            "tenure_months": 24,
            "support_tickets_90d": 0,
            "satisfaction_score": 4,
            "signup_date": "2022-01-01",
        },
        {
            **_ROW,
            "region": "east",
            "payment_method": "credit_card",
            "monthly_charges": 55.0,
            "tenure_months": 12,
            "last_login_days": 3,
            "avg_session_minutes": 20.0,
            "discount_pct": 0.1,
            "satisfaction_score": 3,
        },
    ],
    "weights": [0.7, 0.3],
    "method": "kmeans-medoids",
    "source_rows": 1000,
}


def publish(
    onnx: bytes,
    manifest: Manifest,
    *,
    release: bool = True,
    manifest_doc: Any = None,
    background: dict[str, Any] | None = None,
) -> None:
    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    prefix = version_prefix(manifest.model, manifest.version)
    s3.put_object(Bucket=BUCKET, Key=prefix + "model.onnx", Body=onnx)
    if background is not None:
        s3.put_object(
            Bucket=BUCKET, Key=prefix + "background.json", Body=json.dumps(background).encode()
        )
    document = manifest.to_json() if manifest_doc is None else manifest_doc
    s3.put_object(Bucket=BUCKET, Key=prefix + "manifest.json", Body=json.dumps(document).encode())
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"MODEL#{manifest.model}"},
            "sk": {"S": f"VERSION#{manifest.version:06d}"},
            "version": {"N": str(manifest.version)},
        },
    )
    if release:
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"MODEL#{manifest.model}"},
                "sk": {"S": "RELEASE"},
                "production_version": {"N": str(manifest.version)},
            },
        )


def create_resources() -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    create_registry_table(boto3.client("dynamodb"), TABLE)


def api_event(
    method: str, path: str, body: Any = None, *, raw: str | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event as the sample events hold them."""
    event = json.loads((ROOT / "events" / "predict" / "health.json").read_text())
    text = raw if raw is not None else (None if body is None else json.dumps(body))
    event.update(httpMethod=method, path=path, body=text, resource=path)
    event["requestContext"] = {**event["requestContext"], "httpMethod": method, "path": path}
    return event


class Context:
    function_name = "predict"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:predict"
    aws_request_id = "lambda-request-id"


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    from functions.predict.handler import lambda_handler

    response = lambda_handler(event, Context())  # type: ignore[arg-type]
    return response["statusCode"], json.loads(response["body"])


def predict(body: Any, *, model: str = MODEL, raw: str | None = None) -> tuple[int, dict[str, Any]]:
    return call(api_event("POST", f"/v1/models/{model}:predict", body, raw=raw))


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy() -> tuple[bytes, Manifest]:
    return export_toy_model("binary")


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REGISTRY_TABLE", TABLE)
    monkeypatch.setenv("LAKE_BUCKET", BUCKET)
    monkeypatch.setenv("CAPTURE_MAX_RECORDS", "1000")
    monkeypatch.setenv("MODEL_NAME", MODEL)
    with mock_aws():
        create_resources()
        runtime.reset()
        yield
        runtime.reset()


# --- tests -----------------------------------------------------------------------------------


def test_predictions_equal_onnxruntime_direct_output(
    endpoint: None, toy: tuple[bytes, Manifest]
) -> None:
    onnx, manifest = toy
    publish(onnx, manifest)
    status, body = predict({"instances": INSTANCES})
    assert status == 200, body
    assert body["model_version"] == 1
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, direct_feeds(INSTANCES))
    for prediction, label, row in zip(body["predictions"], labels, probabilities, strict=True):
        assert prediction["label"] == label
        assert list(prediction["probabilities"]) == ["no", "yes"]
        assert (
            np.array(list(prediction["probabilities"].values()), np.float32).tolist()
            == row.tolist()
        )
    assert body["warnings"] == [
        {"instance": 3, "field": "plan", "warning": "unknown category 'gold', not seen in training"}
    ]


@pytest.mark.parametrize("threshold", [0.05, 0.5, 0.95])
def test_labels_follow_the_versions_decision_threshold(
    endpoint: None, toy: tuple[bytes, Manifest], threshold: float
) -> None:
    from dataclasses import replace

    onnx, manifest = toy
    publish(onnx, replace(manifest, threshold=threshold))
    status, body = predict({"instances": INSTANCES})
    assert status == 200, body
    for prediction in body["predictions"]:
        p_yes = prediction["probabilities"]["yes"]
        assert prediction["label"] == ("yes" if p_yes >= threshold else "no")
    status, info = call(api_event("GET", f"/v1/models/{MODEL}"))
    assert info["threshold"] == threshold


def test_regression_predictions(endpoint: None) -> None:
    onnx, manifest = export_toy_model("regression")
    publish(onnx, manifest)
    status, body = predict({"instances": INSTANCES[:2]})
    assert status == 200, body
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    (values,) = session.run(None, direct_feeds(INSTANCES[:2]))
    assert [np.float32(p["value"]) for p in body["predictions"]] == values.ravel().tolist()


def test_model_info_and_health(endpoint: None, toy: tuple[bytes, Manifest]) -> None:
    publish(*toy)
    status, health = call(api_event("GET", "/health"))
    assert (status, health["models"], health["configured_model"]) == (200, [], MODEL)
    status, info = call(api_event("GET", f"/v1/models/{MODEL}"))
    assert status == 200
    assert info["version"] == 1
    assert info["metrics"] == {"roc_auc": 0.81}
    assert info["features"][1] == {
        "name": "plan",
        "kind": "categorical",
        "categories": ["basic", "premium", "standard"],
    }
    status, health = call(api_event("GET", "/health"))
    assert health["models"] == [{"name": MODEL, "version": 1, "sha256": toy[1].onnx_sha256}]


def test_unknown_model_is_404_naming_it(endpoint: None) -> None:
    status, body = predict({"instances": INSTANCES}, model="no-such-model")
    assert status == 404
    assert "'no-such-model'" in body["message"]
    status, body = call(api_event("GET", "/v1/models/Bad%20Name"))
    assert status == 404


def test_registered_but_unreleased_model_is_409(
    endpoint: None, toy: tuple[bytes, Manifest]
) -> None:
    publish(*toy, release=False)
    status, body = predict({"instances": INSTANCES})
    assert status == 409
    assert body["error"] == "model not released"


def test_unknown_route_is_a_json_404(endpoint: None) -> None:
    status, body = call(api_event("POST", f"/v1/models/{MODEL}:classify", {}))
    assert status == 404
    assert body["error"] == "not found"


def test_sha_mismatch_is_503_and_never_a_prediction(
    endpoint: None, toy: tuple[bytes, Manifest], capsys: pytest.CaptureFixture[str]
) -> None:
    onnx, manifest = toy
    publish(onnx, manifest, manifest_doc={**manifest.to_json(), "onnx_sha256": "0" * 64})
    capsys.readouterr()
    status, body = predict({"instances": INSTANCES})
    assert status == 503
    assert "predictions" not in body
    assert "sha256" in body["message"]
    assert "Traceback" not in json.dumps(body)
    emf = _emf(capsys.readouterr().out)
    assert any("ModelLoadFailures" in blob for blob in emf)


def test_missing_artifact_is_503(endpoint: None, toy: tuple[bytes, Manifest]) -> None:
    publish(*toy)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=version_prefix(MODEL, 1) + "model.onnx")
    status, body = predict({"instances": INSTANCES})
    assert status == 503
    assert "model.onnx" in body["message"]
    assert "is missing" in body["message"]


def test_a_registry_entry_instead_of_a_serving_manifest_is_503(
    endpoint: None, toy: tuple[bytes, Manifest]
) -> None:
    onnx, manifest = toy
    publish(onnx, manifest, manifest_doc={"version": 1, "stage": "candidate", "features": {}})
    status, body = predict({"instances": INSTANCES})
    assert status == 503
    assert "not a serving manifest" in body["message"]


def test_bad_request_names_instance_and_field(endpoint: None, toy: tuple[bytes, Manifest]) -> None:
    publish(*toy)
    bad = [{**_ROW, "tenure_months": "abc"}, {**_ROW, "extra": 1}]
    status, body = predict({"instances": bad})
    assert status == 400
    assert [(p["instance"], p["field"]) for p in body["problems"]] == [
        (0, "tenure_months"),
        (1, "extra"),
    ]
    assert predict(None, raw="{not json")[0] == 400


def test_unexpected_error_is_500_without_traceback(
    endpoint: None, toy: tuple[bytes, Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(*toy)
    from mlcycle.serving.model import LoadedModel

    def boom(self: Any, batch: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(LoadedModel, "run", boom)
    status, body = predict({"instances": INSTANCES})
    assert status == 500
    assert body == {"error": "internal error", "request_id": "api-request-id"}


def test_capture_objects_after_flush(endpoint: None, toy: tuple[bytes, Manifest]) -> None:
    publish(*toy)
    predict({"instances": INSTANCES[:2]})
    predict({"instances": INSTANCES[2:]})
    s3 = boto3.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="capture/")
    result = runtime.get().flush()
    assert result.written == 4
    (key,) = result.keys
    assert key.startswith(f"capture/dataset={MODEL}/dt=")
    assert key.endswith(".jsonl.gz")
    lines = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["instance"] for r in records] == INSTANCES
    assert {r["model"] for r in records} == {MODEL}
    assert {r["model_version"] for r in records} == {1}
    assert {r["request_id"] for r in records} == {"api-request-id"}
    assert all(set(r["prediction"]) == {"label", "probabilities"} for r in records)


def test_capture_flushes_by_itself_when_full(
    endpoint: None, toy: tuple[bytes, Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTURE_MAX_RECORDS", "3")
    runtime.reset()
    publish(*toy)
    predict({"instances": INSTANCES[:2]})
    s3 = boto3.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="capture/")
    predict({"instances": INSTANCES[2:]})
    assert len(s3.list_objects_v2(Bucket=BUCKET, Prefix="capture/")["Contents"]) == 1


def test_emf_metrics_carry_the_model_version(
    endpoint: None, toy: tuple[bytes, Manifest], capsys: pytest.CaptureFixture[str]
) -> None:
    publish(*toy)
    capsys.readouterr()
    predict({"instances": INSTANCES})
    predict({"instances": [{"tenure_months": "x"}]})
    blobs = _emf(capsys.readouterr().out)
    assert len(blobs) == 2
    ok, bad = blobs
    names = {m["Name"] for m in ok["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names >= {"Latency", "Instances", "UnknownCategories"}
    assert ok["model_version"] == "1"
    assert ok["model"] == MODEL
    assert ok["Instances"] == [4.0]
    assert ok["UnknownCategories"] == [1.0]
    assert ok["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] >= ["model", "model_version"]
    assert bad["InvalidRequests"] == [1.0]
    assert bad["model_version"] == "1"


def test_release_pointer_is_cached_then_reread(
    endpoint: None, toy: tuple[bytes, Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEASE_CACHE_SECONDS", "0")
    runtime.reset()
    publish(*toy)
    assert predict({"instances": INSTANCES})[1]["model_version"] == 1
    onnx2, manifest2 = export_toy_model("binary", version=2)
    publish(onnx2, manifest2)
    assert predict({"instances": INSTANCES})[1]["model_version"] == 2


@pytest.mark.parametrize(
    "path", sorted((ROOT / "events" / "predict").glob("*.json")), ids=lambda p: p.name
)
def test_sample_events_run_through_the_handler(
    endpoint: None, toy: tuple[bytes, Manifest], path: Path
) -> None:
    publish(*toy, background=BACKGROUND)
    status, body = call(json.loads(path.read_text()))
    expected = {"bad-request.json": 400}.get(path.name, 200)
    assert status == expected, body


# --- explanations ----------------------------------------------------------------------------


def explain(body: Any, *, raw: str | None = None) -> tuple[int, dict[str, Any]]:
    return call(api_event("POST", f"/v1/models/{MODEL}:explain", body, raw=raw))


@pytest.mark.parametrize("threshold", [None, 0.05, 0.95])
def test_explanations_add_up_and_explain_the_predicted_label(
    endpoint: None,
    toy: tuple[bytes, Manifest],
    threshold: float | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dataclasses import replace

    onnx, manifest = toy
    publish(onnx, replace(manifest, threshold=threshold), background=BACKGROUND)
    _, predicted = predict({"instances": INSTANCES})
    capsys.readouterr()
    status, body = explain({"instances": INSTANCES})
    assert status == 200, body
    assert (body["model_version"], body["method"]) == (1, "exact")
    assert body["warnings"] == predicted["warnings"]
    assert len(body["explanations"]) == len(INSTANCES)
    for explanation, prediction in zip(body["explanations"], predicted["predictions"], strict=True):
        assert explanation["method"] == "exact"
        assert list(explanation["contributions"]) == [f.name for f in FEATURES]
        assert explanation["label"] == prediction["label"]
        # the explained output is the probability of the label the endpoint answered
        assert explanation["output"] == pytest.approx(
            prediction["probabilities"][prediction["label"]], abs=1e-6
        )
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - explanation["output"]) <= 1e-6
    if threshold == 0.05:  # the threshold makes labels argmax would not: those are explained
        assert any(e["output"] < 0.5 for e in body["explanations"])
    (blob,) = _emf(capsys.readouterr().out)
    assert blob["Explanations"] == [4.0]
    assert blob["ExplainLatency"][0] > 0
    assert (blob["model"], blob["model_version"]) == (MODEL, "1")


def test_regression_explanations_add_up(endpoint: None) -> None:
    onnx, manifest = export_toy_model("regression")
    publish(onnx, manifest, background=BACKGROUND)
    _, predicted = predict({"instances": INSTANCES[:2]})
    status, body = explain({"instances": INSTANCES[:2]})
    assert status == 200, body
    for explanation, prediction in zip(body["explanations"], predicted["predictions"], strict=True):
        assert "label" not in explanation
        assert explanation["output"] == pytest.approx(prediction["value"], rel=1e-6)
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - explanation["output"]) <= 1e-6


def test_explain_answers_predicts_400_for_a_bad_body(
    endpoint: None, toy: tuple[bytes, Manifest]
) -> None:
    publish(*toy, background=BACKGROUND)
    bad = {"instances": [{**_ROW, "tenure_months": "abc"}, {**_ROW, "extra": 1}]}
    assert explain(bad) == predict(bad)
    assert explain(bad)[0] == 400
    assert explain(None, raw="{not json") == predict(None, raw="{not json")
    assert explain({"instances": []}) == predict({"instances": []})


def test_a_version_without_background_is_409_and_still_predicts(
    endpoint: None, toy: tuple[bytes, Manifest]
) -> None:
    publish(*toy)  # as registered before explanations
    status, body = explain({"instances": INSTANCES[:1]})
    assert status == 409
    assert body["error"] == "model not explainable"
    assert "version 1" in body["message"]
    assert "retrain to explain" in body["message"]
    assert (body["model"], body["version"]) == (MODEL, 1)
    assert explain({"instances": INSTANCES[:1]})[0] == 409  # remembered, not re-read
    assert predict({"instances": INSTANCES[:1]})[0] == 200


def test_predictions_never_read_the_background_and_explanations_are_not_captured(
    endpoint: None, toy: tuple[bytes, Manifest]
) -> None:
    publish(*toy, background=BACKGROUND)
    rt = runtime.get()
    s3 = rt.models.s3
    keys: list[str] = []

    class Spy:
        def get_object(self, **kwargs: Any) -> Any:
            keys.append(kwargs["Key"].rsplit("/", 1)[-1])
            return s3.get_object(**kwargs)

    rt.models.s3 = Spy()
    for _ in range(3):
        assert predict({"instances": INSTANCES})[0] == 200
    assert keys == ["manifest.json", "model.onnx"]
    assert rt.models.loaded[0].explainer is None
    for _ in range(3):
        assert explain({"instances": INSTANCES})[0] == 200
    assert keys == ["manifest.json", "model.onnx", "background.json"]  # once, then cached
    assert rt.flush().written == 3 * len(INSTANCES)  # the predictions only


def test_explain_routes_a_client_to_the_version_predict_does(
    endpoint: None, toy: tuple[bytes, Manifest]
) -> None:
    publish(*toy, background=BACKGROUND)
    onnx2, manifest2 = export_toy_model("binary", version=2)
    publish(onnx2, manifest2, release=False, background=BACKGROUND)
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"MODEL#{MODEL}"},
            "sk": {"S": "RELEASE"},
            "production_version": {"N": "1"},
            "canary_version": {"N": "2"},
            "canary_weight": {"N": "0.5"},
        },
    )
    seen = set()
    for client in range(12):
        versions = []
        for verb in ("predict", "explain"):
            event = api_event("POST", f"/v1/models/{MODEL}:{verb}", {"instances": INSTANCES[:1]})
            event["headers"] = {**event["headers"], "x-client-id": f"client-{client}"}
            status, body = call(event)
            assert status == 200, body
            versions.append(body["model_version"])
        assert versions[0] == versions[1]
        seen.add(versions[0])
    assert seen == {1, 2}


def _emf(out: str) -> list[dict[str, Any]]:
    blobs = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs
