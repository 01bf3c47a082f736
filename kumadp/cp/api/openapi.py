"""``GET /openapi.json``: an OpenAPI 3 description of the API, generated from the route table.

Every route of the app appears with its methods, path parameters, access rule
(``x-kumadp-access``: public, read, admin) and security requirement. Request bodies come from
the registry (a resource document for each ``PUT``) or from ``BODY_SCHEMAS`` (token routes,
bootstrap); list routes get ``size``/``offset``. Tools such as schemathesis read it to fuzz
every route.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import kumadp
from kumadp.cp.api.access import ADMIN, PUBLIC, AccessRules
from kumadp.resources.registry import Registry
from kumadp.wire.names import PROXY_TYPES

_STRING: dict[str, Any] = {"type": "string"}
# an optional field: an explicit null means absent, as everywhere in the API (and in Kuma)
_OPTIONAL: dict[str, Any] = {"type": "string", "nullable": True}
_VALID_FOR: dict[str, Any] = {**_OPTIONAL, "description": "a duration, e.g. 720h"}
_REVOKE: dict[str, Any] = {
    "type": "object",
    "required": ["jti"],
    "properties": {"jti": {"type": "string", "minLength": 1}},
}
BODY_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/bootstrap"): {
        "type": "object",
        "properties": {
            "mesh": _OPTIONAL,
            "name": _OPTIONAL,
            "proxyType": {"type": "string", "enum": [*PROXY_TYPES, None], "nullable": True},
            "dataplaneToken": _OPTIONAL,
            "dataplaneResource": {**_OPTIONAL, "description": "a Dataplane as JSON text"},
        },
    },
    ("POST", "/tokens/dataplane"): {
        "type": "object",
        "properties": {
            "mesh": _OPTIONAL,
            "name": _OPTIONAL,
            "tags": {
                "type": "object",
                "nullable": True,
                "additionalProperties": {"type": "array", "items": _STRING},
            },
            "validFor": _VALID_FOR,
        },
    },
    ("POST", "/tokens/zone"): {
        "type": "object",
        "required": ["zone"],
        "properties": {
            "zone": _STRING,
            "scope": {
                "type": "array",
                "nullable": True,
                "items": {"type": "string", "enum": ["cp", "ingress", "egress"]},
            },
            "validFor": _VALID_FOR,
        },
    },
    ("POST", "/tokens/user"): {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": _STRING,
            "groups": {"type": "array", "nullable": True, "items": _STRING},
            "validFor": _VALID_FOR,
        },
    },
    ("POST", "/tokens/dataplane/revoke"): _REVOKE,
    ("POST", "/tokens/zone/revoke"): _REVOKE,
    ("POST", "/tokens/user/revoke"): _REVOKE,
}
_PAGING: list[dict[str, Any]] = [  # an empty value means the default
    {
        "name": "size",
        "in": "query",
        "allowEmptyValue": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    {
        "name": "offset",
        "in": "query",
        "allowEmptyValue": True,
        "schema": {"type": "integer", "minimum": 0},
    },
]
_ERROR = {
    "type": "object",
    "required": ["title", "details", "causes"],
    "properties": {
        "title": _STRING,
        "details": _STRING,
        "causes": {
            "type": "array",
            "items": {"type": "object", "properties": {"field": _STRING, "message": _STRING}},
        },
    },
}


_CONVERTOR = re.compile(r"{(\w+):\w+}")


def _operation_id(method: str, path: str) -> str:
    return method.lower() + "_" + (re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "index")


def openapi_document(
    routes: Sequence[BaseRoute], rules: AccessRules, registry: Registry
) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``routes``."""
    bodies = dict(BODY_SCHEMAS)
    lists: set[str] = set()
    for kind in registry.served():
        collection = f"/meshes/{{mesh}}/{kind.plural}" if kind.mesh_scoped else f"/{kind.plural}"
        lists |= {collection, f"/{kind.plural}"}
        properties: dict[str, Any] = {
            "type": {"type": "string", "enum": [kind.name, None], "nullable": True},
            "name": _OPTIONAL,
        }
        if kind.mesh_scoped:
            properties["mesh"] = _OPTIONAL
        bodies[("PUT", f"{collection}/{{name}}")] = {"type": "object", "properties": properties}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _STRING}
            for name in route.param_convertors
        ]
        if route.path in lists or route.path.endswith("+insights"):
            parameters = [*parameters, *_PAGING]
        path = _CONVERTOR.sub(r"{\1}", route.path)  # OpenAPI: "{page}", not "{page:path}"
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                method, route, parameters, rules, bodies.get((method, route.path))
            )
    return {
        "openapi": "3.0.3",
        "info": {"title": "kumadp control plane API", "version": kumadp.__version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"userToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR},
        },
    }


def _operation(
    method: str,
    route: Route,
    parameters: list[dict[str, Any]],
    rules: AccessRules,
    body: dict[str, Any] | None,
) -> dict[str, Any]:
    rule = rules.rule_for(method, route.path)
    access = rule.access.value if rule is not None else "denied"
    doc = (route.endpoint.__doc__ or "").strip().splitlines()
    error = {"description": "error", "content": {"application/json": {"schema": _ERROR_REF}}}
    op: dict[str, Any] = {
        "operationId": _operation_id(method, route.path),
        "summary": doc[0] if doc else f"{method} {route.path}",
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}, "default": error},
        "x-kumadp-access": access,
    }
    if rule is not None and rule.access is ADMIN:
        op["security"] = [{"userToken": []}]
    elif rule is not None and rule.access is not PUBLIC:
        op["security"] = [{"userToken": []}, {}]
    if method in ("PUT", "POST"):
        schema = body if body is not None else {"type": "object"}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return op


_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def openapi_route(routes: list[BaseRoute], rules: AccessRules, registry: Registry) -> Route:
    """``GET /openapi.json`` over ``routes`` (the list the app serves, read at each call)."""
    cached: dict[str, Any] = {}

    async def openapi(request: Request) -> Response:
        """The OpenAPI description of this API."""
        if not cached:
            cached["doc"] = openapi_document(routes, rules, registry)
        return JSONResponse(cached["doc"])

    return Route("/openapi.json", openapi, methods=["GET"])


__all__ = ["BODY_SCHEMAS", "openapi_document", "openapi_route"]
