"""Watching it all: alarms on the pipeline, the endpoint and each model's drift and quality,
a notifications topic, a dashboard, the scheduled monitor, and retraining on drift alarms."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.access import Access, acknowledge
from infra.stage_functions import PROJECT_ROOT, StageFunctions
from mlcycle.lake_layout import Zone
from mlcycle.spec import METRICS, ProblemSpec, Task, parse_spec

NAMESPACE = "mlcycle"
FIVE_MINUTES = Duration.minutes(5)
MONITOR_ACCESS = Access(
    reads=(Zone.CAPTURE, Zone.MODELS, Zone.FEATURES, Zone.RUNS, Zone.LABELS, Zone.REPORTS),
    writes=(Zone.REPORTS,),
    lists=(Zone.CAPTURE, Zone.LABELS, Zone.REPORTS),
    table="read",
    scans_table=True,
    metrics_namespace=NAMESPACE,
)
# Retraining reads what production saw (captured requests and their late labels) and the
# upload, keeps the labeled traffic it learns from in the raw zone, records its decision.
RETRAIN_ACCESS = Access(
    reads=(Zone.LANDING, Zone.SPECS, Zone.CAPTURE, Zone.LABELS),
    writes=(Zone.RAW,),
    lists=(Zone.SPECS, Zone.CAPTURE, Zone.LABELS, Zone.LANDING),  # a folder of parts
    table="write",
)


def retrain_alarm_prefix(stack_name: str) -> str:
    """Alarms whose names start with this start a retraining run when they fire."""
    return f"{stack_name}-retrain-"


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stack_name: str,
        functions: StageFunctions,
        pipeline_functions: dict[str, lambda_.IFunction],
        state_machine: sfn.StateMachine,
        dead_letters: sqs.IQueue,
        api: apigw.RestApi,
        predict: lambda_.IFunction,
        key: kms.IKey,
        schedule: Duration,
        alarm_email: str | None,
        p99_latency_ms: int,
        monitored_specs: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Notifications", master_key=key, enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))

        # The monitor: hourly, and on demand (invoke it with {"dataset": ...}).
        self.monitor = functions.create(self, "monitor", MONITOR_ACCESS)
        events.Rule(
            self,
            "MonitorSchedule",
            description="Runs the drift and quality monitor over every released model",
            schedule=events.Schedule.rate(schedule),
            targets=[targets.LambdaFunction(self.monitor, dead_letter_queue=dead_letters)],
        )

        # Retraining: a drift or quality alarm entering ALARM starts a run on the latest data.
        self.retrain = functions.create(self, "retrain", RETRAIN_ACCESS)
        self.retrain.add_environment("STATE_MACHINE_ARN", state_machine.state_machine_arn)
        state_machine.grant_start_execution(self.retrain)
        # A retraining skipped for want of new data is told to a person.
        self.retrain.add_environment("NOTIFICATIONS_TOPIC_ARN", self.topic.topic_arn)
        self.retrain.add_to_role_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        self.retrain.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[key.key_arn]
            )
        )
        self.retrain_rule = events.Rule(
            self,
            "RetrainOnAlarm",
            description="Starts a retraining run when a model's drift or quality alarm fires",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={
                    "alarmName": [{"prefix": retrain_alarm_prefix(stack_name)}],
                    "state": {"value": ["ALARM"]},
                },
            ),
            targets=[
                targets.LambdaFunction(
                    self.retrain, retry_attempts=4, dead_letter_queue=dead_letters
                )
            ],
        )

        self.alarms: list[cloudwatch.Alarm] = []
        self._notify = actions.SnsAction(self.topic)
        alarm = self._alarm
        for stage, function in sorted(pipeline_functions.items()):
            alarm(
                f"{_camel(stage)}Errors",
                function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                1,
                f"The {stage} function raised an error (its run is in the registry with the cause)",
            )
        alarm(
            "RunsFailed",
            state_machine.metric_failed(period=FIVE_MINUTES, statistic="Sum"),
            1,
            "A lifecycle run ended FAILED; its upload is in quarantine with error.json",
        )
        alarm(
            "Endpoint5xx",
            api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
            1,
            "The prediction API answered 5xx: the service itself is broken",
        )
        alarm(
            "EndpointLatencyP99",
            api.metric_latency(period=FIVE_MINUTES, statistic="p99"),
            p99_latency_ms,
            f"The prediction API's p99 latency is above {p99_latency_ms} ms",
        )
        alarm(
            "EndpointThrottles",
            predict.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
            1,
            "The predict function was throttled",
        )
        alarm(
            "ModelLoadFailures",
            cloudwatch.Metric(
                namespace=NAMESPACE,
                metric_name="ModelLoadFailures",
                statistic="Sum",
                period=FIVE_MINUTES,
                dimensions_map={"service": "mlcycle"},
            ),
            1,
            "A released model's artifact is missing or corrupt: the endpoint answers 503",
        )

        specs = [
            parse_spec((PROJECT_ROOT / path).read_text(), source=path) for path in monitored_specs
        ]
        for spec in specs:
            self._model_alarms(spec, stack_name)

        self.dashboard = self._dashboard(
            stack_name, pipeline_functions, state_machine, api, predict, specs
        )
        acknowledge(
            self.topic,
            "AwsSolutions-SNS3",
            "The topic enforces TLS with its own policy (enforce_ssl), which is what SNS3 asks.",
        )

    def _alarm(
        self,
        alarm_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        *,
        name: str | None = None,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        ),
    ) -> cloudwatch.Alarm:
        """An alarm on one period of `metric` that notifies the topic; no data is fine."""
        created = cloudwatch.Alarm(
            self,
            alarm_id,
            alarm_name=name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=comparison,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        created.add_alarm_action(self._notify)
        self.alarms.append(created)
        return created

    def _model_alarms(self, spec: ProblemSpec, stack_name: str) -> None:
        """Drift and quality alarms of one dataset, thresholds from its spec; they retrain.
        With a disparate-impact limit, a fairness alarm too, which only notifies."""
        dims = {"dataset": spec.dataset}
        retrain = retrain_alarm_prefix(stack_name)
        limits = spec.monitoring
        self._alarm(
            f"{_camel(spec.dataset)}DriftedFeatures",
            _model_metric("DriftedFeatures", dims, "Maximum"),
            limits.max_drifted_features,
            f"{spec.dataset}: more than {limits.max_drifted_features} features drifted "
            f"({limits.drift_rule()}); starts retraining",
            name=f"{retrain}{spec.dataset}-drift",
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        self._alarm(
            f"{_camel(spec.dataset)}PredictionDrift",
            _model_metric("PredictionPSI", dims, "Maximum"),
            limits.prediction_psi_threshold,
            f"{spec.dataset}: prediction PSI above {limits.prediction_psi_threshold}; "
            "starts retraining",
            name=f"{retrain}{spec.dataset}-prediction-drift",
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        if spec.threshold is not None:
            metric = spec.primary_metric or "primary metric"
            greater = METRICS[spec.primary_metric][1] if spec.primary_metric else True
            self._alarm(
                f"{_camel(spec.dataset)}LiveQuality",
                _model_metric("LiveMetric", dims, "Minimum" if greater else "Maximum"),
                spec.threshold,
                f"{spec.dataset}: live {metric} on labelled predictions is "
                f"{'below' if greater else 'above'} {spec.threshold}; starts retraining",
                name=f"{retrain}{spec.dataset}-quality",
                comparison=(
                    cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
                    if greater
                    else cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
                ),
            )
            # the same metric and threshold, estimated before the labels (classification:
            # every classification metric is estimable, `domain.performance_estimation`)
            tasks = METRICS[spec.primary_metric][0] if spec.primary_metric else None
            if spec.task is not Task.REGRESSION and (tasks is None or Task.REGRESSION not in tasks):
                self._alarm(
                    f"{_camel(spec.dataset)}EstimatedQuality",
                    _model_metric("EstimatedMetric", dims, "Minimum" if greater else "Maximum"),
                    spec.threshold,
                    f"{spec.dataset}: {metric} estimated from calibrated probabilities (before "
                    f"labels) is {'below' if greater else 'above'} {spec.threshold}; "
                    "starts retraining",
                    name=f"{retrain}{spec.dataset}-estimated-quality",
                    comparison=(
                        cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
                        if greater
                        else cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
                    ),
                )
        policy = spec.fairness
        if policy is not None and policy.min_disparate_impact is not None:
            # unequal treatment is for a person to look at: it notifies, never retrains
            low = policy.min_disparate_impact
            self._alarm(
                f"{_camel(spec.dataset)}DisparateImpact",
                _model_metric("DisparateImpact", dims, "Minimum"),
                low,
                f"{spec.dataset}: on live traffic a group's disparate impact is outside "
                f"[{low:g}, {1 / low:.3g}] (the worst group's min(DI, 1/DI) below {low:g})",
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            )

    def _dashboard(
        self,
        stack_name: str,
        pipeline_functions: dict[str, lambda_.IFunction],
        state_machine: sfn.StateMachine,
        api: apigw.RestApi,
        predict: lambda_.IFunction,
        specs: list[ProblemSpec],
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{stack_name}-mlcycle")
        dashboard.add_widgets(
            cloudwatch.TextWidget(markdown=f"# mlcycle `{stack_name}`", width=24, height=1)
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Pipeline runs",
                left=[
                    state_machine.metric_started(period=FIVE_MINUTES, statistic="Sum"),
                    state_machine.metric_succeeded(period=FIVE_MINUTES, statistic="Sum"),
                    state_machine.metric_failed(period=FIVE_MINUTES, statistic="Sum"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Stage duration (p90, ms)",
                left=[
                    f.metric_duration(period=FIVE_MINUTES, statistic="p90", label=name)
                    for name, f in sorted(pipeline_functions.items())
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Stage errors",
                left=[
                    f.metric_errors(period=FIVE_MINUTES, statistic="Sum", label=name)
                    for name, f in sorted(pipeline_functions.items())
                ],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Endpoint requests and errors",
                left=[
                    api.metric_count(period=FIVE_MINUTES, statistic="Sum"),
                    api.metric_client_error(period=FIVE_MINUTES, statistic="Sum"),
                    api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Endpoint latency (ms)",
                left=[
                    api.metric_latency(period=FIVE_MINUTES, statistic="p50", label="p50"),
                    api.metric_latency(period=FIVE_MINUTES, statistic="p99", label="p99"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Predict function",
                left=[
                    predict.metric_invocations(period=FIVE_MINUTES, statistic="Sum"),
                    predict.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                ],
                width=8,
            ),
        )
        for spec in specs:
            dims = {"dataset": spec.dataset}
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{spec.dataset}: drift",
                    left=[_model_metric("DriftedFeatures", dims, "Maximum")],
                    right=[_model_metric("PredictionPSI", dims, "Maximum")],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title=f"{spec.dataset}: live quality",
                    left=[
                        _model_metric("LiveMetric", dims, "Average"),
                        _model_metric("EstimatedMetric", dims, "Average"),
                    ],
                    right=[_model_metric("SampleSize", dims, "Sum")],
                    width=8,
                ),
                cloudwatch.GraphWidget(
                    title=f"{spec.dataset}: releases",
                    left=[
                        _model_metric(name, {"service": "mlcycle"}, "Sum")
                        for name in ("ReleasesStarted", "CanariesPromoted", "CanariesRolledBack")
                    ],
                    width=8,
                ),
            )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24)
        )
        return dashboard


def _model_metric(name: str, dims: dict[str, str], statistic: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=dims,
        statistic=statistic,
        period=Duration.hours(1),
    )


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
