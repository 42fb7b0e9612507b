"""Shapley explanations of the served churn forest (mlcycle.serving.explain), against shap's
KernelExplainer over the scikit-learn pipeline and against scikit-learn predicting one row,
measured in the same run.

    python bench/explain.py [--repeats 200] [--background 16]

The model: examples/customer-churn.csv with examples/customer-churn.yaml, processed
(resolve_schema + clean), engineered and the random forest trained with its defaults (200
trees), exported to ONNX under the serving contract and loaded as the endpoint loads it.
Backgrounds from `mlcycle.domain.background.background_summary`: 1 row (exact, 2^11
coalitions) and `--background` weighted rows (sampling; the exact values over that background,
~2^11 x rows graph rows, are the reference for every error). Times are of the warm path:
`Explainer.explain` given the request's input arrays and the endpoint's predictions (its own
input building and prediction are measured separately). Errors: mean over the instances of
the largest |contribution - exact| across features. Native threads are limited to 1
(threadpoolctl; onnxruntime's session has one intra-op thread; the forest's n_jobs set to 1
for predicting), so numbers are per core.
shap's KernelExplainer is run with l1_reg=False (its default keeps 10 of 11 features, which
only adds error) and the same weighted background (its DenseData weights); its model function
decodes the coded rows into a DataFrame and calls the pipeline's predict_proba.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ORT_INTRA_OP_THREADS", "1")

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers"))

from mlcycle.domain import export, process  # noqa: E402
from mlcycle.domain.background import background_summary  # noqa: E402
from mlcycle.domain.evaluate import serving_pipeline  # noqa: E402
from mlcycle.domain.features import engineer, model_input  # noqa: E402
from mlcycle.domain.train import train_candidate  # noqa: E402
from mlcycle.serving.explain import Explainer, Explanation  # noqa: E402
from mlcycle.serving.model import LoadedModel, load_model  # noqa: E402
from mlcycle.spec import Algorithm, ColumnType, parse_spec  # noqa: E402


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def timed(function: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    result = function()  # warm
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples, result


def json_rows(frame: pd.DataFrame, features: dict[str, ColumnType]) -> list[dict[str, Any]]:
    rows = []
    for record in frame[list(features)].to_dict("records"):
        row: dict[str, Any] = {}
        for name, kind in features.items():
            value = record[name]
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                row[name] = None
            elif kind is ColumnType.DATETIME:
                row[name] = pd.Timestamp(value).isoformat()
            elif kind is ColumnType.CATEGORICAL:
                row[name] = str(value)
            else:
                row[name] = float(value)
        rows.append(row)
    return rows


def build() -> tuple[Any, Any, Any, LoadedModel, Any]:
    spec = parse_spec((ROOT / "examples" / "customer-churn.yaml").read_text())
    raw = pd.read_csv(ROOT / "examples" / "customer-churn.csv")
    schema = process.resolve_schema(raw, spec)
    curated = process.clean(raw, schema).curated
    fs = engineer(curated, schema, holdout_fraction=spec.holdout_fraction, seed=spec.seed)
    candidate = train_candidate(
        Algorithm.RANDOM_FOREST,
        schema.task,
        fs.X_train,
        fs.y_train,
        seed=spec.seed,
        classes=schema.classes,
        positive_class=schema.positive_class,
    )
    pipeline = serving_pipeline(fs.transformer, candidate.estimator)
    onnx_bytes = export.export_onnx(pipeline, schema)
    manifest = export.build_manifest(
        pipeline,
        onnx_bytes,
        schema,
        version=1,
        onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        metrics={},
        parity=None,
        threshold=candidate.threshold.threshold if candidate.threshold else None,
    )
    # one thread for scikit-learn too (the forest predicts with n_jobs=-1 as trained)
    pipeline.named_steps["model"].set_params(n_jobs=1)
    return schema, fs, pipeline, load_model(manifest, onnx_bytes, threads=1), candidate


class CodedPipeline:
    """shap's Kernel mixes rows arithmetically: each feature is coded as an index into the
    values it takes in the background and the instances, decoded into the pipeline's
    DataFrame inside the model function."""

    def __init__(self, pipeline: Any, schema: Any, frames: list[pd.DataFrame]) -> None:
        self.pipeline = pipeline
        self.names = list(schema.features)
        data = model_input(pd.concat(frames, ignore_index=True), schema)[self.names]
        self.tables = []
        for name in self.names:
            values = data[name].drop_duplicates()
            self.tables.append(values.reset_index(drop=True))
        self.column = 0

    def encode(self, frame: pd.DataFrame, schema: Any) -> np.ndarray:
        data = model_input(frame, schema)[self.names]
        codes = np.empty((len(data), len(self.names)))
        for j, name in enumerate(self.names):
            table = self.tables[j]
            for i, value in enumerate(data[name]):
                same = table.isna() if pd.isna(value) else table == value
                codes[i, j] = int(np.flatnonzero(same.to_numpy())[0])
        return codes

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        index = np.asarray(codes).astype(int)
        frame = pd.DataFrame(
            {name: self.tables[j].to_numpy()[index[:, j]] for j, name in enumerate(self.names)}
        )
        for j, name in enumerate(self.names):
            frame[name] = frame[name].astype(self.tables[j].dtype)
        return np.asarray(self.pipeline.predict_proba(frame))[:, self.column]


def max_error(got: list[Explanation] | np.ndarray, exact: list[Explanation], names: list[str]):
    errors = []
    for i, reference in enumerate(exact):
        want = np.array([reference.contributions[n] for n in names])
        if isinstance(got, np.ndarray):
            have = got[i]
        else:
            have = np.array([got[i].contributions[n] for n in names])
        errors.append(float(np.abs(have - want).max()))
    return float(np.mean(errors))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--background", type=int, default=16)
    parser.add_argument("--kernel-repeats", type=int, default=5)
    args = parser.parse_args()
    import shap

    warnings.filterwarnings("ignore")
    with threadpool_limits(limits=1):
        schema, fs, pipeline, model, _ = build()
        names = list(schema.features)
        print(
            f"customer-churn random forest: {len(names)} features, "
            f"{pipeline.named_steps['model'].n_estimators} trees, native threads 1"
        )
        one = background_summary(fs.train, schema.features, rows=1, seed=0)
        many = background_summary(fs.train, schema.features, rows=args.background, seed=0)
        print(f"backgrounds: 1 row and {len(many['rows'])} weighted rows")
        for n in (1, 10):
            case(n, args, shap, schema, fs, pipeline, model, one, many)


def case(
    n: int,
    args: Any,
    shap: Any,
    schema: Any,
    fs: Any,
    pipeline: Any,
    model: Any,
    one: Any,
    many: Any,
) -> None:
    names = list(schema.features)
    holdout = fs.holdout.iloc[:10]
    rows = json_rows(holdout, schema.features)
    batch = model.builder.build(rows[:n])
    predictions = model.run(batch)
    print(f"\n--- {n} instance{'s' if n > 1 else ''} ---")

    def line(what: str, samples: list[float], note: str = "") -> float:
        p50, p99 = percentiles(samples)
        print(f"  {what:<58} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  {note}")
        return p50

    repeats = args.repeats if n == 1 else max(20, args.repeats // 5)
    serve_samples, _ = timed(lambda: model.run(model.builder.build(rows[:n])), repeats)
    line("endpoint predict (build inputs + run)", serve_samples)
    frame = holdout.iloc[:n][names]
    sk_samples, _ = timed(lambda: pipeline.predict_proba(frame), repeats)
    sk = line("scikit-learn predict_proba from a DataFrame", sk_samples)

    exact1 = Explainer.for_model(model, one)
    samples, exact1_out = timed(lambda: exact1.explain(batch.feeds, predictions), repeats)
    ours_exact = line(
        "ours, exact, 1-row background",
        samples,
        f"({exact1_out[0].evaluated_rows} rows/instance, {exact1_out[0].method})",
    )
    worst = max(abs(e.base_value + sum(e.contributions.values()) - e.output) for e in exact1_out)
    print(f"  {'':<58} additivity: max |base + sum - output| = {worst:.1e}")

    reference = Explainer.for_model(model, many, exact_rows=10**7)
    samples, exact_many = timed(
        lambda: reference.explain(batch.feeds, predictions), max(3, repeats // 20)
    )
    line(f"ours, exact, {len(many['rows'])}-row background (the reference)", samples)
    sampler = Explainer.for_model(model, many)
    samples, sampled = timed(lambda: sampler.explain(batch.feeds, predictions), repeats)
    ours_sampling = line(
        f"ours, sampling, {len(many['rows'])}-row background",
        samples,
        f"({sampled[0].permutations} permutations, {sampled[0].evaluated_rows} rows)",
    )
    error_sampling = max_error(sampled, exact_many, names)
    # an instance close enough to the background is explained exactly even here: no bound
    bounds = [max(s.error_bounds.values()) for s in sampled if s.error_bounds]
    bound = float(np.mean(bounds)) if bounds else 0.0
    print(
        f"  {'':<58} error vs exact {error_sampling:.4f} "
        f"(stated bound, largest feature, {sampled[0].confidence:.0%}: {bound:.4f})"
    )

    # shap's KernelExplainer over the scikit-learn pipeline, same backgrounds
    bg_frames = {
        "1": pd.DataFrame(one["rows"]),
        "many": pd.DataFrame(many["rows"]),
    }
    coded = CodedPipeline(pipeline, schema, [holdout[names], bg_frames["1"], bg_frames["many"]])
    x_codes = coded.encode(holdout.iloc[:n][names], schema)
    labels = [p["label"] for p in predictions]
    classes = list(pipeline.named_steps["model"].classes_)

    def kernel(background: dict, key: str, nsamples: Any) -> np.ndarray:
        data = shap.utils._legacy.DenseData(
            coded.encode(bg_frames[key], schema),
            names,
            None,
            np.asarray(background["weights"], dtype=float),
        )
        out = np.empty((n, len(names)))
        for i in range(n):
            coded.column = classes.index(labels[i])
            explainer = shap.KernelExplainer(coded, data)
            out[i] = explainer.shap_values(
                x_codes[i : i + 1], nsamples=nsamples, l1_reg=False, silent=True
            )[0]
        return out

    kernel_repeats = max(1, args.kernel_repeats if n == 1 else 1)
    samples, kernel_exact = timed(lambda: kernel(one, "1", "auto"), kernel_repeats)
    k1 = line("shap Kernel, 1-row background, nsamples auto (2070)", samples)
    print(
        f"  {'':<58} error vs ours exact {max_error(kernel_exact, exact1_out, names):.1e}"
        f"; ours is {k1 / ours_exact:.0f}x faster"
    )
    nsamples: Any
    for nsamples in ("auto", 512, 256):
        samples, values = timed(functools.partial(kernel, many, "many", nsamples), kernel_repeats)
        label = f"shap Kernel, {len(many['rows'])}-row background, nsamples {nsamples}"
        kp50 = line(label, samples)
        error = max_error(values, exact_many, names)
        print(
            f"  {'':<58} error vs exact {error:.4f}; ours sampling "
            f"{kp50 / ours_sampling:.0f}x faster at "
            f"{'equal or smaller' if error_sampling <= error else 'LARGER'} error "
            f"({error_sampling:.4f})"
        )
    print(f"  ours exact / scikit-learn one predict: {ours_exact / sk:.1f}x")


if __name__ == "__main__":
    main()
