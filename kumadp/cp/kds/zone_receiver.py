"""The zone CP's receiver of the global -> zone direction: Mesh, policies, the public token
signing keys and the revocation list, stored as copies labelled ``kuma.io/origin: global``.

Everything of these types belongs to the global CP: a local resource of the same name (a
``default`` mesh left from a standalone run) is replaced by the global CP's copy. A mesh
deleted upstream takes every resource of the mesh in this zone with it, as deleting a mesh
through the API does.

The other zones' ingresses (the registry's ``relayed`` types) come the same way, but they
belong to their zones: such a copy never replaces a resource of this zone, and one that
claims this zone is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kumadp.cp.kds.mapping import Incoming
from kumadp.cp.kds.receiver import Receiver, Rejected
from kumadp.cp.store.base import Store, StoredResource
from kumadp.resources.model import MESH_TYPE
from kumadp.resources.registry import REGISTRY, Registry, ResourceType, Sync
from kumadp.wire import kds as wire

log = logging.getLogger(__name__)


class ZoneReceiver(Receiver):
    peer = "the global control plane"

    def __init__(
        self,
        store: Store,
        types: Sequence[ResourceType],
        *,
        registry: Registry = REGISTRY,
        zone: str | None = None,
    ) -> None:
        super().__init__(store, types, origin=wire.ORIGIN_GLOBAL, zone=None)
        self.local_zone = zone
        self._cascade = [t.name for t in registry if t.mesh_scoped and t.sync is not Sync.INTERNAL]

    def check(self, resource_type: ResourceType, incoming: Incoming, doc: dict[str, Any]) -> None:
        if resource_type.relayed and self.local_zone and doc.get("zone") == self.local_zone:
            raise Rejected(f"zone: is this zone ({self.local_zone}): it comes from this zone")

    def take_over(self, resource_type: ResourceType, current: StoredResource) -> None:
        if resource_type.relayed:
            raise Rejected(
                f'a {resource_type.name} named "{current.name}" of this zone exists: '
                "another zone's copy never replaces it"
            )
        log.info(
            "KDS: the local %s %s is replaced by the global control plane's",
            resource_type.name,
            current.name,
        )

    async def deleted(self, resource_type: ResourceType, mesh: str, name: str) -> None:
        if resource_type.name != MESH_TYPE:
            return
        for type_name in self._cascade:
            for stored in await self._store.list(type_name, name):
                await self._store.delete(type_name, name, stored.name)
                log.info("KDS: %s %s/%s deleted with its mesh", type_name, name, stored.name)


__all__ = ["ZoneReceiver"]
