"""How far one Lambda per stage goes: time and peak memory of each stage's domain work on
generated data, against Lambda's limits (900 s, 10,240 MB).

    python bench/scale.py [--rows 1000000] [--stages all|data|collect,process,...]
                          [--workdir DIR] [--keep]

Each stage runs in a fresh Python process (as each stage is its own Lambda), reads its inputs
from files (as a stage reads S3 objects whole into memory), does exactly the domain calls its
handler makes (`mlcycle.stages`, minus S3 and DynamoDB), and writes its outputs for the next
stage. A stage reports the seconds of its work (inputs read, computed, outputs serialized;
imports excluded, they are the cold start) and the process's peak resident memory
(VmHWM, so imports and the interpreter count, as they do against the function's memory).

Stages: generate (the test data, not timed against a limit), collect, process, explore,
features, train:linear, train:random_forest, train:hist_gradient_boosting, evaluate.
`data` = collect, process, explore, features. A stage needs its predecessors' outputs in
--workdir (run them first, or together).

Numbers depend on the machine: Lambda gives a function vCPUs in proportion to its memory
(6 vCPUs at 10,240 MB); this reports `os.cpu_count()` beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LAMBDA_SECONDS = 900
LAMBDA_MB = 10_240
ALGORITHMS = ("linear", "random_forest", "hist_gradient_boosting")
DATA_STAGES = ("collect", "process", "explore", "features")
ALL_STAGES = (*DATA_STAGES, *(f"train:{a}" for a in ALGORITHMS), "evaluate")
SPEC_TEXT = (
    "dataset: customer-churn\ntarget: churned\ntask: binary\npositive_class: 'yes'\n"
    f"candidates: [{', '.join(ALGORITHMS)}]\n"
)
TARGET_COLUMN = "__target__"  # as mlcycle.stages names it in the feature matrices


def _peak_mb() -> float:
    """This process's own peak RSS (VmHWM). Not `ru_maxrss`: in a child started by
    subprocess it reports the parent's peak when that was larger (Linux keeps it over exec)."""
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # KiB


# --- the stages, each run in its own process -------------------------------------------------


def _parquet(path: Path, frame: Any) -> None:
    """Write as `Lake.put_parquet` does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    path.write_bytes(buffer.getvalue())


def _read_parquet(path: Path, columns: list[str] | None = None) -> Any:
    """Read as `Lake.get_parquet` does: the object's bytes, then pandas."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(path.read_bytes()), columns=columns).to_pandas()


def _dump(path: Path, obj: Any) -> None:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=3)  # as Lake.put_artifact
    path.write_bytes(buffer.getvalue())


def _load(path: Path) -> Any:
    import joblib

    return joblib.load(io.BytesIO(path.read_bytes()))


def _schema(work: Path) -> Any:
    from mlcycle.schema import ResolvedSchema

    return ResolvedSchema.model_validate_json((work / "schema.json").read_text())


def stage_generate(work: Path, rows: int) -> dict[str, Any]:
    from mlcycle.samples import customer_churn

    data = customer_churn(rows, seed=11).to_csv(index=False).encode()
    (work / "upload.csv").write_bytes(data)
    return {"csv_mb": round(len(data) / 1e6, 1)}


def stage_collect(work: Path, rows: int) -> dict[str, Any]:
    from mlcycle.domain import tables

    data = (work / "upload.csv").read_bytes()
    read = tables.read_upload(data, "upload.csv")
    hashlib.sha256(data).hexdigest()
    return {"rows": read.table.num_rows, "columns": read.table.num_columns}


def stage_process(work: Path, rows: int) -> dict[str, Any]:
    from mlcycle.domain import process, tables
    from mlcycle.spec import parse_spec

    data = (work / "upload.csv").read_bytes()
    table = tables.read_table(data, "upload.csv", dictionary_encode=True)
    del data
    curated = process.curate(table, parse_spec(SPEC_TEXT))
    parquet = process.parquet_bytes(curated.curated)
    (work / "curated.parquet").write_bytes(parquet)
    (work / "schema.json").write_text(curated.schema.model_dump_json())
    return {
        "rows": curated.curated.num_rows,
        "rejected": curated.rejected.num_rows,
        "parquet_mb": round(len(parquet) / 1e6, 1),
    }


