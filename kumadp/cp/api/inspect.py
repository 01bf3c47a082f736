"""Kuma's inspect routes of one dataplane:

- ``GET /meshes/{mesh}/dataplanes/{name}/xds`` (``?include=eds`` adds the endpoints): the
  Envoy config dump, as Envoy itself has it;
- ``GET /meshes/{mesh}/dataplanes/{name}/stats`` and ``.../clusters``: Envoy's text pages.

(``_rules``, the policies that apply to it, is ``kumadp.cp.api.rules``.) These read the
dataplane's Envoy admin API through its agent (``AgentHub``: the request goes down the
agent's ``Watch`` stream), so they work wherever the agent runs;
they are served to admins only (``access.RULES``: a loopback admin, or a remote caller with an
admin token or client certificate).
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.agent_hub import AdminUnavailable
from kumadp.cp.api.errors import ApiError
from kumadp.cp.api.resources import require_mesh
from kumadp.cp.store.base import Store
from kumadp.resources import ValidationError, parse_dataplane
from kumadp.resources.model import DATAPLANE_TYPE, Dataplane

_ADMIN_PATHS = {"xds": "/config_dump", "stats": "/stats", "clusters": "/clusters"}


class AdminSource(Protocol):
    """What reads a dataplane's Envoy admin (``kumadp.cp.agent_hub.AgentHub``)."""

    async def request_admin(self, mesh: str, name: str, path: str) -> Any: ...


def inspect_routes(store: Store, admin: AdminSource) -> list[BaseRoute]:
    async def _dataplane(request: Request) -> Dataplane:
        mesh, name = str(request.path_params["mesh"]), str(request.path_params["name"])
        await require_mesh(store, mesh)
        stored = await store.get(DATAPLANE_TYPE, mesh, name)
        if stored is None:
            raise ApiError.not_found(f'Dataplane "{name}" in mesh "{mesh}" not found')
        try:
            return parse_dataplane(stored.spec)
        except ValidationError as exc:  # pragma: no cover - the store holds valid resources
            raise ApiError(500, "Internal error", f"stored dataplane is not valid: {exc}") from exc

    async def envoy_admin(request: Request) -> Response:  # admins only (``access.RULES``)
        what = request.url.path.rsplit("/", 1)[-1]
        dataplane = await _dataplane(request)
        path = _ADMIN_PATHS[what]
        if what == "xds" and request.query_params.get("include") == "eds":
            path += "?include_eds"
        try:
            answer = await admin.request_admin(dataplane.mesh, dataplane.name, path)
        except AdminUnavailable as exc:
            raise ApiError(503, "Service Unavailable", str(exc)) from None
        if answer.error or answer.status != 200:
            reason = answer.error or f"Envoy answered HTTP {answer.status}"
            raise ApiError(502, "Bad Gateway", f"{dataplane.name}: {reason}")
        media = "application/json" if what == "xds" else "text/plain"
        return Response(answer.body, media_type=media)

    prefix = "/meshes/{mesh}/dataplanes/{name}"
    return [
        Route(f"{prefix}/xds", envoy_admin, methods=["GET"]),
        Route(f"{prefix}/stats", envoy_admin, methods=["GET"]),
        Route(f"{prefix}/clusters", envoy_admin, methods=["GET"]),
    ]


__all__ = ["AdminSource", "inspect_routes"]
