"""The lake's HTML pages: Jinja2 templates (autoescaped) and one matplotlib figure helper.

Each page is a template plus a pure function from its JSON to the template's context, so a
page can be rebuilt from the stored JSON at any time.
"""

from mlcycle.reports.evaluation import render_evaluation
from mlcycle.reports.index import build_listing, render_index
from mlcycle.reports.model_card import render_model_card
from mlcycle.reports.render import render

__all__ = ["build_listing", "render", "render_evaluation", "render_index", "render_model_card"]