def stage_explore(work: Path, rows: int) -> dict[str, Any]:
    from mlcycle.domain import explore

    frame = _read_parquet(work / "curated.parquet")
    profile = explore.profile(frame, _schema(work))
    html = explore.render_html(profile, title="scale")
    return {"html_kb": round(len(html) / 1e3)}


def stage_features(work: Path, rows: int) -> dict[str, Any]:
    from mlcycle.domain import features

    frame = _read_parquet(work / "curated.parquet")
    made = features.engineer(frame, _schema(work), holdout_fraction=0.2, seed=42)
    del frame
    _parquet(work / "train_rows.parquet", made.train)
    _parquet(work / "holdout_rows.parquet", made.holdout)
    train = made.X_train.assign(**{TARGET_COLUMN: made.y_train.to_numpy()})
    _parquet(work / "train.parquet", train)
    del train
    holdout = made.X_holdout.assign(**{TARGET_COLUMN: made.y_holdout.to_numpy()})
    _parquet(work / "holdout.parquet", holdout)
    _dump(work / "transformer.joblib", made.transformer)
    (work / "baseline.json").write_text(json.dumps(made.baseline))
    return {"train_rows": len(made.train), "matrix_columns": made.X_train.shape[1]}


def stage_train(work: Path, rows: int, algorithm: str) -> dict[str, Any]:
    from mlcycle.domain import train
    from mlcycle.spec import Algorithm

    frame = _read_parquet(work / "train.parquet")
    X, y = frame.drop(columns=[TARGET_COLUMN]), frame[TARGET_COLUMN]
    del frame
    candidate = train.train_candidate(Algorithm(algorithm), _schema(work).task, X, y, seed=42)
    _dump(work / f"model-{algorithm}.joblib", candidate.estimator)
    size = (work / f"model-{algorithm}.joblib").stat().st_size
    return {"fit_seconds": round(candidate.fit_seconds, 1), "artifact_mb": round(size / 1e6, 1)}


def stage_evaluate(work: Path, rows: int) -> dict[str, Any]:
    """`stages.evaluate_models` without the registry: no production model to compare with."""
    from mlcycle.domain import evaluate, export, features, monitor
    from mlcycle.spec import Algorithm

    schema = _schema(work)
    holdout = _read_parquet(work / "holdout.parquet")
    X_holdout, y_holdout = holdout.drop(columns=[TARGET_COLUMN]), holdout[TARGET_COLUMN]
    y_train = _read_parquet(work / "train.parquet", columns=[TARGET_COLUMN])[TARGET_COLUMN]
    models = {
        Algorithm(a): _load(work / f"model-{a}.joblib")
        for a in ALGORITHMS
        if (work / f"model-{a}.joblib").is_file()
    }
    scores = {a: evaluate.score_model(m, X_holdout, y_holdout, schema) for a, m in models.items()}
    baseline = evaluate.baseline_metrics(y_train, y_holdout, schema)
    winner = evaluate.pick_winner(scores, "roc_auc")
    verdict = evaluate.gate(
        primary_metric="roc_auc",
        winner_metrics=scores[winner],
        baseline_metrics=baseline,
        threshold=None,
        production_metrics=None,
        production_version=None,
    )
    pipeline = evaluate.serving_pipeline(_load(work / "transformer.joblib"), models[winner])
    onnx_bytes = export.export_onnx(pipeline, schema)
    holdout_rows = _read_parquet(work / "holdout_rows.parquet")
    export.check_parity(pipeline, onnx_bytes, holdout_rows, schema)
    monitor.extend_baseline(
        json.loads((work / "baseline.json").read_text()),
        _read_parquet(work / "train_rows.parquet"),
        schema,
        holdout_predictions=pipeline.predict(features.model_input(holdout_rows, schema)),
    )
    return {
        "winner": str(winner),
        "roc_auc": {str(a): round(s["roc_auc"], 4) for a, s in scores.items()},
        "gate": verdict.passed,
        "onnx_kb": round(len(onnx_bytes) / 1e3),
    }


