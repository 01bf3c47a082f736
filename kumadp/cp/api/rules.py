"""``GET /meshes/{mesh}/dataplanes/{name}/_rules``: the policies that apply to one dataplane,
per outbound service and per inbound, with their merged configuration (the document is
``kumadp.cp.generate.policies.inspect``'s, computed from the stored resources).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.errors import ApiError
from kumadp.cp.api.resources import require_mesh
from kumadp.cp.generate.policies.inspect import dataplane_rules
from kumadp.cp.store.base import Store
from kumadp.resources import ValidationError
from kumadp.resources.model import DATAPLANE_TYPE, Dataplane
from kumadp.resources.registry import REGISTRY, Registry

log = logging.getLogger(__name__)


def rules_routes(store: Store, registry: Registry = REGISTRY) -> list[BaseRoute]:
    policy_types = [t for t in registry.policies() if t.parse is not None]

    async def get_rules(request: Request) -> Response:
        mesh, name = str(request.path_params["mesh"]), str(request.path_params["name"])
        await require_mesh(store, mesh)  # Kuma: a mesh that does not exist is a 404 of its own
        stored = await store.get(DATAPLANE_TYPE, mesh, name)
        if stored is None:
            raise ApiError.not_found(f'Dataplane "{name}" in mesh "{mesh}" not found')
        dataplane = registry.parse(stored.spec)
        assert isinstance(dataplane, Dataplane)
        policies: dict[str, list[object]] = {}
        for policy_type in policy_types:
            assert policy_type.parse is not None
            for found in await store.list(policy_type.name, mesh):
                try:
                    policies.setdefault(policy_type.name, []).append(policy_type.parse(found.spec))
                except ValidationError as exc:  # stored by an older version: skip it, say so
                    log.warning("stored %s %s/%s is invalid: %s", found.type, mesh, found.name, exc)
        return JSONResponse(dataplane_rules(dataplane, policies))

    return [Route("/meshes/{mesh}/dataplanes/{name}/_rules", get_rules, methods=["GET"])]


__all__ = ["rules_routes"]
