"""Batch scoring end to end: a local run, then `mlcycle score` on a CSV with a few bad rows,
through the synthesized scoring state machine (plan, Distributed Map, finish) in moto."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from mlcycle.cli import main
from mlcycle.local.runner import deliver_events, local_aws, run_local
from mlcycle.local.scoring import score_deployed, score_local
from mlcycle.local.serve import LocalEndpoint
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.slow

QUICK = {
    "dataset": "customer-churn",
    "target": "churned",
    "task": "binary",
    "primary_metric": "roc_auc",
    "threshold": 0.6,
    "positive_class": "yes",
    "candidates": ["linear"],
    "search": {"trials": 1},
    "release": {"bake_seconds": 1, "max_waits": 1},
}
ROWS = 120
BAD = {
    5: ("monthly_charges", "abc"),
    11: ("signup_date", "not-a-date"),
    40: ("tenure_months", "inf"),
}


def _batch(path: Path) -> pd.DataFrame:
    """The sample's first rows without the target, semicolon-separated, three rows broken."""
    with (EXAMPLES / "customer-churn.csv").open() as source:
        lines = list(csv.reader(source))
    header, body = lines[0], lines[1 : ROWS + 1]
    for row, (column, value) in BAD.items():
        body[row - 1][header.index(column)] = value
    target = header.index("churned")
    keep = [i for i in range(len(header)) if i != target]
    with path.open("w", newline="") as sink:
        csv.writer(sink, delimiter=";").writerows([[r[i] for i in keep] for r in [header, *body]])
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False)


def _instance(record: dict[str, str]) -> dict[str, Any]:
    """A row as a client sends it to :predict: numbers as numbers, empty as null."""
    instance: dict[str, Any] = {}
    for key, text in record.items():
        if key == "customer_id":
            continue
        if text == "":
            instance[key] = None
        elif key in ("plan", "region", "payment_method", "signup_date"):
            instance[key] = text
        else:
            number = float(text)
            instance[key] = int(number) if number.is_integer() and "." not in text else number
    return instance


