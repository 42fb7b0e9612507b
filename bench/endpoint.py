"""The prediction endpoint's latency, warm and cold, against a bare session.run and against
the scikit-learn pipeline fed a one-row DataFrame, measured in the same run.

    python bench/endpoint.py [--repeats 2000] [--cold-runs 5]

The model: customer-churn (examples/customer-churn.csv, 5000 rows, 11 features) with the
pipeline the registry's winner uses (imputer + scaler, one-hot, a random forest of 200 trees
of depth 10), exported with skl2onnx under the serving contract. Warm: the handler runs in
process against moto with the capture flush disabled (an S3 put per 500 requests is not
measurable against moto). Cold: fresh interpreters, both reading their artifact from local
files (the endpoint's botocore import and client creation are counted; network latency is not).
Medians; the machine is shared and noisy.

Each also prints a floor measured in the same run, to show what a target leaves: warm, the work
any handler must do (parse and validate the body, build the inputs, run, answer) without
routing, metrics or capture, and the cost of Powertools' resolver and per-request metrics on
their own; cold, importing numpy and onnxruntime and loading the artifact, without Powertools
or the AWS SDK.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlcycle.adapters.registry import create_table as create_registry_table

ROOT = Path(__file__).resolve().parents[1]
MODEL = "customer-churn"
NUMERIC = [
    "monthly_charges",
    "tenure_months",
    "support_tickets_90d",
    "avg_session_minutes",
    "last_login_days",
    "discount_pct",
    "satisfaction_score",
]
CATEGORICAL = ["plan", "region", "payment_method"]
DATE = "signup_date"
_EPOCH, _DAY = pd.Timestamp("1970-01-01"), pd.Timedelta(days=1)


def to_model_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """What a pandas endpoint does to a request: dates to days since epoch, float columns."""
    out = frame.copy()
    out[DATE] = (pd.to_datetime(out[DATE], utc=True).dt.tz_localize(None) - _EPOCH) / _DAY
    out[[*NUMERIC, DATE]] = out[[*NUMERIC, DATE]].astype("float64")
    return out


def train() -> tuple[Pipeline, bytes, dict[str, Any], list[dict[str, Any]]]:
    raw = pd.read_csv(ROOT / "examples" / "customer-churn.csv")
    frame = to_model_frame(raw)
    numeric = [*NUMERIC, DATE]
    pipeline = Pipeline(
        [
            (
                "t",
                ColumnTransformer(
                    [
                        (
                            "num",
                            Pipeline(
                                [("i", SimpleImputer(strategy="median")), ("s", StandardScaler())]
                            ),
                            numeric,
                        ),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ]
                ),
            ),
            (
                "m",
                RandomForestClassifier(
                    n_estimators=200, max_depth=10, min_samples_leaf=3, random_state=42, n_jobs=1
                ),
            ),
        ]
    ).fit(frame, raw["churned"])
    features = [
        {"name": DATE, "kind": "datetime", "categories": []},
        *(
            {"name": c, "kind": "categorical", "categories": sorted(raw[c].dropna().unique())}
            for c in CATEGORICAL
        ),
        *({"name": c, "kind": "numeric", "categories": []} for c in NUMERIC),
    ]
    types = [
        (
            f["name"],
            StringTensorType([None, 1])
            if f["kind"] == "categorical"
            else FloatTensorType([None, 1]),
        )
        for f in features
    ]
    onnx = convert_sklearn(
        pipeline,
        initial_types=types,
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    ).SerializeToString()
    import hashlib

    manifest = {
        "model": MODEL,
        "version": 1,
        "task": "binary",
        "target": "churned",
        "features": features,
        "onnx_sha256": hashlib.sha256(onnx).hexdigest(),
        "classes": ["no", "yes"],
        "positive_class": "yes",
    }
    rows = raw.drop(columns=["customer_id", "churned"]).head(200)
    instances = json.loads(rows.to_json(orient="records"))
    return pipeline, onnx, manifest, instances


def publish(onnx: bytes, manifest: dict[str, Any], endpoint_url: str | None = None) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint_url)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url)
    s3.create_bucket(Bucket="lake")
    create_registry_table(dynamodb, "registry")
    prefix = f"models/dataset={MODEL}/version=000001/"
    s3.put_object(Bucket="lake", Key=prefix + "model.onnx", Body=onnx)
    s3.put_object(Bucket="lake", Key=prefix + "manifest.json", Body=json.dumps(manifest).encode())
    dynamodb.put_item(
        TableName="registry",
        Item={
            "pk": {"S": f"MODEL#{MODEL}"},
            "sk": {"S": "RELEASE"},
            "production_version": {"N": "1"},
        },
    )


def event(instances: list[dict[str, Any]]) -> dict[str, Any]:
    document = json.loads((ROOT / "events" / "predict" / "predict.json").read_text())
    document["body"] = json.dumps({"instances": instances})
    return document


def timings(function: Callable[[], Any], repeats: int) -> list[float]:
    function()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def warm(
    pipeline: Pipeline,
    onnx: bytes,
    manifest: dict[str, Any],
    instances: list[dict[str, Any]],
    repeats: int,
) -> None:
    from moto import mock_aws

    os.environ.update(
        REGISTRY_TABLE="registry",
        LAKE_BUCKET="lake",
        CAPTURE_MAX_RECORDS=str(10**9),
        CAPTURE_MAX_SECONDS=str(10**9),
        POWERTOOLS_METRICS_NAMESPACE="mlcycle",
    )
    with mock_aws():
        publish(onnx, manifest)
        sys.path.insert(0, str(ROOT))  # the handler lives in functions/, as Lambda loads it
        from functions.predict.handler import lambda_handler
        from mlcycle.serving.inputs import InputBuilder, parse_instances
        from mlcycle.serving.manifest import Manifest
        from mlcycle.serving.model import load_model

        model = load_model(Manifest.from_json(manifest), onnx)

        def floor(body: str) -> str:
            batch = model.builder.build(parse_instances(body, max_instances=1000))
            return json.dumps({"predictions": model.run(batch), "model_version": model.version})

        class Context:
            function_name, memory_limit_in_mb, aws_request_id = "predict", 1024, "r"
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:predict"

        builder = InputBuilder(Manifest.from_json(manifest))
        sessions = {}
        for threads in (1, 0):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            sessions[threads] = ort.InferenceSession(
                onnx, options, providers=["CPUExecutionProvider"]
            )
        sink = io.StringIO()
        results: dict[str, dict[int, list[float]]] = {}
        for n in (1, 100):
            batch = instances[:n]
            api_event = event(batch)
            feeds = builder.build(batch).feeds
            frame = pd.DataFrame(batch)
            results.setdefault("handler", {})
            with contextlib.redirect_stdout(sink):
                results["handler"][n] = timings(
                    lambda e=api_event: lambda_handler(e, Context()), repeats
                )  # type: ignore[misc]
            sink.seek(0)
            sink.truncate()
            results.setdefault("floor: validate+run+answer", {})[n] = timings(
                lambda b=api_event["body"]: floor(b), repeats
            )
            for threads, session in sessions.items():
                label = f"session.run ({threads or 'default'} threads)"
                results.setdefault(label, {})[n] = timings(
                    lambda s=session, f=feeds: s.run(None, f), repeats
                )
            sklearn_repeats = max(repeats // 20, 30)
            results.setdefault("sklearn DataFrame", {})[n] = timings(
                lambda f=frame: pipeline.predict_proba(to_model_frame(f)), sklearn_repeats
            )
        components = powertools_costs(event(instances[:1]), Context(), repeats)
        response = lambda_handler(event(instances[:1]), Context())  # type: ignore[arg-type]
        ort_direct = sessions[1].run(None, builder.build(instances[:1]).feeds)[1][0]
        sk_direct = pipeline.predict_proba(to_model_frame(pd.DataFrame(instances[:1])))[0]

    print("\nwarm, ms per request (p50 / p99):")
    for label, by_n in results.items():
        cells = "   ".join(f"n={n}: {pct(v, 50):8.3f} / {pct(v, 99):8.3f}" for n, v in by_n.items())
        print(f"  {label:<28} {cells}")
    for n in (1, 100):
        handler = statistics.median(results["handler"][n])
        bare = statistics.median(results["session.run (1 threads)"][n])
        sk = statistics.median(results["sklearn DataFrame"][n])
        print(
            f"  n={n:<3} handler / session.run = {handler / bare:5.2f}x   "
            f"sklearn / handler = {sk / handler:6.1f}x (target >= 50)"
        )
    # The targets as restated after 3x of session.run proved ill-posed for a 27 us model.
    handler = statistics.median(results["handler"][1])
    floor_p50 = statistics.median(results["floor: validate+run+answer"][1])
    print(
        f"  n=1   handler p50 {handler:.3f} ms (target <= 0.25); handler / floor = "
        f"{handler / floor_p50:.2f}x (target <= 2.5)"
    )
    bare = statistics.median(results["session.run (1 threads)"][1])
    least = statistics.median(results["floor: validate+run+answer"][1]) / bare
    print(
        f"  n=1   the floor alone is {least:.2f}x session.run; on top of it the handler adds "
        + ", ".join(f"{label} {cost:.3f} ms" for label, cost in components.items())
    )
    body = json.loads(response["body"])
    print(
        f"  parity: handler {body['predictions'][0]['probabilities']}, "
        f"onnxruntime {ort_direct.tolist()}, sklearn {sk_direct.tolist()}"
    )


def powertools_costs(api_event: dict[str, Any], context: Any, repeats: int) -> dict[str, float]:
    """Median ms of Powertools' resolver on a route that returns a constant, and of the
    endpoint's per-request metrics (two dimensions, two metrics, one EMF flush)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.metrics import MetricUnit

    app = APIGatewayRestResolver()
    app.post("/v1/models/<name>:predict")(
        lambda name: Response(status_code=200, content_type="application/json", body="{}")
    )
    metrics = Metrics(namespace="bench", service="bench")

    def emit() -> None:
        metrics.add_dimension(name="model", value=MODEL)
        metrics.add_dimension(name="model_version", value="1")
        metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=0.1)
        metrics.flush_metrics()

    with contextlib.redirect_stdout(io.StringIO()):
        resolve = timings(lambda: app.resolve(api_event, context), repeats)
        flush = timings(emit, repeats)
    return {"resolver": statistics.median(resolve), "metrics": statistics.median(flush)}


