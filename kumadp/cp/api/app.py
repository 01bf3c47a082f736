"""The control plane's HTTP API (port 5681): resources, ``POST /bootstrap``, the index and
the web UI (``/gui``)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import kumadp
from kumadp.cp.api.bootstrap_route import BootstrapHandler, bootstrap_endpoint
from kumadp.cp.api.errors import (
    ApiError,
    CatchAllMiddleware,
    api_error_handler,
    http_exception_handler,
)
from kumadp.cp.api.resources import ResourceEndpoints
from kumadp.cp.gui import gui_routes
from kumadp.cp.store.base import Store
from kumadp.resources.registry import REGISTRY, Registry

log = logging.getLogger(__name__)


def index_document() -> dict[str, str]:
    """What ``GET /`` answers, shaped like Kuma's index."""
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
) -> Starlette:
    """The API app over ``store``. ``bootstrap`` serves ``POST /bootstrap`` (without it the
    route answers a 404 with a message, which kuma-dp treats as a final error). The resource
    routes are those of ``registry``'s served types."""
    index = index_document()

    async def get_index(request: Request) -> Response:
        return JSONResponse(index)

    endpoints = ResourceEndpoints(store, registry)
    routes: list[BaseRoute] = [
        Route("/", get_index, methods=["GET"]),
        Route("/bootstrap", bootstrap_endpoint(bootstrap), methods=["POST"]),
        *endpoints.routes(),
        *extra_routes,
        *gui_routes(registry),  # the web UI at /gui (kumadp.cp.gui)
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(CatchAllMiddleware)],
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_exception_handler,
        },
    )


__all__ = ["create_app", "index_document"]
