"""Stage 7a wired to the lake: one candidate's search and fit (one item of the training Map).

Its search document (`models/.../candidates/<algorithm>.search.json`) is rewritten after
every trial, so whoever watches a run (the local runner, a person with `aws s3 cp`) sees
"trial n of N" while it trains; the last version holds every trial and the threshold's
tuning curve for the evaluation report.
"""

from __future__ import annotations

from typing import Any

from mlcycle.adapters.lake import Lake
from mlcycle.context import CandidateResult, RunContext, required
from mlcycle.domain import train
from mlcycle.domain.search import Trial
from mlcycle.lake_layout import Zone, run_prefix
from mlcycle.spec import Algorithm
from mlcycle.stages import feature_matrix, run_schema, run_spec

SEARCH_SUFFIX = ".search.json"


def candidates_prefix(dataset: str, run_id: str) -> str:
    return run_prefix(Zone.MODELS, dataset, run_id) + "candidates/"


def train_model(ctx: RunContext, algorithm: Algorithm, lake: Lake) -> CandidateResult:
    problem = required(ctx.problem, "define_problem")
    spec, schema = run_spec(ctx, lake), run_schema(ctx, lake)
    metric = required(ctx.metrics, "define_metrics").primary_metric
    X_train, y_train = feature_matrix(lake, required(ctx.features, "engineer_features").train_uri)
    prefix = candidates_prefix(problem.dataset, ctx.run_id)
    search_key = prefix + f"{algorithm}{SEARCH_SUFFIX}"
    trials: list[dict[str, Any]] = []

    def progress(done: int, planned: int, trial: Trial) -> None:
        trials.append(trial.to_json())
        document = {"algorithm": str(algorithm), "status": "searching", "done": done}
        lake.put_json(search_key, {**document, "planned": planned, "trials": trials})

    candidate = train.train_candidate(
        algorithm,
        schema.task,
        X_train,
        y_train,
        seed=spec.seed,
        metric=metric,
        policy=spec.search,
        classes=schema.classes,
        positive_class=schema.positive_class,
        decision=spec.decision,
        on_trial=progress,
    )
    result = candidate.search
    assert result is not None
    choice = candidate.threshold
    search_uri = lake.put_json(
        search_key,
        {
            "algorithm": str(algorithm),
            "status": "done",
            "done": len(result.trials),
            **result.to_json(spec.search.budget_seconds),
            "refit_seconds": candidate.fit_seconds,
            "threshold": choice.to_json() if choice else None,
        },
    )
    return CandidateResult(
        algorithm=algorithm,
        model_uri=lake.put_artifact(prefix + f"{algorithm}.joblib", candidate.estimator),
        fit_seconds=round(candidate.fit_seconds, 3),
        params=candidate.params,
        search_uri=search_uri,
        cv_score=result.best.score,
        trials=len(result.trials),
        search_seconds=round(result.seconds, 3),
        threshold=choice.threshold if choice else None,
    )
