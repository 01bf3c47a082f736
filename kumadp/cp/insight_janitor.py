"""Insight clean-up when several instances share the store (a leader-only job).

Every ``interval`` seconds the leader:

- marks disconnected (``disconnectTime`` = now) every open subscription whose instance is no
  longer live: that instance died without closing it, so the dataplane would otherwise show
  Online for ever (what one instance alone does at its start, ``InsightStore.load``);
- deletes the insights of dataplanes that no longer exist;
- forgets the records of instances silent for ``forget_instances_after`` seconds.

Writes are compare-and-swap: an insight an instance is writing right now is left for the
next round.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kumadp.cp.insights import INSIGHT_TYPE, format_time
from kumadp.cp.instances import INSTANCE_TYPE, Instances
from kumadp.cp.store.base import ConflictError, Store, StoredResource
from kumadp.lifecycle import stopped_within
from kumadp.resources.model import DATAPLANE_TYPE

log = logging.getLogger(__name__)


class InsightJanitor:
    """Component (leader only): see the module docstring. ``store`` is the fenced one."""

    name = "insight-cleanup"

    def __init__(
        self,
        store: Store,
        instances: Instances,
        *,
        interval: float = 5.0,
        forget_instances_after: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._instances = instances
        self._interval = interval
        self._forget_after = forget_instances_after
        self._clock = clock
        self.closed_subscriptions = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sweep_once()
            await stopped_within(stop, self._interval)

    async def sweep_once(self) -> None:
        live = await self._instances.live_ids()
        dataplanes = {(r.mesh, r.name) for r in await self._store.list(DATAPLANE_TYPE)}
        for stored in await self._store.list(INSIGHT_TYPE):
            key = (stored.mesh, stored.name)
            if key not in dataplanes:
                await self._store.delete(INSIGHT_TYPE, *key)
                continue
            await self._close_orphans(stored, live)
        await self._forget_instances()

    async def _close_orphans(self, stored: StoredResource, live: set[str]) -> None:
        spec = copy.deepcopy(stored.spec)
        closed = 0
        for sub in spec.get("subscriptions") or ():
            if not isinstance(sub, dict) or not sub.get("connectTime"):
                continue
            if sub.get("disconnectTime") or sub.get("controlPlaneInstanceId") in live:
                continue
            sub["disconnectTime"] = format_time(self._clock())
            closed += 1
        if not closed:
            return
        try:
            await self._store.put(INSIGHT_TYPE, stored.mesh, stored.name, spec, stored.version)
        except ConflictError:
            return  # written meanwhile: next round
        self.closed_subscriptions += closed
        log.info(
            "dataplane %s.%s: closed %d subscription(s) of control plane instances that are gone",
            stored.mesh,
            stored.name,
            closed,
        )

    async def _forget_instances(self) -> None:
        now = self._clock()
        for info, live in await self._instances.all():
            if live or info.heartbeat is None:
                continue
            if now - info.heartbeat > timedelta(seconds=self._forget_after):
                if await self._store.delete(INSTANCE_TYPE, "", info.id):
                    log.info(
                        "forgot control plane instance %s (silent since %s)",
                        info.id,
                        info.heartbeat,
                    )


__all__ = ["InsightJanitor"]
