"""The model card of a registered version wired to the lake: `model_card.json` (SageMaker Model
Card content) and `model_card.html` in the run's reports folder, beside the evaluation report
and the data profile the page links to.

The card's place is known before the version number is (`model_card_uris`), so the registry
entry points at it when it is put; the card itself is written once the version exists
(`write_model_card`), since it names the version.
"""

from __future__ import annotations

from typing import Any

from mlcycle.adapters.lake import Lake
from mlcycle.adapters.registry import Registry, now_iso
from mlcycle.context import RunContext, required
from mlcycle.domain.model_card import build_model_card
from mlcycle.lake_layout import Zone, run_prefix, split_uri, version_prefix
from mlcycle.reports import render_model_card
from mlcycle.schema import ResolvedSchema
from mlcycle.serving.manifest import MANIFEST_FILE, ONNX_FILE
from mlcycle.spec import ProblemSpec

CARD_FILE = "model_card.json"
CARD_PAGE = "model_card.html"


def model_card_uris(lake: Lake, dataset: str, run_id: str) -> dict[str, str]:
    """The registry entry's `artifacts` keys for the card of the run's version."""
    prefix = run_prefix(Zone.REPORTS, dataset, run_id)
    return {
        "model_card_uri": lake.uri(prefix + CARD_FILE),
        "model_card_report_uri": lake.uri(prefix + CARD_PAGE),
    }


def write_model_card(
    ctx: RunContext,
    lake: Lake,
    registry: Registry,
    version: int,
    *,
    spec: ProblemSpec,
    schema: ResolvedSchema,
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """Build the card of `version` from its registry entry, the run's `evaluation.json` and
    its other documents, and write the JSON and the page where the entry says they are;
    returns the card."""
    problem = required(ctx.problem, "define_problem")
    collected = required(ctx.collect, "collect_data")
    evaluated = required(ctx.evaluate, "evaluate_models")
    explored = required(ctx.explore, "explore_data")
    processed = required(ctx.process, "process_data")
    entry = registry.get_version(problem.dataset, version)
    if entry is None:
        raise ValueError(f"{problem.dataset!r} has no version {version} to write a card for")
    artifacts = entry.get("artifacts") or {}
    served = version_prefix(problem.dataset, version)
    links = {
        "model_card": artifacts["model_card_uri"],
        "model_card_report": artifacts["model_card_report_uri"],
        "evaluation_report": evaluated.report_uri,
        "evaluation": evaluated.evaluation_uri,
        "data_profile": explored.report_uri,
        "schema": processed.schema_uri,
        "lineage": collected.lineage_uri,
    }
    card = build_model_card(
        entry=entry,
        spec=spec,
        schema=schema,
        lineage=lake.get_json(collected.lineage_uri),
        evaluation=evaluation,
        processing=processed.model_dump(mode="json"),
        model_artifacts=[
            lake.uri(served + ONNX_FILE),
            lake.uri(served + MANIFEST_FILE),
            evaluated.pipeline_uri,
        ],
        holdout_datasets=[required(ctx.features, "engineer_features").holdout_rows_uri],
        links={name: uri for name, uri in links.items() if uri},
        generated_at=now_iso(),
    )
    lake.put_json(split_uri(artifacts["model_card_uri"])[1], card)
    lake.put_text(
        split_uri(artifacts["model_card_report_uri"])[1],
        render_model_card(card),
        content_type="text/html",
    )
    return card
