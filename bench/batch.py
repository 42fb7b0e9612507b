"""Batch scoring throughput: mlcycle's chunked ONNX scoring against scikit-learn's predict_proba
on the same rows read with pandas, measured in the same run, one core each.

    python bench/batch.py [--rows 1000000] [--chunk-rows 200000] [--repeats 3] [--workdir DIR]

The model is bench/endpoint.py's (customer-churn, imputer + scaler, one-hot, a random forest of
200 trees of depth 10, exported under the serving contract). The rows are generated with
`mlcycle.samples.customer_churn` (the sample's shape) and written as one CSV.

Each side runs in a fresh process, as each step is its own Lambda:
- baseline: pandas.read_csv, the pandas conversions an sklearn scorer needs, predict_proba;
- plan: what `plan_scoring` does (read_upload of the CSV, Parquet chunks written);
- score: what each Distributed Map child does, chunk after chunk in one process (a warm
  container): read the chunk's Parquet, `domain.scoring.score_chunk` (inputs built from Arrow
  columns, onnxruntime with one thread, the threshold's labels), the predictions Parquet written.
Rows per second and peak resident memory (VmHWM: imports and the interpreter count, as against
the function's memory) per process; baseline and scoring alternate `--repeats` times and the
fastest of each is compared (the machine is shared).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def phase_prepare(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    import hashlib

    import joblib
    from endpoint import train

    from mlcycle.samples import customer_churn

    pipeline, onnx, manifest, _ = train()
    manifest = {**manifest, "threshold": 0.35}
    manifest["onnx_sha256"] = hashlib.sha256(onnx).hexdigest()
    (work / "model.onnx").write_bytes(onnx)
    (work / "manifest.json").write_text(json.dumps(manifest))
    joblib.dump(pipeline, work / "pipeline.joblib")
    data = customer_churn(rows, seed=11).drop(columns=["churned"])
    data.to_csv(work / "upload.csv", index=False)
    return {"csv_mb": round((work / "upload.csv").stat().st_size / 1e6, 1)}


def phase_baseline(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    import joblib
    import pandas as pd
    from endpoint import to_model_frame

    pipeline = joblib.load(work / "pipeline.joblib")
    started = time.perf_counter()
    frame = pd.read_csv(work / "upload.csv")
    read = time.perf_counter() - started
    probabilities = pipeline.predict_proba(to_model_frame(frame))
    seconds = time.perf_counter() - started
    assert len(probabilities) == rows
    return {"seconds": seconds, "read_seconds": read, "predict_seconds": seconds - read}


def phase_plan(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from mlcycle.domain.tables import read_upload

    started = time.perf_counter()
    data = (work / "upload.csv").read_bytes()
    table = read_upload(data, "upload.csv", dictionary_encode=True).table
    del data
    for part, offset in enumerate(range(0, table.num_rows, chunk_rows)):
        buffer = io.BytesIO()
        pq.write_table(table.slice(offset, chunk_rows), buffer, compression="zstd")
        (work / f"chunk-{part:05d}.parquet").write_bytes(buffer.getvalue())
    return {"seconds": time.perf_counter() - started, "parts": part + 1}


def phase_score(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from mlcycle.domain import scoring
    from mlcycle.serving.model import load_model, parse_manifest

    started = time.perf_counter()
    manifest = parse_manifest(
        (work / "manifest.json").read_bytes(), name="customer-churn", version=1
    )
    model = load_model(manifest, (work / "model.onnx").read_bytes(), threads=1)
    scored = quarantined = 0
    onnx_seconds = 0.0
    first_row = 1
    for path in sorted(work.glob("chunk-*.parquet")):
        table = pq.read_table(io.BytesIO(path.read_bytes()))
        t = time.perf_counter()
        chunk = scoring.score_chunk(model, table, first_row=first_row)
        onnx_seconds += time.perf_counter() - t
        buffer = io.BytesIO()
        pq.write_table(chunk.predictions, buffer, compression="zstd")
        (work / path.name.replace("chunk", "part")).write_bytes(buffer.getvalue())
        scored += chunk.predictions.num_rows
        quarantined += chunk.quarantine.num_rows
        first_row += table.num_rows
    assert scored + quarantined == rows
    return {
        "seconds": time.perf_counter() - started,
        "score_seconds": onnx_seconds,
        "scored": scored,
    }


PHASES = {
    "prepare": phase_prepare,
    "baseline": phase_baseline,
    "plan": phase_plan,
    "score": phase_score,
}


def _run(phase: str, work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--workdir",
        str(work),
        "--rows",
        str(rows),
        "--chunk-rows",
        str(chunk_rows),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--phase", choices=PHASES)
    args = parser.parse_args()
    if args.phase:
        sys.path.insert(0, str(BENCH))
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # one core each, as compared
            result = PHASES[args.phase](args.workdir, args.rows, args.chunk_rows)
        print(json.dumps({**result, "peak_mb": round(_peak_mb())}))
        return
    with tempfile.TemporaryDirectory() as folder:
        work = args.workdir or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        print(f"generating {args.rows:,} rows and training the forest", flush=True)
        prepared = _run("prepare", work, args.rows, args.chunk_rows)
        print(f"  upload.csv: {prepared['csv_mb']} MB", flush=True)
        plan = _run("plan", work, args.rows, args.chunk_rows)
        # alternated, the fastest of each: the machine is shared, and load hits both alike
        baselines, scores = [], []
        for _ in range(args.repeats):
            baselines.append(_run("baseline", work, args.rows, args.chunk_rows))
            scores.append(_run("score", work, args.rows, args.chunk_rows))
        baseline = min(baselines, key=lambda r: r["seconds"])
        score = min(scores, key=lambda r: r["seconds"])
        print(
            "  runs (s): scikit-learn "
            + ", ".join(f"{r['seconds']:.2f}" for r in baselines)
            + "; mlcycle score "
            + ", ".join(f"{r['seconds']:.2f}" for r in scores)
        )
    rows = args.rows
    mlcycle_seconds = plan["seconds"] + score["seconds"]
    print(f"rows: {rows:,}, chunk rows: {args.chunk_rows:,}, parts: {plan['parts']}")
    print(
        f"scikit-learn (pandas read_csv + predict_proba): {baseline['seconds']:.2f} s "
        f"({rows / baseline['seconds']:,.0f} rows/s; read {baseline['read_seconds']:.2f} s, "
        f"predict {baseline['predict_seconds']:.2f} s), peak {baseline['peak_mb']} MB"
    )
    print(
        f"mlcycle plan (read_upload + Parquet chunks): {plan['seconds']:.2f} s, "
        f"peak {plan['peak_mb']} MB"
    )
    print(
        f"mlcycle score (chunks read, scored, parts written): {score['seconds']:.2f} s "
        f"(score_chunk {score['score_seconds']:.2f} s), peak {score['peak_mb']} MB"
    )
    print(
        f"end to end: mlcycle {rows / mlcycle_seconds:,.0f} rows/s vs scikit-learn "
        f"{rows / baseline['seconds']:,.0f} rows/s: {baseline['seconds'] / mlcycle_seconds:.2f}x"
    )
    print(
        f"model only: score_chunk {rows / score['score_seconds']:,.0f} rows/s vs predict_proba "
        f"(with its pandas conversions) {rows / baseline['predict_seconds']:,.0f} rows/s: "
        f"{baseline['predict_seconds'] / score['score_seconds']:.2f}x"
    )


if __name__ == "__main__":
    main()
