"""The store protocol every backend implements (memory, SQLite; later PostgreSQL).

The store knows nothing of resource semantics: it keeps validated resource documents
(Kuma's universal JSON shape, as produced by ``Resource.to_dict()``) keyed by
``(type, mesh, name)``, with a version that increases on every write, and tells subscribers
about every change. Mesh-scoped types use the mesh name; global types (``Mesh``,
``ZoneIngress``...) use ``mesh=""``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol


class StoreError(Exception):
    """Base class of store errors."""


class ConflictError(StoreError):
    """A write's ``expected_version`` did not match the stored version."""


class NotFoundError(StoreError):
    """The resource does not exist."""


@dataclass(frozen=True)
class StoredResource:
    type: str
    mesh: str
    name: str
    spec: dict[str, Any]  # the whole resource document, incl. type/mesh/name
    version: int
    creation_time: datetime
    modification_time: datetime


@dataclass(frozen=True)
class ChangeEvent:
    op: Literal["create", "update", "delete"]
    type: str
    mesh: str
    name: str
    resource: StoredResource | None  # None for deletes


Listener = Callable[[ChangeEvent], None]


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

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` (on the event loop) after every committed change.
        Returns a function that unsubscribes."""
        ...

    async def close(self) -> None: ...


class ListenerSet:
    """Shared helper for backends: fan a change out to subscribers, never letting one
    failing listener break the others or the write."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: ChangeEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # pragma: no cover - a listener bug must not break writes
                import logging

                logging.getLogger(__name__).exception("store listener failed")


__all__ = [
    "ChangeEvent",
    "ConflictError",
    "Listener",
    "ListenerSet",
    "NotFoundError",
    "Store",
    "StoreError",
    "StoredResource",
]
