"""The model registry and run records in one DynamoDB table.

Layout: `MODEL#<dataset>` holds `VERSION#<n>` items and one `RELEASE` pointer;
`RUN#<dataset>` holds one item per run; `AUDIT#<dataset>` holds one item per change of a
version's stage (time, actor, reason), never updated: each is put once, in the same
transaction as the change it records. Versions are allocated with conditional writes, so
two runs finishing at once never share a version number.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
_MAX_VERSION_ATTEMPTS = 50  # every failed attempt means another writer succeeded
_MAX_STAGE_ATTEMPTS = 5  # a stage change races only with another change of the same version
AUDIT_PREFIX = "AUDIT#"


class VersionConflictError(Exception):
    """Another writer took every version number we tried; try the run again."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _to_item(document: dict[str, Any]) -> dict[str, Any]:
    # DynamoDB takes Decimal, not float; a JSON round trip converts nested values too.
    plain = json.loads(json.dumps(document, default=str), parse_float=Decimal)
    return {key: _SERIALIZER.serialize(value) for key, value in plain.items()}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    document = {key: _DESERIALIZER.deserialize(value) for key, value in item.items()}
    return json.loads(json.dumps(document, default=_decimal))


def _decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _model_key(dataset: str) -> str:
    return f"MODEL#{dataset}"


def _version_key(version: int) -> str:
    return f"VERSION#{version:06d}"


def _audit_key(dataset: str) -> str:
    return f"{AUDIT_PREFIX}{dataset}"


class StageConflictError(Exception):
    """The version's stage kept changing under us, or the version does not exist."""


