"""Zone ingress and egress overviews (Kuma's paths), on zone and global control planes:

- ``GET /zoneingresses+insights`` and ``/zoneingresses+insights/{name}``: ZoneIngressOverview
  ``{"type", "name", "creationTime", "modificationTime", ["labels",] "zoneIngress": {zone,
  networking, availableServices}, "zoneIngressInsight": {"subscriptions": [...], "online"}}``;
- ``GET /zoneegressoverviews`` (also ``/zoneegresses+insights``) and ``.../{name}``:
  ZoneEgressOverview, the same with ``zoneEgress`` and ``zoneEgressInsight``.

A zone CP shows its own proxies with their live insight and the other zones' ingresses it
received (no insight of theirs travels: Offline here); the global CP shows every zone's, with
the insights the zones sent. ``/zoneingresses`` and ``/zoneegresses`` themselves are the
registry's resource routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.bodies import format_time
from kumadp.cp.api.errors import ApiError
from kumadp.cp.api.resources import page
from kumadp.cp.insights import InsightStore, is_online
from kumadp.cp.store.base import Store, StoredResource
from kumadp.resources.zone_proxies import (
    ZONE_EGRESS_INSIGHT_TYPE,
    ZONE_EGRESS_TYPE,
    ZONE_INGRESS_INSIGHT_TYPE,
    ZONE_INGRESS_TYPE,
)
from kumadp.wire.names import PROXY_EGRESS, PROXY_INGRESS

_META = ("type", "mesh", "name", "labels")
# proxy type -> (resource type, insight type, overview type, spec key, insight key)
KINDS = {
    PROXY_INGRESS: (
        ZONE_INGRESS_TYPE,
        ZONE_INGRESS_INSIGHT_TYPE,
        "ZoneIngressOverview",
        "zoneIngress",
        "zoneIngressInsight",
    ),
    PROXY_EGRESS: (
        ZONE_EGRESS_TYPE,
        ZONE_EGRESS_INSIGHT_TYPE,
        "ZoneEgressOverview",
        "zoneEgress",
        "zoneEgressInsight",
    ),
}


def zone_proxy_overview(
    proxy_type: str, stored: StoredResource, insight: Mapping[str, Any] | None
) -> dict[str, Any]:
    _, _, overview_type, spec_key, insight_key = KINDS[proxy_type]
    out: dict[str, Any] = {
        "type": overview_type,
        "name": stored.name,
        "creationTime": format_time(stored.creation_time),
        "modificationTime": format_time(stored.modification_time),
    }
    if stored.spec.get("labels"):
        out["labels"] = stored.spec["labels"]
    out[spec_key] = {k: v for k, v in stored.spec.items() if k not in _META}
    found = dict(insight) if insight is not None else {"subscriptions": []}
    found["online"] = is_online(found)
    out[insight_key] = found
    return out


def zone_proxy_routes(store: Store, insights: Mapping[str, InsightStore]) -> list[BaseRoute]:
    """``insights``: this CP's own, by proxy type (a zone CP); the rest are read from the
    store (what the zones sent, on the global CP)."""

    async def insight_of(proxy_type: str, stored: StoredResource) -> dict[str, Any] | None:
        own = insights.get(proxy_type)
        if own is not None and (found := own.get(("", stored.name))) is not None:
            return found
        insight = await store.get(KINDS[proxy_type][1], "", stored.name)
        if insight is None:
            return None
        return {k: v for k, v in insight.spec.items() if k not in _META}

    def listing(proxy_type: str) -> Any:
        async def handler(request: Request) -> Response:
            items = [
                (stored, await insight_of(proxy_type, stored))
                for stored in await store.list(KINDS[proxy_type][0])
            ]
            return JSONResponse(
                page(request, items, lambda item: zone_proxy_overview(proxy_type, *item))
            )

        return handler

    def one(proxy_type: str) -> Any:
        async def handler(request: Request) -> Response:
            name = str(request.path_params["name"])
            stored = await store.get(KINDS[proxy_type][0], "", name)
            if stored is None:
                raise ApiError.not_found(f'{KINDS[proxy_type][0]} "{name}" not found')
            insight = await insight_of(proxy_type, stored)
            return JSONResponse(zone_proxy_overview(proxy_type, stored, insight))

        return handler

    return [
        Route("/zoneingresses+insights", listing(PROXY_INGRESS), methods=["GET"]),
        Route("/zoneingresses+insights/{name}", one(PROXY_INGRESS), methods=["GET"]),
        Route("/zoneegressoverviews", listing(PROXY_EGRESS), methods=["GET"]),
        Route("/zoneegressoverviews/{name}", one(PROXY_EGRESS), methods=["GET"]),
        Route("/zoneegresses+insights", listing(PROXY_EGRESS), methods=["GET"]),
        Route("/zoneegresses+insights/{name}", one(PROXY_EGRESS), methods=["GET"]),
    ]


__all__ = ["KINDS", "zone_proxy_overview", "zone_proxy_routes"]
