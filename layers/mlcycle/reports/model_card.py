"""The model card page: `render_model_card(card)` draws `model_card.json` alone, a section per
section of the SageMaker content schema, in its order.

Every field only people can fill (`HUMAN_FIELDS`) is shown, and says "not stated in the
spec's card:" when nobody wrote it: a reviewer must see what is missing, not a page that
hides it. Links to the evaluation report and the data profile are relative to the card's own
location (all three sit in the run's reports folder), so they work in the lake and in a local
run's exported directory alike.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from mlcycle.domain.model_card import HUMAN_FIELDS, LIST_ITEM, SECTIONS
from mlcycle.lake_layout import split_uri
from mlcycle.reports import figures as f
from mlcycle.reports.render import fmt, render

Json = dict[str, Any]
TITLES = {
    "model_overview": "Model overview",
    "intended_uses": "Intended uses",
    "business_details": "Business details",
    "training_details": "Training details",
    "evaluation_details": "Evaluation details",
    "additional_information": "Additional information",
}
# custom details the page shows in a section of their own
_LINEAGE = [
    ("data source", "data_source"),
    ("sha256", "data_sha256"),
    ("bytes", "data_bytes"),
    ("rows uploaded", "data_rows"),
    ("format", "data_format"),
    ("collected at", "data_collected_at"),
    ("raw copy", "raw_copy_uri"),
    ("rows kept after processing", "curated_rows"),
    ("rows quarantined", "rejected_rows"),
    ("duplicates dropped", "duplicates_dropped"),
    ("training rows", "train_rows"),
    ("holdout rows", "holdout_rows"),
]
_DATA = [
    ("target", "target"),
    ("classes", "classes"),
    ("positive class", "positive_class"),
    ("why that class", "positive_class_reason"),
    ("decision threshold", "decision_threshold"),
    ("features", "features"),
    ("excluded columns", "excluded_columns"),
    ("sensitive features", "sensitive_features"),
]
_LINKS = [
    ("evaluation report", "evaluation_report_uri"),
    ("data profile", "data_profile_uri"),
    ("this card as JSON (SageMaker Model Card content)", "model_card_uri"),
]


def render_model_card(card: Json) -> str:
    """The self-contained page (inline CSS and PNG, no script) for one model_card.json."""
    return render("model_card.html", **model_card_context(card))


def model_card_context(card: Json) -> Json:
    details: Mapping[str, str] = (card.get("additional_information") or {}).get(
        "custom_details"
    ) or {}
    overview = card.get("model_overview") or {}
    intended = card.get("intended_uses") or {}
    business = card.get("business_details") or {}
    training = card.get("training_details") or {}
    additional = card.get("additional_information") or {}
    name, version = details.get("model_name", "model"), details.get("model_version", "?")
    jobs = [_job(j) for j in card.get("evaluation_details") or []]
    gate = next((j for j in jobs if j["name"] == "gate"), None)
    here = details.get("model_card_report_uri")
    return {
        "title": f"{name} v{version}: model card",
        "sections": [(s, TITLES[s]) for s in SECTIONS],
        "cards": [
            ("model", name, ""),
            ("version", version, ""),
            ("problem", overview.get("problem_type", ""), ""),
            ("stage at registration", details.get("stage_at_registration", "?"), ""),
            *(
                [("gate", gate["verdict"], "pass" if gate["verdict"] == "PASSED" else "fail")]
                if gate
                else []
            ),
            ("risk rating", intended.get("risk_rating", "Unknown"), ""),
        ],
        "links": [
            (label, relative_href(here, details[key]), details[key])
            for label, key in _LINKS
            if details.get(key)
        ],
        "generated": details.get("card_generated_at"),
        "overview": [
            _human("description", overview, "model_overview", "model_description"),
            _human("owner", overview, "model_overview", "model_owner"),
            _field("creator", overview.get("model_creator")),
            _field("problem type", overview.get("problem_type")),
            _field("algorithm", overview.get("algorithm_type")),
            _field("artifacts", overview.get("model_artifact"), kind="codes"),
        ],
        "intended": [
            _human("purpose", intended, "intended_uses", "purpose_of_model"),
            _human("intended uses", intended, "intended_uses", "intended_uses", lines=True),
            _human("out-of-scope uses", details, "custom_details", "out_of_scope_uses", lines=True),
            _risk(intended.get("risk_rating")),
            _human("why this rating", intended, "intended_uses", "explanations_for_risk_rating"),
            _field(
                "factors affecting its efficacy",
                intended.get("factors_affecting_model_efficiency"),
            ),
        ],
        "business": [
            _human("business problem", business, "business_details", "business_problem"),
            _human("stakeholders", business, "business_details", "business_stakeholders"),
        ],
        "training": _training(training, details),
        "evaluations": jobs,
        "fairness_note": details.get("fairness"),
        "additional": [
            _human(
                "ethical considerations",
                additional,
                "additional_information",
                "ethical_considerations",
            ),
            _human(
                "caveats and recommendations",
                additional,
                "additional_information",
                "caveats_and_recommendations",
            ),
        ],
        "custom_details": sorted(details.items()),
    }


def relative_href(here: str | None, there: str | None) -> str | None:
    """`there` as a link relative to the page at `here`; None when it cannot be reached from
    a browser (no location for the page, or another bucket)."""
    if not here or not there or not here.startswith("s3://") or not there.startswith("s3://"):
        return None
    (bucket, key), (other, target) = split_uri(here), split_uri(there)
    if bucket != other:
        return None
    return quote(posixpath.relpath(target, posixpath.dirname(key)), safe="/=")


# --------------------------------------------------------------------------------- parts


def _field(label: str, value: Any, *, kind: str = "text") -> Json:
    if kind == "codes":
        value = list(value or [])
    return {"label": label, "value": value, "kind": kind if value else "none", "spec": None}


def _human(
    label: str, section: Mapping[str, Any], name: str, key: str, *, lines: bool = False
) -> Json:
    spec_field = HUMAN_FIELDS[(name, key)]
    value = section.get(key)
    if not value:
        return {"label": label, "value": None, "kind": "missing", "spec": spec_field}
    if lines:
        items = [line.removeprefix(LIST_ITEM) for line in str(value).splitlines() if line]
        return {"label": label, "value": items, "kind": "list", "spec": spec_field}
    return {"label": label, "value": value, "kind": "text", "spec": spec_field}


def _risk(rating: str | None) -> Json:
    rating = rating or "Unknown"
    # "Unknown" is also the schema's default: nobody rated the risk
    kind = "missing_risk" if rating == "Unknown" else "risk"
    return {"label": "risk rating", "value": rating, "kind": kind, "spec": "risk_rating"}


def _training(training: Mapping[str, Any], details: Mapping[str, str]) -> Json:
    objective = training.get("objective_function") or {}
    function = objective.get("function") or {}
    job = training.get("training_job_details") or {}
    goal = " ".join(str(p) for p in (function.get("function"), function.get("facet")) if p)
    if function.get("condition"):
        goal += f" ({function['condition']})"
    return {
        "fields": [
            _field("objective", goal),
            _field("how it is optimized", objective.get("notes")),
            _field("observations", training.get("training_observations")),
            _field("training data", job.get("training_datasets"), kind="codes"),
        ],
        "lineage": [(label, details[k]) for label, k in _LINEAGE if details.get(k)],
        "data": [(label, details[k]) for label, k in _DATA if details.get(k)],
        "metrics": [
            (m.get("name"), fmt(m.get("value")), m.get("notes") or "")
            for m in job.get("training_metrics") or []
        ],
        "params": [(p.get("name"), p.get("value")) for p in job.get("hyper_parameters") or []],
    }


def _value(metric: Mapping[str, Any]) -> str:
    value = metric.get("value")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt(value) if isinstance(value, int | float) else str(value)


def _pivoted(groups: Sequence[Mapping[str, Any]]) -> bool:
    """A job whose groups each hold a few plain numbers reads best as one table, a row per
    group (the holdout's metrics, the candidates, the groups of a fairness feature)."""
    return len(groups) >= 2 and all(
        m.get("type") in ("number", "boolean", "string") and not m.get("notes")
        for g in groups
        for m in g.get("metric_data") or []
    )


def _job(job: Mapping[str, Any]) -> Json:
    groups = list(job.get("metric_groups") or [])
    observation = str(job.get("evaluation_observation") or "")
    out: Json = {
        "name": str(job.get("name")),
        "observation": observation,
        "verdict": observation.split(":", 1)[0],
        "metadata": sorted((job.get("metadata") or {}).items()),
        "datasets": list(job.get("datasets") or []),
        "table": None,
        "groups": [],
    }
    if _pivoted(groups):
        columns: list[str] = []
        for g in groups:
            columns += [m["name"] for m in g["metric_data"] if m["name"] not in columns]
        rows = []
        for g in groups:
            cells = {m["name"]: _value(m) for m in g["metric_data"]}
            rows.append((g["name"], [cells.get(c, "") for c in columns]))
        out["table"] = {"columns": columns, "rows": rows}
        return out
    for g in groups:
        metrics, charts = [], []
        for m in g.get("metric_data") or []:
            if m.get("type") == "bar_chart":
                charts.append(_bar_chart(m))
            elif m.get("type") in ("number", "boolean", "string"):
                metrics.append((m.get("name"), _value(m), m.get("notes") or ""))
        out["groups"].append({"name": g.get("name"), "metrics": metrics, "charts": charts})
    return out


def _bar_chart(metric: Mapping[str, Any]) -> tuple[str, str]:
    values = [float(v) for v in metric.get("value") or []]
    labels = list(metric.get("x_axis_name") or [str(i) for i in range(len(values))])
    uri = f.barh(labels, values, xlabel=str(metric.get("y_axis_name") or metric.get("name")))
    return uri, str(metric.get("name"))
