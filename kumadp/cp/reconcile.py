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
from kumadp.resources.zone_proxies import ZONE_EGRESS_TYPE, ZONE_INGRESS_TYPE
from kumadp.wire import kds as kds_wire
from kumadp.wire.names import PROXY_INGRESS
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
        ca_from_global: bool = False,
        zone: str | None = None,
    ) -> None:
        """``zone`` (a zone CP): the views get the other zones' services, and the zone's
        ingresses and egresses are served too."""
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
            ca_from_global=ca_from_global,
            zone=zone,
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
        # The zone's ingresses and egresses with an open stream (name -> proxy type): their
        # config depends on every mesh, regenerated after any mesh or zone proxy changed.
        self._zone_nodes: dict[str, str] = {}
        self._zone_dirty = False

    # -- inputs ------------------------------------------------------------------------
    def on_store_change(self, event: ChangeEvent) -> None:
        if event.is_resync:
            for mesh in {*self._states, *self._connected}:
                self.mark_dirty(mesh)
        elif event.type == MESH_TYPE:
            if event.op == "delete":
                self._builder.forget(event.name)
            self.mark_dirty(event.name)
        elif event.type in (ZONE_INGRESS_TYPE, ZONE_EGRESS_TYPE):
            self._zone_dirty = True
            self._wake.set()
            if _changes_sidecars(event):
                for mesh in {*self._states, *self._connected}:
                    self.mark_dirty(mesh)
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

    def cross_zone_reason(self, mesh: str) -> str | None:
        """Why the mesh's sidecars reach no service of another zone (None: they do, or
        there is none)."""
        return self._builder.cross_zone_reasons.get(mesh)

    async def zone_proxy_connected(self, name: str, proxy_type: str) -> bool:
        """A zone ingress or egress opened a stream: give it its config. False when this
        zone stores no such proxy."""
        self._zone_nodes[name] = proxy_type
        async with self._lock:
            found = await self._publish_zone_proxies(only=name)
        if not found:
            self._zone_nodes.pop(name, None)
        return found

    def zone_proxy_disconnected(self, name: str) -> None:
        self._zone_nodes.pop(name, None)

    async def _publish_zone_proxies(self, only: str | None = None) -> bool:
        zone = self._builder.zone
        if zone is None:
            return False
        meshes = sorted(r.name for r in await self._store.list(MESH_TYPE))
        states = [s for m in meshes if (s := await self._cached_state(m)) is not None]
        ingresses, egresses = await self._builder.zone_proxies()
        found = False
        for name, proxy_type in sorted(self._zone_nodes.items()):
            if only is not None and name != only:
                continue
            candidates = ingresses if proxy_type == PROXY_INGRESS else egresses
            proxy = next((p for p in candidates if p.name == name and p.zone == zone), None)
            if proxy is None:
                continue  # gone from the store: it keeps its last config while it drains
            self._snapshots.publish_zone_proxy(proxy, zone, states, ingresses)
            found = True
        return found

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
                    zone_dirty, self._zone_dirty = self._zone_dirty or bool(dirty), False
                    for mesh in sorted(dirty):
                        try:
                            await self.reconcile_mesh(mesh)
                        except Exception:
                            self.stats.errors += 1
                            log.exception("reconciling mesh %s failed", mesh)
                    if zone_dirty and self._zone_nodes:
                        try:
                            async with self._lock:
                                await self._publish_zone_proxies()
                        except Exception:
                            self.stats.errors += 1
                            log.exception("reconciling the zone ingresses and egresses failed")
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


def _changes_sidecars(event: ChangeEvent) -> bool:
    """Whether a ZoneIngress/ZoneEgress change can change sidecars' config: not an update of
    this zone's own ingress (its availableServices are for the other zones)."""
    if event.type != ZONE_INGRESS_TYPE or event.resource is None:
        return True
    labels = event.resource.spec.get("labels") or {}
    return labels.get(kds_wire.ORIGIN_LABEL) == kds_wire.ORIGIN_GLOBAL


__all__ = ["NodeOptions", "ReconcileStats", "Reconciler"]