COLD_ENDPOINT = """
import time
start = time.perf_counter()
import json, sys
{path}
from functions.predict.handler import lambda_handler
from mlcycle.serving import runtime
imported = time.perf_counter()
{sdk}
sdk = time.perf_counter() - imported

class Lake:  # the artifact read from local files: no network on either side of the comparison
    def get_object(self, Bucket, Key):
        return {{"Body": open({store!r} + "/" + Key, "rb")}}

class Registry:
    def get_item(self, TableName, Key):
        return {{"Item": {{"production_version": {{"N": "1"}}}}}}

runtime.reset(runtime.Runtime(runtime.Settings.from_env(), dynamodb=Registry(), s3=Lake()))

class Context:
    function_name, memory_limit_in_mb, aws_request_id = "predict", 1024, "r"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:predict"
response = lambda_handler(json.load(open({event!r})), Context())
assert response["statusCode"] == 200, response
total = time.perf_counter() - start
print(json.dumps({{"total": total, "import": imported - start, "without sdk": total - sdk}}))
"""

COLD_FLOOR = """
import time
start = time.perf_counter()
import json, sys
sys.path.insert(0, {root!r})
from mlcycle.serving.inputs import parse_instances
from mlcycle.serving.manifest import Manifest
from mlcycle.serving.model import load_model
imported = time.perf_counter()
prefix = {store!r} + "/models/dataset=customer-churn/version=000001/"
model = load_model(Manifest.from_json(json.load(open(prefix + "manifest.json"))),
                   open(prefix + "model.onnx", "rb").read())
body = json.load(open({event!r}))["body"]
model.run(model.builder.build(parse_instances(body, max_instances=1000)))
print(json.dumps({{"total": time.perf_counter() - start, "import": imported - start}}))
"""

