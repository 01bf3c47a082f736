"""One port for the DP server's two protocols, as Kuma's (5678): ``POST /bootstrap`` over
HTTPS for kuma-dp, and gRPC (Envoy's ADS, the agent channel) over TLS with HTTP/2.

grpcio cannot answer plain HTTPS requests, so the port is a small router in front of two
private servers, each on a Unix socket in a 0700 directory: the gRPC server and an HTTP/1.1
server (uvicorn), **both terminating TLS themselves** with the CP's certificate. The router
never decrypts anything: it reads the client's first TLS record (the ClientHello), picks the
server by the protocols the client offers for ALPN, with the server's preference
``http/1.1`` then ``h2`` (kuma-dp's Go client offers none or ``http/1.1`` and so gets
HTTP/1.1; gRPC clients, Envoy included, offer only ``h2``), replays the bytes it read to
that server and from then on copies bytes both ways. So the gRPC path keeps grpc's own TLS
(C code) and pays one extra copy per message, which the ``dp-front`` benchmark measures.

Without TLS (``dp_server_tls`` off, tests only) the router picks by the first bytes: the
HTTP/2 client preface goes to gRPC, anything else to HTTP/1.1. With TLS, a client speaking
plain HTTP gets Go's answer (400 "Client sent an HTTP request to an HTTPS server.").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

HTTP, GRPC = "http", "grpc"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HELLO = 64 * 1024  # a ClientHello with post-quantum key shares is a few KiB
HELLO_TIMEOUT = 10.0
_HANDSHAKE, _CLIENT_HELLO, _ALPN = 0x16, 0x01, 16
PLAIN_HTTP_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)


class NeedMore(Exception):
    """The bytes so far are the start of a ClientHello, not all of it."""


class NotTls(Exception):
    """The first bytes are not a TLS handshake."""


def client_hello_alpn(data: bytes) -> list[str]:
    """The ALPN protocols a TLS ClientHello offers (empty: no ALPN extension). Raises
    ``NeedMore`` for a ClientHello cut short and ``NotTls`` for anything else."""
    handshake = bytearray()
    offset = 0
    while True:  # the handshake message may span several records
        if len(data) < offset + 5:
            raise NeedMore
        if data[offset] != _HANDSHAKE or data[offset + 1] != 3:
            raise NotTls
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if len(data) < offset + 5 + length:
            raise NeedMore
        handshake += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if len(handshake) >= 4:
            if handshake[0] != _CLIENT_HELLO:
                raise NotTls
            if len(handshake) >= 4 + int.from_bytes(handshake[1:4], "big"):
                break
    body = bytes(handshake[4 : 4 + int.from_bytes(handshake[1:4], "big")])
    try:
        return _alpn_of(body)
    except (IndexError, ValueError) as exc:
        raise NotTls from exc


def _alpn_of(body: bytes) -> list[str]:
    at = 2 + 32  # client_version, random
    at += 1 + body[at]  # session_id
    at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher_suites
    at += 1 + body[at]  # compression_methods
    if at + 2 > len(body):
        return []  # no extensions
    end = at + 2 + int.from_bytes(body[at : at + 2], "big")
    at += 2
    while at + 4 <= end:
        kind = int.from_bytes(body[at : at + 2], "big")
        size = int.from_bytes(body[at + 2 : at + 4], "big")
        data = body[at + 4 : at + 4 + size]
        at += 4 + size
        if kind != _ALPN:
            continue
        names, pos = [], 2
        while pos < len(data):
            n = data[pos]
            names.append(data[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        return names
    return []


def choose(alpn: list[str]) -> str:
    """The server's preference: ``http/1.1`` (or no ALPN at all), then ``h2``."""
    if not alpn or "http/1.1" in alpn:
        return HTTP
    return GRPC if "h2" in alpn else HTTP


def route(data: bytes, tls: bool) -> str | None:
    """Where the connection that began with ``data`` goes; None: read more. Raises
    ``NotTls`` for a TLS port that got something else."""
    if not tls:
        if len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
            return None
        return GRPC if data.startswith(H2_PREFACE) else HTTP
    try:
        return choose(client_hello_alpn(data))
    except NeedMore:
        if len(data) >= MAX_HELLO:
            raise NotTls from None
        return None


