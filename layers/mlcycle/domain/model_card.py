"""The model card of a registered version: `model_card.json`, whose content follows the
SageMaker Model Card content schema (its six sections, field names, allowed values and length
limits), so it can be given as `Content` to SageMaker's CreateModelCard as it is.

`build_model_card(...)` fills it from what only people know (the spec's `card:`) and from what
the run measured (lineage, sizes, features and exclusions, the search, metrics with their
bootstrap intervals, the threshold, the gate, explanations, fairness). What the schema has no
field for goes into `additional_information.custom_details`, flat strings as the schema
requires. Pure: plain documents in, one document out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlcycle.domain.model_card_evaluation import (
    as_text,
    clip,
    evaluation_details,
    filled,
    fmt_count,
    fmt_number,
    is_number,
    winning_candidate,
)
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import METRICS, ModelCardInfo, ProblemSpec

Json = dict[str, Any]

# The schema's sections, in its order (the page follows it).
SECTIONS = (
    "model_overview",
    "intended_uses",
    "business_details",
    "training_details",
    "evaluation_details",
    "additional_information",
)
RISK_RATINGS = {"low": "Low", "medium": "Medium", "high": "High", "unknown": "Unknown"}
PROBLEM_TYPES = {
    "binary": "Binary Classification",
    "multiclass": "Multiclass Classification",
    "regression": "Regression",
}
# The SDK's objective-function facets (sagemaker.model_card.FacetEnum), by mlcycle metric.
FACETS = {
    "roc_auc": "AUC",
    "accuracy": "Accuracy",
    "rmse": "RMSE",
    "mae": "MAE",
    "log_loss": "Loss",
}

# Fields only people can fill: (section, field) -> the `card:` field of the spec that fills it.
# A page shows each one, saying so when nobody wrote it.
HUMAN_FIELDS: dict[tuple[str, str], str] = {
    ("model_overview", "model_description"): "description",
    ("model_overview", "model_owner"): "owner",
    ("intended_uses", "purpose_of_model"): "purpose",
    ("intended_uses", "intended_uses"): "intended_uses",
    ("intended_uses", "explanations_for_risk_rating"): "risk_rating_reason",
    ("business_details", "business_problem"): "business_problem",
    ("business_details", "business_stakeholders"): "stakeholders",
    ("additional_information", "ethical_considerations"): "ethical_considerations",
    ("additional_information", "caveats_and_recommendations"): "caveats",
    ("custom_details", "out_of_scope_uses"): "out_of_scope_uses",
}
LIST_ITEM = "- "  # a list field (intended uses) is one string, an item per line

# scikit-learn estimator per algorithm and task kind (mlcycle.domain.estimators)
_ALGORITHMS = {
    "linear": (
        ("logistic regression", "LogisticRegression"),
        ("ridge regression", "Ridge"),
    ),
    "random_forest": (
        ("random forest", "RandomForestClassifier"),
        ("random forest", "RandomForestRegressor"),
    ),
    "hist_gradient_boosting": (
        ("histogram gradient boosting", "HistGradientBoostingClassifier"),
        ("histogram gradient boosting", "HistGradientBoostingRegressor"),
    ),
}


def build_model_card(
    *,
    entry: Mapping[str, Any],
    spec: ProblemSpec,
    schema: ResolvedSchema,
    lineage: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    processing: Mapping[str, Any] | None = None,
    model_artifacts: Sequence[str] = (),
    holdout_datasets: Sequence[str] = (),
    links: Mapping[str, str] | None = None,
    generated_at: str | None = None,
) -> Json:
    """The card's content for one registry `entry` (with its "version" and "dataset").

    `lineage` is collect_data's lineage.json, `evaluation` the run's evaluation.json (its
    "fairness" section when there is one), `processing` process_data's processing.json;
    `links` maps names (model_card, model_card_report, evaluation_report, data_profile, ...)
    to URIs, kept in custom_details as `<name>_uri`.
    """
    card = spec.card
    overview = {
        "model_description": clip(card.description, 1024),
        "model_creator": clip(f"mlcycle pipeline, code {_lineage(entry, 'code_version')}", 1024),
        "model_owner": clip(card.owner, 1024),
        "problem_type": PROBLEM_TYPES.get(schema.task.value, schema.task.value),
        "algorithm_type": clip(_algorithm(str(entry.get("algorithm", "")), schema), 1024),
        "model_artifact": [clip(a, 1024) for a in model_artifacts][:15],
    }
    intended = {
        "purpose_of_model": clip(card.purpose, 2048),
        "intended_uses": clip(_lines(card.intended_uses), 2048),
        "factors_affecting_model_efficiency": clip(_factors(spec, schema, evaluation), 2048),
        "risk_rating": RISK_RATINGS[card.risk_rating],
        "explanations_for_risk_rating": clip(card.risk_rating_reason, 2048),
    }
    business = {
        "business_problem": clip(card.business_problem, 2048),
        "business_stakeholders": clip(card.stakeholders, 2048),
    }
    additional = {
        "ethical_considerations": clip(card.ethical_considerations, 2048),
        "caveats_and_recommendations": clip(card.caveats, 2048),
        "custom_details": _custom_details(
            entry, card, schema, lineage, evaluation, processing or {}, links or {}, generated_at
        ),
    }
    return {
        "model_overview": filled(overview),
        "intended_uses": filled(intended),
        "business_details": filled(business),
        "training_details": _training(entry, schema, lineage, evaluation),
        "evaluation_details": evaluation_details(entry, evaluation, holdout_datasets),
        "additional_information": filled(additional),
    }


# --------------------------------------------------------------------------------- training


def _training(
    entry: Mapping[str, Any],
    schema: ResolvedSchema,
    lineage: Mapping[str, Any],
    evaluation: Mapping[str, Any],
) -> Json:
    primary = str(entry.get("primary_metric") or evaluation.get("primary_metric") or "")
    search = winning_candidate(evaluation).get("search") or {}
    folds = search.get("cv_folds")
    greater = METRICS.get(primary, (None, True))[1]
    condition = f"{primary}, {folds}-fold CV of the training split" if folds else primary
    notes = (
        f"The hyperparameter search {'maximizes' if greater else 'minimizes'} {primary} on "
        "out-of-fold predictions of the training split; the winner among the candidates is "
        "the best on the holdout."
    )
    if schema.task.value == "binary":
        decision = evaluation.get("decision") or {}
        notes += (
            f" The decision threshold is tuned for {decision.get('optimize', 'f1')} on the "
            "same out-of-fold predictions, never on the holdout."
        )
    function = {"function": "Maximize" if greater else "Minimize", "condition": condition[:63]}
    if primary in FACETS:
        function["facet"] = FACETS[primary]
    metrics = []
    cv_score = (entry.get("search") or {}).get("cv_score")
    if is_number(cv_score):
        metrics.append(
            {
                "name": f"cross-validated {primary}",
                "value": cv_score,
                "notes": clip(f"mean over {folds or '?'} folds of the training split", 1024),
            }
        )
    winner = winning_candidate(evaluation)
    if is_number(winner.get("fit_seconds")):
        metrics.append(
            {
                "name": "refit seconds",
                "value": winner["fit_seconds"],
                "notes": "the winner refitted on every training row",
            }
        )
    seconds = (entry.get("search") or {}).get("seconds")
    if is_number(seconds):
        metrics.append({"name": "search seconds", "value": seconds})
    datasets = [lineage.get("raw_uri"), _source_uri(lineage)]
    job: Json = {
        "training_datasets": [clip(d, 1024) for d in datasets if d][:15],
        "training_metrics": metrics[:50],
        "hyper_parameters": [
            # exactly as the estimator took it (1.0, not 1; null for None)
            {
                "name": clip(str(k), 255),
                "value": clip(v if isinstance(v, str) else json.dumps(v), 255),
            }
            for k, v in sorted((entry.get("params") or {}).items())
        ][:100],
    }
    return filled(
        {
            "objective_function": {"function": function, "notes": clip(notes, 1024)},
            "training_observations": clip(_observations(entry, schema, evaluation), 1024),
            "training_job_details": filled(job),
        }
    )


def _observations(
    entry: Mapping[str, Any], schema: ResolvedSchema, evaluation: Mapping[str, Any]
) -> str:
    kinds: dict[str, int] = {}
    for kind in schema.features.values():
        kinds[kind.value] = kinds.get(kind.value, 0) + 1
    candidates = [str(c.get("algorithm")) for c in evaluation.get("candidates") or []]
    search = entry.get("search") or {}
    parts = [
        f"{entry.get('algorithm')} won among {len(candidates)} candidate"
        f"{'' if len(candidates) == 1 else 's'} ({', '.join(candidates)}) on the holdout's "
        f"{entry.get('primary_metric')}.",
        f"Trained on {fmt_count(evaluation.get('train_rows'))} rows, judged on "
        f"{fmt_count(evaluation.get('holdout_rows'))} held-out rows.",
        *sample_sentence(evaluation.get("sample")),
        f"{len(schema.features)} features ("
        + ", ".join(f"{n} {k}" for k, n in kinds.items())
        + f"); {len(schema.excluded)} column{'' if len(schema.excluded) == 1 else 's'} excluded.",
    ]
    if search.get("trials"):
        parts.append(
            f"Hyperparameters from {search['trials']} search trial"
            f"{'' if search['trials'] == 1 else 's'} in {fmt_number(search.get('seconds'))} s."
        )
    return " ".join(parts)


def sample_sentence(sample: Mapping[str, Any] | None) -> list[str]:
    """What the report and the card say when the rows learned from were a sample."""
    if not sample or not sample.get("sampled"):
        return []
    by = sample.get("stratified_by")
    return [
        f"Training and holdout rows are a seeded sample (seed {sample.get('seed')}"
        + (f", stratified by {by}" if by else "")
        + f") of {fmt_count(sample.get('rows_used'))} of the "
        f"{fmt_count(sample.get('rows_available'))} curated rows"
        + (f" in {sample['parts']} parts" if (sample.get("parts") or 1) > 1 else "")
        + f": past the training row budget of {fmt_count(sample.get('max_rows'))}."
    ]


def _factors(spec: ProblemSpec, schema: ResolvedSchema, evaluation: Mapping[str, Any]) -> str:
    """Measured facts on when the model's numbers hold."""
    limits = spec.monitoring
    text = (
        f"Judged on {fmt_count(evaluation.get('holdout_rows'))} rows held out at random "
        f"(seed {spec.seed}) from the same upload as its {fmt_count(evaluation.get('train_rows'))} "
        "training rows: on data unlike them its performance is unmeasured. The monitor "
        f"compares live traffic with the training data and alarms when more than "
        f"{limits.max_drifted_features} feature"
        f"{'s drift' if limits.max_drifted_features != 1 else ' drifts'} "
        f"({limits.drift_rule()})."
    )
    kept_out = [c for c in schema.sensitive if c not in schema.features]
    if kept_out:
        text += f" Sensitive features kept out of its inputs: {', '.join(kept_out)}."
    return text


