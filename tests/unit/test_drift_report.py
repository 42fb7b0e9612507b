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
