"""Time the monitor's feature drift against Evidently's `DataDriftPreset` on the same frames,
measured in the same run, then the monitor's scaling and memory.

    python bench/drift.py [--rows 100000] [--repeats 5] [--scale 100000,300000,1000000]
                          [--skip-evidently]

The frames (seeded): 16 numeric and 4 categorical columns, drift injected in 3 of them
(a shifted mean, a wider spread, a changed category mix). Ours compares the current frame
with the stored baseline (built once at training; its build time is shown apart);
Evidently takes both frames each run, as it is used.

Evidently 0.7 does not import with pandas 3, so it runs in its own virtual environment,
bench/.venv-evidently (pandas 2.3, bench/requirements-evidently.txt), created on first use;
the frames travel as Parquet through a temporary directory. The machine is shared and noisy:
timings are medians.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.domain.features import drift_baseline
from mlcycle.domain.monitor import extend_baseline, feature_drift
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, MonitoringLimits, Task

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-evidently"
REQUIREMENTS = BENCH / "requirements-evidently.txt"
NUMERIC = [f"num_{i:02d}" for i in range(16)]
CATEGORICAL = [f"cat_{i}" for i in range(4)]
DRIFTED = ["num_04", "num_11", "cat_2"]
CARDINALITY = [3, 8, 30, 120]
SCHEMA = ResolvedSchema(
    dataset="bench",
    task=Task.BINARY,
    target="y",
    features={
        **dict.fromkeys(NUMERIC, ColumnType.NUMERIC),
        **dict.fromkeys(CATEGORICAL, ColumnType.CATEGORICAL),
    },
    classes=["no", "yes"],
)
LIMITS = MonitoringLimits()


def make_frame(n: int, seed: int, *, drift: bool) -> pd.DataFrame:
    """Numeric columns of four shapes (normal, lognormal, uniform, counts), some with 2%
    missing; categoricals with Zipf-like shares. With `drift`: num_04 +0.75 sd, num_11
    1.8x the spread, cat_2's shares reversed."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        shape = i % 4
        if shape == 0:
            x = rng.normal(10 * i, 1 + i, n)
        elif shape == 1:
            x = rng.lognormal(1, 0.6, n)
        elif shape == 2:
            x = rng.uniform(-i, i + 1, n)
        else:
            x = rng.poisson(2 + i, n).astype("float64")
        if drift and name == "num_04":
            x = x + 0.75 * (1 + i)  # normal(40, 5): +0.75 sd
        if drift and name == "num_11":
            x = x.mean() + 1.8 * (x - x.mean())
        if i % 5 == 0:
            x[rng.random(n) < 0.02] = np.nan
        cols[name] = x
    for name, k in zip(CATEGORICAL, CARDINALITY, strict=True):
        weights = 1.0 / np.arange(1, k + 1)
        if drift and name == "cat_2":
            weights = weights[::-1]
        labels = np.asarray([f"{name}_v{j}" for j in range(k)], dtype=object)
        cols[name] = labels[rng.choice(k, n, p=weights / weights.sum())]
    return pd.DataFrame(cols)


def build_baseline(reference: pd.DataFrame) -> dict[str, Any]:
    return extend_baseline(drift_baseline(reference, SCHEMA), reference, SCHEMA)


def time_ours(current: pd.DataFrame, baseline: dict[str, Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = feature_drift(current, baseline, SCHEMA, LIMITS)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def evidently_python() -> Path:
    """bench/.venv-evidently's interpreter, created or refreshed when the requirements
    changed (their hash is kept in the venv)."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements.sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"creating {VENV.relative_to(BENCH.parent)} (Evidently with pandas 2.3) ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    # Evidently installs .py data files at the venv's top level: a "*" .gitignore inside
    # keeps the whole venv out of git and out of ruff (which reads .gitignore files)
    (VENV / ".gitignore").write_text("# created by bench/drift.py\n*\n")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(digest)
    return python


def run_evidently(reference: pd.DataFrame, current: pd.DataFrame, repeats: int) -> dict[str, Any]:
    python = evidently_python()
    with tempfile.TemporaryDirectory() as tmp:
        ref_path, cur_path = Path(tmp, "reference.parquet"), Path(tmp, "current.parquet")
        reference.to_parquet(ref_path)
        current.to_parquet(cur_path)
        out = subprocess.run(
            [
                str(python),
                str(BENCH / "evidently_drift.py"),
                str(ref_path),
                str(cur_path),
                "--numeric",
                ",".join(NUMERIC),
                "--categorical",
                ",".join(CATEGORICAL),
                "--repeats",
                str(repeats),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _peak_kib() -> int:
    """This process's own peak RSS (VmHWM). Not `ru_maxrss`: in a child started by
    subprocess it reports the parent's peak when that was larger (Linux keeps it over exec)."""
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1])


