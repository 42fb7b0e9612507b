"""The Jinja2 environment every page renders with.

Autoescape is on for every template (names of features, classes and datasets come from user
data), and `StrictUndefined` turns a missing context key into an error rather than a silently
empty cell: a page's context function must say explicitly what is absent.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


def fmt(x: Any, digits: int = 4) -> str:
    """A number with `digits` significant digits; empty for None, words for NaN/inf."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    try:
        return f"{float(x):.{digits}g}"
    except (TypeError, ValueError):
        return str(x)


def pct(x: Any, digits: int = 1) -> str:
    return "" if x is None else f"{float(x):.{digits}%}"


def count(x: Any) -> str:
    return "" if x is None else f"{int(x):,}"


@cache
def environment() -> Environment:
    """One shared environment; templates load from the package (they ship as package data)."""
    env = Environment(
        loader=PackageLoader("mlcycle.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(fmt=fmt, pct=pct, count=count)
    return env


def render(template: str, **context: Any) -> str:
    """Render one of the package's templates with the given context."""
    return environment().get_template(template).render(**context)