# --------------------------------------------------------------------------- custom details


def _custom_details(
    entry: Mapping[str, Any],
    card: ModelCardInfo,
    schema: ResolvedSchema,
    lineage: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    processing: Mapping[str, Any],
    links: Mapping[str, str],
    generated_at: str | None,
) -> dict[str, str]:
    search = entry.get("search") or {}
    fairness = evaluation.get("fairness")
    details: dict[str, Any] = {
        "model_name": entry.get("dataset"),
        "model_version": entry.get("version"),
        "stage_at_registration": entry.get("stage"),
        "registered_at": entry.get("created_at"),
        "card_generated_at": generated_at,
        "run_id": entry.get("run_id"),
        "code_version": _lineage(entry, "code_version"),
        "out_of_scope_uses": _lines(card.out_of_scope_uses),
        "target": schema.target,
        "classes": ", ".join(schema.classes) if schema.classes else None,
        "positive_class": schema.positive_class,
        "positive_class_reason": schema.positive_class_reason,
        "decision_threshold": entry.get("threshold"),
        "features": ", ".join(f"{n} ({k.value})" for n, k in schema.features.items()),
        "excluded_columns": "; ".join(f"{n}: {why}" for n, why in schema.excluded.items())
        or "none",
        "sensitive_features": ", ".join(schema.sensitive) or None,
        "fairness": None if isinstance(fairness, Mapping) else _no_fairness(schema),
        "data_source": _source_uri(lineage),
        "data_sha256": lineage.get("sha256"),
        "data_bytes": lineage.get("bytes"),
        "data_rows": lineage.get("rows"),
        "data_format": lineage.get("format"),
        "data_collected_at": lineage.get("collected_at"),
        "raw_copy_uri": lineage.get("raw_uri"),
        "curated_rows": processing.get("rows"),
        "rejected_rows": processing.get("rejected_rows"),
        "duplicates_dropped": processing.get("duplicates_dropped"),
        "train_rows": evaluation.get("train_rows"),
        "holdout_rows": evaluation.get("holdout_rows"),
        "search": f"{search['trials']} trials in {fmt_number(search.get('seconds'))} s, "
        f"cross-validated {entry.get('primary_metric')} {fmt_number(search.get('cv_score'))}"
        if search.get("trials")
        else None,
        "onnx_sha256": entry.get("onnx_sha256"),
        **{f"{name}_uri": uri for name, uri in links.items()},
    }
    return {k: clip(as_text(v), 1024) for k, v in details.items() if v is not None and v != ""}


