"""Components that turn store changes into more store state, off the generation path:

- ``VipProvisioner``: every ``kuma.io/service`` of a mesh's dataplanes gets its VIP and
  loopback address (``kumadp.cp.vips``); a deleted mesh's allocation is dropped;
- ``CaProvisioner``: a mesh with builtin mTLS gets its CA (``kumadp.cp.ca``); a deleted
  mesh's CAs are dropped.

Both write their results to the store; the reconciler only reads them (and hears of them
through the change feed like of any other change). Each reacts to events at once, without a
debounce of its own: the reconciler's debounce window usually covers their write, so a new
service's VIP reaches Envoys and agents in the same pass as the dataplane that brought it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

from kumadp.cp.ca import BackendConf, CAError, MeshCAs, backend_conf
from kumadp.cp.store.base import ChangeEvent, Store, StoredResource
from kumadp.cp.store.feed import following
from kumadp.cp.vips import VipAllocator, VipPoolExhaustedError
from kumadp.resources import ValidationError, parse_dataplane, parse_mesh
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE, SERVICE_TAG
from kumadp.resources.registry import MESH_CA_TYPE, VIRTUAL_IPS_TYPE
from kumadp.resources.zone_proxies import ZONE_INGRESS_TYPE
from kumadp.wire.kds import ORIGIN_GLOBAL, ORIGIN_LABEL

log = logging.getLogger(__name__)


class MeshWorker:
    """Base of a component that keeps per-mesh state in step with the store: change events
    name the meshes to process (``meshes_for``), a loop ``process``es each dirty mesh once
    per wake-up. Everything is processed at start and after a ``RESYNC``."""

    name = "mesh-worker"
    watched: tuple[str, ...] = ()  # the store types whose events matter

    def __init__(self, store: Store) -> None:
        self._store = store
        self._dirty: set[str] = set()
        self._all = True  # process every mesh: at start, after a resync
        self._wake = asyncio.Event()

    def meshes_for(self, event: ChangeEvent) -> Iterable[str]:
        """The meshes ``event`` concerns (nothing by default)."""
        return ()

    async def process(self, mesh: str) -> None:
        raise NotImplementedError

    def due(self) -> float | None:
        """Seconds until every mesh must be processed again without a change (a renewal,
        an expiry); None: only changes matter."""
        return None

    @staticmethod
    def seconds_until(deadlines: Mapping[str, datetime], now: datetime) -> float | None:
        """``due`` for a worker with a deadline per mesh (renewals, expiries)."""
        if not deadlines:
            return None
        return max(0.0, (min(deadlines.values()) - now).total_seconds()) + 0.01

    async def mesh_backend(self, mesh: str) -> tuple[StoredResource | None, BackendConf | None]:
        """The stored mesh and its enabled mTLS backend (None: no mTLS, or a mesh that does
        not parse)."""
        stored = await self._store.get(MESH_TYPE, "", mesh)
        if stored is None:
            return None, None
        try:
            return stored, backend_conf(parse_mesh(stored.spec))
        except ValidationError:
            return stored, None

    async def known_meshes(self) -> set[str]:
        """What "every mesh" means at start and on a resync."""
        return {r.name for r in await self._store.list(MESH_TYPE)}

    def on_store_change(self, event: ChangeEvent) -> None:
        if event.is_resync:
            self._all = True
            self._wake.set()
            return
        meshes = set(self.meshes_for(event))
        if meshes:
            self._dirty |= meshes
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with following(self._store, self.on_store_change, self.watched):
            stop_task = asyncio.ensure_future(stop.wait())
            try:
                while not stop.is_set():
                    await self._pass()
                    wake = asyncio.ensure_future(self._wake.wait())
                    done, _ = await asyncio.wait(
                        {wake, stop_task}, timeout=self.due(), return_when="FIRST_COMPLETED"
                    )
                    wake.cancel()
                    if not done:  # a deadline of ``due``: every mesh is looked at again
                        self._all = True
            finally:
                stop_task.cancel()

    async def _pass(self) -> None:
        self._wake.clear()
        dirty, self._dirty = self._dirty, set()
        if self._all:
            self._all = False
            dirty |= await self.known_meshes()
        for mesh in sorted(dirty):
            try:
                await self.process(mesh)
            except Exception:
                log.exception("%s: mesh %s failed", self.name, mesh)


class VipProvisioner(MeshWorker):
    """Keeps every mesh's ``VirtualIPs`` in step with its dataplanes' services and (a zone
    CP) the services of other zones, reached through their ingresses."""

    name = "vip-provisioner"
    watched = (DATAPLANE_TYPE, MESH_TYPE, VIRTUAL_IPS_TYPE, ZONE_INGRESS_TYPE)

    def on_store_change(self, event: ChangeEvent) -> None:
        if event.type == ZONE_INGRESS_TYPE:
            self._all = True  # another zone's services changed: any mesh may be concerned
            self._wake.set()
            return
        super().on_store_change(event)

    def __init__(self, store: Store, vips: VipAllocator) -> None:
        super().__init__(store)
        self._vips = vips
        # (mesh, name) -> (store version, services): a change parses one dataplane
        self._services: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}

    def meshes_for(self, event: ChangeEvent) -> Iterable[str]:
        if event.type == DATAPLANE_TYPE:
            return (event.mesh,)
        if event.type == MESH_TYPE and event.op != "update":
            return (event.name,)
        if event.type == VIRTUAL_IPS_TYPE and event.op == "delete":
            return (event.mesh,)  # deleted by hand: allocate again (or stay gone with the mesh)
        return ()

    async def known_meshes(self) -> set[str]:
        stored = {r.mesh for r in await self._store.list(VIRTUAL_IPS_TYPE)}
        return stored | await super().known_meshes()

    async def process(self, mesh: str) -> None:
        if await self._store.get(MESH_TYPE, "", mesh) is None:
            await self._vips.forget(mesh)  # the mesh is gone: a re-created one starts afresh
            self._services = {k: v for k, v in self._services.items() if k[0] != mesh}
            return
        try:
            await self._vips.sync(mesh, await self._mesh_services(mesh))
        except VipPoolExhaustedError as exc:
            log.error("%s; the services without an address get no name", exc)

    async def _mesh_services(self, mesh: str) -> set[str]:
        services: set[str] = set()
        present: set[tuple[str, str]] = set()
        for stored in await self._store.list(DATAPLANE_TYPE, mesh):
            key = (mesh, stored.name)
            present.add(key)
            cached = self._services.get(key)
            if cached is None or cached[0] != stored.version:
                try:
                    cached = (stored.version, parse_dataplane(stored.spec).services)
                except ValidationError:
                    continue  # the reconciler logs invalid stored resources
                self._services[key] = cached
            services.update(cached[1])
        for key in [k for k in self._services if k[0] == mesh and k not in present]:
            del self._services[key]
        return services | await self._remote_services(mesh)

    async def _remote_services(self, mesh: str) -> set[str]:
        """The mesh's services other zones offer (the ingresses the global CP passed on)."""
        found: set[str] = set()
        for stored in await self._store.list(ZONE_INGRESS_TYPE):
            labels = stored.spec.get("labels") or {}
            if labels.get(ORIGIN_LABEL) != ORIGIN_GLOBAL:
                continue  # this zone's own ingress lists this zone's services
            for item in stored.spec.get("availableServices") or []:
                tags = item.get("tags") if isinstance(item, dict) else None
                if isinstance(tags, dict) and item.get("mesh", "default") == mesh:
                    service = tags.get(SERVICE_TAG)
                    if isinstance(service, str) and service:
                        found.add(service)
        return found


