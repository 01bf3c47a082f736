"""Multi-zone routes of the HTTP API.

- ``GET /zones+insights`` and ``GET /zones+insights/{name}``: Kuma's ZoneOverview,
  ``{"type": "ZoneOverview", "name", "creationTime", "modificationTime",
  "zone": {"enabled"}, "zoneInsight": {"subscriptions": [...]}}`` (lists: ``{total, items,
  next}``). ``/zones`` and ``/zones/{name}`` are the registry's resource routes.
- ``token_refusals``: a zone CP's answer to token minting and revocation (the global CP
  does both; the zone only verifies with the public keys it syncs).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.bodies import format_time
from kumadp.cp.api.errors import ApiError
from kumadp.cp.api.resources import page
from kumadp.cp.store.base import Store, StoredResource
from kumadp.resources.zones import ZONE_INSIGHT_TYPE, ZONE_TYPE

OVERVIEW_TYPE = "ZoneOverview"


def zone_overview(zone: StoredResource, insight: StoredResource | None) -> dict[str, Any]:
    enabled = zone.spec.get("enabled", True)
    subscriptions = insight.spec.get("subscriptions", []) if insight is not None else []
    out: dict[str, Any] = {
        "type": OVERVIEW_TYPE,
        "name": zone.name,
        "creationTime": format_time(zone.creation_time),
        "modificationTime": format_time(zone.modification_time),
    }
    if zone.spec.get("labels"):
        out["labels"] = zone.spec["labels"]
    out["zone"] = {"enabled": enabled is not False}
    out["zoneInsight"] = {"subscriptions": subscriptions}
    return out


def zone_routes(store: Store) -> list[BaseRoute]:
    async def list_zones(request: Request) -> Response:
        insights = {r.name: r for r in await store.list(ZONE_INSIGHT_TYPE, "")}
        items = [(z, insights.get(z.name)) for z in await store.list(ZONE_TYPE, "")]
        return JSONResponse(page(request, items, lambda item: zone_overview(*item)))

    async def get_zone(request: Request) -> Response:
        name = str(request.path_params["name"])
        zone = await store.get(ZONE_TYPE, "", name)
        if zone is None:
            raise ApiError.not_found(f'Zone "{name}" not found')
        return JSONResponse(zone_overview(zone, await store.get(ZONE_INSIGHT_TYPE, "", name)))

    return [
        Route("/zones+insights", list_zones, methods=["GET"]),
        Route("/zones+insights/{name}", get_zone, methods=["GET"]),
    ]


def token_refusals(message: str) -> list[BaseRoute]:
    """Routes that answer every token write with a 400 and ``message``; listed before the
    token routes, they take their place."""

    async def refuse(request: Request) -> Response:
        raise ApiError(400, "Bad Request", message)

    return [
        Route("/tokens/dataplane", refuse, methods=["POST"]),
        Route("/tokens/dataplane/revoke", refuse, methods=["POST"]),
    ]


__all__ = ["OVERVIEW_TYPE", "token_refusals", "zone_overview", "zone_routes"]
