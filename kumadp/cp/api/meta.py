"""Kuma's API about the API and the control plane itself:

- ``GET /_resources``: every resource type served, with Kuma's descriptor fields;
- ``GET /policies``: the policy types (Kuma's older list, still read by tools);
- ``GET /who-am-i``: the caller as the access layer sees it (a user token's user, a client
  certificate's name, the loopback admin, or anonymous);
- ``GET /config``: the control plane's configuration, under Kuma's key names (admins only,
  ``access.RULES``);
- ``GET /global-insights``: how many resources of each global type there are.

Everything here is read from the registry (``kumadp.resources.registry``) and what the
composition root hands in, so a new type shows up without a change here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.authn import identity_of
from kumadp.cp.api.bodies import format_time
from kumadp.cp.store.base import Store
from kumadp.resources.registry import REGISTRY, Registry, ResourceType, Scope, Sync

_WORD = re.compile(r"[A-Z][a-z0-9]*")
_SHORT_NAMES = {"Mesh": "m"}  # Kuma's; the others are the registry's first alias


def display_names(type_name: str) -> tuple[str, str]:
    """``MeshTrafficPermission`` -> ("Mesh Traffic Permission", "Mesh Traffic Permissions")."""
    singular = " ".join(_WORD.findall(type_name)) or type_name
    plural = singular + ("es" if singular.endswith(("sh", "s", "x")) else "s")
    return singular, plural


def _directions(resource_type: ResourceType) -> tuple[bool, bool]:
    """Whether a policy has ``from`` and ``to`` items (the registry's ``sides``)."""
    return "from" in resource_type.sides, "to" in resource_type.sides


def resource_descriptor(resource_type: ResourceType) -> dict[str, Any]:
    singular, plural = display_names(resource_type.name)
    out: dict[str, Any] = {
        "includeInFederation": resource_type.sync is Sync.GLOBAL_TO_ZONE,
        "name": resource_type.name,
        "path": resource_type.plural,
        "pluralDisplayName": plural,
    }
    if resource_type.policy:
        has_from, has_to = _directions(resource_type)
        out["policy"] = {
            "hasFromTargetRef": has_from,
            "hasRulesTargetRef": False,
            "hasToTargetRef": has_to,
            "isFromAsRules": False,
            "isTargetRef": True,
        }
    short = _SHORT_NAMES.get(resource_type.name) or next(iter(resource_type.aliases), "")
    out.update(
        {
            "readOnly": False,
            "scope": "Global" if resource_type.scope is Scope.GLOBAL else "Mesh",
            "shortName": short,
            "singularDisplayName": singular,
        }
    )
    return out


def policy_descriptor(resource_type: ResourceType) -> dict[str, Any]:
    singular, plural = display_names(resource_type.name)
    has_from, has_to = _directions(resource_type)
    return {
        "name": resource_type.name,
        "readOnly": False,
        "path": resource_type.plural,
        "singularDisplayName": singular,
        "pluralDisplayName": plural,
        "isExperimental": False,
        "isTargetRefBased": True,
        "isInbound": has_from,
        "isOutbound": has_to,
    }


def meta_routes(
    store: Store, config: Mapping[str, Any], registry: Registry = REGISTRY
) -> list[BaseRoute]:
    """The routes above; ``config`` is the control plane's configuration document."""
    served = sorted(registry.served(), key=lambda t: t.name)

    async def resources(request: Request) -> Response:
        return JSONResponse({"resources": [resource_descriptor(t) for t in served]})

    async def policies(request: Request) -> Response:
        return JSONResponse({"policies": [policy_descriptor(t) for t in served if t.policy]})

    async def who_am_i(request: Request) -> Response:
        """Who the access layer (``authn``) says the caller is."""
        caller = identity_of(request)
        return JSONResponse({"name": caller.name, "groups": list(caller.groups)})

    async def get_config(request: Request) -> Response:  # admins only (``access.RULES``)
        return JSONResponse(dict(config))

    async def global_insights(request: Request) -> Response:
        totals = {}
        for resource_type in registry:
            if resource_type.scope is Scope.GLOBAL and resource_type.served:
                count = len(await store.list(resource_type.name, None))
                totals[resource_type.name] = {"total": count}
        return JSONResponse(
            {
                "type": "GlobalInsights",
                "creationTime": format_time(datetime.now(UTC)),
                "resources": totals,
            }
        )

    return [
        Route("/_resources", resources, methods=["GET"]),
        Route("/policies", policies, methods=["GET"]),
        Route("/who-am-i", who_am_i, methods=["GET"]),
        Route("/config", get_config, methods=["GET"]),
        Route("/global-insights", global_insights, methods=["GET"]),
    ]


__all__ = [
    "display_names",
    "meta_routes",
    "policy_descriptor",
    "resource_descriptor",
]
