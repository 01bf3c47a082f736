"""Deregistration of dropped dataplanes when several instances share the store (a leader-only
job; one instance alone does it in ``kumadp.cp.registration``).

Every ``sweep`` seconds the leader reads the connection records
(``kumadp.cp.shared_registration``) and the live instances (``kumadp.cp.instances``):

- a record naming at least one live instance: connected, nothing to do (instances that are
  gone are pruned from it);
- a record naming no live instance: the dataplane dropped (its agent stopped without a
  Leave, or its instance died and it did not come back elsewhere). Once that has lasted the
  deregistration delay, and the record still says so, an agent-registered dataplane is
  deleted with its records. One created through the API stays (its owner deletes it).
- records (and pending markers) of dataplanes that no longer exist are removed.

The clock of "dropped since" starts when the leader first sees it: a new leader waits a full
delay again, so a dataplane is never deregistered early.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from kumadp.cp.instances import Instances
from kumadp.cp.registration import LIFECYCLE_AGENT, LIFECYCLE_LABEL, NodeKey
from kumadp.cp.shared_registration import (
    CONNECTION_TYPE,
    PENDING_TYPE,
    connected_instances,
    connection_spec,
)
from kumadp.cp.store.base import ConflictError, Store, StoredResource
from kumadp.lifecycle import stopped_within
from kumadp.resources.model import DATAPLANE_TYPE

log = logging.getLogger(__name__)

ORPHAN_PENDING_AFTER = 60.0  # a pending marker whose dataplane never came


class Deregistrar:
    """Component (leader only): see the module docstring. ``store`` is the fenced one."""

    name = "deregistration"

    def __init__(
        self,
        store: Store,
        instances: Instances,
        *,
        delay: float = 10.0,
        sweep: float | None = None,
    ) -> None:
        self._store = store
        self._instances = instances
        self._delay = delay
        self._sweep = sweep if sweep is not None else max(0.2, min(1.0, delay / 4))
        self._dropped: dict[NodeKey, float] = {}  # since (monotonic)
        self._lonely_pending: dict[NodeKey, float] = {}
        self.deregistered = 0

    async def run(self, stop: asyncio.Event) -> None:
        self._dropped.clear()
        while not stop.is_set():
            await self.sweep_once()
            await stopped_within(stop, self._sweep)

    async def sweep_once(self) -> None:
        now = time.monotonic()
        live = await self._instances.live_ids()
        dataplanes = {(r.mesh, r.name): r for r in await self._store.list(DATAPLANE_TYPE)}
        seen: set[NodeKey] = set()
        for record in await self._store.list(CONNECTION_TYPE):
            key = (record.mesh, record.name)
            held = connected_instances(record)
            alive = {i for i in held if i in live}
            if alive:
                self._dropped.pop(key, None)
                if alive != set(held):
                    await self._prune(key, record, live)
                continue
            seen.add(key)
            since = self._dropped.setdefault(key, now)
            if now - since >= self._delay:
                await self._deregister(key, dataplanes.get(key), live)
        for key in [k for k in self._dropped if k not in seen]:
            del self._dropped[key]
        await self._forget_lonely_pending(now, dataplanes)

    async def _prune(self, key: NodeKey, record: StoredResource, live: Iterable[str]) -> None:
        instances = {i: t for i, t in connected_instances(record).items() if i in set(live)}
        try:
            await self._store.put(
                CONNECTION_TYPE, *key, connection_spec(key, instances), record.version
            )
        except ConflictError:
            pass  # changed meanwhile: the next sweep sees the new state

    async def _deregister(
        self, key: NodeKey, dataplane: StoredResource | None, live: set[str]
    ) -> None:
        record = await self._store.get(CONNECTION_TYPE, *key)
        if record is not None and any(i in live for i in connected_instances(record)):
            self._dropped.pop(key, None)  # it came back just now
            return
        self._dropped.pop(key, None)
        if dataplane is not None:
            labels = dataplane.spec.get("labels") or {}
            if labels.get(LIFECYCLE_LABEL) == LIFECYCLE_AGENT:
                await self._store.delete(DATAPLANE_TYPE, *key)
                self.deregistered += 1
                log.info(
                    "dataplane %s.%s deregistered: no instance has had a connection of it "
                    "for %.0fs",
                    key[0],
                    key[1],
                    self._delay,
                )
        await self._store.delete(PENDING_TYPE, *key)
        await self._store.delete(CONNECTION_TYPE, *key)

    async def _forget_lonely_pending(
        self, now: float, dataplanes: dict[NodeKey, StoredResource]
    ) -> None:
        seen: set[NodeKey] = set()
        for marker in await self._store.list(PENDING_TYPE):
            key = (marker.mesh, marker.name)
            if key in dataplanes:
                continue
            seen.add(key)
            since = self._lonely_pending.setdefault(key, now)
            if now - since >= ORPHAN_PENDING_AFTER:
                await self._store.delete(PENDING_TYPE, *key)
        self._lonely_pending = {k: v for k, v in self._lonely_pending.items() if k in seen}


__all__ = ["Deregistrar"]
