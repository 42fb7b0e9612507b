"""What the model relies on, live against training: shares of attribution, with no AWS.

A feature's share of attribution is its mean absolute Shapley contribution over a set of
rows divided by the sum over the features (`attribution_shares`), so the shares sum to 1 and
do not depend on the output's scale. The training reference is the evaluation stage's
(`"attribution": {"rows", "shares"}` in the monitor baseline, from the holdout), the live
side the monitor's, both from the endpoint's own explainer and the version's background.

`attribution_drift` compares the two: a feature moved when its share changed by at least
`min_change` (0.1: ten points of the attribution), whichever way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MIN_CHANGE = 0.1  # a share of attribution moving by ten points
TOP = 5  # features listed as the most relied on


def _finite(x: Any) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def attribution_shares(contributions: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean |contribution| per feature over the rows, normalised to sum 1 (all features
    zero, or no rows: every share 0). A feature absent from a row contributes 0 there;
    non-finite contributions count as 0."""
    names: dict[str, None] = {}
    for row in contributions:
        names.update(dict.fromkeys(row))
    if not contributions:
        return {}
    totals = {
        name: sum(abs(_finite(row.get(name, 0.0))) for row in contributions) for name in names
    }
    means = {name: total / len(contributions) for name, total in totals.items()}
    whole = sum(means.values())
    if not whole > 0.0:
        return dict.fromkeys(means, 0.0)
    return {name: mean / whole for name, mean in means.items()}


def _ranked(shares: Mapping[str, float], top: int) -> list[str]:
    """The `top` features by share, largest first (ties in name order); zero shares are
    not "relied on" and are left out."""
    order = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
    return [name for name, share in order[: max(0, top)] if share > 0.0]


def attribution_drift(
    reference_shares: Mapping[str, float],
    live_shares: Mapping[str, float],
    *,
    min_change: float = MIN_CHANGE,
    top: int = TOP,
) -> dict[str, Any]:
    """Per feature the training (`reference`) and live share and their absolute difference
    (`change`); `moved` lists the features whose change reaches `min_change`, largest change
    first; `top_live` / `top_reference` the most relied-on features on each side. A feature
    on one side only has share 0 on the other. Plain JSON (floats, strings, lists)."""
    reference = {str(k): _finite(v) for k, v in reference_shares.items()}
    live = {str(k): _finite(v) for k, v in live_shares.items()}
    names = list(dict.fromkeys([*reference, *live]))
    features: list[dict[str, Any]] = []
    for name in names:
        ref, cur = reference.get(name, 0.0), live.get(name, 0.0)
        change = abs(cur - ref)
        features.append(
            {
                "name": name,
                "reference": ref,
                "live": cur,
                "change": change,
                # a hair of float noise must not decide a feature exactly at the limit
                "moved": change >= min_change - 1e-12,
            }
        )
    # most relied on (live) first, so the table reads as "what the model uses now"
    features.sort(key=lambda f: (-f["live"], -f["reference"], f["name"]))
    moved = sorted((f for f in features if f["moved"]), key=lambda f: (-f["change"], f["name"]))
    return {
        "min_change": float(min_change),
        "features": features,
        "moved": [f["name"] for f in moved],
        "top_live": _ranked(live, top),
        "top_reference": _ranked(reference, top),
    }
