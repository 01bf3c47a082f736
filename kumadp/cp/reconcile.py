"""Store changes -> mesh views -> generated resources -> snapshots in the xDS cache.

Driven by store change events, debounced per mesh; never by a polling tick. Generation is
pure (``kumadp.cp.generate``); this module only decides *which* nodes to regenerate and keeps
parsed resources cached by version so a change costs one parse, not one per dataplane.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from kumadp.cp.generate import generate
from kumadp.cp.generate.view import MeshView, build_mesh_view
from kumadp.cp.lifecycle import DataplaneLifecycle, NodeKey
from kumadp.cp.store.base import ChangeEvent, Store, StoredResource
from kumadp.cp.xds.cache import SnapshotCache
from kumadp.cp.xds.snapshot import Snapshot
from kumadp.resources import ValidationError, parse_dataplane, parse_mesh
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE, Dataplane, Mesh

log = logging.getLogger(__name__)


@dataclass
class ReconcileStats:
    generations: int = 0
    snapshots_set: int = 0
    last_generation_seconds: float = 0.0
    errors: int = 0
    by_mesh: dict[str, int] = field(default_factory=dict)


class Reconciler:
    name = "xds-reconciler"

    def __init__(
        self,
        store: Store,
        cache: SnapshotCache,
        lifecycle: DataplaneLifecycle,
        *,
        debounce: float = 0.01,
    ) -> None:
        self._store = store
        self._cache = cache
        self._lifecycle = lifecycle
        self._debounce = debounce
        self._connected: dict[str, set[str]] = {}  # mesh -> names with an open stream
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._parsed: dict[tuple[str, str, str], tuple[int, Dataplane | Mesh]] = {}
        self._lock = asyncio.Lock()
        self.stats = ReconcileStats()

    # -- inputs ------------------------------------------------------------------------
    def on_store_change(self, event: ChangeEvent) -> None:
        if event.type == MESH_TYPE:
            self.mark_dirty(event.name)
        elif event.type == DATAPLANE_TYPE:
            self.mark_dirty(event.mesh)

    def mark_dirty(self, mesh: str) -> None:
        self._dirty.add(mesh)
        self._wake.set()

    async def node_connected(self, key: NodeKey) -> bool:
        """A stream opened: make sure the node has a snapshot. False if it is unknown."""
        mesh, name = key
        self._connected.setdefault(mesh, set()).add(name)
        async with self._lock:
            view = await self._view(mesh)
            if view is None:
                return False
            dataplane = await self._dataplane(mesh, name)
            if dataplane is None:
                return False
            self._generate_for(view, dataplane)
        return True

    def node_disconnected(self, key: NodeKey) -> None:
        mesh, name = key
        if not self._lifecycle.is_connected(key):
            names = self._connected.get(mesh)
            if names is not None:
                names.discard(name)

    # -- the loop ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        unsubscribe = self._store.subscribe(self.on_store_change)
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                wake_task = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({wake_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                wake_task.cancel()
                if stop.is_set():
                    break
                await asyncio.sleep(self._debounce)  # coalesce a burst of changes
                self._wake.clear()
                dirty, self._dirty = self._dirty, set()
                for mesh in sorted(dirty):
                    try:
                        await self.reconcile_mesh(mesh)
                    except Exception:
                        self.stats.errors += 1
                        log.exception("reconciling mesh %s failed", mesh)
        finally:
            stop_task.cancel()
            unsubscribe()

    async def reconcile_mesh(self, mesh: str) -> None:
        async with self._lock:
            names = sorted(self._connected.get(mesh, ()))
            if not names:
                return
            view = await self._view(mesh)
            if view is None:
                return
            by_name = {dp.name: dp for dp in view.dataplanes}
            for name in names:
                dataplane = by_name.get(name) or await self._dataplane(mesh, name)
                if dataplane is None:
                    # Gone from the store (left, or deleted): its Envoy keeps its last
                    # config so in-flight requests finish while it drains.
                    continue
                self._generate_for(view, dataplane)

    # -- helpers -----------------------------------------------------------------------
    def _generate_for(self, view: MeshView, dataplane: Dataplane) -> None:
        node_id = f"{dataplane.mesh}.{dataplane.name}"
        started = time.perf_counter()
        try:
            snapshot = Snapshot.build(generate(view, dataplane))
        except Exception:
            self.stats.errors += 1
            log.exception("generating config for %s failed; it keeps its last config", node_id)
            return
        self.stats.generations += 1
        self.stats.last_generation_seconds = time.perf_counter() - started
        self._cache.set_snapshot(node_id, snapshot)
        self.stats.snapshots_set += 1

    async def _view(self, mesh_name: str) -> MeshView | None:
        stored_mesh = await self._store.get(MESH_TYPE, "", mesh_name)
        if stored_mesh is None:
            return None
        mesh = self._parse(stored_mesh)
        assert isinstance(mesh, Mesh)
        dataplanes: list[Dataplane] = []
        live: set[tuple[str, str, str]] = set()
        for stored in await self._store.list(DATAPLANE_TYPE, mesh_name):
            live.add((stored.type, stored.mesh, stored.name))
            dataplane = self._parse(stored)
            if not isinstance(dataplane, Dataplane):
                continue
            if self._lifecycle.is_pending((mesh_name, dataplane.name)):
                continue  # its listeners are not up yet: not an endpoint for anyone
            dataplanes.append(dataplane)
        for key in [k for k in self._parsed if k[0] == DATAPLANE_TYPE and k[1] == mesh_name]:
            if key not in live:
                del self._parsed[key]
        return build_mesh_view(mesh, dataplanes)

    async def _dataplane(self, mesh: str, name: str) -> Dataplane | None:
        stored = await self._store.get(DATAPLANE_TYPE, mesh, name)
        if stored is None:
            return None
        parsed = self._parse(stored)
        return parsed if isinstance(parsed, Dataplane) else None

    def _parse(self, stored: StoredResource) -> Dataplane | Mesh | None:
        key = (stored.type, stored.mesh, stored.name)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == stored.version:
            return cached[1]
        try:
            model: Dataplane | Mesh = (
                parse_mesh(stored.spec)
                if stored.type == MESH_TYPE
                else parse_dataplane(stored.spec)
            )
        except ValidationError as exc:
            log.error("stored %s %s/%s is invalid: %s", stored.type, stored.mesh, stored.name, exc)
            return None
        self._parsed[key] = (stored.version, model)
        return model
