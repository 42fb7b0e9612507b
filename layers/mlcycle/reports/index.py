"""The lake's index page: one page to start from, listing every dataset with its runs, its
model versions and its latest drift reports, each linking to its page.

`build_listing(runs, versions, report_keys, base=...)` turns registry records and the keys
under `reports/` into the listing; `render_index(listing)` draws it. The listing contract:

    {"generated_at": str,                       # ISO 8601, UTC
     "datasets": [                              # by name
       {"name": str,
        "production_version": int | None,       # from a RELEASE pointer, else the version
                                                # whose stage is "production"
        "runs": [                               # newest first
          {"run_id": str, "status": str,        # SUCCEEDED | FAILED | RUNNING | ...
           "started_at": str | None, "finished_at": str | None, "task": str | None,
           "model_version": int | None, "model_stage": str | None,   # the version's stage now
           "error": str | None,                 # "stage: type: message" when it failed
           "profile_href": str | None, "evaluation_href": str | None}],
        "versions": [                           # newest first
          {"version": int, "stage": str | None, "algorithm": str | None, "run_id": str | None,
           "primary_metric": str | None, "metric_value": float | None,
           "created_at": str | None, "evaluation_href": str | None,
           "card_href": str | None}],             # the version's model card
        "drift": [                              # newest first, at most MAX_DRIFT_REPORTS
          {"stamp": str, "time": str, "href": str, "model_version": int | None,
           "alarm": bool | None, "enough_samples": bool | None,     # None: no drift.json given
           "drifted_features": [str] | None}]}]}

Hrefs are relative: `base` + the key below `reports/`, so the caller decides where the page
sits (`""` for `reports/index.html` on AWS, `"lake/reports/"` for `DIR/index.html` locally).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from mlcycle.reports.render import render

Json = dict[str, Any]
MAX_DRIFT_REPORTS = 10
_REPORTS = "reports/"
_RUN_PAGE = re.compile(
    r"reports/dataset=(?P<dataset>[^/]+)/(?:dt=[^/]+/)?run=(?P<run>[^/]+)/"
    r"(?P<page>profile|evaluation|model_card)\.html"
)
_DRIFT_PAGE = re.compile(r"reports/dataset=(?P<dataset>[^/]+)/monitor/(?P<stamp>[^/]+)/drift\.html")
_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")


def render_index(listing: Json) -> str:
    """The page for a listing (see the module docstring); every href is rendered as given."""
    return render("index.html", title="mlcycle: reports", **listing)


def build_listing(
    runs: Iterable[Mapping[str, Any]],
    versions: Iterable[Mapping[str, Any]],
    report_keys: Iterable[str],
    *,
    base: str,
    drift: Mapping[str, Mapping[str, Any]] | None = None,
    generated_at: str | None = None,
) -> Json:
    """The listing from registry run records, model-version entries (a RELEASE pointer among
    them sets the production version) and lake keys under `reports/`. `drift` maps a
    drift.html or drift.json key to that drift.json's document, for the numbers."""
    pages: dict[tuple[str, str], dict[str, str]] = {}
    drift_pages: dict[str, list[tuple[str, str]]] = {}
    for key in report_keys:
        if m := _RUN_PAGE.fullmatch(key):
            pages.setdefault((m["dataset"], m["run"]), {})[m["page"]] = _href(base, key)
        elif m := _DRIFT_PAGE.fullmatch(key):
            drift_pages.setdefault(m["dataset"], []).append((m["stamp"], key))
    drift_docs = {_folder(k): dict(v) for k, v in (drift or {}).items()}

    by_dataset: dict[str, Json] = {}

    def entry(name: str) -> Json:
        return by_dataset.setdefault(
            name,
            {"name": name, "production_version": None, "runs": [], "versions": [], "drift": []},
        )

    stages: dict[tuple[str, int], str | None] = {}
    for v in versions:
        name = str(v.get("dataset") or str(v.get("pk", "")).removeprefix("MODEL#"))
        if not name:
            continue
        if v.get("version") is None:  # the RELEASE pointer, when the caller passes raw items
            if v.get("production_version") is not None:
                entry(name)["production_version"] = int(v["production_version"])
            continue
        number = int(v["version"])
        stages[(name, number)] = v.get("stage")
        primary = v.get("primary_metric")
        run_id = v.get("run_id")
        entry(name)["versions"].append(
            {
                "version": number,
                "stage": v.get("stage"),
                "algorithm": v.get("algorithm"),
                "run_id": run_id,
                "primary_metric": primary,
                "metric_value": _metric(v.get("metrics"), primary),
                "created_at": v.get("created_at"),
                "evaluation_href": pages.get((name, str(run_id)), {}).get("evaluation"),
                "card_href": pages.get((name, str(run_id)), {}).get("model_card"),
            }
        )

    for r in runs:
        name = str(r.get("dataset") or str(r.get("pk", "")).removeprefix("RUN#"))
        run_id = str(r.get("run_id") or r.get("sk") or "")
        if not name or not run_id:
            continue
        raw = r.get("model_version")
        model_version = int(raw) if raw is not None else None
        run_pages = pages.get((name, run_id), {})
        entry(name)["runs"].append(
            {
                "run_id": run_id,
                "status": str(r.get("status") or "UNKNOWN"),
                "started_at": r.get("started_at"),
                "finished_at": r.get("finished_at"),
                "task": r.get("task"),
                "model_version": model_version,
                # the stage the version has now (a canary may since have been promoted)
                "model_stage": stages.get((name, model_version), r.get("model_stage"))
                if model_version is not None
                else None,
                "error": _error(r.get("error")),
                "profile_href": run_pages.get("profile"),
                "evaluation_href": run_pages.get("evaluation"),
            }
        )

    # pages of runs no record mentions still get a row: the lake outlives the registry
    listed = {(d["name"], r["run_id"]) for d in by_dataset.values() for r in d["runs"]}
    for (name, run_id), run_pages in pages.items():
        if (name, run_id) not in listed:
            entry(name)["runs"].append(
                {
                    "run_id": run_id,
                    "status": "UNKNOWN",
                    "started_at": None,
                    "finished_at": None,
                    "task": None,
                    "model_version": None,
                    "model_stage": None,
                    "error": None,
                    "profile_href": run_pages.get("profile"),
                    "evaluation_href": run_pages.get("evaluation"),
                }
            )

    for name, found in drift_pages.items():
        newest = sorted(found, reverse=True)[:MAX_DRIFT_REPORTS]  # stamps sort as times
        for stamp, key in newest:
            doc = drift_docs.get(_folder(key), {})
            entry(name)["drift"].append(
                {
                    "stamp": stamp,
                    "time": _stamp_time(stamp),
                    "href": _href(base, key),
                    "model_version": doc.get("model_version"),
                    "alarm": doc.get("alarm"),
                    "enough_samples": doc.get("enough_samples"),
                    "drifted_features": doc.get("drifted_features"),
                }
            )

    for d in by_dataset.values():
        # ISO times sort as strings; run ids start with their time, so they break ties
        d["runs"].sort(key=lambda r: (r["started_at"] or "", r["run_id"]), reverse=True)
        d["versions"].sort(key=lambda v: v["version"], reverse=True)
        if d["production_version"] is None:
            d["production_version"] = next(
                (v["version"] for v in d["versions"] if v["stage"] == "production"), None
            )
    return {
        "generated_at": generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "datasets": [by_dataset[name] for name in sorted(by_dataset)],
    }


def _href(base: str, key: str) -> str:
    # quote what a URL cannot hold as is, keep the Hive `=` readable
    return base + quote(key.removeprefix(_REPORTS), safe="/=")


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0]


def _stamp_time(stamp: str) -> str:
    m = _STAMP.fullmatch(stamp)
    return f"{m[1]}-{m[2]}-{m[3]} {m[4]}:{m[5]}:{m[6]} UTC" if m else stamp


def _metric(metrics: Any, name: Any) -> float | None:
    if not isinstance(metrics, Mapping) or name not in metrics:
        return None
    value = metrics[name]
    if isinstance(value, Mapping):  # {"value", "low", "high"}
        value = value.get("value")
    return float(value) if isinstance(value, int | float) else None


def _error(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, Mapping):
        parts = [str(error[k]) for k in ("stage", "type", "message") if error.get(k)]
        return ": ".join(parts) or None
    return str(error)
