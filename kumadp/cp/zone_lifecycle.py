"""Deleting a zone from the global CP (Kuma's rules) and what it takes with it.

- While the zone's CP is connected, the delete is refused with Kuma's exact message
  (``STILL_CONNECTED``, a validation error on the field ``zone``): the zone would only
  recreate everything at its next sync.
- Once it is disconnected, the ``Zone`` goes with its ``ZoneInsight`` and every copy the zone
  sent (``kuma.io/origin: zone``, ``kuma.io/zone: <zone>``) of every zone -> global type of
  the registry: its Dataplanes and their insights, its ZoneIngresses and ZoneEgresses (and
  insights) once those types exist. What the global CP passed on to other zones goes from
  them through the ordinary sync (a removal). The zone's intermediate CA records stay until
  they expire (revoke them first if the zone is compromised).

"Connected" is any global CP instance holding a live session for the zone: this one's
``ZoneRegistry``, or another instance's open subscription in the stored ``ZoneInsight``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from kumadp.cp.insights import is_online
from kumadp.cp.store.base import Store
from kumadp.resources.registry import REGISTRY, Registry, Sync
from kumadp.resources.zones import ZONE_INSIGHT_TYPE, ZONE_TYPE
from kumadp.wire import kds as wire

log = logging.getLogger(__name__)

STILL_CONNECTED = "unable to delete Zone, Zone CP is still connected, please shut it down first"

IsConnected = Callable[[str], Awaitable[bool]]


class ZoneStillConnected(Exception):
    """The zone's CP is connected: it may not be deleted now."""

    field = "zone"

    def __init__(self) -> None:
        super().__init__(STILL_CONNECTED)


def zone_copies_of(registry: Registry) -> list[str]:
    """The types a zone sends to the global CP (its copies there belong to the zone)."""
    return [t.name for t in registry.synced(Sync.ZONE_TO_GLOBAL)]


async def delete_zone(
    store: Store, zone: str, *, connected: IsConnected, registry: Registry = REGISTRY
) -> int | None:
    """Delete ``zone`` and what it sent; how many resources went (None: no such Zone).
    Raises ZoneStillConnected."""
    if await connected(zone):
        raise ZoneStillConnected()
    if not await store.delete(ZONE_TYPE, "", zone):
        return None
    removed = 1
    if await store.delete(ZONE_INSIGHT_TYPE, "", zone):
        removed += 1
    for type_name in zone_copies_of(registry):
        for stored in await store.list(type_name):
            labels = stored.spec.get("labels") or {}
            if labels.get(wire.ORIGIN_LABEL) != wire.ORIGIN_ZONE:
                continue
            if labels.get(wire.ZONE_LABEL) != zone:
                continue
            if await store.delete(type_name, stored.mesh, stored.name):
                removed += 1
    log.info("deleted zone %s and %d resource(s) it had sent", zone, removed - 1)
    return removed


async def connected_elsewhere(store: Store, zone: str, live_instances: set[str]) -> bool:
    """Whether another live global CP instance holds an open subscription of ``zone``."""
    insight = await store.get(ZONE_INSIGHT_TYPE, "", zone)
    if insight is None or not is_online(insight.spec):
        return False
    subs = [s for s in insight.spec.get("subscriptions") or () if isinstance(s, dict)]
    open_subs = [s for s in subs if s.get("connectTime") and not s.get("disconnectTime")]
    return any(s.get("globalInstanceId") in live_instances for s in open_subs)


__all__ = [
    "STILL_CONNECTED",
    "IsConnected",
    "ZoneStillConnected",
    "connected_elsewhere",
    "delete_zone",
    "zone_copies_of",
]