def memory_child(rows: int, reference_rows: int) -> None:
    """In a fresh process: peak RSS, and the monitor call's own peak allocations."""
    reference = make_frame(reference_rows, 1, drift=False)
    baseline = build_baseline(reference)
    del reference
    current = make_frame(rows, 2, drift=True)
    rss_before = _peak_kib()
    tracemalloc.start()
    result = feature_drift(current, baseline, SCHEMA, LIMITS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    frame_mb = current.memory_usage(deep=True).sum() / 2**20
    print(
        json.dumps(
            {
                "rows": rows,
                "frame_mb": frame_mb,
                "peak_rss_mb": _peak_kib() / 1024,
                "rss_before_mb": rss_before / 1024,
                "monitor_peak_alloc_mb": peak / 2**20,
                "drifted": result.drifted_features,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="reference and current rows")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--evidently-repeats", type=int, default=3)
    parser.add_argument("--scale", default="100000,300000,1000000", help="current row counts")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.rows)
        return

    reference = make_frame(args.rows, 1, drift=False)
    current = make_frame(args.rows, 2, drift=True)
    print(f"frames: {args.rows:,} reference and {args.rows:,} current rows, 16 numeric and")
    print(f"4 categorical columns, drift injected in {', '.join(DRIFTED)}")

    start = time.perf_counter()
    baseline = build_baseline(reference)
    build = time.perf_counter() - start
    size_kb = len(json.dumps(baseline)) / 1024
    ours, result = time_ours(current, baseline, args.repeats)
    exact = sorted(result.drifted_features) == sorted(DRIFTED)
    print(f"\nbaseline build (once, at training)   {build:8.3f} s  ({size_kb:.0f} KB of JSON)")
    print(f"ours: feature_drift (median of {args.repeats})   {ours:8.3f} s")
    print(f"  flagged {result.drifted_features} -> exactly the drifted columns: {exact}")
    worst_clean = max(f.psi for f in result.features if f.name not in DRIFTED)
    weakest_drift = min(f.psi for f in result.features if f.name in DRIFTED)
    print(f"  PSI: weakest drifted {weakest_drift:.3f}, largest undrifted {worst_clean:.4f}")

    if not args.skip_evidently:
        ev = run_evidently(reference, current, args.evidently_repeats)
        ev_time = statistics.median(ev["seconds"])
        ev_exact = sorted(ev["drifted"]) == sorted(DRIFTED)
        print(
            f"Evidently {ev['evidently']} DataDriftPreset (pandas {ev['pandas']}, median of "
            f"{len(ev['seconds'])})  {ev_time:8.3f} s"
        )
        print(f"  flagged {sorted(ev['drifted'])} -> exactly the drifted columns: {ev_exact}")
        print(f"  methods: {sorted(set(ev['methods'].values()))}")
        print(f"speed-up: {ev_time / ours:.0f}x on the stored baseline, ", end="")
        print(f"{ev_time / (ours + build):.0f}x counting the baseline build too")

    print("\nscaling (current rows against the same baseline):")
    previous = None
    for rows in [int(x) for x in args.scale.split(",") if x]:
        frame = current if rows == args.rows else make_frame(rows, 3, drift=True)
        seconds, res = time_ours(frame, baseline, max(3, args.repeats // 2))
        per_m = seconds / rows * 1e6
        ratio = "" if previous is None else f"  ({per_m / previous:.2f}x the per-row time)"
        previous = previous or per_m
        ok = sorted(res.drifted_features) == sorted(DRIFTED)
        print(
            f"  {rows:>9,} rows  {seconds:7.3f} s  {per_m:6.3f} s per 1M rows{ratio}  exact: {ok}"
        )

    rows = max(int(x) for x in args.scale.split(",") if x)
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(rows), "--rows", str(args.rows)],
        check=True,
        capture_output=True,
        text=True,
    )
    mem = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"\nmemory at {mem['rows']:,} current rows (fresh process): peak RSS "
        f"{mem['peak_rss_mb']:.0f} MB (the current frame itself {mem['frame_mb']:.0f} MB, "
        f"RSS before the call {mem['rss_before_mb']:.0f} MB); feature_drift's own peak "
        f"allocations {mem['monitor_peak_alloc_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
