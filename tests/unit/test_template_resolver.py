from __future__ import annotations

import pytest

from mlcycle.local.template import Resolver, UnresolvedReferenceError


@pytest.fixture
def resolver() -> Resolver:
    resolver = Resolver()
    resolver.define("Bucket1", "my-bucket", Arn="arn:aws:s3:::my-bucket")
    resolver.define("Fn1", "fn-name", Arn="arn:aws:lambda:us-east-1:123456789012:function:fn")
    return resolver


def test_resolves_refs_attributes_joins_and_subs(resolver: Resolver) -> None:
    value = {
        "env": {"BUCKET": {"Ref": "Bucket1"}},
        "definition": {"Fn::Join": ["", ['{"Resource":"', {"Fn::GetAtt": ["Fn1", "Arn"]}, '"}']]},
        "image": {"Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/x"},
        "sub_vars": {"Fn::Sub": ["${B}/${Fn1.Arn}", {"B": {"Ref": "Bucket1"}}]},
        "pick": {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]},
    }
    assert resolver.resolve(value) == {
        "env": {"BUCKET": "my-bucket"},
        "definition": '{"Resource":"arn:aws:lambda:us-east-1:123456789012:function:fn"}',
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x",
        "sub_vars": "my-bucket/arn:aws:lambda:us-east-1:123456789012:function:fn",
        "pick": "b",
    }


def test_a_reference_to_something_not_deployed_is_named(resolver: Resolver) -> None:
    with pytest.raises(UnresolvedReferenceError, match="Ghost"):
        resolver.resolve({"Ref": "Ghost"})
    with pytest.raises(UnresolvedReferenceError, match=r"Fn1\.Name"):
        resolver.resolve({"Fn::GetAtt": ["Fn1", "Name"]})
