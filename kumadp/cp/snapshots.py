"""One consumer of a mesh state: the xDS snapshots of its connected dataplanes, generated
(``kumadp.cp.generate``, pure) and set in the snapshot cache. Identical content gives
identical versions, so an unchanged Envoy gets nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kumadp.cp.agent_hub import BIND_OUTBOUNDS
from kumadp.cp.generate import ZoneProxyContext, generate, generate_zone_proxy
from kumadp.cp.mesh_state import MeshState
from kumadp.resources.model import Dataplane
from kumadp.resources.zone_proxies import ZoneIngress, ZoneProxy
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.snapshot import Snapshot

log = logging.getLogger(__name__)


@dataclass
class ReconcileStats:
    generations: int = 0
    snapshots_set: int = 0
    last_generation_seconds: float = 0.0
    errors: int = 0


@dataclass(frozen=True)
class NodeOptions:
    """What a dataplane's Envoy announced (node metadata) that changes its config."""

    features: frozenset[str] = frozenset()

    @property
    def bind_outbounds(self) -> bool:
        return BIND_OUTBOUNDS in self.features


class SnapshotPublisher:
    def __init__(self, cache: SnapshotCache, stats: ReconcileStats | None = None) -> None:
        self._cache = cache
        self.stats = stats if stats is not None else ReconcileStats()

    def publish_mesh(self, state: MeshState, nodes: Iterable[tuple[str, NodeOptions]]) -> None:
        """Regenerate every connected dataplane (``nodes``: name and options) of the mesh."""
        for name, options in nodes:
            dataplane = state.all_dataplanes.get(name)
            if dataplane is None:
                # Gone from the store (left, or deleted): its Envoy keeps its last config
                # so in-flight requests finish while it drains.
                continue
            self.publish_node(state, dataplane, options)

    def publish_node(self, state: MeshState, dataplane: Dataplane, options: NodeOptions) -> None:
        node_id = f"{dataplane.mesh}.{dataplane.name}"
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
        self._set(node_id, snapshot, started)

    def publish_zone_proxy(
        self,
        proxy: ZoneProxy,
        zone: str,
        states: Sequence[MeshState],
        ingresses: Sequence[ZoneIngress],
    ) -> None:
        """A zone ingress or egress (node ``.<name>``): its config from every mesh's state
        and every zone's ingresses."""
        node_id = f".{proxy.name}"
        ctx = ZoneProxyContext(
            proxy=proxy,
            zone=zone,
            views=tuple(s.view for s in states),
            mtls_meshes=frozenset(s.mesh.name for s in states if s.mtls is not None),
            ingresses=tuple(ingresses),
        )
        started = time.perf_counter()
        try:
            snapshot = Snapshot.build(generate_zone_proxy(ctx))
        except Exception:
            self.stats.errors += 1
            log.exception("generating config for %s failed; it keeps its last config", node_id)
            return
        self._set(node_id, snapshot, started)

    def _set(self, node_id: str, snapshot: Snapshot, started: float) -> None:
        self.stats.generations += 1
        self.stats.last_generation_seconds = time.perf_counter() - started
        if self._cache.set_snapshot(node_id, snapshot) is not False:
            self.stats.snapshots_set += 1


__all__ = ["NodeOptions", "ReconcileStats", "SnapshotPublisher"]
