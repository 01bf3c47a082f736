"""The control plane's HTTP API (port 5681): resources, ``POST /bootstrap``, the index and
the web UI (``/gui``)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import kumadp
from kumadp.cp.api.access import Rule, default_rules
from kumadp.cp.api.authn import AccessMiddleware, ApiSecurity
from kumadp.cp.api.bodies import MAX_BODY_BYTES
from kumadp.cp.api.bootstrap_route import BootstrapHandler, bootstrap_endpoint
from kumadp.cp.api.errors import (
    ApiError,
    CatchAllMiddleware,
    api_error_handler,
    http_exception_handler,
    store_error_handler,
)
from kumadp.cp.api.openapi import openapi_route
from kumadp.cp.api.resources import ResourceEndpoints, Validator, WriteGuard
from kumadp.cp.gui import gui_routes
from kumadp.cp.instance import CpInstance
from kumadp.cp.store.base import Store, StoreError
from kumadp.resources.registry import REGISTRY, Registry

log = logging.getLogger(__name__)


def index_document() -> dict[str, str]:
    """What ``GET /`` answers, shaped like Kuma's index (with ``instanceId`` and
    ``clusterId`` when the app knows its ``CpInstance``)."""
    return {
        "hostname": socket.gethostname(),
        "tagline": "kumadp",
        "version": kumadp.__version__,
        "product": "kumadp",
    }


def create_app(
    store: Store,
    bootstrap: BootstrapHandler | None = None,
    *,
    registry: Registry = REGISTRY,
    extra_routes: Sequence[BaseRoute] = (),
    guard: WriteGuard | None = None,
    instance: CpInstance | None = None,
    extra_rules: Sequence[Rule] = (),
    security: ApiSecurity | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    validators: Mapping[str, Validator] | None = None,
) -> Starlette:
    """The API app over ``store``. ``bootstrap`` serves ``POST /bootstrap`` (without it the
    route answers a 404 with a message, which kuma-dp treats as a final error). The resource
    routes are those of ``registry``'s served types. Every request goes through the access
    layer (``authn.AccessMiddleware``): ``security`` says how callers authenticate (default:
    loopback callers are admins, anonymous callers may read), the rules are
    ``access.RULES``, the registry's resource rules and ``extra_rules``; a route without a
    rule is refused. Request bodies are capped at ``max_body_bytes``; ``guard`` says which
    writes the control plane's mode refuses, ``validators`` check parsed resources by type."""
    index = index_document()

    async def get_index(request: Request) -> Response:
        if instance is None:
            return JSONResponse(index)
        ids = {"instanceId": instance.instance_id, "clusterId": await instance.cluster_id()}
        # kumadp adds what the web UI and ctl need to know without /config (admins only)
        mode = {"mode": instance.mode, **({"zone": instance.zone} if instance.zone else {})}
        return JSONResponse({**index, **ids, **mode})

    endpoints = ResourceEndpoints(store, registry, guard, validators)
    routes: list[BaseRoute] = [
        Route("/", get_index, methods=["GET"]),
        Route("/bootstrap", bootstrap_endpoint(bootstrap), methods=["POST"]),
        # before the resource routes: "/meshes/{m}/dataplanes/_overview" is no dataplane
        *extra_routes,
        *endpoints.routes(),
        *gui_routes(registry),  # the web UI at /gui (kumadp.cp.gui)
    ]
    rules = default_rules(registry, extra_rules)
    routes.append(openapi_route(routes, rules, registry))
    missing = rules.missing(routes)
    if missing:
        log.error("API routes without an access rule (refused until they get one): %s", missing)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(CatchAllMiddleware),
            Middleware(
                AccessMiddleware,
                rules=rules,
                security=security or ApiSecurity(),
                routes=routes,
            ),
        ],
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_exception_handler,
            StoreError: store_error_handler,
        },
    )
    app.state.max_body_bytes = max_body_bytes
    app.state.access_rules = rules
    return app


__all__ = ["create_app", "index_document"]
