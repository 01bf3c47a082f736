"""CRUD routes for resources, Kuma's layout:

- global kinds (Mesh): ``GET /meshes``, ``GET|PUT|DELETE /meshes/{name}``;
- mesh-scoped kinds (Dataplane): ``GET /meshes/{mesh}/dataplanes``, ``GET /dataplanes`` (every
  mesh), ``GET|PUT|DELETE /meshes/{mesh}/dataplanes/{name}``; MeshTrafficPermission likewise
  under ``meshtrafficpermissions``.

Creating a mesh (``PUT /meshes/{name}``, not an update) also creates its default policies
(``kumadp.cp.defaults``).

The served kinds are the registry's (``kumadp.resources.registry``): a new type is one more
entry there, and its routes appear here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.bodies import (
    check_json_representable,
    read_document,
    render_resource,
    warnings_response,
)
from kumadp.cp.api.errors import ApiError, Cause
from kumadp.cp.defaults import create_default_policies
from kumadp.cp.store.base import ConflictError, Store
from kumadp.resources import ValidationError
from kumadp.resources.errors import collect_warnings, quoted
from kumadp.resources.model import MESH_TYPE, Mesh
from kumadp.resources.policies import MESH_TRAFFIC_PERMISSION_TYPE
from kumadp.resources.registry import REGISTRY, Model, Registry, ResourceType

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


ResourceKind = ResourceType  # how the API serves one type: the registry's entry


Endpoint = Callable[[Request], Awaitable[Response]]
Validator = Callable[[Any], None]


def _query_int(request: Request, key: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    limit = f"{low}-{high}" if high is not None else f">= {low}"
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        message = f"must be an integer {limit}"
        raise ApiError(400, "Bad Request", f"{key}: {message}", [Cause(key, message)])
    return value


def page(
    request: Request, items: Sequence[T], render: Callable[[T], Any] = lambda item: item
) -> dict[str, Any]:
    """Kuma's list body ``{total, items, next}`` for one page given by ``?size=&offset=``."""
    size = _query_int(request, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _query_int(request, "offset", 0, 0, None)
    chunk = items[offset : offset + size]
    next_url = None
    if offset + size < len(items):
        next_url = str(request.url.include_query_params(size=size, offset=offset + size))
    return {"total": len(items), "items": [render(i) for i in chunk], "next": next_url}


async def require_mesh(store: Store, mesh: str) -> None:
    """404 for a list or lookup under a mesh that does not exist (as Kuma answers)."""
    if await store.get(MESH_TYPE, "", mesh) is None:
        raise ApiError.not_found(f'Mesh "{mesh}" not found')


def _describe(kind: ResourceKind, mesh: str, name: str) -> str:
    where = f" in mesh {quoted(mesh)}" if kind.mesh_scoped else ""
    return f"{kind.name} {quoted(name)}{where}"


def _prepare(kind: ResourceKind, body: Any, mesh: str, name: str) -> dict[str, Any]:
    """Check the body's ``type``/``name``/``mesh`` against the URL (filling absent ones) and
    return a copy ready for the parser."""
    if not isinstance(body, dict):
        raise ApiError.bad_request("request body must be an object (a resource document)")
    doc = dict(body)
    expected = {"type": kind.name, "name": name}
    if kind.mesh_scoped:
        expected["mesh"] = mesh
    for key, value in expected.items():
        if key not in doc or doc[key] is None:
            doc[key] = value
        elif doc[key] != value:
            where = "this endpoint" if key == "type" else "the URL"
            raise ApiError.invalid_field(
                key, f"must match {where} ({quoted(value)}), got {quoted(doc[key])}"
            )
    return doc


def _etag(version: int) -> str:
    return f'"{version}"'


def _if_match(request: Request) -> int | None:
    """The version an ``If-Match: "<version>"`` header names (0: must not exist yet)."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        message = 'must be a resource version as the ETag header gives it, e.g. "3"'
        raise ApiError(400, "Bad Request", f"If-Match: {message}", [Cause("If-Match", message)])
    return int(text)


class WriteGuard(Protocol):
    """What a control-plane mode refuses or completes (``kumadp.cp.mode_guards``)."""

    def refusal(self, kind: ResourceKind) -> str | None: ...

    def admit(self, kind: ResourceKind, model: Model) -> Model: ...


class ResourceEndpoints:
    """The request handlers of every served kind of ``registry``, sharing one store."""

    def __init__(
        self,
        store: Store,
        registry: Registry = REGISTRY,
        guard: WriteGuard | None = None,
        validators: Mapping[str, Validator] | None = None,
    ) -> None:
        self.store = store
        self.kinds = tuple(registry.served())
        self.guard = guard
        # extra checks of a parsed resource before it is written, by type (the CP's
        # self-guard for Dataplanes); each raises ValidationError
        self.validators = dict(validators or {})

    def _check_writable(self, kind: ResourceKind) -> None:
        refusal = self.guard.refusal(kind) if self.guard is not None else None
        if refusal is not None:
            raise ApiError(400, "Bad Request", refusal)

    async def _list(self, request: Request, kind: ResourceKind, mesh: str | None) -> Response:
        if mesh:
            await require_mesh(self.store, mesh)
        resources = await self.store.list(kind.name, mesh)
        return JSONResponse(page(request, resources, render_resource))

    async def _get(self, kind: ResourceKind, mesh: str, name: str) -> Response:
        res = await self.store.get(kind.name, mesh, name)
        if res is None:
            raise ApiError.not_found(f"{_describe(kind, mesh, name)} not found")
        return JSONResponse(render_resource(res), headers={"ETag": _etag(res.version)})

    async def _put(self, request: Request, kind: ResourceKind, mesh: str, name: str) -> Response:
        self._check_writable(kind)
        doc = _prepare(kind, await read_document(request), mesh, name)
        assert kind.parse is not None  # served kinds have a parser
        try:
            with collect_warnings() as warnings:
                model = kind.parse(doc)
            if self.guard is not None:
                model = self.guard.admit(kind, model)
            if kind.name in self.validators:
                self.validators[kind.name](model)
        except ValidationError as e:
            causes = [Cause(err.path, err.reason) for err in e.errors]
            raise ApiError(400, "Resource is not valid", str(e), causes) from None
        spec = model.to_dict()
        check_json_representable(spec)
        if kind.mesh_scoped and await self.store.get(MESH_TYPE, "", mesh) is None:
            raise ApiError.invalid_field("mesh", f'mesh "{mesh}" does not exist')
        # Optimistic concurrency: the write applies to the version the client named
        # (If-Match) or, without one, to the version read here; a writer that came in
        # between (another client, another CP instance) makes this one fail with 409
        # instead of being silently overwritten.
        expected = _if_match(request)
        if expected is None:
            current = await self.store.get(kind.name, mesh, name)
            expected = current.version if current is not None else 0
        try:
            stored, created = await self.store.put(
                kind.name, mesh, name, spec, expected_version=expected
            )
        except ConflictError as e:
            raise ApiError(
                409,
                "Conflict",
                f"{_describe(kind, mesh, name)} was changed by another writer meanwhile "
                f"(expected version {expected}, found {e.found}); read it again and retry",
                headers={"ETag": _etag(e.found)} if e.found else None,
            ) from None
        log.info("%s %s", "created" if created else "updated", _describe(kind, mesh, name))
        for warning in warnings:
            log.info("%s: %s", _describe(kind, mesh, name), warning)
        if created and kind.name == MESH_TYPE and self._serves(MESH_TRAFFIC_PERMISSION_TYPE):
            assert isinstance(model, Mesh)
            await create_default_policies(self.store, model)
        return warnings_response(
            {},
            warnings,
            status_code=201 if created else 200,
            headers={"ETag": _etag(stored.version)},
        )

    def _serves(self, type: str) -> bool:
        return any(kind.name == type for kind in self.kinds)

    async def _delete(self, kind: ResourceKind, mesh: str, name: str) -> Response:
        self._check_writable(kind)
        if not await self.store.delete(kind.name, mesh, name):
            raise ApiError.not_found(f"{_describe(kind, mesh, name)} not found")
        log.info("deleted %s", _describe(kind, mesh, name))
        if kind.name == MESH_TYPE:
            # Cascade: the mesh is gone first, so no new resource can be put into it while
            # its resources are being removed.
            for scoped in self.kinds:
                if not scoped.mesh_scoped:
                    continue
                for res in await self.store.list(scoped.name, name):
                    await self.store.delete(scoped.name, name, res.name)
                    log.info("deleted %s with its mesh", _describe(scoped, name, res.name))
        return JSONResponse({})

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for kind in self.kinds:
            routes.extend(self._kind_routes(kind))
        return routes

    def _kind_routes(self, kind: ResourceKind) -> list[BaseRoute]:
        if kind.mesh_scoped:
            collection = f"/meshes/{{mesh}}/{kind.plural}"

            def mesh_of(request: Request) -> str:
                return str(request.path_params["mesh"])

        else:
            collection = f"/{kind.plural}"

            def mesh_of(request: Request) -> str:
                return ""

        async def list_one(request: Request) -> Response:
            return await self._list(request, kind, mesh_of(request))

        async def list_all(request: Request) -> Response:
            return await self._list(request, kind, None)

        async def item(request: Request) -> Response:
            mesh, name = mesh_of(request), str(request.path_params["name"])
            if request.method == "PUT":
                return await self._put(request, kind, mesh, name)
            if request.method == "DELETE":
                return await self._delete(kind, mesh, name)
            return await self._get(kind, mesh, name)

        routes: list[BaseRoute] = [
            Route(collection, list_one, methods=["GET"]),
            Route(f"{collection}/{{name}}", item, methods=["GET", "PUT", "DELETE"]),
        ]
        if kind.mesh_scoped:
            routes.append(Route(f"/{kind.plural}", list_all, methods=["GET"]))
        return routes


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "ResourceEndpoints",
    "ResourceKind",
    "WriteGuard",
    "page",
    "require_mesh",
]
