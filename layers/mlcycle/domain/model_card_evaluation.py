"""The evaluation details of a model card (`mlcycle.domain.model_card`): one evaluation job
per question a reviewer asks (the holdout's metrics with their intervals, the candidates, the
gate, the decision, the explanations, serving parity, fairness per sensitive feature), and the
helpers that keep every value within what the SageMaker Model Card schema allows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

Json = dict[str, Any]


def evaluation_details(
    entry: Mapping[str, Any], evaluation: Mapping[str, Any], datasets: Sequence[str]
) -> list[Json]:
    """The card's `evaluation_details`: the jobs that the run's documents have."""
    jobs = [
        _holdout_job(entry, evaluation, datasets),
        _candidates_job(evaluation),
        _gate_job(evaluation),
        _decision_job(evaluation),
        _explanations_job(entry),
        _parity_job(evaluation),
        *_fairness_jobs(evaluation.get("fairness")),
    ]
    return [filled(j) for j in jobs if j is not None]


def _holdout_job(
    entry: Mapping[str, Any], evaluation: Mapping[str, Any], datasets: Sequence[str]
) -> Json:
    primary = str(entry.get("primary_metric") or evaluation.get("primary_metric"))
    level = evaluation.get("confidence_level", 0.95)
    boot = evaluation.get("bootstrap") or {}
    intervals = entry.get("intervals") or {}
    baseline = evaluation.get("baseline") or {}
    metrics = dict(entry.get("metrics") or {})
    groups = []
    for name in sorted(metrics, key=lambda n: n != primary):
        data = [simple_metric("value", metrics[name])]
        low_high = intervals.get(name) or [None, None]
        data += [simple_metric("low", low_high[0]), simple_metric("high", low_high[1])]
        data.append(simple_metric("baseline", baseline.get(name)))
        groups.append({"name": clip(name, 63), "metric_data": [d for d in data if d]})
    observation = (
        f"The winner's metrics on {fmt_count(evaluation.get('holdout_rows'))} holdout rows, each "
        f"with its {fmt_pct(level)} bootstrap interval (low, high) over "
        f"{fmt_count(boot.get('replicates'))} resamples of the holdout (seed {boot.get('seed')}); "
        f"baseline: a dummy model on the same rows. Primary metric: {primary}."
    )
    return {
        "name": "holdout metrics",
        "evaluation_observation": clip(observation, 2096),
        "datasets": [clip(d, 1024) for d in datasets][:10],
        "metadata": as_strings(
            {
                "rows": evaluation.get("holdout_rows"),
                "primary_metric": primary,
                "confidence_level": level,
                "bootstrap_replicates": boot.get("replicates"),
                "bootstrap_seed": boot.get("seed"),
            }
        ),
        "metric_groups": [g for g in groups if g["metric_data"]],
    }


def _candidates_job(evaluation: Mapping[str, Any]) -> Json | None:
    primary = str(evaluation.get("primary_metric"))
    groups = []
    for c in evaluation.get("candidates") or []:
        m = (c.get("metrics") or {}).get(primary) or {}
        data = [
            simple_metric(primary, m.get("value")),
            simple_metric("low", m.get("low")),
            simple_metric("high", m.get("high")),
            simple_metric("winner", bool(c.get("winner"))),
        ]
        name = str(c.get("algorithm"))
        groups.append({"name": clip(name, 63), "metric_data": [d for d in data if d]})
    if not groups:
        return None
    return {
        "name": "candidates",
        "evaluation_observation": f"Every candidate's {primary} on the same holdout rows.",
        "metric_groups": groups,
    }


def _gate_job(evaluation: Mapping[str, Any]) -> Json | None:
    gate = evaluation.get("gate")
    if not gate:
        return None
    verdict = "PASSED" if gate.get("passed") else "REJECTED"
    checks = [
        {
            "name": clip(str(c.get("name")), 255),
            "type": "boolean",
            "value": bool(c.get("passed")),
            **({"notes": clip(str(c["detail"]), 1024)} if c.get("detail") else {}),
        }
        for c in gate.get("checks") or []
    ]
    verdict_metric = {
        "name": "gate passed",
        "type": "boolean",
        "value": bool(gate.get("passed")),
        "notes": clip(str(gate.get("reason") or verdict), 1024),
    }
    groups = [{"name": "checks", "metric_data": [verdict_metric, *checks]}]
    comparison = ((evaluation.get("production") or {}).get("comparison")) or {}
    if comparison:
        version = (evaluation.get("production") or {}).get("version")
        data = [
            simple_metric(
                f"difference in {comparison.get('metric')}", comparison.get("difference")
            ),
            simple_metric("low", comparison.get("low")),
            simple_metric("high", comparison.get("high")),
            simple_metric("probability of improving", comparison.get("probability")),
        ]
        name = f"paired comparison with production v{version}"
        groups.append({"name": clip(name, 63), "metric_data": [d for d in data if d]})
    return {
        "name": "gate",
        "evaluation_observation": clip(f"{verdict}: {gate.get('reason', '')}", 2096),
        "metadata": as_strings(
            {"min_improvement": gate.get("min_improvement"), "confidence": gate.get("confidence")}
        ),
        "metric_groups": groups,
    }


def _decision_job(evaluation: Mapping[str, Any]) -> Json | None:
    decision = evaluation.get("decision")
    if not decision or not is_number(decision.get("threshold")):
        return None
    data = [
        {
            "name": "threshold",
            "type": "number",
            "value": decision["threshold"],
            "notes": clip(str(decision.get("threshold_source") or ""), 1024) or "set in the spec",
        },
        {
            "name": "positive class",
            "type": "string",
            "value": clip(str(decision.get("positive_class")), 63),
            "notes": clip(str(decision.get("positive_class_reason") or "set in the spec"), 1024),
        },
        {"name": "optimizes", "type": "string", "value": clip(str(decision.get("optimize")), 63)},
    ]
    for bound in ("min_precision", "min_recall"):
        if is_number(decision.get(bound)):
            data.append(
                {"name": bound.replace("_", " "), "type": "number", "value": decision[bound]}
            )
    cost = decision.get("expected_cost") or {}
    if is_number(cost.get("value")):
        data.append(
            {
                "name": "expected cost per decision",
                "type": "number",
                "value": float(cost["value"]),
                "notes": "interval "
                f"[{fmt_number(cost.get('low'))}, {fmt_number(cost.get('high'))}]",
            }
        )
    return {
        "name": "decision",
        "evaluation_observation": (
            "How the binary model turns its probability of the positive class into a label: "
            "the positive class where that probability reaches the threshold."
        ),
        "metric_groups": [{"name": "decision", "metric_data": data}],
    }


def _explanations_job(entry: Mapping[str, Any]) -> Json | None:
    top = [f for f in entry.get("top_features") or [] if is_number(f.get("share"))]
    if not top:
        return None
    chart = {
        "name": "share of attribution",
        "type": "bar_chart",
        "value": [float(f["share"]) for f in top],
        "x_axis_name": [clip(str(f["name"]), 63) for f in top],
        "y_axis_name": "share of mean |Shapley value|",
    }
    return {
        "name": "explanations",
        "evaluation_observation": (
            "What the model relies on most: each feature's share of the mean absolute Shapley "
            "value of the served graph's output over the holdout."
        ),
        "metric_groups": [{"name": "top features", "metric_data": [chart]}],
    }


def _parity_job(evaluation: Mapping[str, Any]) -> Json | None:
    parity = evaluation.get("parity")
    if not parity:
        return None
    data = [
        simple_metric("rows", parity.get("rows")),
        simple_metric("labels equal", parity.get("labels_equal")),
        simple_metric("max abs difference", parity.get("max_abs_diff")),
        simple_metric("tolerance", parity.get("tolerance")),
    ]
    return {
        "name": "serving parity",
        "evaluation_observation": (
            "The served ONNX graph against the evaluated scikit-learn pipeline on every "
            "holdout row."
        ),
        "metric_groups": [{"name": "parity", "metric_data": [d for d in data if d]}],
    }


def _fairness_jobs(fairness: Any) -> list[Json]:
    """One job per sensitive feature: a metric group per group of people, holding its rates
    and its measures against the reference group (whatever of them the report has)."""
    if not isinstance(fairness, Mapping):
        return []
    limits = {f"limit {k}": v for k, v in (fairness.get("limits") or {}).items() if v is not None}
    gated = ", ".join(str(g) for g in fairness.get("gated") or []) or "nothing"
    violations = list(fairness.get("violations") or [])
    jobs = []
    for feature, found in (fairness.get("features") or {}).items():
        rows: dict[str, Json] = {}
        notes: list[str] = [str(n) for n in found.get("notes") or []]
        for item in [*(found.get("groups") or []), *(found.get("measures") or [])]:
            row = rows.setdefault(str(item.get("group")), {})
            for key, value in item.items():
                if isinstance(value, Mapping):  # per class (multiclass): one metric each
                    row.update({f"{key} {k}": v for k, v in value.items()})
                elif key == "notes":
                    notes += [str(n) for n in value or [] if str(n) not in notes]
                elif key != "group":
                    row[key] = value
        groups = []
        for group, values in rows.items():
            data = [simple_metric(k, v) for k, v in values.items()]
            groups.append({"name": clip(group, 63), "metric_data": [d for d in data if d]})
        mine = [_violation(v) for v in violations if _concerns(v, str(feature))]
        if mine:
            observation = "Limits violated: " + "; ".join(mine) + "."
        elif found.get("passed") is False or fairness.get("passed") is False:
            observation = "No limit violated for this feature (another feature violated one)."
        else:
            observation = f"No limit violated (gated: {gated})."
        notes += [str(n) for n in fairness.get("notes") or []]
        if notes:
            observation += " " + " ".join(n.rstrip(".") + "." for n in notes)
        between = {
            f"between groups {k}": v
            for k, v in (found.get("between_groups") or {}).items()
            if v is not None
        }
        jobs.append(
            {
                "name": clip(f"fairness: {feature}", 63),
                "evaluation_observation": clip(observation, 2096),
                "metadata": as_strings(
                    {
                        "reference_group": found.get("reference_group"),
                        "bins": found.get("bins"),
                        "gated": gated,
                        **limits,
                        **between,
                    }
                ),
                "metric_groups": [g for g in groups if g["metric_data"]],
            }
        )
    return jobs


def _concerns(violation: Any, feature: str) -> bool:
    if isinstance(violation, Mapping) and "feature" in violation:
        return str(violation["feature"]) == feature
    return feature in str(violation)


def _violation(v: Any) -> str:
    if isinstance(v, Mapping):
        for key in ("reason", "message", "detail"):
            if v.get(key):
                return str(v[key])
        return ", ".join(f"{k} {as_text(x)}" for k, x in v.items())
    return str(v)


# ---------------------------------------------------------------------------------- values


def winning_candidate(evaluation: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((c for c in evaluation.get("candidates") or [] if c.get("winner")), {})


def simple_metric(name: str, value: Any) -> Json | None:
    """A simple metric of the schema, or None for a value it cannot hold (None, NaN)."""
    if isinstance(value, bool):
        return {"name": clip(name, 255), "type": "boolean", "value": value}
    if is_number(value):
        return {"name": clip(name, 255), "type": "number", "value": float(value)}
    if isinstance(value, str) and value:
        return {"name": clip(name, 255), "type": "string", "value": clip(value, 63)}
    return None


def is_number(value: Any) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def filled(section: Mapping[str, Any]) -> Json:
    """Only the fields that hold something: the schema reads an absent field as not filled."""
    return {k: v for k, v in section.items() if v not in (None, "", [], {})}


def as_strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {k: clip(as_text(v), 1024) for k, v in values.items() if v is not None}


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"  # six digits: a readable string, as the schema wants
    return json.dumps(value, default=str)


def clip(text: Any, limit: int) -> Any:
    """`text` within the schema's length limit (an ellipsis marks a cut); None stays None."""
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_number(value: Any) -> str:
    return f"{float(value):.4g}" if is_number(value) else str(value)


def fmt_pct(value: Any) -> str:
    return f"{float(value):.0%}" if is_number(value) else str(value)


def fmt_count(value: Any) -> str:
    return f"{int(value):,}" if is_number(value) else str(value)