def create_table(dynamodb: DynamoDBClient, name: str) -> None:
    """The registry table as the stack declares it (for local runs and tests)."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


class Registry:
    """`actor` is who this client acts for, recorded with every stage change: the pipeline
    function's name, or the person (IAM identity, or the local user) behind a command."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, *, actor: str = "pipeline") -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.actor = actor

    # -- runs -------------------------------------------------------------------------------

    def put_run(self, dataset: str, run_id: str, fields: dict[str, Any]) -> None:
        item = {"pk": f"RUN#{dataset}", "sk": run_id, **fields, "updated_at": now_iso()}
        self.dynamodb.put_item(TableName=self.table, Item=_to_item(item))

    def update_run(self, dataset: str, run_id: str, fields: dict[str, Any]) -> None:
        fields = {**fields, "updated_at": now_iso()}
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = _to_item({f":v{i}": value for i, value in enumerate(fields.values())})
        assignments = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        self.dynamodb.update_item(
            TableName=self.table,
            Key=_to_item({"pk": f"RUN#{dataset}", "sk": run_id}),
            UpdateExpression=f"SET {assignments}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def get_run(self, dataset: str, run_id: str) -> dict[str, Any] | None:
        return self._get(f"RUN#{dataset}", run_id)

    # -- model versions ---------------------------------------------------------------------

    def register(self, dataset: str, entry: dict[str, Any]) -> int:
        """Store `entry` as the next version of the dataset's model and return its number."""
        for _ in range(_MAX_VERSION_ATTEMPTS):
            # Each conflict means another writer took the number: read the latest again.
            version = self.latest_version(dataset) + 1
            item = {
                "pk": _model_key(dataset),
                "sk": _version_key(version),
                "version": version,
                "dataset": dataset,
                "created_at": now_iso(),
                **entry,
            }
            audit: Any = self._audit_item(
                dataset,
                version,
                stage=str(entry.get("stage", "candidate")),
                previous=None,
                reason=f"registered: {entry.get('stage_reason', '')}".rstrip(": "),
                run_id=entry.get("run_id"),
            )
            try:
                self.dynamodb.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": _to_item(item),
                                "ConditionExpression": "attribute_not_exists(sk)",
                            }
                        },
                        audit,
                    ]
                )
                return version
            except self.dynamodb.exceptions.TransactionCanceledException:
                continue
        raise VersionConflictError(
            f"could not allocate a version of {dataset!r} after {_MAX_VERSION_ATTEMPTS} attempts"
        )

    def latest_version(self, dataset: str) -> int:
        response = self.dynamodb.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=_to_item({":pk": _model_key(dataset), ":prefix": "VERSION#"}),
            ScanIndexForward=False,
            Limit=1,
            ProjectionExpression="version",
        )
        items = response.get("Items", [])
        return int(_from_item(items[0])["version"]) if items else 0

    def get_version(self, dataset: str, version: int) -> dict[str, Any] | None:
        return self._get(_model_key(dataset), _version_key(version))

    def list_versions(self, dataset: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _to_item(
                {":pk": _model_key(dataset), ":prefix": "VERSION#"}
            ),
        }
        while True:
            response = self.dynamodb.query(**kwargs)
            items.extend(_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def set_stage(
        self,
        dataset: str,
        version: int,
        stage: str,
        reason: str,
        *,
        run_id: str | None = None,
        fields: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        """Move a version to `stage` and append the audit record of it, in one transaction;
        `fields` are set on the version too (an approval request, a decision). `actor`: the
        person whose decision this writer records (default: the writer itself)."""
        for _ in range(_MAX_STAGE_ATTEMPTS):
            current = self.get_version(dataset, version)
            if current is None:
                raise StageConflictError(f"{dataset!r} has no version {version}")
            previous = current.get("stage")
            extra = dict(fields or {})
            names = {"#stage": "stage", **{f"#x{i}": k for i, k in enumerate(extra)}}
            values = {
                ":stage": stage,
                ":reason": reason,
                ":now": now_iso(),
                ":previous": previous,
                **{f":x{i}": v for i, v in enumerate(extra.values())},
            }
            sets = ", ".join(
                ["#stage = :stage", "stage_reason = :reason", "updated_at = :now"]
                + [f"#x{i} = :x{i}" for i in range(len(extra))]
            )
            update: Any = {
                "Update": {
                    "TableName": self.table,
                    "Key": _to_item({"pk": _model_key(dataset), "sk": _version_key(version)}),
                    "UpdateExpression": f"SET {sets}",
                    # Only from the stage just read: the audit record names it as the previous.
                    "ConditionExpression": "attribute_exists(sk) AND #stage = :previous",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": _to_item(values),
                }
            }
            audit: Any = self._audit_item(
                dataset,
                version,
                stage=stage,
                previous=previous,
                reason=reason,
                run_id=run_id or current.get("run_id"),
                actor=actor,
            )
            try:
                self.dynamodb.transact_write_items(TransactItems=[update, audit])
                return
            except self.dynamodb.exceptions.TransactionCanceledException:
                continue
        raise StageConflictError(
            f"v{version} of {dataset!r} kept changing stage; {stage!r} was not recorded"
        )

    def _audit_item(
        self,
        dataset: str,
        version: int,
        *,
        stage: str,
        previous: str | None,
        reason: str,
        run_id: str | None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        record = {
            "pk": _audit_key(dataset),
            # time first, so a query returns the trail in order; the suffix keeps two
            # changes in the same microsecond apart
            "sk": f"{at}#v{version:06d}#{uuid.uuid4().hex[:8]}",
            "dataset": dataset,
            "version": version,
            "stage": stage,
            "previous_stage": previous,
            "reason": reason,
            "actor": actor or self.actor,
            # who wrote down another's decision (the pipeline recording an approval)
            "recorded_by": self.actor if actor and actor != self.actor else None,
            "at": at,
            "run_id": run_id,
        }
        return {
            "Put": {
                "TableName": self.table,
                "Item": _to_item({k: v for k, v in record.items() if v is not None}),
                "ConditionExpression": "attribute_not_exists(sk)",  # append-only
            }
        }

    def history(self, dataset: str) -> list[dict[str, Any]]:
        """Every stage change of the dataset's versions, oldest first."""
        records: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _to_item({":pk": _audit_key(dataset)}),
            "ConsistentRead": True,
        }
        while True:
            response = self.dynamodb.query(**kwargs)
            records += [_from_item(i) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return records
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def record_retraining(self, dataset: str, decision: dict[str, Any]) -> None:
        """What the latest alarm's retraining did (started a run, or skipped and why)."""
        item = {"pk": _model_key(dataset), "sk": "RETRAINING", **decision, "updated_at": now_iso()}
        self.dynamodb.put_item(TableName=self.table, Item=_to_item(item))

    def get_retraining(self, dataset: str) -> dict[str, Any] | None:
        return self._get(_model_key(dataset), "RETRAINING")

    # -- release pointer --------------------------------------------------------------------

    def get_release(self, dataset: str) -> dict[str, Any] | None:
        return self._get(_model_key(dataset), "RELEASE")

    def set_release(
        self, dataset: str, *, production_version: int, expected_production: int | None
    ) -> None:
        """Point production at a version, only if nobody moved the pointer since we read it."""
        condition = (
            "attribute_not_exists(sk)"
            if expected_production is None
            else "production_version = :expected"
        )
        values: dict[str, Any] = {":version": production_version, ":now": now_iso()}
        if expected_production is not None:
            values[":expected"] = expected_production
        self.dynamodb.update_item(
            TableName=self.table,
            Key=_to_item({"pk": _model_key(dataset), "sk": "RELEASE"}),
            UpdateExpression="SET production_version = :version, updated_at = :now",
            ConditionExpression=condition,
            ExpressionAttributeValues=_to_item(values),
        )

    def start_canary(
        self, dataset: str, *, version: int, weight: float, expected_production: int
    ) -> None:
        """Send `weight` of the traffic to `version`, unless another canary is in progress or
        production moved since it was read (a release in progress is never overwritten)."""
        self.dynamodb.update_item(
            TableName=self.table,
            Key=_to_item({"pk": _model_key(dataset), "sk": "RELEASE"}),
            UpdateExpression=(
                "SET canary_version = :version, canary_weight = :weight, "
                "canary_started_at = :now, updated_at = :now"
            ),
            ConditionExpression=(
                "production_version = :expected AND attribute_not_exists(canary_version)"
            ),
            ExpressionAttributeValues=_to_item(
                {
                    ":version": version,
                    ":weight": weight,
                    ":now": now_iso(),
                    ":expected": expected_production,
                }
            ),
        )

    def promote_canary(self, dataset: str, *, version: int) -> None:
        """The canary becomes production in one conditional write."""
        self.dynamodb.update_item(
            TableName=self.table,
            Key=_to_item({"pk": _model_key(dataset), "sk": "RELEASE"}),
            UpdateExpression=(
                "SET production_version = :version, updated_at = :now "
                "REMOVE canary_version, canary_weight, canary_started_at"
            ),
            ConditionExpression="canary_version = :version",
            ExpressionAttributeValues=_to_item({":version": version, ":now": now_iso()}),
        )

    def end_canary(self, dataset: str, *, version: int) -> None:
        """Stop sending traffic to the canary; production is untouched."""
        self.dynamodb.update_item(
            TableName=self.table,
            Key=_to_item({"pk": _model_key(dataset), "sk": "RELEASE"}),
            UpdateExpression=(
                "SET updated_at = :now REMOVE canary_version, canary_weight, canary_started_at"
            ),
            ConditionExpression="canary_version = :version",
            ExpressionAttributeValues=_to_item({":version": version, ":now": now_iso()}),
        )

    def released_datasets(self) -> list[str]:
        """Every dataset with a model in production (one small scan of the release pointers)."""
        names: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :release AND attribute_exists(production_version)",
            "ExpressionAttributeValues": _to_item({":release": "RELEASE"}),
            "ProjectionExpression": "pk",
        }
        while True:
            response = self.dynamodb.scan(**kwargs)
            names += [_from_item(i)["pk"].removeprefix("MODEL#") for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return sorted(names)
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def items(self) -> list[dict[str, Any]]:
        """Every run record, model version and release pointer (the index page lists them:
        one scan of a table that holds a few items per run)."""
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            response = self.dynamodb.scan(**kwargs)
            found += [_from_item(i) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def latest_run(self, dataset: str, *, status: str) -> dict[str, Any] | None:
        """The most recently finished run of a dataset with the given status."""
        runs: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _to_item({":pk": f"RUN#{dataset}"}),
        }
        while True:
            response = self.dynamodb.query(**kwargs)
            runs += [_from_item(i) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        matching = [r for r in runs if r.get("status") == status]
        return max(matching, key=lambda r: str(r.get("finished_at", "")), default=None)

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self.dynamodb.get_item(
            TableName=self.table, Key=_to_item({"pk": pk, "sk": sk}), ConsistentRead=True
        )
        item = response.get("Item")
        return _from_item(item) if item else None