COLD_SKLEARN = """
import time
start = time.perf_counter()
import json
import joblib, pandas as pd
imported = time.perf_counter()
pipeline = joblib.load({model!r})
instance = json.load(open({event!r}))
frame = pd.DataFrame(json.loads(instance["body"])["instances"])
frame["signup_date"] = (pd.to_datetime(frame["signup_date"], utc=True).dt.tz_localize(None)
                        - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
pipeline.predict_proba(frame)
print(json.dumps({{"total": time.perf_counter() - start, "import": imported - start}}))
"""


def cold(
    pipeline: Pipeline,
    onnx: bytes,
    manifest: dict[str, Any],
    instances: list[dict[str, Any]],
    runs: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "lake"
        prefix = store / f"models/dataset={MODEL}/version=000001"
        prefix.mkdir(parents=True)
        (prefix / "model.onnx").write_bytes(onnx)
        (prefix / "manifest.json").write_text(json.dumps(manifest))
        event_path, model_path = Path(tmp) / "event.json", Path(tmp) / "pipeline.joblib"
        event_path.write_text(json.dumps(event(instances[:1])))
        joblib.dump(pipeline, model_path)
        env = {**os.environ, "REGISTRY_TABLE": "registry", "LAKE_BUCKET": "lake"}
        here = sys.executable
        endpoint = COLD_ENDPOINT.format(
            path=f"sys.path.insert(0, {str(ROOT)!r})",
            sdk="runtime._clients()  # botocore import and clients, as the first request pays",
            event=str(event_path),
            store=str(store),
        )
        scripts = {
            "endpoint": (here, endpoint, env),
            "sklearn": (
                here,
                COLD_SKLEARN.format(model=str(model_path), event=str(event_path)),
                env,
            ),
            "floor": (
                here,
                COLD_FLOOR.format(root=str(ROOT), event=str(event_path), store=str(store)),
                env,
            ),
            **lambda_assets(env, event_path, store),
        }
        measured: dict[str, list[dict[str, float]]] = {k: [] for k in scripts}
        for _ in range(runs):
            for label, (python, script, environment) in scripts.items():  # alternate: noise
                out = (  # hits all alike
                    subprocess.run(
                        [python, "-c", script],
                        env=environment,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                measured[label].append(json.loads(out))
    print(f"\ncold, seconds in a fresh interpreter to the first answer (median of {runs}):")
    total = {}
    for label, values in measured.items():
        total[label] = statistics.median(v["total"] for v in values)
        imports = statistics.median(v["import"] for v in values)
        print(f"  {label:<24} {total[label]:6.3f} s   (of which imports {imports:6.3f} s)")
    without_sdk = statistics.median(v["without sdk"] for v in measured["endpoint"])
    sklearn = total["sklearn"]
    print(
        f"  endpoint / sklearn = {total['endpoint'] / sklearn:.2f} (target <= 0.5)\n"
        f"  endpoint without the AWS SDK's import and clients ({without_sdk:.3f} s) / sklearn = "
        f"{without_sdk / sklearn:.2f}: both sides reading local files\n"
        f"  floor (numpy, onnxruntime, load, answer: {total['floor']:.3f} s) / sklearn = "
        f"{total['floor'] / sklearn:.2f}\n"
        f"  Lambda's code as synthesized, without its bytecode / with it = "
        f"{total['assets, no bytecode'] / total['assets, bytecode']:.2f}"
    )


def lambda_assets(
    env: dict[str, str], event_path: Path, store: Path
) -> dict[str, tuple[str, str, dict[str, str]]]:
    """The predict function and its layer as synthesized, run by the runtime's Python with the
    bytecode they ship, and without it (as if compiled at every cold start); no AWS SDK on
    either side (Lambda's runtime brings its own, compiled)."""
    from infra.bundling import runtime_python
    from mlcycle.local.assembly import ensure_assembly, function_assets, load_template

    assembly = ensure_assembly()
    code, (layer,) = function_assets(
        assembly, load_template(assembly)[1], "functions.predict.handler.lambda_handler"
    )
    packages = layer / "python"
    script = COLD_ENDPOINT.format(path="", sdk="", event=str(event_path), store=str(store))
    lambda_env = {**env, "PYTHONPATH": f"{code}:{packages}", "PYTHONDONTWRITEBYTECODE": "1"}
    # An empty cache prefix: the interpreter looks for bytecode there, finds none, compiles.
    nowhere = tempfile.mkdtemp(prefix="no-bytecode-")
    return {
        "assets, bytecode": (runtime_python(), script, lambda_env),
        "assets, no bytecode": (
            runtime_python(),
            script,
            {**lambda_env, "PYTHONPYCACHEPREFIX": nowhere},
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
    print("training customer-churn (random forest, 200 trees) and exporting to ONNX", flush=True)
    pipeline, onnx, manifest, instances = train()
    print(f"ONNX: {len(onnx) / 1e6:.1f} MB")
    warm(pipeline, onnx, manifest, instances, args.repeats)
    cold(pipeline, onnx, manifest, instances, args.cold_runs)


if __name__ == "__main__":
    main()
