"""The global CP's receiver of one zone's zone -> global direction: its Dataplanes,
ZoneIngresses, ZoneEgresses and their insights, stored as copies labelled
``kuma.io/origin: zone`` and ``kuma.io/zone: <zone>``, where the zone is the one the stream
was opened by (its metadata), never what the payload says.

A zone may not speak for another: a dataplane whose inbounds claim another zone in their
``kuma.io/zone`` tag is rejected, so is an ingress or egress whose ``zone`` names another
(one that names none gets its zone's), and a copy never replaces a resource it does not own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kumadp.cp.kds.mapping import Incoming
from kumadp.cp.kds.receiver import Receiver, Rejected
from kumadp.cp.store.base import Store
from kumadp.resources.model import DATAPLANE_TYPE, ZONE_TAG
from kumadp.resources.registry import ResourceType
from kumadp.resources.zone_proxies import ZONE_EGRESS_TYPE, ZONE_INGRESS_TYPE
from kumadp.wire import kds as wire


class GlobalReceiver(Receiver):
    def __init__(self, store: Store, types: Sequence[ResourceType], zone: str) -> None:
        super().__init__(store, types, origin=wire.ORIGIN_ZONE, zone=zone)
        self.zone = zone
        self.peer = f"zone {zone}"

    def check(self, resource_type: ResourceType, incoming: Incoming, doc: dict[str, Any]) -> None:
        if resource_type.name in (ZONE_INGRESS_TYPE, ZONE_EGRESS_TYPE):
            claimed = doc.get("zone")
            if claimed and claimed != self.zone:
                raise Rejected(
                    f'zone: is "{claimed}", but the resource comes from zone {self.zone}'
                )
            doc["zone"] = self.zone  # the copy says whose it is, whatever the zone left out
            return
        if resource_type.name != DATAPLANE_TYPE:
            return
        networking = doc.get("networking")
        inbounds = networking.get("inbound") if isinstance(networking, dict) else None
        for n, inbound in enumerate(inbounds if isinstance(inbounds, list) else []):
            tags = inbound.get("tags") if isinstance(inbound, dict) else None
            claimed = tags.get(ZONE_TAG) if isinstance(tags, dict) else None
            if claimed is not None and claimed != self.zone:
                raise Rejected(
                    f'networking.inbound[{n}].tags["{ZONE_TAG}"]: is "{claimed}", '
                    f"but the resource comes from zone {self.zone}"
                )


__all__ = ["GlobalReceiver"]