class CaProvisioner(MeshWorker):
    """Creates the CA of every mesh with builtin mTLS; drops a deleted mesh's CAs."""

    name = "ca-provisioner"
    watched = (MESH_TYPE, MESH_CA_TYPE)

    def __init__(self, store: Store, cas: MeshCAs) -> None:
        super().__init__(store)
        self._cas = cas

    def meshes_for(self, event: ChangeEvent) -> Iterable[str]:
        if event.type == MESH_TYPE:
            return (event.name,)
        if event.type == MESH_CA_TYPE and event.op == "delete":
            return (event.mesh,)  # deleted by hand: create it again while mTLS is on
        return ()

    async def known_meshes(self) -> set[str]:
        stored = {r.mesh for r in await self._store.list(MESH_CA_TYPE)}
        return stored | await super().known_meshes()

    async def process(self, mesh: str) -> None:
        stored = await self._store.get(MESH_TYPE, "", mesh)
        if stored is None:
            await self._cas.delete_mesh(mesh)
            return
        try:
            await self._cas.ca_for(parse_mesh(stored.spec))
        except ValidationError as exc:
            log.error("stored Mesh %s is invalid: %s", mesh, exc)
        except CAError as exc:
            log.error("mesh %s: %s", mesh, exc)


__all__ = ["CaProvisioner", "MeshWorker", "VipProvisioner"]
