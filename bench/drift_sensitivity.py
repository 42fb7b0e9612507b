"""How sharply the monitor sees drift in small integer and categorical features, and that
it does not see drift that is not there: value bins and effect-size alerts against decile PSI.

    python bench/drift_sensitivity.py [--windows 200] [--train-rows 20000] [--live-rows 5000]

1. Shifts PSI under-weights (seeded): decile PSI as before (a baseline without value bins,
   PSI alone), then value-binned PSI, KS / distance and what flags the feature now.
2. No drift: same-distribution windows of the bundled churn data (4,000 training rows) at
   100, 300, 1,000 and 10,000 rows: the share of windows with a drifted feature and with an
   alarm, before and after, and the largest effect sizes against their chance levels.
3. Calibration of the effect-size thresholds: the KS (numbers) and total variation distance
   (categories) at which PSI reaches its 0.2 on shifts where PSI works well.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.domain.features import _decile_edges, bin_fractions, drift_baseline, psi
from mlcycle.domain.monitor import extend_baseline, feature_drift
from mlcycle.samples import customer_churn
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, MonitoringLimits, Task

NEW = MonitoringLimits()
OLD = MonitoringLimits(ks_threshold=None, categorical_distance_threshold=None)
N, C, D = ColumnType.NUMERIC, ColumnType.CATEGORICAL, ColumnType.DATETIME
CHURN = ResolvedSchema(
    dataset="customer-churn",
    task=Task.BINARY,
    target="churned",
    classes=["no", "yes"],
    positive_class="yes",
    features={
        "signup_date": D,
        **dict.fromkeys(["plan", "region", "payment_method"], C),
        **dict.fromkeys(
            [
                "monthly_charges",
                "tenure_months",
                "support_tickets_90d",
                "avg_session_minutes",
                "last_login_days",
                "discount_pct",
                "satisfaction_score",
            ],
            N,
        ),
    },
)


def decile_only(baseline: dict[str, Any]) -> dict[str, Any]:
    """The baseline as written before value bins."""
    old = copy.deepcopy(baseline)
    for column in old["columns"].values():
        column.pop("values", None)
        column.pop("value_fractions", None)
    return old


def shifts(train_rows: int, live_rows: int) -> None:
    rng = np.random.default_rng(0)

    def zero_inflated(n: int, mean: float) -> np.ndarray:  # 80% zeros, then 1 + Poisson
        return np.where(rng.random(n) < 0.8, 0.0, 1.0 + rng.poisson(mean, n))

    cases: list[tuple[str, ColumnType, Any, Any]] = [
        *[
            (
                f"Poisson(1) -> Poisson({lam:g})",
                N,
                lambda n: rng.poisson(1.0, n),
                lambda n, m=lam: rng.poisson(m, n),
            )
            for lam in (1.3, 1.5, 1.7, 2.0)
        ],
        (
            "80% zeros, 1+Poisson(1) -> 1+Poisson(2)",
            N,
            lambda n: zero_inflated(n, 1),
            lambda n: zero_inflated(n, 2),
        ),
        (
            "rating 1-5, mean 3.2 -> 3.7",
            N,
            lambda n: rng.choice(5, n, p=[0.1, 0.15, 0.3, 0.3, 0.15]) + 1,
            lambda n: rng.choice(5, n, p=[0.05, 0.1, 0.2, 0.4, 0.25]) + 1,
        ),
        (
            "plan 45/45/10 -> 63/27/10",
            C,
            lambda n: rng.choice(["a", "b", "c"], n, p=[0.45, 0.45, 0.1]),
            lambda n: rng.choice(["a", "b", "c"], n, p=[0.63, 0.27, 0.1]),
        ),
        (
            "plan 50/35/15 -> 65/20/15",
            C,
            lambda n: rng.choice(["a", "b", "c"], n, p=[0.5, 0.35, 0.15]),
            lambda n: rng.choice(["a", "b", "c"], n, p=[0.65, 0.2, 0.15]),
        ),
    ]
    print(f"1. shifts ({train_rows:,} training rows, {live_rows:,} live)")
    head = f"{'case':42s} {'before: PSI':>11s} {'KS':>6s}  {'after: PSI':>10s} {'KS':>6s}"
    print(f"   {head} {'dist':>6s}  drifted by")
    for label, kind, before, after in cases:
        schema = ResolvedSchema(dataset="d", task=Task.REGRESSION, target="y", features={"x": kind})
        ref = pd.DataFrame({"x": before(train_rows), "y": 0.0})
        cur = pd.DataFrame({"x": after(live_rows)})
        baseline = extend_baseline(drift_baseline(ref, schema), ref, schema)
        old = feature_drift(cur, decile_only(baseline), schema, OLD).features[0]
        new = feature_drift(cur, baseline, schema, NEW).features[0]
        print(
            f"   {label:42s} {old.psi:11.3f} {_f(old.ks):>6s}  {new.psi:10.3f} {_f(new.ks):>6s} "
            f"{_f(new.distance):>6s}  {'+'.join(new.drifted_by) or '-'} "
            f"(before: {'+'.join(old.drifted_by) or '-'}; {new.binning})"
        )


def no_drift(windows: int) -> None:
    train = customer_churn(4000, seed=7)
    baseline = extend_baseline(drift_baseline(train, CHURN), train, CHURN)
    old = decile_only(baseline)
    binned = [c for c, e in baseline["columns"].items() if "values" in e]
    print(
        f"\n2. no drift: churn windows against 4,000 training rows; by value: {', '.join(binned)}"
    )
    for rows, count in (
        (100, windows),
        (300, windows),
        (1000, max(20, windows // 3)),
        (10_000, max(10, windows // 10)),
    ):
        tally = {"before": [0, 0], "after": [0, 0]}
        worst: dict[str, float] = {
            "ks": 0.0,
            "distance": 0.0,
            "ks_chance": 1.0,
            "distance_chance": 1.0,
        }
        small_psi = {"before": [], "after": []}
        for seed in range(1000, 1000 + count):
            current = customer_churn(rows, seed=seed)
            for key, base, limits in (("before", old, OLD), ("after", baseline, NEW)):
                result = feature_drift(current, base, CHURN, limits)
                tally[key][0] += result.n_drifted > 0
                tally[key][1] += result.alarm
                small_psi[key].append(max(f.psi for f in result.features if f.name in binned))
            for f in result.features:  # the "after" result
                worst["ks"] = max(worst["ks"], f.ks or 0.0)
                worst["distance"] = max(worst["distance"], f.distance or 0.0)
                if f.ks is not None:
                    worst["ks_chance"] = min(worst["ks_chance"], f.chance_level or 1.0)
                if f.distance is not None:
                    worst["distance_chance"] = min(worst["distance_chance"], f.chance_level or 1.0)
        before, after = (np.quantile(small_psi[k], 0.99) for k in ("before", "after"))
        print(
            f"   {rows:>6,} rows, {count} windows: a drifted feature in {tally['before'][0]} "
            f"before, {tally['after'][0]} after; an alarm in {tally['before'][1]} before, "
            f"{tally['after'][1]} after\n"
            f"      PSI of the value-binned features, 99th percentile: {before:.3f} by deciles, "
            f"{after:.3f} by value; largest KS {worst['ks']:.3f} (chance levels from "
            f"{worst['ks_chance']:.3f}), distance {worst['distance']:.3f} (from "
            f"{worst['distance_chance']:.3f})"
        )


def calibration() -> None:
    rng = np.random.default_rng(1)
    n = 200_000
    print("\n3. where decile PSI reaches 0.2 on shifts PSI sees well")
    smooth = {
        "normal, mean": (lambda: rng.normal(0, 1, n), lambda a: rng.normal(a, 1, n)),
        "lognormal, scale": (lambda: rng.lognormal(0, 0.6, n), lambda a: rng.lognormal(a, 0.6, n)),
        "exponential, rate": (lambda: rng.exponential(1, n), lambda a: rng.exponential(1 + a, n)),
    }
    for label, (ref_of, cur_of) in smooth.items():
        ref = np.sort(ref_of())
        edges = _decile_edges(ref)
        fr = bin_fractions(ref, edges)
        for shift in np.arange(0.01, 2.0, 0.01):
            cur = np.sort(cur_of(shift))
            if psi(fr, bin_fractions(cur, edges)) >= 0.2:
                grid = np.r_[ref, cur]
                ks = np.max(
                    np.abs(
                        np.searchsorted(ref, grid, "right") / n
                        - np.searchsorted(cur, grid, "right") / n
                    )
                )
                print(f"   {label:20s} at KS {ks:.3f}")
                break
    for label, shares, a, b in (
        ("50/50, one to the other", [0.5, 0.5], 0, 1),
        ("50/35/15, first to second", [0.5, 0.35, 0.15], 0, 1),
        ("3 equal, first to second", [1 / 3] * 3, 0, 1),
        ("40/40/15/5, to the 5%", [0.4, 0.4, 0.15, 0.05], 0, 3),
    ):
        e = np.asarray(shares)
        for d in np.arange(0.001, 0.5, 0.001):
            c = e.copy()
            c[a] -= d
            c[b] += d
            if psi(e, c) >= 0.2:
                at = _psi_at(e, a, b, 0.15)
                print(f"   {label:27s} at distance {d:.3f} (PSI at distance 0.15: {at:.3f})")
                break


def _psi_at(e: np.ndarray, a: int, b: int, d: float) -> float:
    c = e.copy()
    c[a] -= d
    c[b] += d
    return psi(e, c)


def _f(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--windows", type=int, default=200, help="no-drift windows at 100 and 300 rows"
    )
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--live-rows", type=int, default=5_000)
    args = parser.parse_args()
    start = time.perf_counter()
    shifts(args.train_rows, args.live_rows)
    no_drift(args.windows)
    calibration()
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
