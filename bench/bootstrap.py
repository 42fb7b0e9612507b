"""Time the vectorized bootstrap of holdout metrics against the naive loop (one scikit-learn
call per metric per replicate with `sample_weight=counts`), measured in the same run.

    python bench/bootstrap.py [--rows 1000,200000] [--replicates 1000] [--repeats 3]
                              [--naive-replicates 20]

The holdout (seeded): a binary task with 20% positives, probabilities rounded to 3 digits
(so scores tie), labels at 0.5; all nine binary metrics. The naive loop runs every replicate
at up to 1,000 rows; above that only `--naive-replicates` and the total is extrapolated (the
cost per replicate is flat). The machine is shared and noisy: timings are medians. Peak
memory is each call's own peak allocations (tracemalloc), in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np
from sklearn import metrics as skm

from mlcycle.domain.bootstrap import TASK_METRICS, Scores, metric_intervals, replicate_counts
from mlcycle.spec import Task

CLASSES = ["no", "yes"]
METRICS = TASK_METRICS[Task.BINARY]


def make_holdout(n: int, seed: int = 0) -> tuple[np.ndarray, Scores]:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.2
    p_yes = np.round(1 / (1 + np.exp(-(rng.normal(0, 1.5, n) + 2.0 * positive - 1.5))), 3)
    y = np.where(positive, "yes", "no")
    labels = np.where(p_yes >= 0.5, "yes", "no")
    return y, Scores(labels, np.column_stack([1 - p_yes, p_yes]))


def ours(y: np.ndarray, scores: Scores, replicates: int) -> None:
    metric_intervals(
        Task.BINARY,
        y,
        scores,
        classes=CLASSES,
        positive_class="yes",
        metrics=METRICS,
        replicates=replicates,
    )


def naive(y: np.ndarray, scores: Scores, replicates: int) -> None:
    """The loop the module replaces: each metric by scikit-learn per replicate."""
    assert scores.probabilities is not None
    is_pos, p_yes = y == "yes", scores.probabilities[:, 1]
    for counts in replicate_counts(len(y), replicates, 0):
        for w in counts:
            skm.accuracy_score(y, scores.labels, sample_weight=w)
            skm.balanced_accuracy_score(y, scores.labels, sample_weight=w)
            for fn in (skm.f1_score, skm.precision_score, skm.recall_score):
                fn(y, scores.labels, pos_label="yes", zero_division=0, sample_weight=w)
            skm.roc_auc_score(is_pos, p_yes, sample_weight=w)
            skm.average_precision_score(is_pos, p_yes, sample_weight=w)
            skm.brier_score_loss(is_pos, p_yes, sample_weight=w)
            skm.log_loss(y, scores.probabilities, labels=CLASSES, sample_weight=w)


def median_time(fn: object, repeats: int, *args: object) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memory_child(rows: int, replicates: int) -> None:
    """In a fresh process: the call's own peak allocations."""
    y, scores = make_holdout(rows)
    tracemalloc.start()
    ours(y, scores, replicates)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"peak_mb": peak / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="1000,200000")
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-replicates", type=int, default=20)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.replicates)
        return

    print(f"binary holdout, {len(METRICS)} metrics ({', '.join(METRICS)}),")
    print(f"{args.replicates} replicates; ours: median of {args.repeats}\n")
    for rows in [int(x) for x in args.rows.split(",") if x]:
        y, scores = make_holdout(rows)
        t_ours = median_time(ours, args.repeats, y, scores, args.replicates)
        timed = args.replicates if rows <= 1000 else min(args.naive_replicates, args.replicates)
        t_naive = median_time(naive, 1, y, scores, timed) * args.replicates / timed
        note = "" if timed == args.replicates else f" (extrapolated from {timed} replicates)"
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                str(rows),
                "--replicates",
                str(args.replicates),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
        print(f"{rows:>9,} rows  ours {t_ours:7.3f} s   naive loop {t_naive:8.1f} s{note}")
        print(f"{'':>15}speed-up {t_naive / t_ours:6.0f}x   ours' peak allocations {peak:.0f} MB")


if __name__ == "__main__":
    main()
