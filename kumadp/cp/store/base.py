"""The store protocol every backend implements (memory, SQLite; later PostgreSQL).

The store knows nothing of resource semantics: it keeps validated resource documents
(Kuma's universal JSON shape, as produced by ``Resource.to_dict()``) keyed by
``(type, mesh, name)``, with a version that increases on every write, and tells consumers
about every change through its change feed (``changes()``, ``kumadp.cp.store.feed``).
Mesh-scoped types use the mesh name; global types (``Mesh``, ``ZoneIngress``...) use
``mesh=""``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from kumadp.cp.store.feed import ChangeSubscription
from kumadp.cp.store.records import RESYNC, ChangeEvent, StoredResource


class StoreError(Exception):
    """Base class of store errors."""


class ConflictError(StoreError):
    """A write's ``expected_version`` did not match the stored version (``found``; 0 =
    the resource does not exist)."""

    def __init__(self, message: str, found: int | None = None) -> None:
        super().__init__(message)
        self.found = found


class NotFoundError(StoreError):
    """The resource does not exist."""


class NotLeaderError(StoreError):
    """A leader-only write was refused: this instance does not hold the leader lease (any
    more). See ``kumadp.cp.election``."""


class Store(Protocol):
    async def get(self, type: str, mesh: str, name: str) -> StoredResource | None: ...

    async def list(self, type: str, mesh: str | None = None) -> list[StoredResource]:
        """All resources of ``type``, in ``mesh`` if given, ordered by (mesh, name)."""
        ...

    async def put(
        self,
        type: str,
        mesh: str,
        name: str,
        spec: dict[str, Any],
        expected_version: int | None = None,
    ) -> tuple[StoredResource, bool]:
        """Create or replace. Returns the stored resource and whether it was created.
        Raises ConflictError when ``expected_version`` is given and does not match
        (0 means "must not exist")."""
        ...

    async def delete(self, type: str, mesh: str, name: str) -> bool:
        """Delete; True if something was deleted."""
        ...

    def changes(self, types: Iterable[str] | None = None) -> ChangeSubscription:
        """A new subscription to the change feed: every change committed from now on (of
        ``types`` only, if given), as ``ChangeEvent``s; see ``kumadp.cp.store.feed`` for the
        contract (after commit, at least once, ordered per resource, ``RESYNC`` = reload
        everything). Close it when done."""
        ...

    async def close(self) -> None: ...


__all__ = [
    "RESYNC",
    "ChangeEvent",
    "ChangeSubscription",
    "ConflictError",
    "NotFoundError",
    "NotLeaderError",
    "Store",
    "StoreError",
    "StoredResource",
]
