"""Fakes shared by the agent's tests (no tests here): a tiny asyncio HTTP server and a fake
Envoy admin API built on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Handler = Callable[["Request"], Awaitable[tuple[int, str, bytes]]]


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class FakeHttpServer:
    """HTTP/1.1 on 127.0.0.1:<free port>, one request per connection."""

    handler: Handler
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeHttpServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode().split()
            headers: dict[str, str] = {}
            while (raw := await reader.readline()).strip():
                key, _, value = raw.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(line[0], line[1], headers, body)
            self.requests.append(request)
            status, ctype, payload = await self.handler(request)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, IndexError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class FakeAdmin:
    """Envoy's admin API as far as the agent uses it."""

    def __init__(self, state: str = "LIVE", lds_updates: int = 1) -> None:
        self.state = state
        self.lds_updates = lds_updates
        self.healthcheck_failed_at: float | None = None
        self.server = FakeHttpServer(self._handle)

    async def _handle(self, request: Request) -> tuple[int, str, bytes]:
        if request.method == "GET" and request.path == "/ready":
            return (200 if self.state == "LIVE" else 503), "text/plain", f"{self.state}\n".encode()
        if request.method == "GET" and request.path == "/stats":
            stats = [{"name": "listener_manager.lds.update_success", "value": self.lds_updates}]
            return 200, "application/json", json.dumps({"stats": stats}).encode()
        if request.method == "POST" and request.path == "/healthcheck/fail":
            self.healthcheck_failed_at = time.monotonic()
            return 200, "text/plain", b"OK\n"
        if request.method == "POST" and request.path == "/drain_listeners":
            return 200, "text/plain", b"OK\n"
        return 404, "text/plain", b"not found\n"

    async def __aenter__(self) -> FakeAdmin:
        await self.server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.__aexit__(*exc)

    @property
    def port(self) -> int:
        return self.server.port
