"""The state of one mesh, as the reconciler's consumers need it: built from the store by
reading only (the VIPs and CAs it includes are written by ``kumadp.cp.provisioners``).

Parsed resources are cached by store version, so a change costs one parse, not one per
dataplane; the policy types are the registry's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kumadp.cp.ca import CA, MeshCAs
from kumadp.cp.generate.context import MtlsContext, mtls_context_for
from kumadp.cp.generate.crosszone import NONE as NO_CROSS_ZONE
from kumadp.cp.generate.crosszone import remote_endpoints
from kumadp.cp.generate.view import MeshView, build_mesh_view
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.store.base import Store, StoredResource
from kumadp.cp.vips import VipAllocator, VipMap
from kumadp.resources import ValidationError
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE, Dataplane, Mesh
from kumadp.resources.registry import (
    DATAPLANE_PENDING_TYPE,
    MESH_CA_TYPE,
    REGISTRY,
    VIRTUAL_IPS_TYPE,
    Registry,
)
from kumadp.resources.zone_proxies import (
    ZONE_EGRESS_TYPE,
    ZONE_INGRESS_TYPE,
    ZoneEgress,
    ZoneIngress,
)
from kumadp.wire import agent_pb2

log = logging.getLogger(__name__)


@dataclass
class MeshState:
    mesh: Mesh
    view: MeshView
    all_dataplanes: dict[str, Dataplane]  # incl. pending ones
    vips: VipMap | None
    mtls: MtlsContext | None
    ca: CA | None
    ca_pending: bool = False  # mTLS is on, its CA is not created yet (the provisioner's job)
    tables: tuple[agent_pb2.NameTable, ...] | None = None  # built on first publish
    cross_zone_reason: str | None = None  # why other zones' services are not reachable


def state_inputs(registry: Registry = REGISTRY) -> frozenset[str]:
    """The store types a mesh state is built from: a change of one makes it stale."""
    return frozenset(
        {
            MESH_TYPE,
            DATAPLANE_TYPE,
            VIRTUAL_IPS_TYPE,
            MESH_CA_TYPE,
            DATAPLANE_PENDING_TYPE,  # several instances: pending dataplanes (not endpoints)
            ZONE_INGRESS_TYPE,  # other zones' services (cross-zone endpoints)
            ZONE_EGRESS_TYPE,  # where they are reached with routing.zoneEgress
            *(t.name for t in registry.policies()),
        }
    )


class MeshStateBuilder:
    """Builds ``MeshState``s from the store; never writes to it."""

    def __init__(
        self,
        store: Store,
        registrations: DataplaneRegistry,
        *,
        vips: VipAllocator | None = None,
        cas: MeshCAs | None = None,
        registry: Registry = REGISTRY,
        ca_from_global: bool = False,
        zone: str | None = None,
    ) -> None:
        """``ca_from_global`` (a zone CP): a mesh with mTLS whose CA (the zone's intermediate,
        signed by the global CP) is not here yet waits for it, as a standalone CP's mesh
        waits for its CA, and the log says so; never plaintext, never a CA made here.
        ``zone`` (a zone CP): its name; the views get the other zones' services."""
        self._store = store
        self.zone = zone
        self.cross_zone_reasons: dict[str, str] = {}  # mesh -> why no cross-zone endpoints
        self._ca_from_global = ca_from_global
        self._waiting_for_ca: set[str] = set()
        self._registrations = registrations
        self._vips = vips
        self._cas = cas
        self._registry = registry
        self._policy_types = tuple(t.name for t in registry.policies())
        self._parsed: dict[tuple[str, str, str], tuple[int, object]] = {}

    async def build(self, mesh_name: str) -> MeshState | None:
        """The state of ``mesh_name``; None when the mesh does not exist (or is invalid)."""
        stored_mesh = await self._store.get(MESH_TYPE, "", mesh_name)
        if stored_mesh is None:
            return None
        mesh = self._parse(stored_mesh)
        if not isinstance(mesh, Mesh):
            return None
        all_dataplanes: dict[str, Dataplane] = {}
        serving: list[Dataplane] = []
        live: set[tuple[str, str, str]] = set()
        pending_names = await self._registrations.pending(mesh_name)
        for stored in await self._store.list(DATAPLANE_TYPE, mesh_name):
            live.add((stored.type, stored.mesh, stored.name))
            dataplane = self._parse(stored)
            if not isinstance(dataplane, Dataplane):
                continue
            all_dataplanes[dataplane.name] = dataplane
            if dataplane.name not in pending_names:
                serving.append(dataplane)  # pending: its listeners are not up yet
        policies: list[object] = []
        for policy_type in self._policy_types:
            for stored in await self._store.list(policy_type, mesh_name):
                live.add((stored.type, stored.mesh, stored.name))
                policy = self._parse(stored)
                if policy is not None:
                    policies.append(policy)
        for key in [k for k in self._parsed if k[1] == mesh_name and k[0] != MESH_TYPE]:
            if key not in live:
                del self._parsed[key]
        vips = await self._vips.get(mesh_name) if self._vips is not None else None
        mtls = mtls_context_for(mesh)
        ca = await self._cas.current(mesh) if (self._cas is not None and mtls) else None
        pending = self._cas is not None and mtls is not None and ca is None
        if pending and self._ca_from_global:
            if mesh_name not in self._waiting_for_ca:
                self._waiting_for_ca.add(mesh_name)
                log.warning(
                    'mesh "%s" has mTLS on: this zone waits for its intermediate CA from the '
                    "global control plane; running dataplanes keep their certificates, new "
                    "ones start serving once it is here (never without mTLS)",
                    mesh_name,
                )
        elif not pending:
            self._waiting_for_ca.discard(mesh_name)
        cross = NO_CROSS_ZONE
        if self.zone is not None:
            ingresses, egresses = await self.zone_proxies()
            cross = remote_endpoints(
                mesh, mtls=mtls is not None, zone=self.zone, ingresses=ingresses, egresses=egresses
            )
            self._note_cross_zone(mesh_name, cross.reason)
        view = build_mesh_view(
            mesh,
            serving,
            policies,  # type: ignore[arg-type]
            remote=cross.endpoints,
            zone=self.zone,
        )
        return MeshState(
            mesh,
            view,
            all_dataplanes,
            vips,
            mtls,
            ca,
            ca_pending=pending,
            cross_zone_reason=cross.reason,
        )

    async def zone_proxies(self) -> tuple[list[ZoneIngress], list[ZoneEgress]]:
        """Every ZoneIngress (this zone's and the copies of the other zones') and every
        ZoneEgress in the store, parsed once per store version."""
        ingresses: list[ZoneIngress] = []
        egresses: list[ZoneEgress] = []
        for kind, out in ((ZONE_INGRESS_TYPE, ingresses), (ZONE_EGRESS_TYPE, egresses)):
            live = set()
            for stored in await self._store.list(kind):
                live.add((stored.type, stored.mesh, stored.name))
                model = self._parse(stored)
                if model is not None:
                    out.append(model)  # type: ignore[arg-type]
            for key in [k for k in self._parsed if k[0] == kind and k not in live]:
                del self._parsed[key]
        return ingresses, egresses

    def _note_cross_zone(self, mesh: str, reason: str | None) -> None:
        if reason is None:
            self.cross_zone_reasons.pop(mesh, None)
        elif self.cross_zone_reasons.get(mesh) != reason:
            self.cross_zone_reasons[mesh] = reason
            log.warning("no cross-zone endpoints: %s", reason)

    def forget(self, mesh_name: str) -> None:
        """Drop the parse cache of a deleted mesh."""
        for key in [
            k
            for k in self._parsed
            if k[1] == mesh_name or (k[0] == MESH_TYPE and k[2] == mesh_name)
        ]:
            del self._parsed[key]

    def _parse(self, stored: StoredResource) -> object | None:
        key = (stored.type, stored.mesh, stored.name)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == stored.version:
            return cached[1]
        try:
            model = self._registry.parse(stored.spec)
        except ValidationError as exc:
            log.error("stored %s %s/%s is invalid: %s", stored.type, stored.mesh, stored.name, exc)
            return None
        self._parsed[key] = (stored.version, model)
        return model


__all__ = ["MeshState", "MeshStateBuilder", "state_inputs"]
