"""The index page's listing from registry records and lake keys, and its rendering."""

from __future__ import annotations

from typing import Any

from mlcycle.reports import build_listing, render_index
from mlcycle.reports.index import MAX_DRIFT_REPORTS

RUNS: list[dict[str, Any]] = [
    # as Registry.get_run returns them: the dataset and run id are the item's keys
    {
        "pk": "RUN#churn",
        "sk": "20240601T100000Z-aaa",
        "status": "SUCCEEDED",
        "started_at": "2024-06-01T10:00:00+00:00",
        "finished_at": "2024-06-01T10:03:00+00:00",
        "task": "binary",
        "model_version": 1,
        "model_stage": "canary",
    },
    {
        "dataset": "churn",
        "run_id": "20240602T100000Z-bbb",
        "status": "FAILED",
        "started_at": "2024-06-02T10:00:00+00:00",
        "finished_at": "2024-06-02T10:00:05+00:00",
        "error": {"stage": "process_data", "type": "SchemaError", "message": "no rows <left>"},
    },
    {
        "dataset": "churn",
        "run_id": "20240603T100000Z-ccc",
        "status": "RUNNING",
        "started_at": "2024-06-03T10:00:00+00:00",
    },
    {"dataset": "penguins", "run_id": "r1", "status": "SUCCEEDED", "started_at": "2024-05-01"},
]
VERSIONS: list[dict[str, Any]] = [
    {
        "dataset": "churn",
        "version": 1,
        "stage": "production",
        "algorithm": "random_forest",
        "primary_metric": "roc_auc",
        "metrics": {"roc_auc": 0.8759, "f1": 0.59},
        "run_id": "20240601T100000Z-aaa",
        "created_at": "2024-06-01T10:02:00+00:00",
        "artifacts": {"evaluation_uri": "s3://lake/runs/dataset=churn/run=.../evaluation.json"},
    },
    {"pk": "MODEL#churn", "sk": "RELEASE", "production_version": 1},
]
KEYS = [
    "reports/dataset=churn/run=20240601T100000Z-aaa/profile.html",
    "reports/dataset=churn/run=20240601T100000Z-aaa/profile.json",
    "reports/dataset=churn/run=20240601T100000Z-aaa/evaluation.html",
    "reports/dataset=churn/run=20240602T100000Z-bbb/profile.html",
    "reports/dataset=penguins/dt=2024-05-01/run=r1/profile.html",
    *[f"reports/dataset=churn/monitor/202406{d:02d}T120000Z/drift.html" for d in range(1, 14)],
    "reports/dataset=churn/monitor/20240613T120000Z/drift.json",
    "reports/dataset=old/run=x/evaluation.html",  # the registry forgot it; the lake did not
]
DRIFT = {
    "reports/dataset=churn/monitor/20240613T120000Z/drift.json": {
        "alarm": True,
        "enough_samples": True,
        "drifted_features": ["tenure_months", "plan"],
        "model_version": 1,
    }
}


def _listing(base: str = "lake/reports/") -> dict[str, Any]:
    return build_listing(RUNS, VERSIONS, KEYS, base=base, drift=DRIFT, generated_at="now")


def test_datasets_runs_and_versions_in_order_with_their_links() -> None:
    listing = _listing()
    assert [d["name"] for d in listing["datasets"]] == ["churn", "old", "penguins"]
    churn = listing["datasets"][0]
    assert [r["run_id"] for r in churn["runs"]] == [
        "20240603T100000Z-ccc",
        "20240602T100000Z-bbb",
        "20240601T100000Z-aaa",
    ]
    running, failed, succeeded = churn["runs"]
    assert running["profile_href"] is None
    assert running["evaluation_href"] is None
    assert failed["error"] == "process_data: SchemaError: no rows <left>"
    assert failed["profile_href"] == (
        "lake/reports/dataset=churn/run=20240602T100000Z-bbb/profile.html"
    )
    assert succeeded["evaluation_href"] == (
        "lake/reports/dataset=churn/run=20240601T100000Z-aaa/evaluation.html"
    )
    assert succeeded["model_stage"] == "production"  # the version's stage now, not the run's
    assert churn["production_version"] == 1
    [version] = churn["versions"]
    assert version["metric_value"] == 0.8759
    assert version["evaluation_href"] == succeeded["evaluation_href"]
    penguins = listing["datasets"][2]
    assert penguins["runs"][0]["profile_href"] == (
        "lake/reports/dataset=penguins/dt=2024-05-01/run=r1/profile.html"
    )
    assert listing["datasets"][1]["runs"][0]["status"] == "UNKNOWN"


def test_the_latest_drift_reports_with_numbers_when_given() -> None:
    drift = _listing(base="")["datasets"][0]["drift"]
    assert len(drift) == MAX_DRIFT_REPORTS
    newest = drift[0]
    assert newest["href"] == "dataset=churn/monitor/20240613T120000Z/drift.html"
    assert newest["time"] == "2024-06-13 12:00:00 UTC"
    assert newest["alarm"] is True
    assert newest["drifted_features"] == ["tenure_months", "plan"]
    assert drift[1]["alarm"] is None  # no drift.json given for it
    assert [d["stamp"] for d in drift] == sorted((d["stamp"] for d in drift), reverse=True)


def test_the_page_renders_links_as_given_and_escapes_names() -> None:
    # a key segment cannot hold "/", anything else can reach the page
    runs = [*RUNS, {"dataset": '<script>x"', "run_id": "r 1", "status": "FAILED"}]
    keys = [*KEYS, 'reports/dataset=<script>x"/run=r 1/profile.html']
    listing = build_listing(runs, VERSIONS, keys, base="lake/reports/", drift=DRIFT)
    html = render_index(listing)
    assert "<script" not in html
    assert "&lt;script&gt;x&#34;" in html
    assert 'href="lake/reports/dataset=%3Cscript%3Ex%22/run=r%201/profile.html"' in html
    assert (
        '<a href="lake/reports/dataset=churn/run=20240601T100000Z-aaa/evaluation.html">evaluation'
        in html
    )
    assert '<span class="badge bad">FAILED</span>' in html
    assert '<span class="badge ok">production</span>' in html
    assert '<span class="badge bad">ALARM</span>' in html
    assert "tenure_months, plan" in html
    assert "process_data: SchemaError: no rows &lt;left&gt;" in html


def test_an_empty_lake_says_so() -> None:
    html = render_index(build_listing([], [], [], base=""))
    assert "Nothing has run yet" in html