def test_mlcycle_score_matches_the_endpoint_row_for_row(tmp_path: Path) -> None:
    out = tmp_path / "run"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(QUICK))
    outcome = run_local(EXAMPLES / "customer-churn.csv", spec_file=spec, out_dir=out)
    assert outcome.status == "SUCCEEDED", outcome.error
    assert outcome.model_stage == "production"
    batch = tmp_path / "customers.csv"
    frame = _batch(batch)

    predictions_file = tmp_path / "predictions.parquet"
    code = main(["score", str(batch), "--from", str(out), "--out", str(predictions_file)])
    assert code == 0
    predictions = pq.read_table(predictions_file).to_pandas()

    # one row per scorable input row, in input order, the id carried through
    good = [i for i in range(1, ROWS + 1) if i not in BAD]
    assert predictions["row"].tolist() == good
    assert (
        predictions["customer_id"].tolist()
        == frame["customer_id"].iloc[[i - 1 for i in good]].tolist()
    )
    assert list(predictions.columns) == [
        "row",
        "request_id",
        "customer_id",
        "label",
        "probability_no",
        "probability_yes",
        "model_version",
        "captured",
    ]
    assert set(predictions["model_version"]) == {outcome.model_version}

    # the endpoint's answers for the same rows: same labels (its threshold), same float32s
    instances = [_instance(frame.iloc[i - 1].to_dict()) for i in good]
    with LocalEndpoint(out) as endpoint:
        status, response = endpoint.request(
            "POST", "/v1/models/customer-churn:predict", json.dumps({"instances": instances})
        )
    assert status == 200, response
    answers = response["predictions"]
    assert predictions["label"].tolist() == [a["label"] for a in answers]
    assert "yes" in set(predictions["label"])
    assert "no" in set(predictions["label"])
    for name in ("no", "yes"):
        expected = np.array([a["probabilities"][name] for a in answers], dtype=np.float32)
        assert np.array_equal(predictions[f"probability_{name}"].to_numpy(), expected)

    # the bad rows, in quarantine with their numbers and reasons
    (run_dir,) = (out / "lake" / "quarantine" / "dataset=customer-churn").glob("run=*")
    quarantine = pq.read_table(run_dir / "part-00000.parquet").to_pandas()
    assert quarantine["row"].tolist() == sorted(BAD)
    assert quarantine["customer_id"].tolist() == [f"C{r:06d}" for r in sorted(BAD)]
    for reason, (column, value) in zip(
        quarantine["reason"], [BAD[r] for r in sorted(BAD)], strict=True
    ):
        assert reason.startswith(f"{column}: ")
        assert value in reason
    summary_file = run_dir.parents[2] / "predictions" / "dataset=customer-churn" / run_dir.name
    summary = json.loads((summary_file / "_summary.json").read_text())
    assert (summary["rows"], summary["scored"], summary["quarantined"]) == (ROWS, len(good), 3)
    assert summary["model_version"] == outcome.model_version
    # a CSV upload gets a CSV of its predictions beside the Parquet
    written = pd.read_csv(summary_file / "_predictions.csv")
    assert written["row"].tolist() == good
    assert written["label"].tolist() == predictions["label"].tolist()

    # many chunks through the Distributed Map: the same predictions, in the same order
    chunked = score_local(batch, source=out, out=tmp_path / "chunked.csv", chunk_rows=25)
    assert chunked.status == "SUCCEEDED", chunked.error
    assert chunked.summary is not None
    assert len(chunked.summary["parts"]) == math.ceil(ROWS / 25)
    again = pd.read_csv(tmp_path / "chunked.csv")
    assert again["row"].tolist() == good
    assert again["label"].tolist() == predictions["label"].tolist()
    assert np.allclose(again["probability_yes"], predictions["probability_yes"], atol=1e-7)

    # on a deployed stack (moto's, described by CloudFormation with the stack's outputs): the
    # same command path, with the caller's credentials, gives the same predictions
    with local_aws(out) as aws:
        boto3.client("cloudformation").create_stack(
            StackName="mlcycle-prod",
            TemplateBody=json.dumps(
                {
                    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                    "Outputs": {
                        "LakeBucketName": {"Value": aws.deployment.lake_bucket},
                        "ScoringStateMachineArn": {
                            "Value": aws.deployment.state_machines["scoring"]
                        },
                    },
                }
            ),
        )
        on_aws = tmp_path / "on-aws.parquet"
        deployed = score_deployed(
            batch, stack="mlcycle-prod", model="customer-churn", out=on_aws, session=aws.session
        )
        # the upload's own event then finds its run started: it starts nothing more
        (run,) = deliver_events(aws.deployment, aws.session)
        executions = aws.session.client("stepfunctions").list_executions(
            stateMachineArn=aws.deployment.state_machines["scoring"]
        )["executions"]
        assert [e["executionArn"] for e in executions] == [run]
    assert deployed.status == "SUCCEEDED", deployed.error
    assert deployed.summary is not None
    assert (deployed.summary["scored"], deployed.summary["model_version"]) == (
        len(good),
        outcome.model_version,
    )
    remote = pq.read_table(on_aws).to_pandas()
    assert remote["request_id"].tolist() == [
        f"{deployed.run_id}:{row}" for row in predictions["row"]
    ]
    local = predictions.drop(columns=["request_id"])
    pd.testing.assert_frame_equal(remote.drop(columns=["request_id"]), local)


def test_a_file_without_the_models_features_fails_the_scoring_run_saying_so(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(QUICK))
    assert run_local(EXAMPLES / "customer-churn.csv", spec_file=spec, out_dir=out).status == (
        "SUCCEEDED"
    )
    batch = tmp_path / "partial.csv"
    pd.read_csv(EXAMPLES / "customer-churn.csv").head(10).drop(columns=["plan"]).to_csv(
        batch, index=False
    )
    outcome = score_local(batch, source=out, model="customer-churn")
    assert outcome.status == "FAILED"
    assert outcome.error is not None
    assert outcome.error["type"] == "BadInputError"
    assert "plan" in outcome.error["message"]
