"""The figure helper every page shares: one small matplotlib `Figure` per plot (never pyplot,
whose global state is not safe in a long-lived Lambda), styled like the profile page, saved as
an inline PNG data URI so a page needs no other file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

BLUE, ORANGE, GREY, GREEN, RED = "#4c78a8", "#f58518", "#9aa5b1", "#54a24b", "#e45756"
DPI = 100  # a 3.3-inch figure is 330 px: three fit side by side in the 1100 px page
FONT = 8


def figure(width: float = 5.0, height: float = 2.5) -> tuple[Figure, Axes]:
    """A figure with one styled axes."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    style(ax)
    return fig, ax


def style(ax: Axes) -> None:
    """The house style: no top/right spines, small ticks."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=FONT)


def data_uri(fig: Figure) -> str:
    """The figure as `data:image/png;base64,...`; no Software tag, so the bytes are stable."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def label(text: Any, width: int = 28) -> str:
    """A label for a plot: shortened to `width` characters, `$` escaped so matplotlib does
    not read it as mathtext."""
    text = str(text)
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("$", r"\$")


def axis_labels(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(label(xlabel, 60), fontsize=FONT)
    ax.set_ylabel(label(ylabel, 60), fontsize=FONT)


def barh(
    labels: Sequence[Any],
    values: Sequence[float],
    *,
    xlabel: str,
    colors: Sequence[str] | str = BLUE,
    xerr: Sequence[float] | None = None,
    width: float = 5.0,
) -> str:
    """Horizontal bars, first item on top, optional error bars."""
    fig, ax = figure(width, max(2.0, 0.6 + 0.22 * len(labels)))
    pos = np.arange(len(labels))
    ax.barh(pos, values, color=colors, xerr=xerr, error_kw={"elinewidth": 1, "capsize": 2})
    ax.set_yticks(pos, [label(v) for v in labels])
    ax.invert_yaxis()
    ax.axvline(0, color=GREY, linewidth=0.8)
    ax.set_xlabel(label(xlabel, 60), fontsize=FONT)
    return data_uri(fig)


def heatmap(
    counts: Sequence[Sequence[float]],
    labels: Sequence[Any],
    *,
    xlabel: str,
    ylabel: str,
) -> str:
    """A count matrix with each cell's count and its share of the row (rows: true class)."""
    matrix = np.asarray(counts, dtype="float64")
    n = len(labels)
    size = min(6.0, max(2.8, 1.2 + 0.55 * n))
    fig, ax = figure(size + 0.6, size)
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros_like(matrix), where=row_totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if n <= 12:  # beyond that the numbers no longer fit in a cell
        for i in range(n):
            for j in range(n):
                color = "white" if shares[i, j] > 0.6 else "#222"
                ax.text(
                    j,
                    i,
                    f"{int(matrix[i, j]):,}\n{shares[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=FONT,
                    color=color,
                )
    ticks = [label(v, 14) for v in labels]
    ax.set_xticks(range(n), ticks, rotation=30 if n > 2 else 0, ha="right" if n > 2 else "center")
    ax.set_yticks(range(n), ticks)
    ax.spines[:].set_visible(False)
    axis_labels(ax, xlabel, ylabel)
    return data_uri(fig)


def stairs(
    edges: Sequence[float],
    counts: Sequence[float],
    *,
    xlabel: str,
    ylabel: str = "rows",
    width: float = 5.0,
    height: float = 2.5,
) -> str | None:
    """A histogram from precomputed edges and counts (None when there is nothing to draw)."""
    if not counts:
        return None
    fig, ax = figure(width, height)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.stairs(counts, edges, fill=True, color=BLUE, alpha=0.85)
    axis_labels(ax, xlabel, ylabel)
    return data_uri(fig)
