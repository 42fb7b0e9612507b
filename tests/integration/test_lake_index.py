"""The lake's index page from the registry and the reports zone, under moto."""

from __future__ import annotations

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry
from mlcycle.lake_index import INDEX_KEY, listing, publish_index


def _a_run_with_pages(lake: Lake, registry: Registry) -> None:
    registry.put_run("churn", "churn-1", {"status": "RUNNING", "started_at": "2026-12-01T10:00:00"})
    registry.update_run(
        "churn", "churn-1", {"status": "SUCCEEDED", "finished_at": "2026-12-01T10:05:00"}
    )
    version = registry.register(
        "churn",
        {
            "stage": "candidate",
            "run_id": "churn-1",
            "algorithm": "linear",
            "primary_metric": "roc_auc",
            "metrics": {"roc_auc": 0.81},
        },
    )
    registry.set_stage("churn", version, "production", "first model")
    for page in ("profile.html", "evaluation.html"):
        lake.put_text(f"reports/dataset=churn/run=churn-1/{page}", "<p>", content_type="text/html")
    lake.put_json("reports/dataset=churn/monitor/20261201T110000Z/drift.json", {"alarm": True})
    lake.put_text(
        "reports/dataset=churn/monitor/20261201T110000Z/drift.html", "<p>", content_type="text/html"
    )


def test_the_listing_links_every_page_of_the_lake(lake: Lake, registry: Registry) -> None:
    _a_run_with_pages(lake, registry)
    (dataset,) = listing(lake, registry, base="lake/reports/")["datasets"]
    assert dataset["name"] == "churn"
    (run,) = dataset["runs"]
    assert run["status"] == "SUCCEEDED"
    assert run["profile_href"] == "lake/reports/dataset=churn/run=churn-1/profile.html"
    assert run["evaluation_href"] == "lake/reports/dataset=churn/run=churn-1/evaluation.html"
    (version,) = dataset["versions"]
    assert (version["version"], version["stage"], version["metric_value"]) == (
        1,
        "production",
        0.81,
    )
    (drift,) = dataset["drift"]
    assert drift["alarm"] is True
    assert drift["href"] == "lake/reports/dataset=churn/monitor/20261201T110000Z/drift.html"


def test_publish_writes_the_page_into_the_reports_zone(lake: Lake, registry: Registry) -> None:
    _a_run_with_pages(lake, registry)
    assert publish_index(lake, registry) == lake.uri(INDEX_KEY)
    page = lake.get_bytes(lake.uri(INDEX_KEY)).decode()
    # on AWS the page sits in reports/, so its links are relative to it
    assert 'href="dataset=churn/run=churn-1/evaluation.html"' in page


def test_a_broken_registry_never_fails_the_caller(lake: Lake) -> None:
    broken = Registry(lake.s3, "no-such-table")  # an S3 client: every call fails
    assert publish_index(lake, broken) is None
    assert not lake.exists(INDEX_KEY)
