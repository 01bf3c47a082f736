"""Kuma's inspect routes of one dataplane:

- ``GET /meshes/{mesh}/dataplanes/{name}/xds`` (``?include=eds`` adds the endpoints): the
  Envoy config dump, as Envoy itself has it;
- ``GET /meshes/{mesh}/dataplanes/{name}/stats`` and ``.../clusters``: Envoy's text pages;
- ``GET /meshes/{mesh}/dataplanes/{name}/_rules``: the policy rules that apply to it, in the
  shape of Kuma's inspect API (``{resource, rules: [{type, fromRules, inboundRules, toRules,
  toResourceRules, warnings}], httpMatches}``), computed from the stored policies.

The first three read the dataplane's Envoy admin API through its agent (``AgentHub``:
the request goes down the agent's ``Watch`` stream), so they work wherever the agent runs;
they are served to admins only (``access.RULES``: a loopback admin, or a remote caller with an
admin token or client certificate).
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.agent_hub import AdminUnavailable
from kumadp.cp.api.errors import ApiError
from kumadp.cp.api.resources import require_mesh
from kumadp.cp.generate.policies.rbac import rules_for
from kumadp.cp.store.base import Store
from kumadp.resources import ValidationError, parse_dataplane
from kumadp.resources.model import DATAPLANE_TYPE, Dataplane, Inbound
from kumadp.resources.policies import MESH_TRAFFIC_PERMISSION_TYPE, MeshTrafficPermission
from kumadp.resources.registry import REGISTRY

_ADMIN_PATHS = {"xds": "/config_dump", "stats": "/stats", "clusters": "/clusters"}


class AdminSource(Protocol):
    """What reads a dataplane's Envoy admin (``kumadp.cp.agent_hub.AgentHub``)."""

    async def request_admin(self, mesh: str, name: str, path: str) -> Any: ...


def _resource_meta(mesh: str, name: str, type_: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"labels": dict(labels), "mesh": mesh, "name": name, "type": type_}


def _inbound(inbound: Inbound) -> dict[str, Any]:
    out: dict[str, Any] = {"port": inbound.port, "tags": dict(inbound.tags)}
    if inbound.name:
        out["name"] = inbound.name
    return out


def traffic_permission_rules(
    dataplane: Dataplane, permissions: list[MeshTrafficPermission]
) -> dict[str, Any]:
    """Kuma's ``_rules`` item of MeshTrafficPermission for ``dataplane``: per inbound, the
    ``from`` items of every permission that selects it, each with its origin."""
    by_name = {p.name: p for p in permissions}
    from_rules = []
    for inbound in dataplane.networking.inbound:
        if not inbound.has_listener:
            continue
        rules = []
        for rule in rules_for(permissions, dataplane, inbound):
            policy = by_name[rule.policy]
            index = next(n for n, item in enumerate(policy.from_) if item.target_ref == rule.source)
            meta = _resource_meta(policy.mesh, policy.name, policy.type, policy.labels)
            rules.append(
                {
                    "from": rule.source.to_dict(),
                    "conf": {"action": rule.action},
                    "origin": [{"resourceMeta": meta, "ruleIndex": index}],
                }
            )
        from_rules.append({"inbound": _inbound(inbound), "rules": rules})
    return {
        "type": MESH_TRAFFIC_PERMISSION_TYPE,
        "fromRules": from_rules,
        "inboundRules": [],
        "toResourceRules": [],
        "toRules": [],
        "warnings": [],
    }


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

    async def get_rules(request: Request) -> Response:
        dataplane = await _dataplane(request)
        rules = []
        stored = await store.list(MESH_TRAFFIC_PERMISSION_TYPE, dataplane.mesh)
        kind = REGISTRY[MESH_TRAFFIC_PERMISSION_TYPE]
        assert kind.parse is not None
        permissions = []
        for item in sorted(stored, key=lambda r: r.name):
            model = kind.parse(item.spec)
            assert isinstance(model, MeshTrafficPermission)
            permissions.append(model)
        if permissions:
            rules.append(traffic_permission_rules(dataplane, permissions))
        meta = _resource_meta(dataplane.mesh, dataplane.name, DATAPLANE_TYPE, dataplane.labels)
        return JSONResponse({"httpMatches": [], "resource": meta, "rules": rules})

    prefix = "/meshes/{mesh}/dataplanes/{name}"
    return [
        Route(f"{prefix}/xds", envoy_admin, methods=["GET"]),
        Route(f"{prefix}/stats", envoy_admin, methods=["GET"]),
        Route(f"{prefix}/clusters", envoy_admin, methods=["GET"]),
        Route(f"{prefix}/_rules", get_rules, methods=["GET"]),
    ]


__all__ = ["AdminSource", "inspect_routes", "traffic_permission_rules"]
