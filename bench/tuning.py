"""Does the hyperparameter search and the tuned decision threshold pay? Each candidate trained
with the spec's search defaults (`SearchPolicy()`) against the same candidate untuned
(`SearchPolicy(trials=1)`: the defaults only, its threshold still tuned), both scored on the
same holdout, measured in the same run.

    python bench/tuning.py [--seeds 3] [--threads 1]

Tables, each processed as the pipeline does (CSV bytes, `tables.read_table`,
`process.curate`, Parquet, `features.engineer` with the spec's holdout fraction):

- customer-churn: the bundled examples/customer-churn.csv with examples/customer-churn.yaml.
- breast-cancer-5pct: scikit-learn's `load_breast_cancer` with the malignant class subsampled
  (seeded) to 5% of the rows: every benign row and 19 malignant ones, 376 rows. Its holdout
  holds 4 malignant rows, so its metrics move by large steps: read it as a direction.
- digits-9: scikit-learn's `load_digits`, "is it a 9" against the nine other digits: real
  images whose positive class is naturally 10% of the rows (no real imbalanced binary table
  ships with the installed packages: scikit-learn's bundled tables are balanced or
  multiclass, and neither statsmodels nor imbalanced-learn is installed).

Per candidate: the primary metric (roc_auc) tuned and untuned on the holdout; F1 of the tuned
model at its tuned threshold (`predict(..., threshold=candidate.threshold.threshold)`) and at
the estimator's argmax (threshold None); training seconds (search and refit) and the trials
run. Each seed (the spec's, then +1, +2) changes the split, the search's draws and the
subsample; the numbers printed are medians over the seeds, with the range. The machine is
shared and noisy; OpenMP and BLAS are held to --threads threads (threadpoolctl), as on a
shared core OpenMP's spinning slows gradient boosting down by 10-100x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_breast_cancer, load_digits
from threadpoolctl import threadpool_limits

from mlcycle.domain import evaluate, features, process, tables, train
from mlcycle.spec import Algorithm, ProblemSpec, SearchPolicy, parse_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BREAST_SPEC = (
    "dataset: breast-cancer-5pct\ntarget: diagnosis\ntask: binary\npositive_class: malignant\n"
    "primary_metric: roc_auc\n"
)
DIGITS_SPEC = (
    "dataset: digits-9\ntarget: is_nine\ntask: binary\npositive_class: 'yes'\n"
    "primary_metric: roc_auc\n"
)


def churn(seed: int) -> bytes:
    return (EXAMPLES / "customer-churn.csv").read_bytes()


def breast_cancer(seed: int) -> bytes:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.assign(
        diagnosis=np.where(data.frame["target"] == 0, "malignant", "benign")
    ).drop(columns="target")
    benign = frame[frame["diagnosis"] == "benign"]
    keep = round(len(benign) * 0.05 / 0.95)  # malignant rows: 5% of the result
    malignant = frame[frame["diagnosis"] == "malignant"].sample(n=keep, random_state=seed)
    return pd.concat([benign, malignant]).sort_index().to_csv(index=False).encode()


def digits(seed: int) -> bytes:
    data = load_digits(as_frame=True)
    frame = data.frame.assign(is_nine=np.where(data.frame["target"] == 9, "yes", "no"))
    return frame.drop(columns="target").to_csv(index=False).encode()


def prepared(data: bytes, spec: ProblemSpec, seed: int) -> tuple[Any, Any]:
    """The processing stage, then engineer_features at the spec's fraction and `seed`."""
    curated = process.curate(tables.read_table(data, "t.csv", dictionary_encode=True), spec)
    frame = pq.read_table(pa.BufferReader(process.parquet_bytes(curated.curated))).to_pandas()
    schema = curated.schema
    made = features.engineer(frame, schema, holdout_fraction=spec.holdout_fraction, seed=seed)
    return schema, made


def one_seed(data: bytes, spec: ProblemSpec, seed: int) -> dict[str, dict[str, float]]:
    schema, made = prepared(data, spec, seed)
    metric = spec.metric_for(schema.task)
    out: dict[str, dict[str, float]] = {}
    for algorithm in spec.candidates:
        row: dict[str, float] = {}
        for label, policy in (("tuned", spec.search), ("untuned", SearchPolicy(trials=1))):
            started = time.perf_counter()
            candidate = train.train_candidate(
                algorithm,
                schema.task,
                made.X_train,
                made.y_train,
                seed=seed,
                metric=metric,
                policy=policy,
                classes=schema.classes,
                positive_class=schema.positive_class,
                decision=spec.decision,
            )
            row[f"{label}_seconds"] = time.perf_counter() - started
            assert candidate.search is not None
            assert candidate.threshold is not None
            row[f"{label}_trials"] = len(candidate.search.trials)
            row[f"{label}_threshold"] = candidate.threshold.threshold
            at_threshold = evaluate.prediction_metrics(
                evaluate.predict(
                    candidate.estimator, made.X_holdout, schema, candidate.threshold.threshold
                ),
                made.y_holdout,
                schema,
            )
            at_argmax = evaluate.prediction_metrics(
                evaluate.predict(candidate.estimator, made.X_holdout, schema, None),
                made.y_holdout,
                schema,
            )
            row[f"{label}_{metric}"] = at_threshold[metric]
            row[f"{label}_f1"] = at_threshold["f1"]
            row[f"{label}_f1_argmax"] = at_argmax["f1"]
        out[str(algorithm)] = row
    names = list(out)
    winner: dict[str, float] = {}
    for label in ("tuned", "untuned"):
        # the stage's pick_winner: the best holdout primary metric, ties to the earlier one
        scores = {Algorithm(a): {metric: out[a][f"{label}_{metric}"]} for a in names}
        best = str(evaluate.pick_winner(scores, metric))
        winner[f"{label}_{metric}"] = out[best][f"{label}_{metric}"]
        winner[f"{label}_name"] = names.index(best)
    out["winner"] = winner
    return out