def run_child(stage: str, work: Path, rows: int) -> None:
    """Import what the stage needs, then time its work; print one JSON line."""
    import mlcycle.domain.evaluate
    import mlcycle.domain.explore
    import mlcycle.domain.export
    import mlcycle.domain.features
    import mlcycle.domain.monitor
    import mlcycle.domain.process
    import mlcycle.domain.tables
    import mlcycle.domain.train  # noqa: F401 - imports are the cold start, not the stage

    before = _peak_mb()
    started = time.perf_counter()
    if stage.startswith("train:"):
        facts = stage_train(work, rows, stage.split(":", 1)[1])
    else:
        facts = globals()[f"stage_{stage}"](work, rows)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "stage": stage,
                "seconds": round(seconds, 1),
                "peak_mb": round(_peak_mb()),
                "imports_mb": round(before),
                **facts,
            }
        ),
        flush=True,
    )


# --- the driver --------------------------------------------------------------------------------


def _stages(text: str) -> list[str]:
    if text == "all":
        return list(ALL_STAGES)
    if text == "data":
        return list(DATA_STAGES)
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in ALL_STAGES and s != "generate"]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; choose from {', '.join(ALL_STAGES)}")
    return chosen


def _verdict(result: dict[str, Any]) -> str:
    over = []
    if result["seconds"] > LAMBDA_SECONDS:
        over.append(f"over {LAMBDA_SECONDS} s")
    if result["peak_mb"] > LAMBDA_MB:
        over.append(f"over {LAMBDA_MB} MB")
    if over:
        return "DOES NOT FIT: " + ", ".join(over)
    share = max(result["seconds"] / LAMBDA_SECONDS, result["peak_mb"] / LAMBDA_MB)
    return f"fits ({share:.0%} of the tighter limit)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stages", default="all", help="all, data, or a comma-separated list")
    parser.add_argument("--workdir", type=Path, help="keep intermediate files here")
    parser.add_argument("--keep", action="store_true", help="keep a temporary workdir")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        run_child(args.child, args.workdir, args.rows)
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlcycle-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    stages = _stages(args.stages)
    marker = work / "rows.txt"
    if not marker.is_file() or marker.read_text() != str(args.rows):
        stages = ["generate", *[s for s in stages if s != "generate"]]
    print(
        f"{args.rows:,} rows, {os.cpu_count()} CPUs, workdir {work}; "
        f"Lambda: {LAMBDA_SECONDS} s, {LAMBDA_MB:,} MB per stage",
        flush=True,
    )
    print(f"{'stage':<30} {'seconds':>8} {'peak MB':>8}  verdict / facts", flush=True)
    results = []
    try:
        for stage in stages:
            command = [sys.executable, __file__, "--child", stage]
            command += ["--workdir", str(work), "--rows", str(args.rows)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                print(f"{stage:<30} FAILED (exit {done.returncode}): {tail}", flush=True)
                results.append({"stage": stage, "error": tail, "exit": done.returncode})
                break
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            facts = {k: v for k, v in result.items() if k not in ("stage", "seconds", "peak_mb")}
            verdict = "test data" if stage == "generate" else _verdict(result)
            print(
                f"{stage:<30} {result['seconds']:8.1f} {result['peak_mb']:8,}  {verdict}  {facts}",
                flush=True,
            )
            if stage == "generate":
                (work / "rows.txt").write_text(str(args.rows))
        print(json.dumps({"rows": args.rows, "cpus": os.cpu_count(), "results": results}))
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
