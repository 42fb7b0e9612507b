"""The queryable lake in the template: the Glue database, the Athena workgroup, and who may
write the catalog or query it."""

from __future__ import annotations

from typing import Any

from infra.catalog import CATALOG_READ_ACTIONS, CATALOG_WRITE_ACTIONS

DATABASE = "mlcycle_dev"
STAGE = "process_data"  # the only function that writes the catalog


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == kind}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _arn_tail(resource: Any) -> str:
    """`...:table/mlcycle_dev/*` of an `Fn::Join`ed ARN: the part after the account."""
    parts = resource["Fn::Join"][1]
    return str(parts[-1]).lstrip(":")


def _lake_bucket(template: dict[str, Any]) -> str:
    (bucket_id,) = [
        k
        for k, b in _of_type(template, "AWS::S3::Bucket").items()
        if "VersioningConfiguration" in b
    ]
    return bucket_id


def _glue_statements(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Policy logical id -> its statements that name a glue: action."""
    found: dict[str, list[dict[str, Any]]] = {}
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, policy in _of_type(template, kind).items():
            statements = [
                s
                for s in policy["PolicyDocument"]["Statement"]
                if any(a.startswith("glue:") for a in _as_list(s["Action"]))
            ]
            if statements:
                found[logical_id] = statements
    return found


def test_one_database_located_at_the_curated_zone(template: dict[str, Any]) -> None:
    (database,) = _of_type(template, "AWS::Glue::Database").values()
    assert database["CatalogId"] == {"Ref": "AWS::AccountId"}
    assert database["DatabaseInput"]["Name"] == DATABASE
    location = database["DatabaseInput"]["LocationUri"]["Fn::Join"][1]
    assert location == ["s3://", {"Ref": _lake_bucket(template)}, "/curated/"]
    # Tables are the processing stage's to create: no dataset's columns are known at synth.
    assert not _of_type(template, "AWS::Glue::Table")
    assert not _of_type(template, "AWS::Glue::Crawler")


def test_the_workgroup_enforces_encrypted_results_under_their_own_prefix(
    template: dict[str, Any],
) -> None:
    (workgroup,) = _of_type(template, "AWS::Athena::WorkGroup").values()
    configuration = workgroup["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["BytesScannedCutoffPerQuery"] > 0
    results = configuration["ResultConfiguration"]
    (key_id,) = _of_type(template, "AWS::KMS::Key")
    assert results["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    output = results["OutputLocation"]["Fn::Join"][1]
    assert output == ["s3://", {"Ref": _lake_bucket(template)}, "/query-results/"]
    assert results["ExpectedBucketOwner"] == {"Ref": "AWS::AccountId"}
    bucket = _of_type(template, "AWS::S3::Bucket")[_lake_bucket(template)]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-query-results"]["Prefix"] == "query-results/"


def test_only_the_processing_stages_write_the_catalog_and_only_this_database(
    template: dict[str, Any],
) -> None:
    writes = set(CATALOG_WRITE_ACTIONS) - set(CATALOG_READ_ACTIONS)
    writers = {
        logical_id: statements
        for logical_id, statements in _glue_statements(template).items()
        if any(set(_as_list(s["Action"])) & writes for s in statements)
    }
    # one upload's processing, and the merge of a many-part upload's processed parts
    assert sorted(w.split("Role")[0] for w in writers) == [
        "PipelineMergeParts",
        "PipelineProcessData",
    ]
    for writer, statements in writers.items():
        (statement,) = statements
        assert statement["Effect"] == "Allow"
        assert sorted(statement["Action"]) == sorted(CATALOG_WRITE_ACTIONS)
        assert not any("Delete" in a or "Batch" in a for a in statement["Action"])
        assert [_arn_tail(r) for r in statement["Resource"]] == [
            "catalog",
            f"database/{DATABASE}",
            f"table/{DATABASE}/*",
        ], writer
    # ...and they are told which database.
    for stage in (STAGE, "merge_parts"):
        (function,) = [
            f
            for f in _of_type(template, "AWS::Lambda::Function").values()
            if f.get("ImageConfig", {}).get("Command")
            == [f"functions.{stage}.handler.lambda_handler"]
        ]
        assert function["Environment"]["Variables"]["GLUE_DATABASE"] == DATABASE


def test_the_query_policy_reads_the_curated_zone_and_its_results_only(
    template: dict[str, Any],
) -> None:
    (policy,) = _of_type(template, "AWS::IAM::ManagedPolicy").values()
    statements = policy["PolicyDocument"]["Statement"]
    actions = {a for s in statements for a in _as_list(s["Action"])}
    assert not {a for a in actions if a.startswith("glue:")} - set(CATALOG_READ_ACTIONS)
    assert "s3:DeleteObject" not in actions
    reads = [
        _arn_tail(r)
        for s in statements
        if "s3:GetObject" in _as_list(s["Action"])
        for r in _as_list(s["Resource"])
    ]
    assert sorted(reads) == ["/curated/*", "/query-results/*"]
    writes = [
        _arn_tail(r)
        for s in statements
        if "s3:PutObject" in _as_list(s["Action"])
        for r in _as_list(s["Resource"])
    ]
    assert writes == ["/query-results/*"]
    (athena,) = [s for s in statements if any(a.startswith("athena:") for a in s["Action"])]
    assert _arn_tail(athena["Resource"]) == "workgroup/mlcycle-dev"
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["curated/*", "query-results/*"]