def _m(values: list[float], digits: int = 3) -> str:
    """The median, and the range over the seeds when there are several."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(name: str, data_for: Any, spec: ProblemSpec, seeds: list[int]) -> None:
    runs = [one_seed(data_for(seed), spec, seed) for seed in seeds]
    first = data_for(seeds[0])
    schema, made = prepared(first, spec, seeds[0])
    positives = float((made.y_holdout == schema.positive_class).mean())
    metric = spec.metric_for(schema.task)
    print(
        f"\n{name}: {len(made.train) + len(made.holdout):,} rows ({len(made.holdout)} holdout, "
        f"{positives:.0%} {schema.positive_class!r}), {len(schema.features)} features; "
        f"search {spec.search.trials} trials x {spec.search.cv_folds} folds; "
        f"seeds {seeds}: medians (range)"
    )
    header = (
        f"  {'candidate':<24} {metric + ' tuned':>22} {metric + ' untuned':>22}"
        f" {'F1 tuned @thr':>22} {'F1 tuned @argmax':>22} {'F1 untuned @thr':>22}"
        f" {'train s tuned':>20} {'untuned':>17} {'trials':>6}"
    )
    print(header)
    for algorithm in (str(a) for a in spec.candidates):
        r = [run[algorithm] for run in runs]

        def col(key: str, rows: list[dict[str, float]] = r, digits: int = 3) -> str:
            return _m([x[key] for x in rows], digits)

        print(
            f"  {algorithm:<24} {col(f'tuned_{metric}'):>22} {col(f'untuned_{metric}'):>22}"
            f" {col('tuned_f1'):>22} {col('tuned_f1_argmax'):>22} {col('untuned_f1'):>22}"
            f" {col('tuned_seconds', digits=1):>20} {col('untuned_seconds', digits=1):>17}"
            f" {statistics.median(x['tuned_trials'] for x in r):>6.0f}"
        )
    winners = [run["winner"] for run in runs]
    names = [str(a) for a in spec.candidates]
    tuned_names = sorted({names[int(w["tuned_name"])] for w in winners})
    untuned_names = sorted({names[int(w["untuned_name"])] for w in winners})
    gain = [w[f"tuned_{metric}"] - w[f"untuned_{metric}"] for w in winners]
    print(
        f"  winner (best holdout {metric}): tuned {_m([w[f'tuned_{metric}'] for w in winners])}"
        f" {tuned_names}, untuned {_m([w[f'untuned_{metric}'] for w in winners])}"
        f" {untuned_names}; tuned - untuned {_m(gain, 4)}"
    )
    delta = [run[a]["tuned_f1"] - run[a]["tuned_f1_argmax"] for run in runs for a in names]
    print(f"  F1 at the tuned threshold - F1 at argmax, over candidates and seeds: {_m(delta, 3)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP and BLAS threads")
    args = parser.parse_args()
    threadpool_limits(args.threads)
    churn_spec = parse_spec((EXAMPLES / "customer-churn.yaml").read_text())
    print(
        f"tuned (SearchPolicy(): {churn_spec.search.trials} trials, "
        f"{churn_spec.search.cv_folds} folds, max {churn_spec.search.max_rows:,} rows, "
        f"{churn_spec.search.budget_seconds:.0f} s budget) against untuned "
        f"(SearchPolicy(trials=1)), OpenMP/BLAS threads {args.threads}; shared machine: "
        f"seconds are noisy"
    )
    for name, data_for, text in (
        ("customer-churn (bundled)", churn, None),
        ("breast-cancer-5pct (sklearn, malignant subsampled)", breast_cancer, BREAST_SPEC),
        ("digits-9 (sklearn digits, 9 against the rest)", digits, DIGITS_SPEC),
    ):
        spec = churn_spec if text is None else parse_spec(text)
        seeds = [spec.seed + i for i in range(args.seeds)]
        report(name, data_for, spec, seeds)


if __name__ == "__main__":
    main()
