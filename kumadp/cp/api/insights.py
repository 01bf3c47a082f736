"""Insight routes of the HTTP API (Kuma's paths):

- ``GET /meshes/{mesh}/dataplanes+insights`` (also ``/meshes/{mesh}/dataplanes/_overview``)
  and ``GET /dataplanes+insights`` (every mesh): ``{total, items, next}`` of
  DataplaneOverview, ``?size=&offset=`` paging, Kuma's filters: ``?online=true|false``,
  ``?tag=key:value`` (repeatable; an inbound carrying every such key with a value that
  contains the given one, as Kuma's fuzzy match), ``?name=`` (part of the name),
  ``?gateway=false`` (kumadp has no gateways: ``true`` lists none); a mesh that does not
  exist is a 404;
- ``GET /meshes/{mesh}/dataplanes+insights/{name}`` and
  ``GET /meshes/{mesh}/dataplanes/{name}/_overview``: one DataplaneOverview;
- ``GET /meshes/{mesh}/dataplanes/{name}/_config``: the Envoy config the CP generated for it
  (``{"versions": {...}, "cds": [...], "eds": [...], "lds": [...], "rds": [...]}``).

A DataplaneOverview is ``{"type": "DataplaneOverview", "mesh", "name", "creationTime",
"modificationTime", ["labels",] "dataplane": {"networking": ...}, "dataplaneInsight":
{"subscriptions": [...], ["mTLS",] ["agent",] ["lastNack",] "online": bool}}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.bodies import format_time
from kumadp.cp.api.errors import ApiError, Cause
from kumadp.cp.api.resources import page, require_mesh
from kumadp.cp.insights import INSIGHT_TYPE, InsightStore, is_online, parse_time
from kumadp.cp.registration import NodeKey
from kumadp.cp.store.base import Store, StoredResource
from kumadp.resources.model import DATAPLANE_TYPE
from kumadp.xds import types as xds_types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.snapshot import snapshot_to_dict

OVERVIEW_TYPE = "DataplaneOverview"
_META = ("type", "mesh", "name", "labels")


def overview(
    stored: StoredResource, insight: dict[str, Any] | None, now: float | None = None
) -> dict[str, Any]:
    """Kuma's DataplaneOverview of a stored Dataplane and its insight (if any)."""
    spec = stored.spec
    out: dict[str, Any] = {
        "type": OVERVIEW_TYPE,
        "mesh": stored.mesh,
        "name": stored.name,
        "creationTime": format_time(stored.creation_time),
        "modificationTime": format_time(stored.modification_time),
    }
    if spec.get("labels"):
        out["labels"] = spec["labels"]
    out["dataplane"] = {k: v for k, v in spec.items() if k not in _META}
    insight = insight if insight is not None else {"subscriptions": [], "online": False}
    config = (insight.get("agent") or {}).get("config")
    if isinstance(config, dict) and now is not None:
        applied = parse_time(config.get("lastAppliedTime"))
        if applied is not None:
            config["secondsSinceLastApplied"] = round(max(0.0, now - applied.timestamp()), 3)
    out["dataplaneInsight"] = insight
    return out


def _online_filter(request: Request) -> bool | None:
    raw = request.query_params.get("online")
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    message = "must be true or false"
    raise ApiError(400, "Bad Request", f"online: {message}", [Cause("online", message)])


def _tag_filter(request: Request) -> dict[str, str]:
    """``?tag=key:value`` (repeatable) as Kuma reads it: a value without ``:`` is ignored."""
    tags: dict[str, str] = {}
    for raw in request.query_params.getlist("tag"):
        key, sep, value = raw.partition(":")
        if sep:
            tags[key] = value
    return tags


def _matches_tags(spec: dict[str, Any], wanted: dict[str, str]) -> bool:
    """Kuma's fuzzy match: one inbound has every key, each value containing the wanted one."""
    if not wanted:
        return True
    inbounds = (spec.get("networking") or {}).get("inbound") or []
    for inbound in inbounds:
        tags = inbound.get("tags") if isinstance(inbound, dict) else None
        if isinstance(tags, dict) and all(
            isinstance(tags.get(k), str) and v in tags[k] for k, v in wanted.items()
        ):
            return True
    return False


def _gateway_filter(request: Request) -> bool:
    """False when ``?gateway=`` asks for gateways only (kumadp has none)."""
    raw = (request.query_params.get("gateway") or "").lower()
    if raw in ("", "false"):
        return True
    if raw in ("true", "builtin", "delegated"):
        return False
    message = "must be true, false, builtin or delegated"
    raise ApiError(400, "Bad Request", f"gateway: {message}", [Cause("gateway", message)])


