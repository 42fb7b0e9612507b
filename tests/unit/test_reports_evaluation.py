"""The evaluation page from evaluation.json alone: every section for every task, hostile
names escaped, absent optional parts said in a sentence. Pure: no browser, no AWS."""

from __future__ import annotations

import base64
import copy
import re

import pytest
from markupsafe import escape as html_escape

from mlcycle.reports import render_evaluation
from tests.reports_fixtures import HOSTILE, SECTIONS, PageParts, evaluation_doc

KINDS = ["binary", "binary_imbalanced", "multiclass", "regression"]


@pytest.fixture(scope="module", params=KINDS)
def page(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param, render_evaluation(evaluation_doc(request.param))


def test_every_section_is_there_with_inline_png_only(page: tuple[str, str]) -> None:
    kind, html = page
    parsed = PageParts(html)
    assert parsed.ids == SECTIONS
    assert "script" not in parsed.tags
    assert "link" not in parsed.tags  # nothing to fetch or run
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert len(parsed.images) >= 4, kind  # trials x2, importance, and the task's plots
    for src in parsed.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        png = base64.b64decode(src.removeprefix(prefix), validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(png) < 200_000  # a plot, not a photograph


def test_the_sections_answer_for_each_task() -> None:
    binary = render_evaluation(evaluation_doc("binary"))
    assert "PASSED" in binary
    assert "positive class" in binary
    assert "ROC curve" in binary
    assert "calibration curve" in binary
    assert "cumulative gains" in binary
    assert "No model in production: nothing to compare." in binary

    multiclass = render_evaluation(evaluation_doc("multiclass"))
    assert "a multiclass model predicts its most probable class" in multiclass
    assert "grignolino" in multiclass
    assert "ROC curve" not in multiclass
    assert "no paired comparison" in multiclass  # production exists, comparison absent

    regression = render_evaluation(evaluation_doc("regression"))
    assert "No threshold to choose: a regression model" in regression
    for alt in ("predicted against actual", "residuals against predicted", "residual distribution"):
        assert f'alt="{alt}"' in regression
    assert "No model in production: nothing to compare." in regression


def test_the_best_value_is_bold_and_the_primary_metric_first() -> None:
    doc = evaluation_doc("regression")  # lower is better
    html = render_evaluation(doc)
    rows = re.findall(r"<tr><th>(\w+)(?: <span class=\"badge\">primary</span>)?", html)
    assert rows[1] == "rmse"
    best = min(c["metrics"]["rmse"]["value"] for c in doc["candidates"])
    assert re.search(rf'<td class="n best">{best:.4g}\b', html)


def test_a_rejection_shows_its_failed_check_and_the_paired_comparison() -> None:
    html = render_evaluation(evaluation_doc("binary_imbalanced"))
    assert '<div class="card fail"><span class="muted">gate</span><b>REJECTED</b>' in html
    assert '<span class="badge bad">fail</span> <b>improves on production</b>' in html
    assert "probability of an improvement" in html
    assert "78.0%" in html
    assert "expected cost per decision" in html
    assert "min recall" in html


def test_hostile_names_are_escaped() -> None:
    html = render_evaluation(evaluation_doc("binary_imbalanced"))
    assert "<script" not in html.lower()
    assert "<i>cancer" not in html
    assert "<b>malignant" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html  # in the feature table
    assert "&lt;i&gt;cancer&lt;/i&gt; $ürvey$" in html
    assert HOSTILE[2] in html  # non-ASCII kept as is


def test_absent_optional_parts_render_a_sentence() -> None:
    doc = copy.deepcopy(evaluation_doc("binary"))
    for key in ("decision", "curves", "production", "classes", "fairness"):
        doc.pop(key)
    doc["importance"]["features"] = []
    for c in doc["candidates"]:
        c["search"]["trials"] = []
        c.pop("threshold")
    doc["gate"]["checks"] = []
    html = render_evaluation(doc)
    for sentence in (
        "No decision record: the threshold is 0.5.",
        "No holdout curves were recorded for the winner.",
        "No importance was recorded.",
        "No model in production: nothing to compare.",
        "No search trials were recorded.",
        "No individual checks were recorded.",
        "No fairness assessment: the spec names no sensitive features",
    ):
        assert sentence in html
    assert "<img" not in html

    regression = copy.deepcopy(evaluation_doc("regression"))
    regression.pop("regression")
    regression["production"] = None
    assert "No holdout predictions were recorded" in render_evaluation(regression)


def test_the_fairness_section_shows_groups_measures_limits_and_small_groups() -> None:
    doc = evaluation_doc("binary_imbalanced")  # min_disparate_impact 1.0: it fails
    html = render_evaluation(doc)
    section = html.split('<section id="fairness">')[1].split("</section>")[0]
    fair = doc["fairness"]
    assert "Outside the fairness limits" in section
    assert "DI within [1, 1]" in section
    for violation in fair["violations"]:
        assert html_escape(violation["reason"]) in section
    clinic = fair["features"]["clinic"]
    for g in clinic["groups"]:
        assert f'<td class="n">{g["count"]}</td>' in section
    small = [g["group"] for g in clinic["groups"] if g["small"]]
    assert small
    assert section.count('<span class="badge">small: not gated</span>') >= len(small)
    for m in clinic["measures"]:
        if m["DI"] is not None:
            assert f"{m['DI']:.3g}" in section
    assert '<img alt="rates by clinic"' in section
    assert "has no positive labels" in section  # an undefined recall difference, said

    passing = render_evaluation(evaluation_doc("binary")).split('<section id="fairness">')[1]
    assert "Within the fairness limits" in passing.split("</section>")[0]
    regression = render_evaluation(evaluation_doc("regression")).split('<section id="fairness">')[1]
    assert "Reported, not gated" in regression.split("</section>")[0]


def test_a_retraining_run_shows_both_comparisons_with_production() -> None:
    doc = copy.deepcopy(evaluation_doc("binary_imbalanced"))  # one with a production model
    doc["recent"] = {
        "rows": 300,
        "first_at": "2026-12-01 20:05:12.1+00:00",
        "last_at": "2026-12-01 20:05:13.9+00:00",
        "production_version": 1,
        "comparison": {
            "metric": "roc_auc",
            "challenger": 0.8349,
            "reference": 0.7246,
            "difference": 0.1103,
            "low": 0.066,
            "high": 0.153,
            "probability": 1.0,
        },
        "passed": True,
    }
    html = render_evaluation(doc)
    section = html.split('<section id="production">')[1].split("</section>")[0]
    assert "On the most recent labeled traffic" in section
    assert "0.8349" in section
    assert "0.7246" in section
    assert "300 requests the endpoint answered between 2026-12-01 20:05:12" in section
    assert "On the most recent labeled traffic" not in render_evaluation(
        evaluation_doc("binary_imbalanced")
    )
