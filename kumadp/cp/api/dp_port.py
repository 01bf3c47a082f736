"""The HTTP side of the DP server port (5678): ``POST /bootstrap``, as Kuma's DP server
serves it to kuma-dp over HTTPS; nothing else (the resources API is on the API port)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kumadp.cp.api.bootstrap_route import BootstrapHandler, bootstrap_endpoint
from kumadp.cp.api.errors import (
    ApiError,
    CatchAllMiddleware,
    api_error_handler,
    error_response,
)


async def _not_here(request: Request, exc: Exception) -> Response:
    """Anything but ``POST /bootstrap``: said plainly, with where to go instead."""
    assert isinstance(exc, HTTPException)
    details = (
        f"the DP server serves POST /bootstrap only, not {request.method} {request.url.path}; "
        "the control plane's API is on its API port (5681 by default)"
    )
    title = "Not Found" if exc.status_code == 404 else "Method Not Allowed"
    return error_response(ApiError(exc.status_code, title, details))


def dp_port_app(bootstrap: BootstrapHandler) -> Starlette:
    return Starlette(
        routes=[Route("/bootstrap", bootstrap_endpoint(bootstrap), methods=["POST"])],
        middleware=[Middleware(CatchAllMiddleware)],
        exception_handlers={ApiError: api_error_handler, HTTPException: _not_here},
    )


__all__ = ["dp_port_app"]
