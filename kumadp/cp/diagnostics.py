"""The CP's diagnostics endpoint (5680): /ready, /healthy, /metrics (Prometheus text)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def create_diagnostics_app(
    is_ready: Callable[[], bool], metrics: Callable[[], str] | None = None
) -> Starlette:
    async def ready(_: Request) -> PlainTextResponse:
        if is_ready():
            return PlainTextResponse("READY\n")
        return PlainTextResponse("NOT_READY\n", status_code=503)

    async def healthy(_: Request) -> PlainTextResponse:
        return PlainTextResponse("OK\n")

    routes = [Route("/ready", ready), Route("/healthy", healthy)]
    if metrics is not None:
        render = metrics

        async def prometheus(_: Request) -> Response:
            return Response(render(), media_type="text/plain; version=0.0.4; charset=utf-8")

        routes.append(Route("/metrics", prometheus))
    return Starlette(routes=routes)
