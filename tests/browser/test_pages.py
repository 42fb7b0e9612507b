"""The report pages in a real browser: headless chromium renders each page to a screenshot
and dumps its DOM; every section must be there, every image must decode, the screenshot must
not be blank. Skipped when chromium is absent (`make browser` installs it).

Set MLCYCLE_SCREENSHOTS=DIR to keep the screenshots for a look.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from mlcycle.domain.model_card import SECTIONS as CARD_SECTIONS
from mlcycle.reports import build_listing, render_evaluation, render_index, render_model_card
from tests.card_fixtures import model_card_doc
from tests.reports_fixtures import SECTIONS, evaluation_doc

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on the PATH (make browser)"
)

KINDS = ["binary", "multiclass", "regression"]
WIDTH, HEIGHT = 1200, 3000


def _chromium(tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # no network, no first-run work: only the page, from a file
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / 'profile'}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local layout: DIR/index.html and the pages under DIR/lake/reports/."""
    root = tmp_path_factory.mktemp("site")
    keys, runs = [], []
    for kind in KINDS:
        doc = evaluation_doc(kind)
        key = f"reports/dataset={doc['dataset']}/run={doc['run_id']}/evaluation.html"
        path = root / "lake" / key
        path.parent.mkdir(parents=True)
        path.write_text(render_evaluation(doc), encoding="utf-8")
        keys.append(key)
        # the version's model card beside it, as register_model writes it
        card = model_card_doc(kind)
        (path.parent / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
        (path.parent / "model_card.html").write_text(render_model_card(card), encoding="utf-8")
        keys.append(key.replace("evaluation.html", "model_card.html"))
        runs.append(
            {
                "dataset": doc["dataset"],
                "run_id": doc["run_id"],
                "status": "SUCCEEDED",
                "started_at": "2024-06-01T12:00:00+00:00",
                "finished_at": "2024-06-01T12:03:00+00:00",
                "task": doc["task"],
                "model_version": 1,
            }
        )
    runs.append(
        {
            "dataset": "wine",
            "run_id": "20240602T080000Z-zzz",
            "status": "FAILED",
            "started_at": "2024-06-02T08:00:00+00:00",
            "error": {"stage": "process_data", "type": "SchemaError", "message": "no rows"},
        }
    )
    versions = [
        {
            "dataset": r["dataset"],
            "version": 1,
            "stage": "production",
            "algorithm": "ridge",
            "primary_metric": "rmse",
            "metrics": {"rmse": 53.1},
            "run_id": r["run_id"],
        }
        for r in runs[:3]
    ]
    # a profile and a drift report beside them (placeholders: those pages have their own tests)
    for key in (
        f"reports/dataset=wine/run={evaluation_doc('multiclass')['run_id']}/profile.html",
        "reports/dataset=wine/monitor/20240603T000000Z/drift.html",
    ):
        (root / "lake" / key).parent.mkdir(parents=True, exist_ok=True)
        (root / "lake" / key).write_text("<!DOCTYPE html><title>placeholder</title>")
        keys.append(key)
    drift = {
        "reports/dataset=wine/monitor/20240603T000000Z/drift.json": {
            "alarm": True,
            "enough_samples": True,
            "drifted_features": ["proline"],
            "model_version": 1,
        }
    }
    listing = build_listing(
        runs, versions, keys, base="lake/reports/", drift=drift, generated_at="now"
    )
    (root / "index.html").write_text(render_index(listing), encoding="utf-8")
    return root


def _open(tmp: Path, page: Path, name: str) -> str:
    """The page's DOM after chromium loaded it; its screenshot must not be blank."""
    shot = tmp / f"{name}.png"
    # one launch does both: --dump-dom prints the DOM, --screenshot writes the PNG
    dom = _chromium(
        tmp, page.as_uri(), "--dump-dom", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}"
    ).stdout
    pixels = image.imread(shot)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    flat = pixels[..., :3].reshape(-1, 3)
    assert len(np.unique(flat[::97], axis=0)) > 20, "the screenshot is blank"
    if keep := os.environ.get("MLCYCLE_SCREENSHOTS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return dom


@pytest.mark.parametrize("kind", KINDS)
def test_the_evaluation_page_renders(site: Path, kind: str, tmp_path: Path) -> None:
    doc = evaluation_doc(kind)
    page = site / "lake" / f"reports/dataset={doc['dataset']}/run={doc['run_id']}/evaluation.html"
    dom = _open(tmp_path, page, f"evaluation-{kind}")
    ids = re.findall(r'<section id="([^"]+)"', dom)
    assert ids == SECTIONS
    sources = re.findall(r'<img alt="[^"]*" src="([^"]+)"', dom)
    assert len(sources) >= 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        pixels = image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        height, width = pixels.shape[:2]
        assert 100 <= width <= 1000
        assert 100 <= height <= 1500, (width, height)
        assert pixels[..., :3].std() > 0.01, "an empty plot"


def test_the_index_page_links_every_page(site: Path, tmp_path: Path) -> None:
    page = site / "index.html"
    dom = _open(tmp_path, page, "index")
    hrefs = re.findall(r'<a href="(lake/[^"]+)"', dom)
    # each run's and version's evaluation, each version's card, 2 others
    assert len(hrefs) == 3 * len(KINDS) + 2
    for href in hrefs:
        assert (site / href).is_file(), href
    assert "FAILED" in dom
    assert "process_data: SchemaError: no rows" in dom


@pytest.mark.parametrize("kind", KINDS)
def test_the_model_card_renders_and_links_its_neighbours(
    site: Path, kind: str, tmp_path: Path
) -> None:
    doc = evaluation_doc(kind)
    page = site / "lake" / f"reports/dataset={doc['dataset']}/run={doc['run_id']}/model_card.html"
    dom = _open(tmp_path, page, f"model-card-{kind}")
    assert re.findall(r'<section id="([^"]+)"', dom) == list(CARD_SECTIONS)
    # the evaluation report and the card's JSON sit beside it (a profile only for some runs)
    hrefs = re.findall(r'<a href="([^"]+)"', dom)
    assert {"evaluation.html", "model_card.json"} <= set(hrefs)
    for href in ("evaluation.html", "model_card.json"):
        assert (page.parent / href).is_file()
    (chart,) = re.findall(r'<img alt="[^"]*" src="([^"]+)"', dom)  # the top features
    pixels = image.imread(io.BytesIO(base64.b64decode(chart.split(",", 1)[1])), format="png")
    assert pixels[..., :3].std() > 0.01, "an empty plot"
