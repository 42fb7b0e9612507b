"""What can go wrong when serving, each with the HTTP status and JSON body the client gets.

Raised by the serving modules, mapped to a response in one place (the handler's exception
handler), so every error body has the same shape: `{"error": ..., ...details}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_PROBLEMS = 100  # a batch of 1000 bad rows would otherwise answer with a megabyte of problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: which instance (None: the whole body), which field."""

    instance: int | None
    field: str | None
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "field": self.field, "problem": self.problem}


class ServingError(Exception):
    status = 500
    error = "internal error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.details}


class InvalidRequestError(ServingError):
    """The request breaks the model's schema; names every offending instance and field."""

    status = 400
    error = "invalid request"

    def __init__(self, problems: list[Problem], *, status: int = 400) -> None:
        count = len(problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the request")
        self.problems = problems
        self.status = status

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.error,
            "message": self.message,
            "problems": [p.to_json() for p in self.problems[:MAX_PROBLEMS]],
        }
        if len(self.problems) > MAX_PROBLEMS:
            body["problems_truncated"] = len(self.problems) - MAX_PROBLEMS
        return body


class ModelNotFoundError(ServingError):
    status = 404
    error = "model not found"


class NoReleaseError(ServingError):
    """The model exists in the registry but no version of it is released."""

    status = 409
    error = "model not released"


class ModelUnavailableError(ServingError):
    """The released artifact cannot be served (missing, corrupt, wrong checksum) or the
    registry cannot be read: 503, never a prediction from a wrong model."""

    status = 503
    error = "model unavailable"


class NotExplainableError(ServingError):
    """The served version has no background summary (registered before explanations): it
    predicts, but cannot be explained. 409, not 5xx: nothing is broken and retrying will not
    help; the model's state conflicts with the request until a version that has one (a new
    training run) is released. Not 501 either: the server implements `:explain`, and answers
    it for other versions."""

    status = 409
    error = "model not explainable"
