"""Dataplane registration when several CP instances share the store.

An agent's bootstrap, its Envoy's ADS stream and its agent channel may each land on a
different instance, and move to another one when an instance dies. So what
``DataplaneRegistry`` keeps in memory for one instance lives in the store here:

- ``DataplanePending`` ``<mesh>/<name>``: written by the instance that serves the bootstrap,
  *before* the dataplane itself (no instance ever sees the dataplane without it), deleted by
  the instance whose ADS stream sees the first listeners ACKed. Every instance's mesh state
  reads these (``pending(mesh)``): a pending dataplane is nobody's endpoint yet.
- ``DataplaneConnection`` ``<mesh>/<name>``: ``instances: {<instance id>: <connect time>}``,
  the instances that hold an ADS stream of it right now. Each instance adds and removes
  itself (compare-and-swap, retried), from a writer loop that coalesces bursts; a graceful
  stop removes this instance from every record.

Nobody deregisters a dataplane here: the leader's ``kumadp.cp.deregistration.Deregistrar``
deletes an agent's dataplane once its record has named no live instance for the
deregistration delay. A dataplane connected anywhere is never deregistered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from kumadp.cp.registration import DataplaneRegistry, NodeKey
from kumadp.cp.store.base import ConflictError, Store, StoredResource
from kumadp.lifecycle import stopped_within
from kumadp.resources.model import DATAPLANE_TYPE
from kumadp.resources.registry import DATAPLANE_CONNECTION_TYPE, DATAPLANE_PENDING_TYPE

log = logging.getLogger(__name__)

CONNECTION_TYPE = DATAPLANE_CONNECTION_TYPE
PENDING_TYPE = DATAPLANE_PENDING_TYPE


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connected_instances(stored: StoredResource | None) -> dict[str, str]:
    """``{instance id: connect time}`` of a ``DataplaneConnection`` record."""
    if stored is None:
        return {}
    instances = stored.spec.get("instances")
    return dict(instances) if isinstance(instances, dict) else {}


def connection_spec(key: NodeKey, instances: dict[str, Any]) -> dict[str, Any]:
    return {"type": CONNECTION_TYPE, "mesh": key[0], "name": key[1], "instances": instances}


class SharedDataplaneRegistry(DataplaneRegistry):
    """``DataplaneRegistry`` over a shared store; also a component (the writer loop)."""

    name = "dataplane-connections"

    def __init__(
        self, store: Store, instance_id: str, *, deregistration_delay: float = 10.0
    ) -> None:
        super().__init__(store, deregistration_delay=deregistration_delay)
        self.instance_id = instance_id
        self._dirty: set[NodeKey] = set()
        self._acked: set[NodeKey] = set()  # pending to clear
        self._cleared: set[NodeKey] = set()  # pending cleared while its stream is open
        self._wake = asyncio.Event()
        self.writes = 0

    # -- queries ---------------------------------------------------------------------------
    def is_pending(self, key: NodeKey) -> bool:
        return False  # see pending(): the store says

    async def pending(self, mesh: str) -> set[str]:
        return {r.name for r in await self._store.list(PENDING_TYPE, mesh)}

    # -- events ----------------------------------------------------------------------------
    async def registering(self, key: NodeKey) -> None:
        if connected_instances(await self._store.get(CONNECTION_TYPE, *key)):
            return  # connected somewhere (a re-bootstrap): it stays an endpoint
        spec = {"type": PENDING_TYPE, "mesh": key[0], "name": key[1], "since": _now()}
        await self._store.put(PENDING_TYPE, key[0], key[1], spec)

    def registered(self, key: NodeKey, *, created: bool) -> None:
        pass  # pending was written by registering()

    def stream_opened(self, key: NodeKey) -> None:
        self._streams[key] = self._streams.get(key, 0) + 1
        self._mark(key)

    def stream_closed(self, key: NodeKey) -> None:
        count = self._streams.get(key, 0) - 1
        if count > 0:
            self._streams[key] = count
            return
        self._streams.pop(key, None)
        self._cleared.discard(key)
        self._mark(key)

    def listeners_acked(self, key: NodeKey) -> None:
        if key not in self._acked and key not in self._cleared:
            self._acked.add(key)
            self._mark(key)

    async def leave(self, key: NodeKey) -> bool:
        self._acked.discard(key)
        removed = await self._store.delete(DATAPLANE_TYPE, *key)
        await self._store.delete(PENDING_TYPE, *key)
        await self._store.delete(CONNECTION_TYPE, *key)
        log.info("dataplane %s.%s left the mesh%s", *key, "" if removed else " (was not stored)")
        return removed

    def _mark(self, key: NodeKey) -> None:
        self._dirty.add(key)
        self._wake.set()

    # -- the writer ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if not await self.flush():
                    await stopped_within(stop, 0.5)  # the store failed: try again soon
                    continue
                wake = asyncio.ensure_future(self._wake.wait())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait({wake, stopped}, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                stopped.cancel()
        finally:
            # Graceful stop: this instance holds no stream any more.
            for key in list(self._streams):
                self._dirty.add(key)
            self._streams.clear()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3.0):
                    await self.flush()

    async def flush(self) -> bool:
        """Write every dirty record; False if the store failed (they stay dirty)."""
        self._wake.clear()
        dirty, self._dirty = self._dirty, set()
        ok = True
        for key in sorted(dirty):
            try:
                await self._sync(key)
            except Exception as exc:
                log.warning("recording the connection of %s.%s failed: %s", *key, exc)
                self._dirty.add(key)
                ok = False
        return ok

    async def _sync(self, key: NodeKey) -> None:
        if key in self._acked:
            if await self._store.delete(PENDING_TYPE, *key):
                log.info("dataplane %s.%s is serving: adding it to the mesh's endpoints", *key)
            self._acked.discard(key)
            self._cleared.add(key)
        connected = self.is_connected(key)
        for _ in range(20):  # compare-and-swap against the other instances
            stored = await self._store.get(CONNECTION_TYPE, *key)
            instances = connected_instances(stored)
            if connected == (self.instance_id in instances):
                return
            if connected:
                instances[self.instance_id] = _now()
            else:
                instances.pop(self.instance_id, None)
            version = stored.version if stored is not None else 0
            try:
                await self._store.put(
                    CONNECTION_TYPE, *key, connection_spec(key, instances), version
                )
            except ConflictError:
                continue
            self.writes += 1
            return
        raise ConflictError(f"connection record of {key[0]}.{key[1]}: too many concurrent writers")


__all__ = [
    "CONNECTION_TYPE",
    "PENDING_TYPE",
    "SharedDataplaneRegistry",
    "connected_instances",
    "connection_spec",
]
