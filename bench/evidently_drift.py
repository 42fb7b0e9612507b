"""Evidently's side of bench/drift.py: time `DataDriftPreset` on two Parquet frames.

Runs in bench/.venv-evidently (Evidently 0.7 with pandas 2.3; it does not import with the
project's pandas 3), so it imports nothing from mlcycle. Prints one JSON object:

    {"evidently": "0.7.x", "pandas": "2.3.x", "seconds": [...], "drifted": [...],
     "methods": {column: method}}

    python bench/evidently_drift.py REFERENCE.parquet CURRENT.parquet --numeric a,b
        --categorical c,d [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import evidently
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def drifted_columns(snapshot_dict: dict) -> tuple[list[str], dict[str, str]]:
    """Columns whose `ValueDrift` crossed its threshold: p-value tests drift at or below it,
    distances (Wasserstein, Jensen-Shannon, ...) at or above it, as Evidently decides."""
    drifted, methods = [], {}
    for metric in snapshot_dict["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        column, method, threshold = config["column"], config["method"], config["threshold"]
        value = float(metric["value"])
        methods[column] = method
        if value <= threshold if "p_value" in method.lower() else value >= threshold:
            drifted.append(column)
    return drifted, methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("reference")
    parser.add_argument("current")
    parser.add_argument("--numeric", default="")
    parser.add_argument("--categorical", default="")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    # Column types given, as a user would: otherwise Evidently may take a text column with
    # many distinct values for free text and run its much slower text drift instead.
    definition = DataDefinition(
        numerical_columns=[c for c in args.numeric.split(",") if c],
        categorical_columns=[c for c in args.categorical.split(",") if c],
    )
    seconds, drifted, methods = [], [], {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot = Report([DataDriftPreset()]).run(
                current_data=Dataset.from_pandas(current, data_definition=definition),
                reference_data=Dataset.from_pandas(reference, data_definition=definition),
            )
        seconds.append(time.perf_counter() - start)
        drifted, methods = drifted_columns(snapshot.dict())
    print(
        json.dumps(
            {
                "evidently": evidently.__version__,
                "pandas": pd.__version__,
                "seconds": seconds,
                "drifted": drifted,
                "methods": methods,
            }
        )
    )


if __name__ == "__main__":
    main()
