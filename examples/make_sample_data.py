"""Regenerate examples/customer-churn.csv, the bundled demo dataset.

    python examples/make_sample_data.py [--rows 5000] [--seed 7] [--out PATH]

The data is synthetic and deterministic (see mlcycle.samples.customer_churn): the same
rows and seed always give byte-identical output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlcycle.samples import customer_churn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("customer-churn.csv"))
    args = parser.parse_args()
    customer_churn(args.rows, args.seed).to_csv(args.out, index=False)
    print(f"wrote {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()
