"""Deploy the synthesized template into moto: the resources the pipeline needs, as declared."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from mlcycle.local import lambda_seam
from mlcycle.local.template import ACCOUNT_ID, REGION, Resolver

_HANDLER_PACKAGE = "functions."


@dataclass
class DeployedFunction:
    logical_id: str
    name: str
    arn: str
    handler: str  # e.g. functions.collect_data.handler.lambda_handler
    environment: dict[str, str]

    @property
    def stage(self) -> str:
        return self.handler.split(".")[1]


@dataclass
class DeployedRule:
    name: str
    tap_queue_url: str  # an SQS target added locally: moto delivers rule matches only to SQS
    lambda_targets: list[str] = field(default_factory=list)


@dataclass
class LocalDeployment:
    """The stack as moto holds it, with the physical names the handlers are configured with."""

    stack_name: str
    buckets: dict[str, str] = field(default_factory=dict)  # logical id -> bucket name
    tables: dict[str, str] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)  # logical id -> Glue database
    topics: dict[str, str] = field(default_factory=dict)  # logical id -> topic ARN
    functions: dict[str, DeployedFunction] = field(default_factory=dict)  # by function name
    state_machine_arn: str = ""  # the lifecycle pipeline's
    # purpose -> ARN: "pipeline", "scoring" (the construct's id, from the logical id)
    state_machines: dict[str, str] = field(default_factory=dict)
    rules: list[DeployedRule] = field(default_factory=list)

    @property
    def lake_bucket(self) -> str:
        return self.environment()["LAKE_BUCKET"]

    @property
    def registry_table(self) -> str:
        return self.environment()["REGISTRY_TABLE"]

    def environment(self) -> dict[str, str]:
        """The union of the functions' environments (they agree wherever they overlap)."""
        merged: dict[str, str] = {}
        for function in self.functions.values():
            for key, value in function.environment.items():
                if merged.setdefault(key, value) != value:
                    raise ValueError(f"functions disagree on {key}: {merged[key]!r} vs {value!r}")
        return merged


def _physical_name(stack: str, logical_id: str, *, limit: int, lower: bool = False) -> str:
    name = f"{stack}-{logical_id}"
    name = re.sub(r"[^A-Za-z0-9-]", "-", name.lower() if lower else name)
    return name[:limit].rstrip("-")


