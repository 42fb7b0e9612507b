"""The prediction endpoint: a REST API in front of one small `predict` Lambda (ONNX runtime)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.access import Access, acknowledge, function_role
from infra.bundling import (
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    PROJECT_ROOT,
    dependency_layer_code,
    source_code,
)
from mlcycle.lake_layout import Zone

SERVING_REQUIREMENTS = PROJECT_ROOT / "infra" / "layers" / "serving" / "requirements.txt"
# The endpoint ships the serving code only; the pipeline's pandas and scikit-learn stay out.
SERVING_SOURCES = [
    PROJECT_ROOT / "functions" / "predict",
    PROJECT_ROOT / "layers" / "mlcycle" / "__init__.py",
    PROJECT_ROOT / "layers" / "mlcycle" / "lake_layout.py",
    PROJECT_ROOT / "layers" / "mlcycle" / "serving",
]

# API Gateway checks the envelope; the function names every bad instance and field itself.
PREDICT_REQUEST_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    type=apigw.JsonSchemaType.OBJECT,
    required=["instances"],
    properties={
        "instances": apigw.JsonSchema(
            type=apigw.JsonSchemaType.ARRAY,
            min_items=1,
            items=apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT),
        )
    },
)


class Endpoint(Construct):
    """`POST /v1/models/{name}:predict` and `:explain`, `GET /v1/models/{name}`, `GET /health`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        table: dynamodb.ITable,
        key: kms.IKey,
        memory_mb: int,
        throttle_rate: int,
        throttle_burst: int,
        max_instances: int,
        api_keys: bool,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.layer = lambda_.LayerVersion(
            self,
            "ServingDependencies",
            code=dependency_layer_code(SERVING_REQUIREMENTS),
            compatible_runtimes=[LAMBDA_RUNTIME],
            compatible_architectures=[LAMBDA_ARCHITECTURE],
            description="onnxruntime, numpy and Powertools for the prediction endpoint",
        )
        log_group = logs.LogGroup(
            self,
            "PredictLogs",
            retention=log_retention,
            removal_policy=removal_policy,
            encryption_key=key,
        )
        role = function_role(
            self,
            "PredictRole",
            access=Access(reads=(Zone.MODELS,), writes=(Zone.CAPTURE,), table="read"),
            bucket=bucket,
            table=table,
            key=key,
            log_group=log_group,
        )
        self.function = lambda_.Function(
            self,
            "Predict",
            description="mlcycle prediction endpoint (ONNX runtime)",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            handler="functions.predict.handler.lambda_handler",
            code=source_code(SERVING_SOURCES),
            role=role,
            layers=[self.layer],
            memory_size=memory_mb,
            timeout=Duration.seconds(29),  # API Gateway's own limit
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                "LAKE_BUCKET": bucket.bucket_name,
                "REGISTRY_TABLE": table.table_name,
                "MAX_INSTANCES": str(max_instances),
                "POWERTOOLS_SERVICE_NAME": "mlcycle",
                "POWERTOOLS_METRICS_NAMESPACE": "mlcycle",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            log_group=log_group,
        )

        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention,
            removal_policy=removal_policy,
            encryption_key=key,
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            description="mlcycle predictions (KServe / TF Serving V1 protocol)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                tracing_enabled=True,
                throttling_rate_limit=throttle_rate,
                throttling_burst_limit=throttle_burst,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM,
                api_key_required=api_keys,
            ),
        )
        # Rejections by API Gateway itself name the problem too, in the function's error shape.
        for response_type in (apigw.ResponseType.BAD_REQUEST_BODY, apigw.ResponseType.DEFAULT_4_XX):
            self.api.add_gateway_response(
                f"{response_type.response_type}Response",
                type=response_type,
                templates={
                    "application/json": (
                        '{"error": "$context.error.messageString",'
                        ' "problems": ["$context.error.validationErrorString"]}'
                    )
                },
            )

        integration = apigw.LambdaIntegration(self.function)
        validator = self.api.add_request_validator(
            "PredictBody", validate_request_body=True, validate_request_parameters=True
        )
        predict_model = self.api.add_model(
            "PredictRequest", content_type="application/json", schema=PREDICT_REQUEST_SCHEMA
        )
        models = self.api.root.add_resource("v1").add_resource("models")
        # `{model}` is `customer-churn:predict` or `customer-churn:explain` for POST (the same
        # request body, validated by one model), `customer-churn` for GET: one path part cannot
        # mix a variable and a literal, so the function routes on the verb.
        model = models.add_resource("{model}")
        model.add_method("GET", integration)
        model.add_method(
            "POST",
            integration,
            request_validator=validator,
            request_models={"application/json": predict_model},
        )
        self.api.root.add_resource("health").add_method("GET", integration)
        self._acknowledge()

        if api_keys:
            plan = self.api.add_usage_plan(
                "UsagePlan",
                throttle=apigw.ThrottleSettings(
                    rate_limit=throttle_rate, burst_limit=throttle_burst
                ),
            )
            plan.add_api_stage(stage=self.api.deployment_stage)
            plan.add_api_key(self.api.add_api_key("ApiKey"))

    def _acknowledge(self) -> None:
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "python3.13, not 3.14: the function and its layer ship bytecode compiled by the "
            "build's own 3.13 interpreter (no 3.14 one is available to it), and Lambda cannot "
            "write bytecode itself; measured, 0.35 s to a first answer against 0.93 s without. "
            "See infra/bundling.py.",
        )
        for method in self.api.methods:
            acknowledge(
                method,
                "AwsSolutions-APIG4",
                "Every method requires IAM (SigV4) authorization, optionally plus an "
                "API key; callers are AWS principals, not end users.",
            )
            acknowledge(
                method,
                "AwsSolutions-COG4",
                "IAM authorization instead of a Cognito user pool: the callers are "
                "services with AWS credentials.",
            )
        acknowledge(
            self.api.deployment_stage,
            "AwsSolutions-APIG3",
            "No WAF web ACL by default: a regional web ACL costs $5 a month while idle, "
            "and every request is already IAM-authorized, validated and throttled; attach one "
            "per environment when the API is exposed beyond the account.",
        )
        cloud_watch_role = self.api.node.find_child("CloudWatchRole")
        acknowledge(
            cloud_watch_role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level logging role; AWS's managed policy is the "
            "documented one and covers exactly log delivery.",
        )

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["execute-api:Invoke"],
            resource_arns=[self.api.arn_for_execute_api()],
        )
