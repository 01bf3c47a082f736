"""Which zone-originated resources the global CP passes to which zone (a ``NodeFilter`` of
``StoreSource``).

A resource a zone sent (labelled ``kuma.io/zone: <zone>`` on the global CP) is never sent
back to that zone, and not to any zone while its zone is disabled (``Zone.enabled: false``):
the zone stays connected and keeps syncing up, but the others stop learning about it (what
Kuma does to a disabled zone's ingresses); ``enabled: true`` passes them again. Resources
without the label (meshes, policies, keys) go to every zone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kumadp.cp.store.base import Store
from kumadp.resources.zones import ZONE_TYPE
from kumadp.wire import kds as wire

log = logging.getLogger(__name__)


class DisabledZones:
    watched: tuple[str, ...] = (ZONE_TYPE,)

    def __init__(self, store: Store) -> None:
        self._store = store
        self.disabled: frozenset[str] = frozenset()

    async def reload(self) -> None:
        disabled = frozenset(
            z.name for z in await self._store.list(ZONE_TYPE, "") if z.spec.get("enabled") is False
        )
        if disabled != self.disabled:
            for zone in sorted(disabled - self.disabled):
                log.info(
                    "zone %s disabled: its resources are no longer passed to other zones", zone
                )
            for zone in sorted(self.disabled - disabled):
                log.info("zone %s enabled: its resources are passed to other zones again", zone)
        self.disabled = disabled

    def hides(self, node_id: str, labels: Mapping[str, str]) -> bool:
        zone = labels.get(wire.ZONE_LABEL)
        return zone is not None and (zone == node_id or zone in self.disabled)


__all__ = ["DisabledZones"]