def _resources(template: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == kind:
            yield logical_id, resource.get("Properties", {})


def deploy(
    stack_name: str, template: dict[str, Any], *, root: Path, assembly: Path
) -> LocalDeployment:
    """Create the template's buckets, tables, roles, functions, state machine and rules in moto.

    Handlers run from `root` (the project); zip functions get their bundled asset from
    `assembly` as their code, so moto holds what Lambda would."""
    session = boto3.Session(region_name=REGION)
    s3, iam, lam = session.client("s3"), session.client("iam"), session.client("lambda")
    resolver = Resolver()
    deployment = LocalDeployment(stack_name=stack_name)

    for logical_id, props in _resources(template, "AWS::IAM::Role"):
        name = _physical_name(stack_name, logical_id, limit=64)
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(
                resolver.resolve(props["AssumeRolePolicyDocument"])
            ),
        )["Role"]
        resolver.define(logical_id, name, Arn=role["Arn"])

    for logical_id, props in _resources(template, "AWS::S3::Bucket"):
        name = _physical_name(stack_name, logical_id, limit=63, lower=True)
        s3.create_bucket(Bucket=name)
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        resolver.define(logical_id, name, Arn=f"arn:aws:s3:::{name}")
        deployment.buckets[logical_id] = name

    # moto's Glue keeps databases, tables and partitions: process_data registers its runs.
    glue = session.client("glue")
    for logical_id, props in _resources(template, "AWS::Glue::Database"):
        database = resolver.resolve(props["DatabaseInput"])
        glue.create_database(DatabaseInput=database)
        resolver.define(logical_id, database["Name"])
        deployment.databases[logical_id] = database["Name"]

    for _, props in _resources(template, "Custom::S3BucketNotifications"):
        s3.put_bucket_notification_configuration(
            Bucket=resolver.resolve(props["BucketName"]),
            NotificationConfiguration=resolver.resolve(props["NotificationConfiguration"]),
        )

    dynamodb = session.client("dynamodb")
    for logical_id, props in _resources(template, "AWS::DynamoDB::Table"):
        name = _physical_name(stack_name, logical_id, limit=255)
        dynamodb.create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )
        resolver.define(
            logical_id, name, Arn=f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
        )
        deployment.tables[logical_id] = name

    sns = session.client("sns")
    for logical_id, _ in _resources(template, "AWS::SNS::Topic"):
        name = _physical_name(stack_name, logical_id, limit=256)
        arn = sns.create_topic(Name=name)["TopicArn"]
        resolver.define(logical_id, arn, TopicName=name)
        deployment.topics[logical_id] = arn

    # Only the project's handlers; CloudFormation's own custom resource providers are skipped.
    functions = [
        (logical_id, props, handler)
        for logical_id, props in _resources(template, "AWS::Lambda::Function")
        if (handler := _handler_of(props)) and handler.startswith(_HANDLER_PACKAGE)
    ]
    for logical_id, _, _ in functions:
        name = _physical_name(stack_name, logical_id, limit=64)
        resolver.define(
            logical_id, name, Arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        )
    # Environments may refer to the state machine, and the state machine to the functions.
    state_machines = list(_resources(template, "AWS::StepFunctions::StateMachine"))
    for logical_id, _ in state_machines:
        name = _physical_name(stack_name, logical_id, limit=80)
        arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
        resolver.define(logical_id, arn, Name=name)

    for logical_id, props, handler in functions:
        name = resolver.refs[logical_id]
        environment = resolver.resolve(props.get("Environment", {}).get("Variables", {}))
        code = resolver.resolve(props["Code"])
        if "ImageUri" not in code:
            code = {
                "ZipFile": _zip(
                    assembly / template["Resources"][logical_id]["Metadata"]["aws:asset:path"]
                )
            }
        spec: dict[str, Any] = {
            "FunctionName": name,
            "Role": resolver.resolve(props["Role"]),
            "Code": code,
            "Timeout": props.get("Timeout", 3),
            "MemorySize": props.get("MemorySize", 128),
            "Environment": {"Variables": environment},
        }
        if "ImageUri" in code:
            spec |= {"PackageType": "Image", "ImageConfig": props.get("ImageConfig", {})}
        else:
            spec |= {"Runtime": props["Runtime"], "Handler": props["Handler"]}
        response = lam.create_function(**spec)
        deployment.functions[name] = DeployedFunction(
            logical_id, name, response["FunctionArn"], handler, environment
        )
        lambda_seam.register(name, root, handler)

    sfn = session.client("stepfunctions")
    for logical_id, props in state_machines:
        created = sfn.create_state_machine(
            name=resolver.attributes[(logical_id, "Name")],
            definition=resolver.resolve(props["DefinitionString"]),
            roleArn=resolver.resolve(props["RoleArn"]),
        )
        deployment.state_machines[_purpose(logical_id)] = created["stateMachineArn"]
    deployment.state_machine_arn = deployment.state_machines.get(
        "pipeline", next(iter(deployment.state_machines.values()), "")
    )

    events, sqs = session.client("events"), session.client("sqs")
    for logical_id, _ in _resources(template, "AWS::SQS::Queue"):
        name = _physical_name(stack_name, logical_id, limit=80)
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
        resolver.define(logical_id, url, Arn=arn, QueueName=name)
    for logical_id, props in _resources(template, "AWS::Events::Rule"):
        name = _physical_name(stack_name, logical_id, limit=64)
        if "EventPattern" not in props:
            # A schedule: nothing emits its events locally; `mlcycle monitor` runs its target.
            events.put_rule(Name=name, ScheduleExpression=props["ScheduleExpression"])
            continue
        events.put_rule(
            Name=name,
            EventPattern=json.dumps(resolver.resolve(props["EventPattern"])),
            State=props.get("State", "ENABLED"),
        )
        targets = resolver.resolve(props.get("Targets", []))
        tap = sqs.create_queue(QueueName=f"{name[:70]}-tap")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])
        # moto delivers only to SQS and raises on other target kinds, so moto gets the tap
        # alone; the rule's own targets are invoked by the runner with what the tap receives.
        events.put_targets(
            Rule=name, Targets=[{"Id": "local-tap", "Arn": tap_arn["Attributes"]["QueueArn"]}]
        )
        deployment.rules.append(
            DeployedRule(
                name=name,
                tap_queue_url=tap,
                lambda_targets=[t["Arn"] for t in targets if ":lambda:" in t["Arn"]],
            )
        )
    return deployment


def _purpose(logical_id: str) -> str:
    """`PipelineStateMachine1814BD05` -> `pipeline`: the construct the state machine is in."""
    return re.sub(r"StateMachine[0-9A-F]{8}$", "", logical_id).lower() or logical_id


def _handler_of(props: dict[str, Any]) -> str | None:
    command = props.get("ImageConfig", {}).get("Command")
    if command:
        return str(command[0])
    handler = props.get("Handler")
    return str(handler) if isinstance(handler, str) else None


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
