"""A zone CP keeps its ingresses' ``availableServices`` current: what other zones can reach
through them.

Every serving inbound of every dataplane of the zone (Ready, not unhealthy, its dataplane no
longer pending) counts once for its (mesh, tags); the sorted list of ``{tags, instances,
mesh}`` is written into each of this zone's ZoneIngresses whose list differs, never
otherwise. Driven by the store's change feed (a dataplane or an ingress changed, a mesh
went) and by readiness changes (``mark_dirty``): pushed at once, no tick. The zone's KDS
then carries the change to the global CP, which passes it on to the other zones.

A write uses the version it read (compare-and-swap): an ingress re-registered meanwhile is
read again on the next pass. Runs on the leader only when instances share a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kumadp.cp.store.base import ChangeEvent, ConflictError, Store
from kumadp.cp.store.feed import following
from kumadp.resources import ValidationError, parse_dataplane
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE, Dataplane
from kumadp.resources.registry import DATAPLANE_PENDING_TYPE
from kumadp.resources.zone_proxies import ZONE_INGRESS_TYPE, AvailableService
from kumadp.wire import kds as kds_wire

log = logging.getLogger(__name__)

Pending = Callable[[str], Awaitable[set[str]]]  # mesh -> names of its pending dataplanes
WATCHED = (DATAPLANE_TYPE, ZONE_INGRESS_TYPE, MESH_TYPE, DATAPLANE_PENDING_TYPE)


def available_services(
    dataplanes: list[Dataplane], pending: dict[str, set[str]] | None = None
) -> list[AvailableService]:
    """Every serving inbound counted per (mesh, tags), sorted."""
    counts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for dataplane in dataplanes:
        if dataplane.name in (pending or {}).get(dataplane.mesh, set()):
            continue
        for inbound in dataplane.networking.inbound:
            if inbound.serving:
                key = (dataplane.mesh, tuple(sorted(inbound.tags.items())))
                counts[key] = counts.get(key, 0) + 1
    found = [AvailableService(mesh, dict(tags), n) for (mesh, tags), n in counts.items()]
    return sorted(found, key=AvailableService.sort_key)


def _is_local(spec: dict[str, Any]) -> bool:
    labels = spec.get("labels") or {}
    return labels.get(kds_wire.ORIGIN_LABEL) != kds_wire.ORIGIN_GLOBAL


class AvailableServicesUpdater:
    """Component: this zone's ingresses list the services of this zone."""

    name = "available-services"

    def __init__(self, store: Store, *, pending: Pending | None = None) -> None:
        self._store = store
        self._pending = pending
        self._wake = asyncio.Event()
        self._parsed: dict[tuple[str, str], tuple[int, Dataplane | None]] = {}
        self.writes = 0

    def mark_dirty(self, mesh: str | None = None) -> None:
        """Something the store does not show changed (a dataplane stopped being pending)."""
        self._wake.set()

    def _on_change(self, event: ChangeEvent) -> None:
        if event.type == ZONE_INGRESS_TYPE and event.resource is not None:
            if not _is_local(event.resource.spec):
                return  # another zone's ingress (a copy from the global CP)
        self._wake.set()  # (our own write comes back too: the next pass writes nothing)

    async def run(self, stop: asyncio.Event) -> None:
        async with following(self._store, self._on_change, WATCHED):
            stop_task = asyncio.ensure_future(stop.wait())
            try:
                while not stop.is_set():
                    self._wake.clear()
                    try:
                        await self.update()
                    except Exception:
                        log.exception("updating the zone ingresses' available services failed")
                    wake = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait({wake, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                    wake.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await wake
            finally:
                stop_task.cancel()

    async def update(self) -> int:
        """Write every local ingress whose list differs; returns how many were written."""
        ingresses = [s for s in await self._store.list(ZONE_INGRESS_TYPE) if _is_local(s.spec)]
        if not ingresses:
            return 0
        dataplanes = await self._dataplanes()
        pending: dict[str, set[str]] = {}
        if self._pending is not None:
            for mesh in {dp.mesh for dp in dataplanes}:
                pending[mesh] = await self._pending(mesh)
        wanted = [s.to_dict() for s in available_services(dataplanes, pending)]
        written = 0
        for stored in ingresses:
            if (stored.spec.get("availableServices") or []) == wanted:
                continue
            spec = {**stored.spec, "availableServices": wanted}
            if not wanted:
                spec.pop("availableServices")
            try:
                await self._store.put(ZONE_INGRESS_TYPE, "", stored.name, spec, stored.version)
            except ConflictError:
                self._wake.set()  # changed meanwhile: read it again
                continue
            written += 1
            log.info(
                "ZoneIngress %s: %d available services (%d instances)",
                stored.name, len(wanted), sum(s["instances"] for s in wanted),
            )  # fmt: skip
        self.writes += written
        return written

    async def _dataplanes(self) -> list[Dataplane]:
        out: list[Dataplane] = []
        live: set[tuple[str, str]] = set()
        for stored in await self._store.list(DATAPLANE_TYPE):
            key = (stored.mesh, stored.name)
            live.add(key)
            cached = self._parsed.get(key)
            if cached is None or cached[0] != stored.version:
                try:
                    model: Dataplane | None = parse_dataplane(stored.spec)
                except ValidationError:
                    model = None  # the reconciler logs invalid stored resources
                cached = self._parsed[key] = (stored.version, model)
            if cached[1] is not None:
                out.append(cached[1])
        for key in [k for k in self._parsed if k not in live]:
            del self._parsed[key]
        return out


__all__ = ["AvailableServicesUpdater", "available_services"]