@dataclass(frozen=True)
class Backends:
    """The Unix sockets of the two private servers."""

    http: str
    grpc: str

    def path(self, kind: str) -> str:
        return self.grpc if kind == GRPC else self.http


class _Pipe(asyncio.Protocol):
    """One side of a spliced connection: what it receives goes to ``peer``; flow control
    pauses the other side while this one's write buffer is full."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        if peer is not None and peer.eof:
            self._close_both()
        return True  # keep our write side open until the peer is done too

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_both()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def _close_both(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None and not side.transport.is_closing():
                side.transport.close()


class _Front(_Pipe):
    """The client's side: buffers until the route is known, then splices."""

    def __init__(self, router: DpFront) -> None:
        super().__init__()
        self._router = router
        self._buffer = b""
        self._deciding: asyncio.TimerHandle | None = None
        self._connecting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._deciding = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._too_slow)
        self._router.connections += 1

    def data_received(self, data: bytes) -> None:
        if self.peer is not None or self._connecting:
            if self.peer is not None:
                super().data_received(data)
            else:
                self._buffer += data
            return
        self._buffer += data
        try:
            kind = route(self._buffer, self._router.tls)
        except NotTls:
            self._refuse()
            return
        if kind is None:
            return
        self._connecting = True
        if self._deciding is not None:
            self._deciding.cancel()
        asyncio.get_running_loop().create_task(self._splice(kind))

    async def _splice(self, kind: str) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.transport.pause_reading()
        try:
            _, backend = await loop.create_unix_connection(_Pipe, self._router.backends.path(kind))
        except OSError as exc:
            log.warning("DP server: cannot reach its %s server: %s", kind, exc)
            self.transport.close()
            return
        if self.transport.is_closing():
            assert backend.transport is not None
            backend.transport.close()
            return
        self.peer, backend.peer = backend, self
        self._router.routed[kind] += 1
        assert backend.transport is not None
        backend.transport.write(self._buffer)
        self._buffer = b""
        self._connecting = False
        if self.eof and backend.transport.can_write_eof():
            backend.transport.write_eof()
        self.transport.resume_reading()

    def _refuse(self) -> None:
        assert self.transport is not None
        if self._deciding is not None:
            self._deciding.cancel()
        if self._buffer[:1].isalpha():  # a plain HTTP request on the TLS port
            self.transport.write(PLAIN_HTTP_TO_TLS)
        self._router.refused += 1
        self.transport.close()

    def _too_slow(self) -> None:
        if self.peer is None and self.transport is not None and not self._connecting:
            self._router.refused += 1
            self.transport.close()

    def eof_received(self) -> bool:
        if self.peer is None:
            self.eof = True
            if not self._connecting:
                return False  # closed before saying anything useful
            return True
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deciding is not None:
            self._deciding.cancel()
        super().connection_lost(exc)


class DpFront:
    """The DP port's router (see the module docstring); ``serve`` binds it, ``close`` stops
    accepting (open connections stay until one of their ends closes them)."""

    def __init__(self, backends: Backends, *, tls: bool) -> None:
        self.backends = backends
        self.tls = tls
        self.connections = 0
        self.refused = 0
        self.routed = {HTTP: 0, GRPC: 0}
        self._server: asyncio.Server | None = None

    async def serve(self, host: str, port: int) -> int:
        """Listen on ``host:port``; the bound port (``port`` 0: a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Front(self), host, port)
        sockets: Any = self._server.sockets
        return int(sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop accepting; the spliced connections end with their servers."""
        if self._server is not None:
            self._server.close()

    async def wait_closed(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout)
            except TimeoutError:
                log.debug("DP server: connections still open after %gs", timeout)
            self._server = None


__all__ = [
    "GRPC",
    "HTTP",
    "Backends",
    "DpFront",
    "NeedMore",
    "NotTls",
    "choose",
    "client_hello_alpn",
    "route",
]
