"""The CP's diagnostics endpoint (5680): /ready, /healthy."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


def create_diagnostics_app(is_ready: Callable[[], bool]) -> Starlette:
    async def ready(_: Request) -> PlainTextResponse:
        if is_ready():
            return PlainTextResponse("READY\n")
        return PlainTextResponse("NOT_READY\n", status_code=503)

    async def healthy(_: Request) -> PlainTextResponse:
        return PlainTextResponse("OK\n")

    return Starlette(routes=[Route("/ready", ready), Route("/healthy", healthy)])