async def stored_insights(store: Store, mesh: str | None) -> dict[NodeKey, dict[str, Any]]:
    """The DataplaneInsights in the store, with ``online`` (a global CP's, synced from its
    zones: it has no ADS stream of its own)."""
    out: dict[NodeKey, dict[str, Any]] = {}
    for stored in await store.list(INSIGHT_TYPE, mesh):
        doc = {k: v for k, v in stored.spec.items() if k not in _META}
        doc["online"] = is_online(doc)
        out[(stored.mesh, stored.name)] = doc
    return out


def insight_routes(
    store: Store,
    insights: InsightStore | None,
    cache: SnapshotCache,
    *,
    cross_zone: Callable[[str], str | None] | None = None,
) -> list[BaseRoute]:
    """``insights``: this CP's own (it serves ADS); None: read them from the store.
    ``cross_zone``: why a mesh's dataplanes reach no other zone (a zone CP), shown in each
    insight as ``crossZone: {reachable: false, reason}``."""

    async def lookup(mesh: str | None) -> Callable[[NodeKey], dict[str, Any] | None]:
        found = await insights.views(mesh) if insights is not None else None
        if found is None:
            found = await stored_insights(store, mesh)
        if cross_zone is None:
            return found.get

        def with_cross_zone(key: NodeKey) -> dict[str, Any] | None:
            insight = found.get(key)
            reason = cross_zone(key[0])
            if reason is not None:
                insight = insight or {"subscriptions": [], "online": False}
                insight["crossZone"] = {"reachable": False, "reason": reason}
            return insight

        return with_cross_zone

    async def _list(request: Request, mesh: str | None) -> Response:
        if mesh is not None:
            await require_mesh(store, mesh)
        online = _online_filter(request)
        tags = _tag_filter(request)
        name_part = request.query_params.get("name") or ""
        gateways_too = _gateway_filter(request)
        now = time.time()
        items = []
        get_insight = await lookup(mesh)
        for stored in await store.list(DATAPLANE_TYPE, mesh) if gateways_too else []:
            if name_part not in stored.name or not _matches_tags(stored.spec, tags):
                continue
            insight = get_insight((stored.mesh, stored.name))
            if online is not None and bool(insight and insight["online"]) != online:
                continue
            items.append((stored, insight))
        return JSONResponse(page(request, items, lambda item: overview(*item, now=now)))

    async def list_mesh(request: Request) -> Response:
        return await _list(request, str(request.path_params["mesh"]))

    async def list_all(request: Request) -> Response:
        return await _list(request, None)

    async def get_overview(request: Request) -> Response:
        mesh, name = str(request.path_params["mesh"]), str(request.path_params["name"])
        await require_mesh(store, mesh)
        stored = await store.get(DATAPLANE_TYPE, mesh, name)
        if stored is None:
            raise ApiError.not_found(f'Dataplane "{name}" in mesh "{mesh}" not found')
        insight = (await lookup(mesh))((mesh, name))
        return JSONResponse(overview(stored, insight, now=time.time()))

    async def get_config(request: Request) -> Response:
        mesh, name = str(request.path_params["mesh"]), str(request.path_params["name"])
        snapshot = cache.get_snapshot(f"{mesh}.{name}")
        if snapshot is None:
            raise ApiError.not_found(
                f'no Envoy config generated for Dataplane "{name}" in mesh "{mesh}" '
                "(it has no xDS stream to this control plane)"
            )
        body: dict[str, Any] = {
            "versions": {
                xds_types.SHORT_NAMES.get(url, url): version
                for url, version in sorted(snapshot.versions.items())
            },
            **snapshot_to_dict(snapshot),
        }
        return JSONResponse(body)

    return [
        Route("/meshes/{mesh}/dataplanes+insights", list_mesh, methods=["GET"]),
        Route("/meshes/{mesh}/dataplanes/_overview", list_mesh, methods=["GET"]),
        Route("/dataplanes+insights", list_all, methods=["GET"]),
        Route("/dataplanes/_overview", list_all, methods=["GET"]),
        Route("/meshes/{mesh}/dataplanes+insights/{name}", get_overview, methods=["GET"]),
        Route("/meshes/{mesh}/dataplanes/{name}/_overview", get_overview, methods=["GET"]),
        Route("/meshes/{mesh}/dataplanes/{name}/_config", get_config, methods=["GET"]),
    ]


__all__ = ["OVERVIEW_TYPE", "insight_routes", "overview"]
