"""The lake's index page, `reports/index.html`: every dataset's runs, model versions and
drift reports, linked. Rewritten when a run ends (either way) and after each monitor pass."""

from __future__ import annotations

import logging
from typing import Any

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.lake_layout import Zone
from mlcycle.reports import build_listing, render_index

INDEX_KEY = f"{Zone.REPORTS.prefix}index.html"
DRIFT_REPORTS = 10  # drift.json documents read per dataset, newest first


def listing(lake: Lake, registry: Registry, *, base: str) -> dict[str, Any]:
    """The index's content; `base` is the href prefix that reaches `reports/` from the page."""
    items = registry.items()
    runs = [i for i in items if str(i.get("pk", "")).startswith("RUN#")]
    versions = [i for i in items if str(i.get("pk", "")).startswith("MODEL#")]
    keys = lake.keys(Zone.REPORTS.prefix)
    drift_keys: dict[str, list[str]] = {}
    for key in keys:
        if key.endswith("/drift.json"):
            drift_keys.setdefault(key.split("/")[1], []).append(key)
    drift = {
        key: lake.get_json(lake.uri(key))
        for found in drift_keys.values()
        for key in sorted(found)[-DRIFT_REPORTS:]
    }
    return build_listing(runs, versions, keys, base=base, drift=drift)


def publish_index(lake: Lake, registry: Registry) -> str | None:
    """Rewrite `reports/index.html`; returns its URI, or None when it could not be written."""
    try:
        page = render_index(listing(lake, registry, base=""))
        return lake.put_text(INDEX_KEY, page, content_type="text/html")
    except Exception:
        # A page of links must never fail the run or the monitor pass that ends with it; the
        # next one rewrites it, and the log says why this one did not.
        logging.getLogger(__name__).exception("the lake's index page was not rewritten")
        return None
