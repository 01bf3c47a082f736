"""Fenced writes: a write that must not happen once this instance has lost its right to it
(the leader lease, ``kumadp.cp.election``).

``FencedStore(store, allowed, fence)`` is any ``Store`` whose ``put``/``delete`` first check
``allowed()`` (a local, instant check: raise ``NotLeaderError`` when it says no), then run
with ``fence`` set as the *current write fence*: a backend that can (PostgreSQL) runs the fence
inside the write's own transaction, so a write commits only if the lease is still held at
that moment. The fence travels in a context variable, so layers between the view and the
backend (e.g. an encrypting store) need to know nothing about it. Reads and the change feed
are the store's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

from kumadp.cp.store.base import NotLeaderError, Store, StoredResource
from kumadp.cp.store.feed import ChangeSubscription

# Runs inside a write's transaction with the backend's connection; raises NotLeaderError.
Fence = Callable[[Any], Awaitable[None]]

_current: ContextVar[Fence | None] = ContextVar("kumadp_store_write_fence", default=None)


def current_fence() -> Fence | None:
    """The fence the write being made must pass (None: an ordinary write)."""
    return _current.get()


class FencedStore:
    """``store`` for a leader-only component; see the module docstring."""

    def __init__(
        self, store: Store, allowed: Callable[[], bool], fence: Fence, what: str = "leader"
    ) -> None:
        self._store = store
        self._allowed = allowed
        self._fence = fence
        self._what = what

    def _check(self) -> None:
        if not self._allowed():
            raise NotLeaderError(f"write refused: this instance is not the {self._what}")

    async def get(self, type: str, mesh: str, name: str) -> StoredResource | None:
        return await self._store.get(type, mesh, name)

    async def list(self, type: str, mesh: str | None = None) -> list[StoredResource]:
        return await self._store.list(type, mesh)

    async def put(
        self,
        type: str,
        mesh: str,
        name: str,
        spec: dict[str, Any],
        expected_version: int | None = None,
    ) -> tuple[StoredResource, bool]:
        self._check()
        token = _current.set(self._fence)
        try:
            return await self._store.put(type, mesh, name, spec, expected_version)
        finally:
            _current.reset(token)

    async def delete(self, type: str, mesh: str, name: str) -> bool:
        self._check()
        token = _current.set(self._fence)
        try:
            return await self._store.delete(type, mesh, name)
        finally:
            _current.reset(token)

    def changes(self, types: Iterable[str] | None = None) -> ChangeSubscription:
        return self._store.changes(types)

    async def close(self) -> None:
        """The view does not own the store: nothing to close."""


__all__ = ["Fence", "FencedStore", "current_fence"]
