"""The global CP's zone administration routes:

- ``DELETE /zones/{name}``: refused while the zone's CP is connected (Kuma's message, a
  validation error on ``zone``); afterwards it removes the zone and what it sent
  (``kumadp.cp.zone_lifecycle``). Listed before the resource routes, it takes their place
  for DELETE; GET and PUT (``enabled: false`` disables a zone) stay theirs.
- ``GET /zones/{name}/ca``: the zone's intermediate CAs (serials, validity, revoked or not;
  never a key), and whether it is refused new ones;
- ``POST /zones/{name}/ca/revoke`` ``{"mesh": "m"}`` (optional: every mesh by default):
  revoke its intermediates, refuse it new ones; ``POST /zones/{name}/ca/allow``: lift that.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.authn import identity_of
from kumadp.cp.api.bodies import read_json_object
from kumadp.cp.api.errors import ApiError
from kumadp.cp.store.base import Store
from kumadp.cp.zone_cas import ZoneCAs
from kumadp.cp.zone_lifecycle import IsConnected, ZoneStillConnected, delete_zone
from kumadp.resources.zones import ZONE_TYPE

log = logging.getLogger(__name__)


def zone_admin_routes(store: Store, connected: IsConnected, cas: ZoneCAs) -> list[BaseRoute]:
    async def delete(request: Request) -> Response:
        name = str(request.path_params["name"])
        try:
            removed = await delete_zone(store, name, connected=connected)
        except ZoneStillConnected as exc:
            raise ApiError.invalid_field(exc.field, str(exc)) from None
        if removed is None:
            raise ApiError.not_found(f'Zone "{name}" not found')
        return JSONResponse({})

    async def intermediates(request: Request) -> Response:
        name = str(request.path_params["name"])
        await _require_zone(store, name)
        return JSONResponse(await cas.overview(name))

    async def revoke(request: Request) -> Response:
        name = str(request.path_params["name"])
        await _require_zone(store, name)
        empty = request.headers.get("content-length", "0") == "0"
        body = (
            {}
            if empty and "transfer-encoding" not in request.headers
            else (await read_json_object(request))
        )
        mesh = body.get("mesh")
        if mesh is not None and (not isinstance(mesh, str) or not mesh):
            raise ApiError.invalid_field("mesh", "must be a mesh name")
        revoked = await cas.revoke(name, mesh)
        log.warning(
            "api: intermediate CAs of zone %s revoked (%s) by %s",
            name, mesh or "every mesh", identity_of(request).describe(),
        )  # fmt: skip
        return JSONResponse({"zone": name, "revoked": revoked})

    async def allow(request: Request) -> Response:
        name = str(request.path_params["name"])
        await _require_zone(store, name)
        lifted = await cas.allow(name)
        log.info("api: zone %s may get intermediate CAs again (by %s)", name,
                 identity_of(request).describe())  # fmt: skip
        return JSONResponse({"zone": name, "allowed": True, "wasRefused": lifted})

    return [
        Route("/zones/{name}", delete, methods=["DELETE"]),
        Route("/zones/{name}/ca", intermediates, methods=["GET"]),
        Route("/zones/{name}/ca/revoke", revoke, methods=["POST"]),
        Route("/zones/{name}/ca/allow", allow, methods=["POST"]),
    ]


async def _require_zone(store: Store, name: str) -> None:
    if await store.get(ZONE_TYPE, "", name) is None:
        raise ApiError.not_found(f'Zone "{name}" not found')


__all__ = ["zone_admin_routes"]
