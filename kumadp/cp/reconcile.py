"""Store changes -> one mesh state -> its two consumers: xDS snapshots (to the snapshot
cache) and agent state (name tables and identities, to the agent hub).

Driven by the store's change feed, debounced per mesh; never by a polling tick. This module
decides *when* and *which* meshes and nodes to refresh; the state is read from the store
(``kumadp.cp.mesh_state``, which never writes), generation is pure
(``kumadp.cp.snapshots`` calls ``kumadp.cp.generate``), and what agents get is
``kumadp.cp.agent_state``'s.
"""

from __future__ import annotations

import asyncio
import logging

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.agent_state import AgentStatePublisher
from kumadp.cp.ca import MeshCAs
from kumadp.cp.mesh_state import MeshState, MeshStateBuilder, state_inputs
from kumadp.cp.registration import DataplaneRegistry, NodeKey
from kumadp.cp.snapshots import NodeOptions, ReconcileStats, SnapshotPublisher
from kumadp.cp.store.base import ChangeEvent, Store
from kumadp.cp.store.feed import following
from kumadp.cp.vips import VipAllocator
from kumadp.resources.model import MESH_TYPE
from kumadp.resources.registry import REGISTRY, Registry
from kumadp.xds.cache import SnapshotCache

log = logging.getLogger(__name__)


class Reconciler:
    name = "xds-reconciler"

    def __init__(
        self,
        store: Store,
        cache: SnapshotCache,
        registrations: DataplaneRegistry,
        *,
        vips: VipAllocator | None = None,
        cas: MeshCAs | None = None,
        hub: AgentHub | None = None,
        debounce: float = 0.01,
        registry: Registry = REGISTRY,
        serve_without_ca: bool = False,
    ) -> None:
        self._store = store
        self._registrations = registrations
        self._debounce = debounce
        self._inputs = state_inputs(registry)
        self._builder = MeshStateBuilder(
            store,
            registrations,
            vips=vips,
            cas=cas,
            registry=registry,
            serve_without_ca=serve_without_ca,
        )
        self.stats = ReconcileStats()
        self._snapshots = SnapshotPublisher(cache, self.stats)
        self._agents = AgentStatePublisher(hub) if hub is not None else None
        self._connected: dict[str, set[str]] = {}  # mesh -> names with an open stream
        self._options: dict[NodeKey, NodeOptions] = {}
        self._dirty: set[str] = set()
        # Mesh state cached between changes, so that N dataplanes connecting at once (a CP
        # restart) cost N generations, not N rebuilds of the whole mesh (O(N^2)).
        self._states: dict[str, MeshState] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    # -- inputs ------------------------------------------------------------------------
    def on_store_change(self, event: ChangeEvent) -> None:
        if event.is_resync:
            for mesh in {*self._states, *self._connected}:
                self.mark_dirty(mesh)
        elif event.type == MESH_TYPE:
            if event.op == "delete":
                self._builder.forget(event.name)
            self.mark_dirty(event.name)
        elif event.type in self._inputs:
            self.mark_dirty(event.mesh)

    def mark_dirty(self, mesh: str) -> None:
        self._states.pop(mesh, None)  # the cached view is stale from now on
        self._dirty.add(mesh)
        self._wake.set()

    async def node_connected(self, key: NodeKey, features: frozenset[str] = frozenset()) -> bool:
        """A stream opened: make sure the node has a snapshot. False if it is unknown."""
        mesh, name = key
        self._connected.setdefault(mesh, set()).add(name)
        options = self._options[key] = NodeOptions(features)
        async with self._lock:
            state = await self._cached_state(mesh)
            if state is None or name not in state.all_dataplanes:
                # Stored so recently that its change event is still on the way: read again.
                self._states.pop(mesh, None)
                state = await self._cached_state(mesh)
            if state is None:
                return False
            dataplane = state.all_dataplanes.get(name)
            if dataplane is None:
                return False
            self._snapshots.publish_node(state, dataplane, options)
            if self._agents is not None:
                self._agents.publish(state, only=name)
        return True

    def node_disconnected(self, key: NodeKey) -> None:
        mesh, name = key
        if not self._registrations.is_connected(key):
            names = self._connected.get(mesh)
            if names is not None:
                names.discard(name)
            self._options.pop(key, None)

    async def refresh_agent_state(self, mesh: str) -> None:
        """Make sure the hub has the mesh's state (a Watch stream is starting)."""
        async with self._lock:
            state = await self._cached_state(mesh)
            if state is not None and self._agents is not None:
                self._agents.publish(state)

    # -- the loop ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        async with following(self._store, self.on_store_change, self._inputs):
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

    async def reconcile_mesh(self, mesh: str) -> None:
        """Rebuild the mesh's state and hand it to both consumers."""
        async with self._lock:
            self._states.pop(mesh, None)
            state = await self._cached_state(mesh)
            if state is None:
                return
            nodes = [
                (name, self._options.get((mesh, name), NodeOptions()))
                for name in sorted(self._connected.get(mesh, ()))
            ]
            self._snapshots.publish_mesh(state, nodes)
            if self._agents is not None:
                self._agents.publish(state)

    async def _cached_state(self, mesh: str) -> MeshState | None:
        state = self._states.get(mesh)
        if state is None:
            state = await self._builder.build(mesh)
            if state is not None:
                self._states[mesh] = state
        return state


__all__ = ["NodeOptions", "ReconcileStats", "Reconciler"]
