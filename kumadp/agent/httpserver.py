"""The one small HTTP/1.1 server behind the agent's own endpoints (``/ready``, ``/metrics``).

Each server answers one path, GET and HEAD only, one request per connection
(``Connection: close``):

- the request line and headers must arrive within ``read_timeout`` (5 s), or the connection
  is closed without an answer; a request line longer than ``MAX_LINE`` (8 KiB) gets 414,
  headers larger than ``MAX_HEADER_BYTES`` (16 KiB in all) get 431, never an error;
- a malformed request line gets 400 ``bad request``, another path 404 ``not found``, another
  method 405 ``method not allowed`` (text/plain), without calling the handler;
- HEAD gets the same status and headers as GET, no body.

Only the headers the server was built to keep reach the handler (``keep_headers``): the
others are read and dropped, so a client cannot make the agent hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field

TEXT = "text/plain; charset=utf-8"

MAX_LINE = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_BAD_REQUEST = (400, b"bad request\n")
_NOT_FOUND = (404, b"not found\n")
_NOT_ALLOWED = (405, b"method not allowed\n")
_URI_TOO_LONG = (414, b"request line too long\n")
_HEADERS_TOO_LARGE = (431, b"request header fields too large\n")


class _TooLarge(Exception):
    def __init__(self, answer: tuple[int, bytes]) -> None:
        super().__init__(answer[1].decode().strip())
        self.answer = answer


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str] = field(default_factory=dict)  # kept ones, lower-case names

    @property
    def query(self) -> list[str]:
        """The query's ``&``-separated parts (``/ready?verbose`` -> ``["verbose"]``)."""
        return self.target.partition("?")[2].split("&")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()  # written after Content-Type


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Serves ``handler`` at ``path`` on ``host:port`` (port 0: any free port; ``port`` is
    the bound one after ``listen``). ``what`` names the server in errors."""

    def __init__(
        self,
        what: str,
        path: str,
        handler: Handler,
        host: str,
        port: int,
        *,
        read_timeout: float = 5.0,
        keep_headers: Collection[str] = (),
    ) -> None:
        self.what = what
        self.path = path
        self.host = host
        self.port = port
        self._handler = handler
        self._read_timeout = read_timeout
        self._keep = frozenset(h.lower() for h in keep_headers)
        self._server: asyncio.Server | None = None

    async def listen(self) -> None:
        """Bind; ``OSError`` says which server could not listen where, and why."""
        try:
            self._server = await asyncio.start_server(
                self._handle, self.host, self.port, limit=MAX_HEADER_BYTES
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"{self.what} cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve(self, stop: asyncio.Event) -> None:
        """Answer requests until ``stop`` is set, then close (``listen`` first)."""
        server = self._server
        assert server is not None, "listen() first"
        async with server:
            await stop.wait()
            server.close()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(self._read(reader), self._read_timeout)
                response = await self._answer(request)
            except _TooLarge as too_large:
                request, response = None, Response(*too_large.answer)
            head = [f"HTTP/1.1 {response.status} {_REASONS[response.status]}"]
            head.append(f"Content-Type: {response.content_type}")
            head += [f"{name}: {value}" for name, value in response.headers]
            head.append(f"Content-Length: {len(response.body)}")
            head.append("Connection: close\r\n\r\n")
            body = b"" if request is not None and request.method == "HEAD" else response.body
            writer.write("\r\n".join(head).encode() + body)
            await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, request: Request | None) -> Response:
        if request is None:
            return Response(*_BAD_REQUEST)
        if request.target.split("?", 1)[0] != self.path:
            return Response(*_NOT_FOUND)
        if request.method not in ("GET", "HEAD"):
            return Response(*_NOT_ALLOWED)
        return await self._handler(request)

    async def _read(self, reader: asyncio.StreamReader) -> Request | None:
        """The request (None for a malformed request line), headers read up to the blank
        line."""
        request_line = (await _line(reader, _URI_TOO_LONG)).decode("latin-1").strip()
        if len(request_line) > MAX_LINE:
            raise _TooLarge(_URI_TOO_LONG)
        headers: dict[str, str] = {}
        total = 0
        while True:
            raw = await _line(reader, _HEADERS_TOO_LARGE)
            total += len(raw)
            if total > MAX_HEADER_BYTES:
                raise _TooLarge(_HEADERS_TOO_LARGE)
            line = raw.decode("latin-1").strip()
            if not line:
                break
            if self._keep:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name in self._keep:  # a repeated header: its values joined, as HTTP allows
                    value = value.strip()
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
        parts = request_line.split()
        if len(parts) != 3:
            return None
        return Request(parts[0], parts[1], headers)


async def _line(reader: asyncio.StreamReader, too_long: tuple[int, bytes]) -> bytes:
    """One line; ``_TooLarge(too_long)`` when it does not fit the reader's buffer limit."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise _TooLarge(too_long) from None
