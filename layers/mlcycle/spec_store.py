"""Where a dataset's problem spec is found in the lake."""

from __future__ import annotations

from mlcycle.adapters.lake import Lake
from mlcycle.errors import SpecError
from mlcycle.lake_layout import spec_keys
from mlcycle.spec import ProblemSpec, parse_spec


def find_spec(lake: Lake, dataset: str) -> ProblemSpec:
    """The dataset's spec (specs/<dataset>.yaml, .yml or .json), validated."""
    for key in spec_keys(dataset):
        if lake.exists(key):
            return parse_spec(lake.get_bytes(lake.uri(key)), source=lake.uri(key))
    raise SpecError(
        f"no problem spec for dataset {dataset!r}: upload one to "
        f"{lake.uri(spec_keys(dataset)[0])} naming at least the target column"
    )
