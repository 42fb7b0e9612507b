"""Alarms, notifications, dashboard and the retraining loop, as synthesized."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template
from constructs import Construct

from infra.monitoring import Monitoring
from mlcycle.spec import parse_spec
from tests.conftest import EXAMPLES

CHURN = parse_spec((EXAMPLES / "customer-churn.yaml").read_text())


def _of_type(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["AlarmDescription"]: a for a in _of_type(template, "AWS::CloudWatch::Alarm")}


def test_every_alarm_notifies_the_encrypted_topic(template: dict[str, Any]) -> None:
    topics = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::SNS::Topic"}
    # the alarms' topic, and the approval requests' (tests/infra/test_approval.py)
    (topic_id,) = [k for k in topics if k.startswith("MonitoringNotifications")]
    assert all("KmsMasterKeyId" in t["Properties"] for t in topics.values())
    alarms = _of_type(template, "AWS::CloudWatch::Alarm")
    assert alarms
    assert all(a["AlarmActions"] == [{"Ref": topic_id}] for a in alarms)


def test_the_pipeline_and_the_endpoint_are_watched(template: dict[str, Any]) -> None:
    metrics = {(a.get("Namespace"), a.get("MetricName")) for a in _alarms(template).values()}
    assert ("AWS/States", "ExecutionsFailed") in metrics
    assert ("AWS/ApiGateway", "5XXError") in metrics
    assert ("AWS/ApiGateway", "Latency") in metrics
    assert ("AWS/Lambda", "Throttles") in metrics
    assert ("mlcycle", "ModelLoadFailures") in metrics
    stage_error_alarms = [a for a in _alarms(template).values() if a.get("MetricName") == "Errors"]
    assert len(stage_error_alarms) >= 12


def test_drift_and_quality_alarms_take_their_thresholds_from_the_spec(
    template: dict[str, Any],
) -> None:
    by_metric = {
        a["MetricName"]: a
        for a in _of_type(template, "AWS::CloudWatch::Alarm")
        if a.get("Dimensions") == [{"Name": "dataset", "Value": CHURN.dataset}]
    }
    drift = by_metric["DriftedFeatures"]
    assert drift["Threshold"] == CHURN.monitoring.max_drifted_features
    assert drift["ComparisonOperator"] == "GreaterThanThreshold"
    assert by_metric["PredictionPSI"]["Threshold"] == CHURN.monitoring.prediction_psi_threshold
    quality = by_metric["LiveMetric"]
    assert (quality["Threshold"], quality["ComparisonOperator"]) == (
        CHURN.threshold,
        "LessThanThreshold",
    )
    # the same metric estimated before the labels (CBPE), held to the same threshold
    estimated = by_metric["EstimatedMetric"]
    assert (estimated["Threshold"], estimated["ComparisonOperator"], estimated["Statistic"]) == (
        quality["Threshold"],
        quality["ComparisonOperator"],
        quality["Statistic"],
    )
    assert estimated["AlarmName"] == "mlcycle-dev-retrain-customer-churn-estimated-quality"
    assert "estimated from calibrated probabilities" in estimated["AlarmDescription"]
    for alarm in by_metric.values():  # their names route them to the retraining rule
        assert alarm["AlarmName"].startswith("mlcycle-dev-retrain-customer-churn")


def test_a_firing_model_alarm_starts_retraining(template: dict[str, Any]) -> None:
    (rule,) = [
        r
        for r in _of_type(template, "AWS::Events::Rule")
        if r.get("EventPattern", {}).get("source") == ["aws.cloudwatch"]
    ]
    assert rule["EventPattern"]["detail"] == {
        "alarmName": [{"prefix": "mlcycle-dev-retrain-"}],
        "state": {"value": ["ALARM"]},
    }
    (schedule,) = [r for r in _of_type(template, "AWS::Events::Rule") if "ScheduleExpression" in r]
    assert schedule["ScheduleExpression"] == "rate(1 hour)"


def test_the_dashboard_shows_pipeline_endpoint_model_and_release(
    template: dict[str, Any],
) -> None:
    (dashboard,) = _of_type(template, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["DashboardBody"])
    for title in (
        "Pipeline runs",
        "Stage errors",
        "Endpoint latency",
        "customer-churn: drift",
        "customer-churn: live quality",
        "customer-churn: releases",
        "Alarms",
    ):
        assert title in body, title


class AlarmsOnly(Monitoring):
    """The model alarms of one spec, without the rest of the stack."""

    def __init__(self, scope: Construct, spec: Any) -> None:
        Construct.__init__(self, scope, "Monitoring")
        self.alarms = []
        self._notify = actions.SnsAction(sns.Topic(self, "Notifications"))
        self._model_alarms(spec, "mlcycle-dev")


def test_a_disparate_impact_limit_gets_a_fairness_alarm_that_only_notifies() -> None:
    spec = parse_spec(
        "dataset: loans\ntarget: default\n"
        "fairness: {sensitive_features: [sex], min_disparate_impact: 0.8}\n"
    )
    stack = cdk.Stack(cdk.App(), "Alarms")
    AlarmsOnly(stack, spec)
    alarms = {
        a["MetricName"]: a
        for a in _of_type(Template.from_stack(stack).to_json(), "AWS::CloudWatch::Alarm")
    }
    fair = alarms["DisparateImpact"]
    assert fair["Threshold"] == 0.8
    assert fair["ComparisonOperator"] == "LessThanThreshold"
    assert fair["Dimensions"] == [{"Name": "dataset", "Value": "loans"}]
    assert fair["Namespace"] == "mlcycle"
    assert "AlarmName" not in fair  # not named for the retraining rule: it only notifies
    assert "[0.8, 1.25]" in fair["AlarmDescription"]

    without = parse_spec("dataset: loans\ntarget: default\n")
    stack = cdk.Stack(cdk.App(), "NoFairness")
    AlarmsOnly(stack, without)
    names = [
        a["MetricName"]
        for a in _of_type(Template.from_stack(stack).to_json(), "AWS::CloudWatch::Alarm")
    ]
    assert "DisparateImpact" not in names


def test_the_estimated_metric_alarm_follows_the_primary_metric_and_skips_regression() -> None:
    def alarms(text: str) -> dict[str, dict[str, Any]]:
        stack = cdk.Stack(cdk.App(), "Alarms")
        AlarmsOnly(stack, parse_spec(text))
        template = Template.from_stack(stack).to_json()
        return {a["MetricName"]: a for a in _of_type(template, "AWS::CloudWatch::Alarm")}

    loss = alarms("dataset: loans\ntarget: default\nprimary_metric: log_loss\nthreshold: 0.5\n")
    assert loss["EstimatedMetric"]["ComparisonOperator"] == "GreaterThanThreshold"  # lower wins
    assert loss["EstimatedMetric"]["Statistic"] == "Maximum"
    assert loss["EstimatedMetric"]["Threshold"] == 0.5
    regression = alarms("dataset: prices\ntarget: price\ntask: regression\nthreshold: 10\n")
    assert "LiveMetric" in regression
    assert "EstimatedMetric" not in regression  # nothing estimates a regression
    assert "EstimatedMetric" not in alarms("dataset: loans\ntarget: default\n")  # no threshold
