"""An HTTP/1.1 load generator for the datapath and rotation benchmarks (raw asyncio).

    python -m bench.loadgen --port P --rate 1000 --duration 10   # constant rate
    python -m bench.loadgen --port P --max --connections 16 --duration 5

Constant rate (wrk2-style open loop): request *i* is due at ``start + i / rate`` whatever
happened to earlier ones; it goes out on an idle keep-alive connection, or on a new one when
every connection is busy, so a slow answer never delays the schedule. Latency is measured
from the moment the request is written to the last byte of the answer; ``lag`` reports how
late requests were written against their schedule (event-loop timer granularity is ~1 ms),
so the schedule's own error is visible. ``--max``: N connections, closed loop.

Prints one JSON object: sent, ok, failed, errors by kind, rps, latency percentiles (ms).
A request fails on a non-200 status, a connection error or a 5 s timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from typing import Any

REQUEST = b"GET / HTTP/1.1\r\nhost: backend\r\nuser-agent: kumadp-loadgen\r\n\r\n"
TIMEOUT = 5.0


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed mid-request"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            status = 0
        length = 0
        close = False
        for line in lines[1:]:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "content-length":
                length = int(value.strip())
            elif key == "connection" and value.strip().lower() == "close":
                close = True
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        if close:
            self.alive = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(REQUEST)
        try:
            return await asyncio.wait_for(self.waiter, TIMEOUT)
        finally:
            self.waiter = None

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()


class Load:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[_Conn] = []
        self.all: list[_Conn] = []
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.sent = 0
        self.ok = 0
        self.errors: dict[str, int] = {}

    async def open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.host, self.port)
        self.all.append(conn)
        return conn

    def _fail(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def one(self, conn: _Conn | None, due: float | None, record: bool) -> _Conn | None:
        """One request; returns the connection if it can be reused."""
        try:
            if conn is None:
                conn = await self.open()
            start = time.perf_counter()
            status = await conn.request()
            took = time.perf_counter() - start
        except (OSError, ConnectionError) as exc:
            if record:
                self.sent += 1
                self._fail(type(exc).__name__ if not isinstance(exc, ConnectionError) else str(exc))
            if conn is not None:
                conn.close()
            return None
        except TimeoutError:
            if record:
                self.sent += 1
                self._fail("timeout")
            if conn is not None:
                conn.close()
            return None
        if record:
            self.sent += 1
            if status == 200:
                self.ok += 1
                self.latencies.append(took)
                if due is not None:
                    self.lags.append(start - due)
            else:
                self._fail(f"status {status}")
        return conn if conn.alive else None

    async def constant(
        self, rate: float, duration: float, warmup: float, connections: int
    ) -> float:
        for _ in range(connections):
            self.idle.append(await self.open())
        loop_start = time.perf_counter() + 0.01
        total = int(rate * (warmup + duration))
        first_recorded = int(rate * warmup)
        tasks: set[asyncio.Task[None]] = set()

        async def fire(due: float, record: bool) -> None:
            conn = None
            while self.idle and conn is None:
                candidate = self.idle.pop()
                conn = candidate if candidate.alive else None
            back = await self.one(conn, due, record)
            if back is not None:
                self.idle.append(back)

        i = 0
        while i < total:
            now = time.perf_counter()
            due = loop_start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            while i < total and loop_start + i / rate <= now:
                task = asyncio.create_task(fire(loop_start + i / rate, i >= first_recorded))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=TIMEOUT + 1)
        return duration

    async def closed_loop(self, duration: float, warmup: float, connections: int) -> float:
        begin = time.perf_counter()
        record_from = begin + warmup
        end = record_from + duration

        async def worker() -> None:
            conn: _Conn | None = await self.open()
            while time.perf_counter() < end:
                conn = await self.one(conn, None, time.perf_counter() >= record_from)

        await asyncio.gather(*(worker() for _ in range(connections)))
        return time.perf_counter() - record_from

    def close(self) -> None:
        for conn in self.all:
            conn.close()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load = Load(args.host, args.port)
    try:
        if args.max:
            elapsed = await load.closed_loop(args.duration, args.warmup, args.connections)
        else:
            elapsed = await load.constant(args.rate, args.duration, args.warmup, args.connections)
    finally:
        load.close()
    return {
        "mode": "max" if args.max else "constant",
        "rate": None if args.max else args.rate,
        "duration": elapsed,
        "sent": load.sent,
        "ok": load.ok,
        "failed": load.sent - load.ok,
        "errors": load.errors,
        "rps": load.ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _pct(load.latencies, 50),
        "p90_ms": _pct(load.latencies, 90),
        "p99_ms": _pct(load.latencies, 99),
        "p999_ms": _pct(load.latencies, 99.9),
        "max_ms": _pct(load.latencies, 100),
        "lag_p50_ms": _pct(load.lags, 50),
        "lag_p99_ms": _pct(load.lags, 99),
        "connections": len(load.all),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not recorded")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max", action="store_true", help="closed loop, as fast as it goes")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
