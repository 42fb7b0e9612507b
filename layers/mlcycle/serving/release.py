"""Which model version to serve, and the loaded model: once per container per (name, version).

The release pointer (`pk=MODEL#<name>, sk=RELEASE`: `production_version`, and during a
release `canary_version` and `canary_weight`) is read from the registry table and cached for
`ttl` seconds, so a promotion or rollback reaches every warm container within that time at one
DynamoDB read per container per TTL. During a canary, each request goes to the canary or to
production by a stable hash of its client key, so one client keeps seeing one version. A new
version is loaded on the first request that needs it; versions no longer released are dropped.

Failures are cached for the same TTL: a corrupt artifact must not make every request
re-download it, and an unknown name must not cost two DynamoDB reads per request.

A version's background summary (`background.json`, for explanations) is read only when an
explanation of that version is first asked for, and the explainer made from it is kept on the
loaded model: predictions never pay for it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

from mlcycle.lake_layout import version_prefix
from mlcycle.serving.errors import (
    ModelNotFoundError,
    ModelUnavailableError,
    NoReleaseError,
    NotExplainableError,
    ServingError,
)
from mlcycle.serving.manifest import BACKGROUND_FILE, MANIFEST_FILE, ONNX_FILE
from mlcycle.serving.model import LoadedModel, load_model, parse_manifest

# A dataset name as the spec allows it; anything else cannot be in the registry.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_MAX_REMEMBERED_NAMES = 1024  # bounds the pointer cache against requests for random names


@dataclass(frozen=True)
class Release:
    production: int
    canary: int | None = None
    canary_weight: float = 0.0

    def version_for(self, client_key: str | None) -> int:
        """Production, or the canary for the share of client keys its weight says."""
        if self.canary is None or not client_key:
            return self.production
        digest = hashlib.blake2b(client_key.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest, "big") / 2**64  # uniform in [0, 1), stable per key
        return self.canary if bucket < self.canary_weight else self.production


@dataclass
class _Pointer:
    release: Release | None
    error: ServingError | None
    read_at: float


@dataclass
class _Failure:
    error: ModelUnavailableError
    at: float


_NOT_EXPLAINABLE = object()  # LoadedModel.explainer of a version without a background


class ModelCache:
    """Release pointers (cached `ttl` seconds) and loaded models, per container.

    `dynamodb` and `s3` are botocore clients (or anything with `get_item`, `query` and
    `get_object`); `on_load_failure` is told of each load that failed (for the metric).
    """

    def __init__(
        self,
        *,
        dynamodb: Any,
        s3: Any,
        table: str,
        bucket: str,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_load_failure: Callable[[str, int, ModelUnavailableError], None] | None = None,
    ) -> None:
        self.dynamodb, self.s3, self.table, self.bucket = dynamodb, s3, table, bucket
        self.ttl = ttl
        self.clock = clock
        self.on_load_failure = on_load_failure
        self._pointers: dict[str, _Pointer] = {}
        self._models: dict[tuple[str, int], LoadedModel] = {}
        self._failures: dict[tuple[str, int], _Failure] = {}
        self._explain_failures: dict[tuple[str, int], _Failure] = {}
        self._lock = threading.Lock()  # Lambda is single-threaded; the local server may not be

    @property
    def loaded(self) -> list[LoadedModel]:
        return list(self._models.values())

    def get(self, name: str, client: Callable[[], str | None] | None = None) -> LoadedModel:
        """The released model of `name` for this client, loading it if needed; raises a
        `ServingError`. `client` gives the caller's key; it is asked only during a canary."""
        now = self.clock()
        pointer = self._pointers.get(name)
        if pointer is None or now - pointer.read_at >= self.ttl:
            with self._lock:
                pointer = self._refresh(name, now, stale=pointer)
        if pointer.error is not None:
            raise pointer.error
        assert pointer.release is not None
        release = pointer.release
        if release.canary is None:
            version = release.production
        else:
            version = release.version_for(client() if client is not None else None)
        model = self._models.get((name, version))
        if model is not None:
            return model
        with self._lock:
            return self._load(name, version, now, keep=pointer.release)

    # -- the pointer --------------------------------------------------------------------------

    def _refresh(self, name: str, now: float, stale: _Pointer | None) -> _Pointer:
        try:
            pointer = _Pointer(self._read_release(name), None, now)
        except ServingError as error:
            pointer = _Pointer(None, error, now)
        except Exception as error:  # the registry is unreachable or throttling
            if stale is not None and stale.release is not None:
                # Keep serving what we served: better a version up to one TTL old than a 503.
                pointer = _Pointer(stale.release, None, now)
            else:
                raise ModelUnavailableError(
                    f"cannot read the release of {name!r} from the registry: {error}", model=name
                ) from error
        if len(self._pointers) >= _MAX_REMEMBERED_NAMES and name not in self._pointers:
            loaded = {model_name for model_name, _ in self._models}
            self._pointers = {k: v for k, v in self._pointers.items() if k in loaded}
        self._pointers[name] = pointer
        return pointer

    def _read_release(self, name: str) -> Release:
        if not _NAME.match(name):
            raise ModelNotFoundError(f"there is no model named {name!r}", model=name)
        key = {"pk": {"S": f"MODEL#{name}"}, "sk": {"S": "RELEASE"}}
        item = self.dynamodb.get_item(TableName=self.table, Key=key).get("Item") or {}
        version = item.get("production_version", {}).get("N")
        if version is not None:
            canary = item.get("canary_version", {}).get("N")
            return Release(
                production=int(version),
                canary=int(canary) if canary is not None else None,
                canary_weight=float(item.get("canary_weight", {}).get("N", "0")),
            )
        registered = self.dynamodb.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"MODEL#{name}"}},
            Limit=1,
            ProjectionExpression="pk",
        ).get("Items")
        if registered:
            raise NoReleaseError(
                f"model {name!r} has registered versions but none is released to production",
                model=name,
            )
        raise ModelNotFoundError(f"there is no model named {name!r}", model=name)

    # -- the artifact -------------------------------------------------------------------------

    def _load(self, name: str, version: int, now: float, *, keep: Release) -> LoadedModel:
        model = self._models.get((name, version))
        if model is not None:  # loaded while we waited
            return model
        failure = self._failures.get((name, version))
        if failure is not None and now - failure.at < self.ttl:
            raise failure.error
        try:
            prefix = version_prefix(name, version)
            manifest = parse_manifest(
                self._read(prefix + MANIFEST_FILE, name, version), name=name, version=version
            )
            model = load_model(manifest, self._read(prefix + ONNX_FILE, name, version))
        except ModelUnavailableError as error:
            self._failures[(name, version)] = _Failure(error, now)
            if self.on_load_failure is not None:
                self.on_load_failure(name, version, error)
            raise
        self._failures.pop((name, version), None)
        released = {keep.production, keep.canary}
        for key in [k for k in self._models if k[0] == name and k[1] not in released]:
            del self._models[key]  # a version no longer released: free it
        self._models[(name, version)] = model
        return model

    # -- explanations -------------------------------------------------------------------------

    def explainer(self, model: LoadedModel) -> Any:
        """The `mlcycle.serving.explain.Explainer` of a loaded model, made on first use from
        the version's background summary; raises `NotExplainableError` for a version without
        one (registered before explanations), `ModelUnavailableError` for an unusable one."""
        explainer = model.explainer
        if explainer is None:
            with self._lock:
                if model.explainer is None:
                    model.explainer = self._make_explainer(model)
                explainer = model.explainer
        if explainer is _NOT_EXPLAINABLE:
            raise NotExplainableError(
                f"version {model.version} of {model.name!r} has no background summary "
                f"({BACKGROUND_FILE}); retrain to explain",
                model=model.name,
                version=model.version,
            )
        return explainer

    def _make_explainer(self, model: LoadedModel) -> Any:
        """The explainer, or `_NOT_EXPLAINABLE` (a version's files never change, so its missing
        background is remembered); a failure to read or use it is cached for `ttl`."""
        # imported here: the predict path never loads the explainer's module
        from mlcycle.serving.explain import BackgroundError, Explainer

        name, version = model.name, model.version
        failure = self._explain_failures.get((name, version))
        if failure is not None and self.clock() - failure.at < self.ttl:
            raise failure.error
        try:
            data = self._read(
                version_prefix(name, version) + BACKGROUND_FILE, name, version, optional=True
            )
            if data is None:
                return _NOT_EXPLAINABLE
            try:
                explainer = Explainer.for_model(model, json.loads(data))
            except (ValueError, TypeError, AttributeError, KeyError, BackgroundError) as error:
                raise ModelUnavailableError(
                    f"the background summary of {name!r} version {version} is unusable: {error}",
                    model=name,
                    version=version,
                ) from None
        except ModelUnavailableError as error:
            self._explain_failures[(name, version)] = _Failure(error, self.clock())
            raise
        self._explain_failures.pop((name, version), None)
        return explainer

    @overload
    def _read(self, key: str, name: str, version: int) -> bytes: ...

    @overload
    def _read(
        self, key: str, name: str, version: int, *, optional: Literal[True]
    ) -> bytes | None: ...

    def _read(self, key: str, name: str, version: int, *, optional: bool = False) -> bytes | None:
        """The object's bytes; `optional`: None when it does not exist."""
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            missing = code in {"NoSuchKey", "404", "NotFound"}
            if missing and optional:
                return None
            reason = "is missing" if missing else f"unreadable: {error}"
            raise ModelUnavailableError(
                f"the artifact s3://{self.bucket}/{key} of {name!r} version {version} {reason}",
                model=name,
                version=version,
            ) from error
        return body
