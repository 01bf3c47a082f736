"""Run an ASGI app on uvicorn as a component (start, serve until stop, shut down)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    # Signals are handled once, by the command; uvicorn must not install its own.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    def __init__(self, name: str, app: ASGIApp, host: str, port: int) -> None:
        self.name = name
        self._app = app
        self._host = host
        self._port = port

    async def run(self, stop: asyncio.Event) -> None:
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=self._port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = _Server(config)
        serve = asyncio.create_task(server.serve(), name=f"{self.name}-serve")
        stop_wait = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({serve, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if serve in done:
                serve.result()
                if not server.started:
                    raise OSError(f"{self.name}: cannot listen on {self._host}:{self._port}")
                return
            log.info("%s: shutting down", self.name)
            server.should_exit = True
            await serve
        finally:
            stop_wait.cancel()
            if not serve.done():
                server.force_exit = True
                serve.cancel()
