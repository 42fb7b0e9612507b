"""Does the evaluation stage fit one Lambda invocation (900 s, 10,240 MB) on large data? Time
and memory of each part of `mlcycle.evaluation.evaluate_models`' domain work on the holdout,
against the old evaluation's work (scikit-learn `predict_proba` + `predict` and the plain
`holdout_metrics`, per candidate) measured in the same run.

    python bench/evaluation.py [--rows 1000000] [--repeats 3] [--train-rows 100000]
                               [--threads 1]

Preparation (not timed against the limit): the churn sample's generator
(`mlcycle.samples.customer_churn`, as bench/stages.py and bench/scale.py use it) makes --rows
rows; they go through the processing stage (CSV, `read_table`, `curate`, Parquet), the 80/20
split of `features.engineer`, and each candidate is trained as the training stage does but
cheaply (`SearchPolicy(trials=1, max_rows=50_000)`: the defaults, cross-validated on 50,000
rows for the threshold), and refit on a seeded sample of --train-rows training rows instead
of all of them: what the evaluation costs depends on the models' size, which the row count
does not change much (forests are bounded at 200 trees of depth 10), and a 200-tree forest
on 800,000 rows takes longer than the whole evaluation here.

The evaluation then runs in a fresh process, as the stage is its own Lambda: it loads its
inputs (from a pickle in a temporary directory, not S3) and calls the pieces exactly as
`evaluate_models` does, without the lake and the registry. There is no production model, so
the runner-up candidate stands in for it: the paired comparison and the page's production
section are then computed as they would be. Each part runs --repeats times; seconds are
medians. Memory: the process's peak RSS (VmHWM of /proc/self/status, imports and inputs
included, as they count against the function's memory; not `getrusage().ru_maxrss`, which
Linux carries over from the parent's high-water mark through fork and exec, so a child of
this 1-2 GB preparation would report the parent's peak), and each part's own peak,
sampled from /proc/self/statm every 5 ms by a thread (a part's growth is its peak minus the
RSS when it started). The machine is shared and noisy; Lambda gives 6 vCPUs at 10,240 MB,
this reports `os.cpu_count()`. OpenMP and BLAS are held to --threads threads (threadpoolctl)
in both processes: on a shared core, OpenMP's spinning threads slow scikit-learn's gradient
boosting down by 10-100x, which would measure the neighbours, not the stage.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import joblib
from threadpoolctl import threadpool_limits

LAMBDA_SECONDS = 900
LAMBDA_MB = 10_240
SPEC_FILE = Path(__file__).resolve().parent.parent / "examples" / "customer-churn.yaml"
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- preparation (parent process) ------------------------------------------------------------


def prepare(rows: int, train_rows: int, work: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlcycle.domain import features, process, tables, train
    from mlcycle.samples import customer_churn
    from mlcycle.spec import SearchPolicy, parse_spec

    spec = parse_spec(SPEC_FILE.read_text())
    started = time.perf_counter()
    data = customer_churn(rows, seed=11).to_csv(index=False).encode()
    processed = process.curate(tables.read_table(data, "b.csv", dictionary_encode=True), spec)
    del data
    schema = processed.schema
    curated = pq.read_table(pa.BufferReader(process.parquet_bytes(processed.curated))).to_pandas()
    del processed
    made = features.engineer(
        curated, schema, holdout_fraction=spec.holdout_fraction, seed=spec.seed
    )
    del curated
    print(
        f"  generate, process, engineer: {time.perf_counter() - started:6.1f} s "
        f"({len(made.train):,} train, {len(made.holdout):,} holdout rows)",
        flush=True,
    )
    policy = SearchPolicy(trials=1, max_rows=50_000)
    fit_rows = made.X_train.sample(
        n=min(train_rows, len(made.X_train)), random_state=spec.seed
    ).index
    X_fit, y_fit = made.X_train.loc[fit_rows], made.y_train.loc[fit_rows]
    candidates = {}
    for algorithm in spec.candidates:
        started = time.perf_counter()
        candidate = train.train_candidate(
            algorithm,
            schema.task,
            X_fit,
            y_fit,
            seed=spec.seed,
            metric=spec.metric_for(schema.task),
            policy=policy,
            classes=schema.classes,
            positive_class=schema.positive_class,
            decision=spec.decision,
        )
        result, choice = candidate.search, candidate.threshold
        assert result is not None
        # what mlcycle.training.train_model stores: the CandidateResult and the search document
        candidates[algorithm] = {
            "estimator": candidate.estimator,
            "result": SimpleNamespace(
                fit_seconds=round(candidate.fit_seconds, 3),
                params=candidate.params,
                threshold=choice.threshold if choice else None,
            ),
            "search": {
                "algorithm": str(algorithm),
                "status": "done",
                "done": len(result.trials),
                **result.to_json(policy.budget_seconds),
                "refit_seconds": candidate.fit_seconds,
                "threshold": choice.to_json() if choice else None,
            },
        }
        print(
            f"  train {algorithm} on {len(X_fit):,} rows: {time.perf_counter() - started:6.1f} s",
            flush=True,
        )
    bundle = {
        "spec": spec,
        "schema": schema,
        "X_holdout": made.X_holdout,
        "y_holdout": made.y_holdout,
        "y_train": made.y_train,
        "holdout_rows": made.holdout,
        "train_rows": made.train,
        "transformer": made.transformer,
        "baseline": made.baseline,
        "candidates": candidates,
    }
    joblib.dump(bundle, work / "inputs.joblib")


# --- the evaluation (child process) ------------------------------------------------------------


def _hwm_mb() -> float:
    """This process's peak RSS since its exec (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class RssSampler:
    """The highest RSS seen since the last `reset`, sampled every 5 ms by a thread."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def reset(self) -> float:
        self.peak = now = _rss_mb()
        return now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def evaluate_child(work: Path, repeats: int) -> None:
    from mlcycle import evaluation as stage
    from mlcycle.domain import bootstrap, diagnostics, export, monitor
    from mlcycle.domain import evaluate as evaluation
    from mlcycle.reports import render_evaluation
    from mlcycle.spec import Task

    imports_mb = _hwm_mb()
    sampler = RssSampler()
    started = time.perf_counter()
    b = joblib.load(work / "inputs.joblib")
    load_seconds = time.perf_counter() - started
    spec, schema = b["spec"], b["schema"]
    X_holdout, y_holdout, y_train = b["X_holdout"], b["y_holdout"], b["y_train"]
    holdout_rows, train_rows = b["holdout_rows"], b["train_rows"]
    models = {a: c["estimator"] for a, c in b["candidates"].items()}
    candidates = {a: c["result"] for a, c in b["candidates"].items()}
    searches = {a: c["search"] for a, c in b["candidates"].items()}
    primary = spec.metric_for(schema.task)
    greater = evaluation.larger_is_better(primary)
    inputs_mb = _rss_mb()
    print(
        f"  inputs loaded in {load_seconds:.1f} s: RSS {inputs_mb:,.0f} MB "
        f"(peak after imports {imports_mb:,.0f} MB); holdout {len(y_holdout):,} rows, "
        f"{len(models)} candidates",
        flush=True,
    )

    s: dict[str, Any] = {}  # what the parts hand each other

    def old_evaluation() -> None:
        """The evaluation before this work: probabilities, argmax labels, plain metrics."""
        for model in models.values():
            proba = evaluation.aligned_proba(
                model.predict_proba(X_holdout), model.classes_, schema.classes
            )
            evaluation.holdout_metrics(
                schema.task,
                y_holdout,
                model.predict(X_holdout),
                proba,
                schema.classes,
                schema.positive_class,
            )

    def predictions() -> None:
        s["said"] = {
            a: evaluation.predict(models[a], X_holdout, schema, c.threshold)
            for a, c in candidates.items()
        }
        s["scores"] = {
            a: evaluation.prediction_metrics(p, y_holdout, schema) for a, p in s["said"].items()
        }
        s["baseline"] = evaluation.baseline_metrics(y_train, y_holdout, schema)
        s["winner"] = evaluation.pick_winner(s["scores"], primary)
        others = [a for a in s["scores"] if a != s["winner"]]
        s["runner_up"] = max(others, key=lambda a: s["scores"][a][primary] * (1 if greater else -1))

    def intervals() -> None:
        s["intervals"] = {
            a: stage._intervals(p, y_holdout, schema, spec) for a, p in s["said"].items()
        }

    def comparison() -> None:
        s["comparison"] = bootstrap.paired_comparison(
            primary,
            schema.task,
            y_holdout.to_numpy(),
            stage._scores(s["said"][s["winner"]]),
            stage._scores(s["said"][s["runner_up"]]),
            classes=schema.classes,
            positive_class=schema.positive_class,
            min_improvement=spec.gate.min_improvement,
            replicates=stage.REPLICATES,
            level=stage.LEVEL,
            seed=spec.seed,
        )

    def gate() -> None:
        winner = s["winner"]
        s["choice"] = stage._choice(searches[winner])
        s["verdict"] = evaluation.gate(
            primary_metric=primary,
            winner_metrics=s["scores"][winner],
            baseline_metrics=s["baseline"],
            threshold=spec.threshold,
            production_metrics=s["scores"][s["runner_up"]],
            production_version=0,
            comparison=s["comparison"],
            policy=spec.gate,
            decision_checks=evaluation.decision_checks(
                s["choice"], s["scores"][winner], spec.decision
            ),
        )
        s["pipeline"] = evaluation.serving_pipeline(b["transformer"], models[winner])

    def onnx() -> None:
        s["onnx"] = export.export_onnx(s["pipeline"], schema)
        s["parity"] = export.check_parity(s["pipeline"], s["onnx"], holdout_rows, schema)
        s["sha"] = hashlib.sha256(s["onnx"]).hexdigest()
        export.build_manifest(
            s["pipeline"],
            s["onnx"],
            schema,
            version=0,
            onnx_sha256=s["sha"],
            metrics=s["scores"][s["winner"]],
            parity=s["parity"],
            threshold=candidates[s["winner"]].threshold,
        )

    def monitor_baseline() -> None:
        said = s["said"][s["winner"]]
        monitor.extend_baseline(
            b["baseline"],
            train_rows,
            schema,
            holdout_predictions=said.labels if schema.is_classification else said.values,
        )

    def importance() -> None:
        s["importance"] = diagnostics.importance(
            s["pipeline"],
            holdout_rows,
            schema,
            primary,
            threshold=candidates[s["winner"]].threshold,
            seed=spec.seed,
        )

    def curves() -> None:
        said = s["said"][s["winner"]]
        s["curves"] = diagnostics.classification_curves(
            y_holdout, said.labels, said.probabilities, schema, candidates[s["winner"]].threshold
        )

    def page() -> None:
        winner, verdict = s["winner"], s["verdict"]
        report: dict[str, Any] = {
            "dataset": spec.dataset,
            "run_id": "bench",
            "task": schema.task.value,
            "target": schema.target,
            "primary_metric": primary,
            "greater_is_better": greater,
            "train_rows": len(y_train),
            "holdout_rows": len(y_holdout),
            "classes": schema.classes,
            "confidence_level": stage.LEVEL,
            "bootstrap": {"replicates": stage.REPLICATES, "seed": spec.seed},
            "candidates": [
                stage._candidate(a, c, s["scores"][a], s["intervals"][a], searches[a], a == winner)
                for a, c in candidates.items()
            ],
            "winner": str(winner),
            "baseline": s["baseline"],
            "importance": s["importance"],
            "production": {
                "version": 0,
                "metrics": s["scores"][s["runner_up"]],
                "comparison": s["comparison"].to_json(),
            },
            "gate": {
                **asdict(verdict),
                "min_improvement": spec.gate.min_improvement,
                "confidence": spec.gate.confidence,
            },
            "parity": asdict(s["parity"]),
            "onnx": {"uri": "s3://bench/model.onnx", "bytes": len(s["onnx"]), "sha256": s["sha"]},
            "curves": s["curves"],
        }
        if schema.task is Task.BINARY and s["choice"] is not None:
            report["decision"] = stage._decision(
                s["choice"], schema, spec, s["said"][winner], y_holdout
            )
        s["html"] = render_evaluation(report)

    parts: list[tuple[str, Callable[[], None]]] = [
        ("predict + prediction_metrics, all", predictions),
        ("bootstrap intervals, all", intervals),
        ("paired comparison (runner-up)", comparison),
        ("gate + serving pipeline", gate),
        ("ONNX export + parity + manifest", onnx),
        ("monitor baseline", monitor_baseline),
        ("permutation importance", importance),
        ("classification curves", curves),
        ("render the page", page),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in [("old", None), *parts]}
    peaks: dict[str, float] = dict.fromkeys(times, 0.0)
    growth: dict[str, float] = dict.fromkeys(times, 0.0)

    def run(name: str, fn: Callable[[], None]) -> None:
        before = sampler.reset()
        start = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - start)
        time.sleep(0.006)  # one more sample
        peaks[name] = max(peaks[name], sampler.peak)
        growth[name] = max(growth[name], sampler.peak - before)

    for _ in range(repeats):
        run("old", old_evaluation)  # alternating with the new parts, so load hits both alike
        for name, fn in parts:
            run(name, fn)
    sampler.stop()
    peak_mb = _hwm_mb()

    old = statistics.median(times["old"])
    print(
        f"\n  {'part (median of ' + str(repeats) + ')':<36} {'seconds':>8} {'x old':>7}"
        f" {'peak RSS MB':>12} {'growth MB':>10}"
    )
    print(
        f"  {'old: predict_proba + holdout_metrics':<36} {old:8.2f} {1:7.2f}"
        f" {peaks['old']:12,.0f} {growth['old']:10,.0f}"
    )
    total = 0.0
    for name, _ in parts:
        median = statistics.median(times[name])
        total += median
        print(
            f"  {name:<36} {median:8.2f} {median / old:7.2f}"
            f" {peaks[name]:12,.0f} {growth[name]:10,.0f}"
        )
    print(f"  {'total, new evaluation':<36} {total:8.2f} {total / old:7.2f}")
    print(
        f"\n  winner {s['winner']} ({primary} {s['scores'][s['winner']][primary]:.4f}), "
        f"runner-up {s['runner_up']}; parity on {s['parity'].rows:,} rows, max diff "
        f"{s['parity'].max_abs_diff:.2g}; page {len(s['html']) / 1e3:,.0f} KB"
    )
    total_with_load = total + load_seconds
    print(
        f"  Lambda time: {total:.1f} s of {LAMBDA_SECONDS} s ({total / LAMBDA_SECONDS:.1%}); "
        f"with loading the inputs {total_with_load:.1f} s ({total_with_load / LAMBDA_SECONDS:.1%})"
    )
    print(
        f"  Lambda memory: peak RSS {peak_mb:,.0f} MB of {LAMBDA_MB:,} MB "
        f"({peak_mb / LAMBDA_MB:.1%}), imports and inputs included"
    )
    print(f"  added cost: the new evaluation takes {total / old:.1f}x the old one's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=100_000, help="rows each refit sees")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP and BLAS threads")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    threadpool_limits(args.threads)
    if args.child:
        evaluate_child(args.child, args.repeats)
        return

    print(
        f"{args.rows:,} rows, {os.cpu_count()} CPUs (shared: timings are noisy), OpenMP/BLAS "
        f"threads {args.threads}; "
        f"Lambda: {LAMBDA_SECONDS} s, {LAMBDA_MB:,} MB\n\npreparation (not counted):",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-eval-") as tmp:
        prepare(args.rows, args.train_rows, Path(tmp))
        print("\nevaluation, in a fresh process:", flush=True)
        command = [sys.executable, __file__, "--child", tmp, "--repeats", str(args.repeats)]
        command += ["--threads", str(args.threads)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