# ---------------------------------------------------------------------------------- helpers


def _algorithm(name: str, schema: ResolvedSchema) -> str:
    kinds = _ALGORITHMS.get(name)
    if kinds is None:
        return name
    words, estimator = kinds[0] if schema.is_classification else kinds[1]
    return (
        f"{words} (scikit-learn {estimator}) after a fitted feature transformer, served as "
        "one ONNX graph"
    )


def _source_uri(lineage: Mapping[str, Any]) -> str | None:
    source = lineage.get("source") or {}
    if not source.get("bucket"):
        return None
    uri = f"s3://{source['bucket']}/{source.get('key', '')}"
    return f"{uri}?versionId={source['version_id']}" if source.get("version_id") else uri


def _lineage(entry: Mapping[str, Any], key: str) -> Any:
    return (entry.get("lineage") or {}).get(key) or "unknown"


def _no_fairness(schema: ResolvedSchema) -> str:
    if schema.sensitive:  # a run from before fairness was measured
        return "not evaluated: the evaluation report has no fairness section"
    return "not evaluated: the spec names no sensitive features (fairness.sensitive_features)"


def _lines(items: Iterable[str]) -> str | None:
    """A list as the schema's one string: an item per line, each on one line."""
    lines = [LIST_ITEM + " ".join(str(i).split()) for i in items if str(i).strip()]
    return "\n".join(lines) or None
