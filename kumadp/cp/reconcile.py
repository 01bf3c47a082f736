"""Store changes -> mesh state -> generated resources -> snapshots; and agent state -> hub.

Driven by store change events, debounced per mesh; never by a polling tick. Generation is
pure (``kumadp.cp.generate``); this module decides *which* nodes to regenerate, gathers what
generation needs (policies, VIPs, mTLS) once per mesh, and keeps parsed resources cached by
store version so a change costs one parse, not one per dataplane.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

from kumadp.cp.agent_hub import BIND_OUTBOUNDS, AgentHub
from kumadp.cp.ca import CA, MeshCAs
from kumadp.cp.generate import generate
from kumadp.cp.generate.context import MtlsContext, mtls_context_for
from kumadp.cp.generate.view import MeshView, build_mesh_view
from kumadp.cp.lifecycle import DataplaneLifecycle, NodeKey
from kumadp.cp.nametable import build_name_table
from kumadp.cp.store.base import ChangeEvent, Store, StoredResource
from kumadp.cp.vips import VipAllocator, VipMap, VipPoolExhaustedError
from kumadp.resources import ValidationError, parse_resource
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE, Dataplane, Mesh
from kumadp.wire import agent_pb2
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.snapshot import Snapshot

log = logging.getLogger(__name__)

POLICY_TYPES = ("MeshTrafficPermission",)
_WATCHED_TYPES = {MESH_TYPE, DATAPLANE_TYPE, *POLICY_TYPES}


@dataclass
class ReconcileStats:
    generations: int = 0
    snapshots_set: int = 0
    last_generation_seconds: float = 0.0
    errors: int = 0


@dataclass(frozen=True)
class NodeOptions:
    features: frozenset[str] = frozenset()

    @property
    def bind_outbounds(self) -> bool:
        return BIND_OUTBOUNDS in self.features


@dataclass
class MeshState:
    mesh: Mesh
    view: MeshView
    all_dataplanes: dict[str, Dataplane]  # incl. pending ones
    vips: VipMap | None
    mtls: MtlsContext | None
    ca: CA | None
    tables: tuple[agent_pb2.NameTable, ...] | None = None  # built on first publish


class Reconciler:
    name = "xds-reconciler"

    def __init__(
        self,
        store: Store,
        cache: SnapshotCache,
        lifecycle: DataplaneLifecycle,
        *,
        vips: VipAllocator | None = None,
        cas: MeshCAs | None = None,
        hub: AgentHub | None = None,
        debounce: float = 0.01,
    ) -> None:
        self._store = store
        self._cache = cache
        self._lifecycle = lifecycle
        self._vips = vips
        self._cas = cas
        self._hub = hub
        self._debounce = debounce
        self._connected: dict[str, set[str]] = {}  # mesh -> names with an open stream
        self._options: dict[NodeKey, NodeOptions] = {}
        self._dirty: set[str] = set()
        self._deleted_meshes: set[str] = set()
        # Mesh state cached between changes, so that N dataplanes connecting at once (a CP
        # restart) cost N generations, not N rebuilds of the whole mesh (O(N^2)).
        self._states: dict[str, MeshState] = {}
        self._wake = asyncio.Event()
        self._parsed: dict[tuple[str, str, str], tuple[int, object]] = {}
        self._lock = asyncio.Lock()
        self.stats = ReconcileStats()

    # -- inputs ------------------------------------------------------------------------
    def on_store_change(self, event: ChangeEvent) -> None:
        if event.type == MESH_TYPE:
            if event.op == "delete":
                self._deleted_meshes.add(event.name)
            self.mark_dirty(event.name)
        elif event.type in _WATCHED_TYPES:
            self.mark_dirty(event.mesh)

    def mark_dirty(self, mesh: str) -> None:
        self._states.pop(mesh, None)  # the cached view is stale from now on
        self._dirty.add(mesh)
        self._wake.set()

    async def node_connected(self, key: NodeKey, features: frozenset[str] = frozenset()) -> bool:
        """A stream opened: make sure the node has a snapshot. False if it is unknown."""
        mesh, name = key
        self._connected.setdefault(mesh, set()).add(name)
        self._options[key] = NodeOptions(features)
        async with self._lock:
            state = await self._cached_state(mesh)
            if state is None:
                return False
            dataplane = state.all_dataplanes.get(name)
            if dataplane is None:
                return False
            self._generate_for(state, dataplane)
            self._publish(state, only=name)
        return True

    def node_disconnected(self, key: NodeKey) -> None:
        mesh, name = key
        if not self._lifecycle.is_connected(key):
            names = self._connected.get(mesh)
            if names is not None:
                names.discard(name)
            self._options.pop(key, None)

    async def refresh_agent_state(self, mesh: str) -> None:
        """Make sure the hub has the mesh's state (a Watch stream is starting)."""
        async with self._lock:
            state = await self._cached_state(mesh)
            if state is not None:
                self._publish(state)

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
                await self._forget_deleted_meshes()
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
            self._states.pop(mesh, None)
            state = await self._cached_state(mesh)
            if state is None:
                return
            for name in sorted(self._connected.get(mesh, ())):
                dataplane = state.all_dataplanes.get(name)
                if dataplane is None:
                    # Gone from the store (left, or deleted): its Envoy keeps its last
                    # config so in-flight requests finish while it drains.
                    continue
                self._generate_for(state, dataplane)
            self._publish(state)

    async def _forget_deleted_meshes(self) -> None:
        """A deleted mesh takes its CAs and VIPs with it (a re-created one starts afresh)."""
        deleted, self._deleted_meshes = self._deleted_meshes, set()
        for mesh in deleted:
            if await self._store.get(MESH_TYPE, "", mesh) is not None:
                continue  # re-created meanwhile
            try:
                if self._cas is not None:
                    await self._cas.delete_mesh(mesh)
                if self._vips is not None:
                    await self._vips.forget(mesh)
            except Exception:
                log.exception("cleaning up after mesh %s failed", mesh)

    # -- helpers -----------------------------------------------------------------------
    def _generate_for(self, state: MeshState, dataplane: Dataplane) -> None:
        node_id = f"{dataplane.mesh}.{dataplane.name}"
        options = self._options.get((dataplane.mesh, dataplane.name), NodeOptions())
        vips = (
            state.vips.addresses(loopback=options.bind_outbounds) if state.vips is not None else {}
        )
        started = time.perf_counter()
        try:
            snapshot = Snapshot.build(
                generate(
                    state.view,
                    dataplane,
                    mtls=state.mtls,
                    vips=vips,
                    bind_outbounds=options.bind_outbounds,
                    transparent_proxy=dataplane.networking.transparent_proxying is not None,
                )
            )
        except Exception:
            self.stats.errors += 1
            log.exception("generating config for %s failed; it keeps its last config", node_id)
            return
        self.stats.generations += 1
        self.stats.last_generation_seconds = time.perf_counter() - started
        if self._cache.set_snapshot(node_id, snapshot) is not False:
            self.stats.snapshots_set += 1

    def _publish(self, state: MeshState, only: str | None = None) -> None:
        """Name tables and identities to the agents' Watch streams (the hub drops repeats).
        ``only``: just that dataplane's identity (a stream opened; the rest is unchanged)."""
        if self._hub is None:
            return
        mesh = state.mesh.name
        if state.vips is not None:
            if state.tables is None:
                state.tables = tuple(
                    build_name_table(state.vips, loopback=loopback) for loopback in (False, True)
                )
            for loopback, table in zip((False, True), state.tables, strict=True):
                self._hub.publish_names(mesh, loopback, table)
        for dataplane in state.all_dataplanes.values():
            if only is None or dataplane.name == only:
                self._hub.publish_identity(mesh, dataplane.name, _identity(state, dataplane))

    async def _cached_state(self, mesh: str) -> MeshState | None:
        state = self._states.get(mesh)
        if state is None:
            state = await self._mesh_state(mesh)
            if state is not None:
                self._states[mesh] = state
        return state

    async def _mesh_state(self, mesh_name: str) -> MeshState | None:
        stored_mesh = await self._store.get(MESH_TYPE, "", mesh_name)
        if stored_mesh is None:
            return None
        mesh = self._parse(stored_mesh)
        if not isinstance(mesh, Mesh):
            return None
        all_dataplanes: dict[str, Dataplane] = {}
        serving: list[Dataplane] = []
        live: set[tuple[str, str, str]] = set()
        for stored in await self._store.list(DATAPLANE_TYPE, mesh_name):
            live.add((stored.type, stored.mesh, stored.name))
            dataplane = self._parse(stored)
            if not isinstance(dataplane, Dataplane):
                continue
            all_dataplanes[dataplane.name] = dataplane
            if not self._lifecycle.is_pending((mesh_name, dataplane.name)):
                serving.append(dataplane)  # pending: its listeners are not up yet
        policies: list[object] = []
        for policy_type in POLICY_TYPES:
            for stored in await self._store.list(policy_type, mesh_name):
                live.add((stored.type, stored.mesh, stored.name))
                policy = self._parse(stored)
                if policy is not None:
                    policies.append(policy)
        for key in [k for k in self._parsed if k[1] == mesh_name and k[0] != MESH_TYPE]:
            if key not in live:
                del self._parsed[key]
        view = build_mesh_view(mesh, serving, policies)  # type: ignore[arg-type]
        vips = None
        if self._vips is not None:
            services = {s for dp in all_dataplanes.values() for s in dp.services}
            try:
                vips = await self._vips.sync(mesh_name, services)
            except VipPoolExhaustedError as exc:
                log.error("%s; the services without an address get no name", exc)
                vips = exc.partial
        mtls = mtls_context_for(mesh)
        ca = await self._cas.ca_for(mesh) if (self._cas is not None and mtls) else None
        return MeshState(mesh, view, all_dataplanes, vips, mtls, ca)

    def _parse(self, stored: StoredResource) -> object | None:
        key = (stored.type, stored.mesh, stored.name)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == stored.version:
            return cached[1]
        try:
            model = parse_resource(stored.spec)
        except ValidationError as exc:
            log.error("stored %s %s/%s is invalid: %s", stored.type, stored.mesh, stored.name, exc)
            return None
        self._parsed[key] = (stored.version, model)
        return model


def _identity(state: MeshState, dataplane: Dataplane) -> agent_pb2.MeshIdentity:
    services = sorted(dataplane.services)
    enabled = state.mtls is not None and state.ca is not None
    backend = state.ca.backend if (enabled and state.ca) else ""
    fingerprint = state.ca.fingerprint if (enabled and state.ca) else ""
    tags = sorted({f"{k}={v}" for i in dataplane.networking.inbound for k, v in i.tags.items()})
    digest = hashlib.sha256(
        "|".join([str(enabled), backend, fingerprint, *services, *tags]).encode()
    ).hexdigest()[:16]
    return agent_pb2.MeshIdentity(
        mtls_enabled=enabled,
        backend=backend,
        ca_fingerprint=fingerprint,
        services=services,
        generation=digest,
    )
