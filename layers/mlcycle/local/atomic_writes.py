"""DynamoDB's conditional writes, atomic in moto too.

DynamoDB checks a write's condition and applies the write as one step per item, and the
registry relies on it: of two racing writers of a release pointer, a registration or a run
record, one wins and the other gets ConditionalCheckFailedException. moto checks the condition
and then writes, without a lock, so two threads can both pass the check. Serializing moto's
item writes gives it the service's guarantee; the callers around them still race freely.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def _atomic(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def atomic(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return write(*args, **kwargs)

    atomic.__mlcycle_atomic__ = True  # type: ignore[attr-defined]
    return atomic


def install() -> None:
    """Serialize moto's DynamoDB item writes (idempotent)."""
    for name in _WRITES:
        write = getattr(DynamoDBBackend, name)
        if not getattr(write, "__mlcycle_atomic__", False):
            setattr(DynamoDBBackend, name, _atomic(write))
