"""Stage 7: what the evaluation page plots, computed from a real model on a real holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from mlcycle.domain import diagnostics
from mlcycle.domain.diagnostics import (
    CALIBRATION_BINS,
    CURVE_POINTS,
    RESIDUAL_BINS,
    SCATTER_POINTS,
    classification_curves,
    importance,
    regression_diagnostics,
)
from mlcycle.domain.evaluate import predict, serving_pipeline
from mlcycle.domain.features import engineer
from mlcycle.domain.train import train_candidate
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import Algorithm, ColumnType, Task

SEED = 0


def table(data) -> pd.DataFrame:
    df = data.data.copy()
    df.columns = [c.replace(" ", "_") for c in df.columns]
    df["y"] = np.asarray(data.target_names)[data.target]
    return df


def schema_of(df: pd.DataFrame, task: Task, **fields) -> ResolvedSchema:
    return ResolvedSchema(
        dataset="demo",
        task=task,
        target="y",
        features={c: ColumnType.NUMERIC for c in df.columns if c != "y"},
        **fields,
    )


@pytest.fixture(scope="module")
def breast_cancer_holdout():
    df = table(load_breast_cancer(as_frame=True))
    schema = schema_of(df, Task.BINARY, classes=["benign", "malignant"], positive_class="malignant")
    fs = engineer(df, schema, holdout_fraction=0.3, seed=SEED)
    model = LogisticRegression(max_iter=1000, C=0.05).fit(fs.X_train, fs.y_train)
    return fs, schema, model


def test_binary_curves_agree_with_sklearn(breast_cancer_holdout):
    fs, schema, model = breast_cancer_holdout
    threshold = 0.35
    pred = predict(model, fs.X_holdout, schema, threshold)
    curves = classification_curves(fs.y_holdout, pred.labels, pred.probabilities, schema, threshold)
    y = fs.y_holdout.to_numpy().astype(str)
    is_pos = y == "malignant"
    p = pred.probabilities[:, 1]
    n = len(y)

    cm = curves["confusion_matrix"]
    assert cm["labels"] == ["benign", "malignant"]
    assert cm["counts"] == confusion_matrix(y, pred.labels, labels=cm["labels"]).tolist()
    assert sum(map(sum, cm["counts"])) == n

    fpr, tpr, _ = roc_curve(is_pos, p)
    roc = curves["roc"]
    assert (roc["fpr"][0], roc["tpr"][0]) == (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert roc["auc"] == pytest.approx(roc_auc_score(is_pos, p))
    assert roc["auc"] > 0.95

    pr = curves["pr"]
    assert pr["average_precision"] == pytest.approx(average_precision_score(is_pos, p))
    assert pr["prevalence"] == pytest.approx(is_pos.mean())
    assert pr["recall"] == sorted(pr["recall"])  # from recall 0 up to 1
    assert pr["recall"][-1] == 1.0

    op = curves["operating_point"]
    flagged = p >= threshold
    tp, fp = int((flagged & is_pos).sum()), int((flagged & ~is_pos).sum())
    assert op["threshold"] == threshold
    assert op["tpr"] == op["recall"] == pytest.approx(tp / is_pos.sum())
    assert op["fpr"] == pytest.approx(fp / (~is_pos).sum())
    assert op["precision"] == pytest.approx(tp / (tp + fp))
    # the confusion matrix is of the same decisions
    assert cm["counts"][1][1] == tp
    assert cm["counts"][0][1] == fp

    cal = curves["calibration"]
    assert sum(cal["counts"]) == n
    assert len(cal["counts"]) <= CALIBRATION_BINS
    assert len(cal["mean_predicted"]) == len(cal["fraction_positive"]) == len(cal["counts"])
    assert cal["mean_predicted"] == sorted(cal["mean_predicted"])
    weighted = np.dot(cal["fraction_positive"], cal["counts"]) / n
    assert weighted == pytest.approx(is_pos.mean())
    assert np.dot(cal["mean_predicted"], cal["counts"]) / n == pytest.approx(p.mean())

    gains = curves["gains"]
    assert gains["fraction_targeted"][0] == 0.0
    assert gains["fraction_positives"][0] == 0.0
    assert gains["fraction_targeted"][-1] == 1.0
    assert gains["fraction_positives"][-1] == 1.0
    assert np.all(np.diff(gains["fraction_positives"]) >= 0)
    # a good model finds more positives than targeting at random
    half = int(np.searchsorted(gains["fraction_targeted"], 0.5))
    assert gains["fraction_positives"][half] > 0.9


def test_binary_curves_without_a_threshold_have_no_operating_point(breast_cancer_holdout):
    fs, schema, model = breast_cancer_holdout
    pred = predict(model, fs.X_holdout, schema, None)
    curves = classification_curves(fs.y_holdout, pred.labels, pred.probabilities, schema, None)
    assert "operating_point" not in curves
    assert {"roc", "pr", "calibration", "gains"} <= set(curves)


def test_a_holdout_with_one_class_has_only_the_confusion_matrix(breast_cancer_holdout):
    fs, schema, model = breast_cancer_holdout
    benign = fs.y_holdout == "benign"
    pred = predict(model, fs.X_holdout[benign], schema, 0.5)
    curves = classification_curves(
        fs.y_holdout[benign], pred.labels, pred.probabilities, schema, 0.5
    )
    assert set(curves) == {"confusion_matrix"}
    assert sum(map(sum, curves["confusion_matrix"]["counts"])) == int(benign.sum())


def test_long_curves_are_thinned_keeping_their_ends():
    """Digits, "is it an 8": 1,797 rows, so the gains curve has 1,798 points."""
    X, digit = load_digits(return_X_y=True)
    y = np.where(digit == 8, "eight", "other").astype(object)
    model = LogisticRegression(max_iter=2000, C=0.01).fit(X, y)
    schema = ResolvedSchema(
        dataset="digits",
        task=Task.BINARY,
        target="y",
        features={"x": ColumnType.NUMERIC},
        classes=["eight", "other"],
        positive_class="eight",
    )
    proba = model.predict_proba(X)
    curves = classification_curves(y, model.predict(X), proba, schema, 0.5)
    gains = curves["gains"]
    assert len(gains["fraction_targeted"]) == CURVE_POINTS
    assert gains["fraction_targeted"][0] == 0.0
    assert gains["fraction_targeted"][-1] == 1.0
    assert gains["fraction_positives"][-1] == 1.0
    for name in ("roc", "pr"):
        assert all(len(v) <= CURVE_POINTS for k, v in curves[name].items() if isinstance(v, list))
    fpr, tpr, _ = roc_curve(y == "eight", proba[:, 0])
    assert curves["roc"]["fpr"][-1] == fpr[-1]
    assert curves["roc"]["tpr"][0] == tpr[0]


def test_multiclass_gives_per_class_scores():
    df = table(load_wine(as_frame=True))
    classes = sorted(set(df["y"]))
    schema = schema_of(df, Task.MULTICLASS, classes=classes)
    fs = engineer(df, schema, holdout_fraction=0.4, seed=SEED)
    model = LogisticRegression(max_iter=1000).fit(fs.X_train, fs.y_train)
    pred = predict(model, fs.X_holdout, schema)
    curves = classification_curves(fs.y_holdout, pred.labels, pred.probabilities, schema, None)
    assert set(curves) == {"confusion_matrix", "per_class"}
    per_class = curves["per_class"]
    assert list(per_class) == classes
    assert sum(c["support"] for c in per_class.values()) == len(fs.y_holdout)
    precision, recall, f1, support = precision_recall_fscore_support(
        fs.y_holdout.astype(str), pred.labels.astype(str), labels=classes, zero_division=0
    )
    for i, c in enumerate(classes):
        assert per_class[c]["precision"] == pytest.approx(precision[i])
        assert per_class[c]["recall"] == pytest.approx(recall[i])
        assert per_class[c]["f1"] == pytest.approx(f1[i])
        assert per_class[c]["support"] == support[i]
    counts = np.array(curves["confusion_matrix"]["counts"])
    np.testing.assert_array_equal(counts.sum(axis=1), support)


def diabetes_predictions(copies: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    yhat = LinearRegression().fit(X, y).predict(X)
    return np.tile(y, copies), np.tile(yhat, copies)


def test_regression_diagnostics_on_a_small_holdout_keep_every_row():
    y, yhat = diabetes_predictions(1)
    out = regression_diagnostics(y, yhat, seed=SEED)
    assert out["actual"] == list(y)
    assert out["predicted"] == list(yhat)
    hist = out["residual_histogram"]
    assert sum(hist["counts"]) == len(y)
    assert len(hist["counts"]) == RESIDUAL_BINS
    assert len(hist["edges"]) == RESIDUAL_BINS + 1
    residuals = y - yhat
    assert hist["edges"][0] == pytest.approx(residuals.min())
    assert hist["edges"][-1] == pytest.approx(residuals.max())


def test_regression_diagnostics_sample_at_most_the_scatter_points():
    y, yhat = diabetes_predictions(6)  # 2,652 rows
    out = regression_diagnostics(y, yhat, seed=SEED)
    assert len(out["actual"]) == len(out["predicted"]) == SCATTER_POINTS
    # the sampled pairs are real (actual, predicted) pairs of the same rows
    pairs = set(zip(y.tolist(), yhat.tolist(), strict=True))
    assert all(pair in pairs for pair in zip(out["actual"], out["predicted"], strict=True))
    assert sum(out["residual_histogram"]["counts"]) == len(y)
    assert out == regression_diagnostics(y, yhat, seed=SEED)  # seeded
    assert out["actual"] != regression_diagnostics(y, yhat, seed=SEED + 1)["actual"]


def test_importance_ranks_the_signal_above_pure_noise():
    data = load_breast_cancer(as_frame=True)
    rng = np.random.default_rng(SEED)
    df = pd.DataFrame(
        {
            "worst_radius": data.data["worst radius"].to_numpy(),
            "noise": rng.normal(size=len(data.data)),
            "y": np.asarray(data.target_names)[data.target],
        }
    )
    schema = schema_of(df, Task.BINARY, classes=["benign", "malignant"], positive_class="malignant")
    fs = engineer(df, schema, holdout_fraction=0.4, seed=SEED)
    candidate = train_candidate(
        Algorithm.LINEAR,
        Task.BINARY,
        fs.X_train,
        fs.y_train,
        seed=SEED,
        positive_class="malignant",
    )
    pipeline = serving_pipeline(fs.transformer, candidate.estimator)
    assert candidate.threshold is not None
    out = importance(
        pipeline, fs.holdout, schema, "roc_auc", threshold=candidate.threshold.threshold, seed=SEED
    )
    assert out["method"] == "permutation"
    assert out["metric"] == "roc_auc"
    assert out["rows"] == len(fs.holdout)
    assert out["repeats"] == diagnostics.IMPORTANCE_REPEATS
    names = [f["name"] for f in out["features"]]
    assert names == ["worst_radius", "noise"]
    signal, noise = out["features"]
    assert signal["mean"] > 0.2  # shuffling the radius takes the AUC from ~0.95 to ~0.5
    assert abs(noise["mean"]) < 0.02
    assert noise["std"] < 0.02


def test_importance_of_a_smaller_is_better_metric_is_still_positive_for_signal():
    data = load_diabetes(as_frame=True)
    rng = np.random.default_rng(SEED)
    df = pd.DataFrame(
        {
            "bmi": data.data["bmi"].to_numpy(),
            "noise": rng.normal(size=len(data.data)),
            "y": data.target.to_numpy(),
        }
    )
    schema = schema_of(df, Task.REGRESSION)
    fs = engineer(df, schema, holdout_fraction=0.4, seed=SEED)
    model = LinearRegression().fit(fs.X_train, fs.y_train)
    out = importance(
        serving_pipeline(fs.transformer, model), fs.holdout, schema, "rmse", threshold=None, seed=1
    )
    signal, noise = out["features"]
    assert signal["name"] == "bmi"
    assert signal["mean"] > 5, (signal, noise)  # rmse rises by several points without bmi
    assert abs(noise["mean"]) < 0.1 * signal["mean"], (signal, noise)
