"""CloudFormation intrinsic functions, resolved against the resources deployed locally."""

from __future__ import annotations

import re
from typing import Any

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class UnresolvedReferenceError(KeyError):
    """The template refers to a resource the local deployment did not create."""


class Resolver:
    """Holds each deployed resource's `Ref` value and attributes, and resolves values with them."""

    def __init__(self) -> None:
        self.refs: dict[str, Any] = dict(PSEUDO_PARAMETERS)
        self.attributes: dict[tuple[str, str], Any] = {}

    def define(self, logical_id: str, ref: Any, **attributes: Any) -> None:
        self.refs[logical_id] = ref
        for name, value in attributes.items():
            self.attributes[(logical_id, name)] = value

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::GetAtt":
                logical_id, attribute = (
                    argument.split(".", 1) if isinstance(argument, str) else argument
                )
                return self._attribute(logical_id, attribute)
            if function == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
            if function == "Fn::Sub":
                return self._sub(argument)
            if function == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if function == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
        return {key: self.resolve(item) for key, item in value.items()}

    def _ref(self, name: str) -> Any:
        if name not in self.refs:
            raise UnresolvedReferenceError(f"Ref to {name!r}, which is not deployed locally")
        return self.refs[name]

    def _attribute(self, logical_id: str, attribute: str) -> Any:
        if (logical_id, attribute) not in self.attributes:
            raise UnresolvedReferenceError(
                f"Fn::GetAtt {logical_id}.{attribute}, which is not deployed locally"
            )
        return self.attributes[(logical_id, attribute)]

    def _sub(self, argument: str | list[Any]) -> str:
        if isinstance(argument, str):
            text, variables = argument, {}
        else:
            text, raw = argument
            variables = {name: self.resolve(item) for name, item in raw.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return str(self._attribute(*name.split(".", 1)))
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)
