"""Time each lifecycle stage's domain work on generated data, and compare the processing
stage's CSV-to-Parquet throughput with plain pandas measured in the same run.

    python bench/stages.py [--rows 1000000] [--repeats 5] [--skip-training]

S3 I/O is left out: every stage reads and writes in memory, so the numbers are the stage's
own compute. The machine is shared and noisy: the throughput comparison alternates the two
paths and reports medians.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlcycle.domain import evaluate, explore, features, process, tables, train
from mlcycle.domain.metrics import evaluation_contract
from mlcycle.samples import customer_churn
from mlcycle.spec import parse_spec

SPEC = parse_spec("dataset: customer-churn\ntarget: churned\ntask: binary\npositive_class: 'yes'\n")


def timed(label: str, function: Callable[[], Any], timings: dict[str, float]) -> Any:
    start = time.perf_counter()
    result = function()
    timings[label] = time.perf_counter() - start
    print(f"  {label:<34} {timings[label]:8.2f} s", flush=True)
    return result


def mlcycle_csv_to_parquet(data: bytes) -> bytes:
    """The processing stage's path (`stages.process_data` without S3): read the upload into
    Arrow, resolve the schema and clean in one pass, write zstd Parquet from Arrow."""
    table = tables.read_table(data, "bench.csv", dictionary_encode=True)
    processed = process.curate(table, SPEC)
    return process.parquet_bytes(processed.curated)


def pandas_csv_to_parquet(data: bytes) -> bytes:
    """The baseline: what most pipelines do."""
    buffer = io.BytesIO()
    pd.read_csv(io.BytesIO(data)).to_parquet(buffer)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()

    print(f"generating {args.rows:,} rows", flush=True)
    data = customer_churn(args.rows, seed=11).to_csv(index=False).encode()
    print(f"CSV: {len(data) / 1e6:.0f} MB\n\nper stage (domain compute, in memory):")
    timings: dict[str, float] = {}
    timed("collect: read and validate", lambda: tables.read_upload(data, "b.csv"), timings)
    table = timed(
        "process: read for processing",
        lambda: tables.read_table(data, "b.csv", dictionary_encode=True),
        timings,
    )
    processed = timed("process: schema and clean", lambda: process.curate(table, SPEC), timings)
    schema = processed.schema
    parquet = timed(
        "process: write Parquet", lambda: process.parquet_bytes(processed.curated), timings
    )
    # later stages read the curated zone back, as the handlers do
    curated = pq.read_table(pa.BufferReader(parquet)).to_pandas()
    timed("define metrics", lambda: evaluation_contract(SPEC, schema), timings)
    profile = timed("explore: profile", lambda: explore.profile(curated, schema), timings)
    timed("explore: render HTML", lambda: explore.render_html(profile, title="b"), timings)
    feature_set = timed(
        "engineer features",
        lambda: features.engineer(curated, schema, holdout_fraction=0.2, seed=42),
        timings,
    )
    if not args.skip_training:
        scores = {}
        for algorithm in SPEC.candidates:
            candidate = timed(
                f"train: {algorithm}",
                lambda a=algorithm: train.train_candidate(
                    a, schema.task, feature_set.X_train, feature_set.y_train, seed=42
                ),
                timings,
            )
            scores[algorithm] = timed(
                f"evaluate: {algorithm}",
                lambda c=candidate: evaluate.score_model(
                    c.estimator, feature_set.X_holdout, feature_set.y_holdout, schema
                ),
                timings,
            )
        winner = evaluate.pick_winner(scores, "roc_auc")
        print(f"  winner {winner}: roc_auc {scores[winner]['roc_auc']:.4f}")
    print(f"  {'total':<34} {sum(timings.values()):8.2f} s (Lambda's limit: 900 s per stage)")

    print(f"\nCSV to Parquet, {args.repeats} alternating repeats:")
    ours, theirs = [], []
    for _ in range(args.repeats):
        for samples, path in ((ours, mlcycle_csv_to_parquet), (theirs, pandas_csv_to_parquet)):
            start = time.perf_counter()
            path(data)
            samples.append(time.perf_counter() - start)
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    megabytes = len(data) / 1e6
    for label, median in (("mlcycle process stage", ours_median), ("pandas", theirs_median)):
        print(f"  {label:<22} median {median:6.2f} s  {megabytes / median:6.0f} MB/s")
    print(
        f"  throughput ratio (mlcycle / pandas): {theirs_median / ours_median:.2f}  (target >= 1.0)"
    )


if __name__ == "__main__":
    main()
