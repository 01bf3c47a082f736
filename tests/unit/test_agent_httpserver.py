"""The small HTTP server behind /ready and /metrics, over raw sockets: the exact answers,
what it does with bad or slow requests, and /ready?verbose."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from kumadp.agent.httpserver import HttpServer, Request, Response
from kumadp.agent.readiness import Readiness, ReadinessServer


@contextlib.asynccontextmanager
async def serving(server: ReadinessServer) -> AsyncIterator[int]:
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    try:
        await asyncio.wait_for(server.started.wait(), 5)
        yield server.port
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_ready_answers_exactly() -> None:
    readiness = Readiness()
    readiness.set_ready(True)
    async with serving(ReadinessServer(readiness, 0)) as port:
        answer = await exchange(port, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 5\r\nConnection: close\r\n\r\nREADY"
        )
        head = await exchange(port, b"HEAD /ready HTTP/1.1\r\n\r\n")
        assert head.endswith(b"Content-Length: 5\r\nConnection: close\r\n\r\n")


async def test_ready_verbose_lists_the_reasons() -> None:
    readiness = Readiness()
    readiness.block("certificate", "no certificate yet")
    async with serving(ReadinessServer(readiness, 0)) as port:
        answer = await exchange(port, b"GET /ready?x=1&verbose HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert answer.endswith(
            b"\r\n\r\nNOT_READY\nEnvoy is not LIVE with its listeners yet\n"
            b"certificate: no certificate yet"
        )
        plain = await exchange(port, b"GET /ready HTTP/1.1\r\n\r\n")
        assert plain.endswith(b"\r\n\r\nNOT_READY")
        readiness.set_terminating()
        answer = await exchange(port, b"GET /ready?verbose HTTP/1.1\r\n\r\n")
        assert answer.endswith(b"\r\n\r\nTERMINATING\nshutting down")


async def test_bad_requests() -> None:
    async with serving(ReadinessServer(Readiness(), 0)) as port:
        answer = await exchange(port, b"NONSENSE\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert answer.endswith(b"\r\n\r\nbad request\n")
        answer = await exchange(port, b"GET /readyz HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
        assert answer.endswith(b"\r\n\r\nnot found\n")
        answer = await exchange(port, b"DELETE /ready HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
        assert answer.endswith(b"\r\n\r\nmethod not allowed\n")
        # oversized headers: 431, a long request line: 414 (never an unhandled error)
        for huge in (
            b"GET /ready HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            b"GET /ready HTTP/1.1\r\n" + b"X-Small: a\r\n" * 2_000 + b"\r\n",
        ):
            answer = await exchange(port, huge)
            assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
            assert answer.endswith(b"\r\n\r\nrequest header fields too large\n")
        answer = await exchange(port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
        # still serving
        assert (await exchange(port, b"GET /ready HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 503")


async def test_a_slow_request_is_closed_after_the_read_timeout() -> None:
    async with serving(ReadinessServer(Readiness(), 0, read_timeout=0.2)) as port:
        assert await exchange(port, b"GET /ready HTTP/1.1\r\n") == b""  # no blank line


async def test_only_the_kept_headers_reach_the_handler() -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200, b"ok", "text/x", (("X-One", "1"),))

    http = HttpServer(
        "test server", "/x", handler, "127.0.0.1", 0, keep_headers=["Accept-Encoding"]
    )
    await http.listen()
    stop = asyncio.Event()
    task = asyncio.create_task(http.serve(stop))
    try:
        answer = await exchange(
            http.port,
            b"GET /x?a HTTP/1.1\r\nAccept-Encoding: gzip\r\nOther: y\r\n"
            b"accept-encoding:  br \r\n\r\n",
        )
        assert answer == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/x\r\nX-One: 1\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        (request,) = seen
        assert (request.method, request.target, request.query) == ("GET", "/x?a", ["a"])
        assert request.headers == {"accept-encoding": "gzip, br"}
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
