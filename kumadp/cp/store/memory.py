"""An in-memory store: for tests and throw-away control planes (``--store memory``).

Nothing survives the process. Semantics are exactly those of the SQLite store (the same
conformance suite runs against both), see ``kumadp.cp.store.base.Store``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kumadp.cp.store.base import (
    ChangeEvent,
    ConflictError,
    StoredResource,
    StoreError,
)
from kumadp.cp.store.feed import ChangeFeed, ChangeSubscription

log = logging.getLogger(__name__)


def encode_spec(spec: dict[str, Any]) -> str:
    """The JSON text of ``spec`` (key order kept). Raises StoreError for a spec that is not
    a JSON object, so both backends refuse the same inputs."""
    if not isinstance(spec, dict):
        raise StoreError("resource spec must be a JSON object")
    try:
        return json.dumps(spec, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StoreError(f"resource spec is not JSON-serialisable: {e}") from e


def canonical_json(spec: dict[str, Any]) -> str:
    """A key-order-independent text of ``spec`` that still tells ``1``, ``1.0`` and ``true``
    apart (plain ``==`` on dicts does not): what "identical spec" means for ``put``."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check_expected_version(
    type: str, mesh: str, name: str, current: StoredResource | None, expected: int | None
) -> None:
    """Raise ConflictError when ``expected`` (None = unconditional, 0 = must not exist) does
    not match the current version."""
    if expected is None:
        return
    actual = current.version if current is not None else 0
    if actual != expected:
        where = f"{type} {mesh + '/' if mesh else ''}{name}"
        raise ConflictError(f"{where}: expected version {expected}, found {actual}", found=actual)


class MemoryStore:
    """A ``Store`` kept in a dict.

    ``put`` of a spec identical to the stored one (same JSON up to key order) is a no-op: it
    returns the existing resource with ``created=False``, keeps its version and emits no
    event (so an idempotent re-apply does not push config to every proxy). Returned
    ``StoredResource.spec`` dicts are shared with the store: treat them as read-only.
    """

    def __init__(self) -> None:
        self._data: dict[str, dict[tuple[str, str], StoredResource]] = {}
        self._feed = ChangeFeed()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    async def get(self, type: str, mesh: str, name: str) -> StoredResource | None:
        self._check_open()
        return self._data.get(type, {}).get((mesh, name))

    async def list(self, type: str, mesh: str | None = None) -> list[StoredResource]:
        self._check_open()
        by_key = self._data.get(type, {})
        keys = sorted(k for k in by_key if mesh is None or k[0] == mesh)
        return [by_key[k] for k in keys]

    async def put(
        self,
        type: str,
        mesh: str,
        name: str,
        spec: dict[str, Any],
        expected_version: int | None = None,
    ) -> tuple[StoredResource, bool]:
        self._check_open()
        # A detached copy: the caller may keep mutating its dict.
        spec = json.loads(encode_spec(spec))
        by_key = self._data.setdefault(type, {})
        current = by_key.get((mesh, name))
        check_expected_version(type, mesh, name, current, expected_version)
        if current is not None and canonical_json(current.spec) == canonical_json(spec):
            return current, False
        now = datetime.now(UTC)
        stored = StoredResource(
            type=type,
            mesh=mesh,
            name=name,
            spec=spec,
            version=current.version + 1 if current is not None else 1,
            creation_time=current.creation_time if current is not None else now,
            modification_time=now,
        )
        by_key[(mesh, name)] = stored
        created = current is None
        self._feed.publish(
            ChangeEvent(
                op="create" if created else "update",
                type=type,
                mesh=mesh,
                name=name,
                resource=stored,
            )
        )
        return stored, created

    async def delete(self, type: str, mesh: str, name: str) -> bool:
        self._check_open()
        if self._data.get(type, {}).pop((mesh, name), None) is None:
            return False
        self._feed.publish(ChangeEvent(op="delete", type=type, mesh=mesh, name=name, resource=None))
        return True

    def changes(self, types: Iterable[str] | None = None) -> ChangeSubscription:
        return self._feed.subscribe(types)

    async def close(self) -> None:
        self._closed = True
        self._feed.close()


__all__ = ["MemoryStore"]
