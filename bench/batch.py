"""Batch scoring throughput: mlcycle's chunked ONNX scoring against scikit-learn's predict_proba
on the same rows read with pandas, measured in the same run, one core each.

    python bench/batch.py [--rows 1000000] [--chunk-rows 200000] [--repeats 3] [--workdir DIR]

The model is bench/endpoint.py's (customer-churn, imputer + scaler, one-hot, a random forest of
200 trees of depth 10, exported under the serving contract). The rows are generated with
`mlcycle.samples.customer_churn` (the sample's shape) and written as one CSV.

Each side runs in a fresh process, as each step is its own Lambda:
- baseline: pandas.read_csv, the pandas conversions an sklearn scorer needs, predict_proba;
- plan: what `plan_scoring` does once the upload is on local disk (`domain.upload_stream`:
  the CSV streamed, each 200k-row chunk written as zstd Parquet as it is read);
- score: what each Distributed Map child does, chunk after chunk in one process (a warm
  container): read the chunk's Parquet, `domain.scoring.score_chunk` (inputs built from Arrow
  columns, onnxruntime with one thread, the threshold's labels, request ids), the chunk's
  capture sample (`domain.batch_capture`, 10,000 rows a run) and the predictions Parquet
  written.
Rows per second and peak resident memory (VmHWM: imports and the interpreter count, as against
the function's memory) per process; plan, baseline and scoring alternate `--repeats` times and
the medians are compared (the machine is shared).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
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

    from mlcycle.domain.upload_stream import open_upload

    started = time.perf_counter()
    upload = open_upload(work / "upload.csv", "upload.csv", chunk_rows=chunk_rows)
    parts = 0
    for offset, table in upload.chunks():
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        (work / f"chunk-{offset // chunk_rows:05d}.parquet").write_bytes(buffer.getvalue())
        parts += 1
    return {"seconds": time.perf_counter() - started, "parts": parts}


def phase_score(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mlcycle.domain import batch_capture, scoring
    from mlcycle.serving.model import load_model, parse_manifest

    started = time.perf_counter()
    manifest = parse_manifest(
        (work / "manifest.json").read_bytes(), name="customer-churn", version=1
    )
    model = load_model(manifest, (work / "model.onnx").read_bytes(), threads=1)
    scored = quarantined = captured = 0
    onnx_seconds = capture_seconds = 0.0
    first_row = 1
    at = datetime.now(UTC)
    for part, path in enumerate(sorted(work.glob("chunk-*.parquet"))):
        table = pq.read_table(io.BytesIO(path.read_bytes()))
        t = time.perf_counter()
        chunk = scoring.score_chunk(model, table, first_row=first_row, run_id="bench")
        onnx_seconds += time.perf_counter() - t
        # what score_part adds: the chunk's share of the run's capture sample
        t = time.perf_counter()
        quota = batch_capture.capture_quota(
            first_row - 1, table.num_rows, rows, batch_capture.DEFAULT_CAPTURE_ROWS
        )
        mask = batch_capture.capture_mask(
            chunk.predictions.num_rows, quota, run_id="bench", part=part
        )
        predictions = chunk.predictions.append_column("captured", pa.array(mask))
        picked = predictions.filter(pa.array(mask))
        positions = pc.subtract(picked.column("row"), pa.scalar(first_row))
        records = batch_capture.capture_records(
            table.take(positions),
            picked,
            manifest,
            at=at,
            run_id="bench",
            sample_rate=min(batch_capture.DEFAULT_CAPTURE_ROWS, rows) / rows,
        )
        capture = work / path.name.replace("chunk", "capture").replace(".parquet", ".jsonl.gz")
        capture.write_bytes(batch_capture.encode(records))
        capture_seconds += time.perf_counter() - t
        buffer = io.BytesIO()
        pq.write_table(predictions, buffer, compression="zstd")
        (work / path.name.replace("chunk", "part")).write_bytes(buffer.getvalue())
        scored += chunk.predictions.num_rows
        quarantined += chunk.quarantine.num_rows
        captured += len(records)
        first_row += table.num_rows
    assert scored + quarantined == rows
    return {
        "seconds": time.perf_counter() - started,
        "score_seconds": onnx_seconds,
        "capture_seconds": capture_seconds,
        "scored": scored,
        "captured": captured,
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
        # alternated: the machine is shared, and load hits every side alike
        plans, baselines, scores = [], [], []
        for _ in range(args.repeats):
            plans.append(_run("plan", work, args.rows, args.chunk_rows))
            baselines.append(_run("baseline", work, args.rows, args.chunk_rows))
            scores.append(_run("score", work, args.rows, args.chunk_rows))
        for name, runs in (("plan", plans), ("scikit-learn", baselines), ("score", scores)):
            print(f"  {name} runs (s): " + ", ".join(f"{r['seconds']:.2f}" for r in runs))
    plan, baseline, score = _median(plans), _median(baselines), _median(scores)
    rows = args.rows
    mlcycle_seconds = plan["seconds"] + score["seconds"]
    print(f"rows: {rows:,}, chunk rows: {args.chunk_rows:,}, parts: {plans[0]['parts']}")
    print(f"medians of {args.repeats} runs each")
    print(
        f"scikit-learn (pandas read_csv + predict_proba): {baseline['seconds']:.2f} s "
        f"({rows / baseline['seconds']:,.0f} rows/s; read {baseline['read_seconds']:.2f} s, "
        f"predict {baseline['predict_seconds']:.2f} s), peak {baseline['peak_mb']:.0f} MB"
    )
    print(
        f"mlcycle plan (CSV streamed, Parquet chunks written): {plan['seconds']:.2f} s, "
        f"peak {plan['peak_mb']:.0f} MB"
    )
    print(
        f"mlcycle score (chunks read, scored, captured, parts written): "
        f"{score['seconds']:.2f} s (score_chunk {score['score_seconds']:.2f} s, capture "
        f"{score['capture_seconds']:.2f} s for {scores[0]['captured']:,} rows), "
        f"peak {score['peak_mb']:.0f} MB"
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


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each measure's median over the runs."""
    return {
        key: statistics.median(float(r[key]) for r in runs)
        for key, value in runs[0].items()
        if isinstance(value, int | float)
    }


if __name__ == "__main__":
    main()
