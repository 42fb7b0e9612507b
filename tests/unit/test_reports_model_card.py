"""The model card page from model_card.json alone: the schema's sections in its order, what
nobody wrote said to be missing, hostile text escaped, links relative to the page. Pure."""

from __future__ import annotations

import base64
import re
from html import unescape

import pytest

from mlcycle.domain.model_card import HUMAN_FIELDS, SECTIONS
from mlcycle.reports import render_model_card
from mlcycle.reports.model_card import relative_href
from tests.card_fixtures import FULL_CARD, model_card_doc
from tests.reports_fixtures import HOSTILE, PageParts

KINDS = ["binary", "binary_imbalanced", "multiclass", "regression"]
MISSING = "not stated in the spec's <code>card:</code>"


@pytest.fixture(scope="module", params=KINDS)
def page(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param, render_model_card(model_card_doc(request.param))


def test_the_schemas_sections_in_its_order_self_contained(page: tuple[str, str]) -> None:
    kind, html = page
    parsed = PageParts(html)
    assert parsed.ids == list(SECTIONS)
    assert "script" not in parsed.tags
    assert "link" not in parsed.tags
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert parsed.images, kind  # the top features' bar chart
    for src in parsed.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src.removeprefix(prefix))[:8] == b"\x89PNG\r\n\x1a\n"


def test_links_are_relative_to_the_card(page: tuple[str, str]) -> None:
    _, html = page
    assert PageParts(html).links == ["evaluation.html", "profile.html", "model_card.json"]


def test_every_field_nobody_wrote_says_so() -> None:
    html = render_model_card(model_card_doc("multiclass"))  # a spec without card:
    for spec_field in HUMAN_FIELDS.values():
        assert f"{MISSING} (<code>{spec_field}</code>)" in html, spec_field
    # risk_rating defaults to Unknown: shown, and said to be unstated
    assert f'Unknown</span> <span class="missing">{MISSING} (<code>risk_rating</code>)' in html


def test_what_people_wrote_is_shown_and_nothing_said_missing() -> None:
    html = render_model_card(model_card_doc("binary"))
    assert MISSING not in html
    assert "<li>review queue ordering</li>" in html
    assert "<li>screening of other tissues</li>" in html
    for field in ("owner", "stakeholders", "caveats", "risk_rating_reason"):
        assert FULL_CARD[field] in unescape(html)
    assert ">High<" in html


def test_hostile_text_is_escaped() -> None:
    html = render_model_card(model_card_doc("binary_imbalanced"))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(" in html  # the owner, a fairness group
    assert "price in $ per $ unit" in html
    assert "<li>Größe (cm) — ñandú</li>" in html
    assert HOSTILE[0] not in html


def test_the_measured_sections_answer() -> None:
    html = render_model_card(model_card_doc("binary"))
    for text in (
        "holdout metrics",
        "Maximize AUC (roc_auc, 3-fold CV of the training split)",
        "fairness: clinic",
        "selection rate",  # a fairness column, readable
        "positive class",
        "gate passed",
        "ab" * 32,  # the upload's sha256
        "patient_id: id-like",
    ):
        assert text in html, text
    regression = render_model_card(model_card_doc("regression"))
    assert "mean prediction" in regression  # its fairness per group
    assert ">decision<" not in regression


def test_without_fairness_the_page_says_so() -> None:
    card = model_card_doc("binary")
    card["evaluation_details"] = [
        j for j in card["evaluation_details"] if not j["name"].startswith("fairness")
    ]
    card["additional_information"]["custom_details"]["fairness"] = "not evaluated: no reason"
    html = render_model_card(card)
    assert "Fairness not evaluated: no reason." in html
    assert "fairness: clinic" not in html


@pytest.mark.parametrize(
    ("here", "there", "href"),
    [
        ("s3://b/reports/d=x/run=1/model_card.html", "s3://b/reports/d=x/run=1/e.html", "e.html"),
        (
            "s3://b/reports/d=x/run=1/c.html",
            "s3://b/models/d=x/m.onnx",
            "../../../models/d=x/m.onnx",
        ),
        ("s3://b/r/c.html", "s3://b/r/a b#.html", "a%20b%23.html"),
        ("s3://b/r/c.html", "s3://other/r/e.html", None),  # a browser cannot reach it
        (None, "s3://b/r/e.html", None),
    ],
)
def test_relative_href(here: str | None, there: str, href: str | None) -> None:
    assert relative_href(here, there) == href
