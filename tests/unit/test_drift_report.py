"""The monitor's HTML report, drawn from the result JSON alone."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mlcycle.domain.drift_report import render_drift_report
from mlcycle.domain.features import drift_baseline
from mlcycle.domain.monitor import (
    extend_baseline,
    feature_drift,
    live_quality,
    prediction_baseline,
)
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType, MonitoringLimits, Task

WEIRD = "<b>&amp\"'size"
SCHEMA = ResolvedSchema(
    dataset="demo",
    task=Task.BINARY,
    target="y",
    features={WEIRD: ColumnType.NUMERIC, "city": ColumnType.CATEGORICAL},
    classes=["no", "yes"],
    positive_class="yes",
)


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cities = [f"city<{i}>" for i in range(60)]  # more than the plot shows and the baseline lists
    weights = np.linspace(2, 1, 60) / np.linspace(2, 1, 60).sum()
    return pd.DataFrame(
        {
            WEIRD: rng.normal(shift, 1, n),
            "city": pd.Series(rng.choice(cities, n, p=weights), dtype=object),
        }
    )


@pytest.fixture(scope="module")
def result_json() -> dict:
    ref = frame(3000, 0)
    rng = np.random.default_rng(1)
    baseline = extend_baseline(drift_baseline(ref, SCHEMA), ref, SCHEMA)
    baseline["predictions"] = prediction_baseline(rng.choice(["no", "yes"], 500), "binary")
    result = feature_drift(
        frame(2000, 2, shift=1.0),
        baseline,
        SCHEMA,
        MonitoringLimits(),
        predictions=rng.choice(["no", "yes"], 2000),
    )
    labels = rng.choice(["no", "yes"], 200)
    result.live = live_quality(labels, labels, "binary", ["no", "yes"], "yes", "accuracy")
    # through JSON, as the monitor stores it
    return json.loads(json.dumps(result.to_json(), allow_nan=False))


def test_report_has_a_section_per_feature_and_the_summary(result_json: dict) -> None:
    page = render_drift_report(result_json, title="Drift <demo>")
    assert page.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'<section class="column" id="feat-\d+"', page)) == 2
    assert 'id="prediction"' in page
    assert "live accuracy" in page
    assert "1 of 2" in page  # drifted features
    assert page.count("data:image/png;base64,") == 3  # two features and the predictions


def test_report_escapes_names_and_has_no_external_resources(result_json: dict) -> None:
    page = render_drift_report(result_json, title="Drift <demo>")
    assert "<b>&amp" not in page
    assert html_escaped(WEIRD) in page
    assert "Drift &lt;demo&gt;" in page
    assert not re.search(r"https?://", page)


def test_report_without_enough_rows_says_not_judged(result_json: dict) -> None:
    small = {
        **result_json,
        "enough_samples": False,
        "alarm": False,
        "reasons": ["only 5 rows"],
        "prediction": None,
        "live": None,
    }
    page = render_drift_report(small, title="t")
    assert "not judged" in page
    assert 'id="prediction"' not in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text)


def test_report_names_the_features_whose_share_of_attribution_moved(result_json: dict) -> None:
    from mlcycle.domain.attribution import attribution_drift

    attribution = {
        "rows": 200,
        "window_rows": 2000,
        "reference_rows": 200,
        "method": ["exact"],
        **attribution_drift({"plan": 0.12, WEIRD: 0.88}, {"plan": 0.31, WEIRD: 0.69}),
    }
    page = render_drift_report({**result_json, "attribution": attribution}, title="t")
    assert "What the model relies on, live against training" in page
    assert "plan's share of attribution moved from 12.0% to 31.0%" in page
    assert f"{html_escaped(WEIRD)}'s share of attribution moved from 88.0% to 69.0%" in page
    assert "<b>&amp" not in page  # the weird name is escaped in the sentence and the table
    assert page.count('<span class="badge bad">moved</span>') == 2
    assert "200 of the window&#x27;s 2,000 rows (seeded)" in page

    still = attribution_drift({"plan": 0.5, "x": 0.5}, {"plan": 0.55, "x": 0.45})
    page = render_drift_report({**result_json, "attribution": still}, title="t")
    assert "No feature's share of attribution moved by 10 points or more" in page


def test_report_without_attribution_baseline_says_so(result_json: dict) -> None:
    page = render_drift_report({**result_json, "attribution": None}, title="t")
    assert "no attribution baseline for this version" in page
    page = render_drift_report(result_json, title="t")  # a document from before attributions
    assert "no attribution baseline for this version" in page
    noted = {**result_json, "attribution": None, "attribution_note": "no live rows to explain"}
    assert "no live rows to explain" in render_drift_report(noted, title="t")
