"""The agent's ``.mesh`` DNS resolver (UDP and TCP on one port, 127.0.0.1:15053 by default):
the transport and the component. What is answered is ``kumadp.agent.dns_answer``; what is
relayed upstream, and how, is ``kumadp.agent.dns_forward``.

- UDP packets are read in batches straight from the socket; a repeated question is one dict
  lookup in the packed-answer cache and the ID patch. UDP answers larger than the client's
  size are sent truncated, so the client retries over TCP.
- TCP: length-prefixed queries on a connection kept open up to ``tcp_idle_timeout`` between
  queries; a length prefix of 0 or larger than ``max_tcp_query`` closes that connection. At
  most ``max_tcp_connections`` are open at once: one more is closed as soon as it is
  accepted (counted, warned about at most once a minute), so idle clients can never take
  every file descriptor of the agent (its readiness and metrics ports need some too).
- Bad input never stops the server: what cannot be handled is counted and dropped.
- Readiness is blocked (key ``dns``) until the first name table arrives, at most
  ``first_table_timeout``; the resolver never forwards to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

from kumadp.agent.dns_answer import (
    KIND_MESH,
    KIND_NXDOMAIN,
    SERVFAIL,
    Answerer,
    DnsStats,
    Forward,
)
from kumadp.agent.dns_forward import RECV_SIZE, Forwarder, parse_upstream, read_resolv_conf
from kumadp.agent.nametable import NameTable
from kumadp.agent.readiness import Readiness

__all__ = [
    "DEFAULT_PORT",
    "READINESS_KEY",
    "DnsServer",
    "DnsStats",
    "parse_upstream",
    "read_resolv_conf",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 15053
READINESS_KEY = "dns"
READINESS_REASON = "waiting for the first name table from the control plane"


class DnsServer:
    """The resolver component: ``run(stop)`` serves until ``stop`` is set. ``port`` 0 binds
    any free port (read ``port`` once ``started`` is set)."""

    name = "dns"

    def __init__(
        self,
        table: NameTable,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        upstreams: list[tuple[str, int]] | None = None,
        readiness: Readiness | None = None,
        first_table_timeout: float = 15.0,
        upstream_timeout: float = 2.0,
        domain: str = "mesh",
        resolv_conf: str = "/etc/resolv.conf",
        max_tcp_query: int = 4096,
        tcp_idle_timeout: float = 10.0,
        max_tcp_connections: int = 128,
        max_inflight_forwards: int = 512,
        cache_size: int = 10_000,
    ) -> None:
        self.table = table
        self.host = host
        self.port = port
        self.readiness = readiness
        self.first_table_timeout = first_table_timeout
        self.resolv_conf = resolv_conf
        self.max_tcp_query = max_tcp_query
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self.tcp_refused = 0  # connections closed at once: over max_tcp_connections
        self._tcp_refused_warned = -1e9
        self.udp_batch = 64  # datagrams read per wake-up of the event loop
        self.stats = DnsStats()
        self.started = asyncio.Event()
        self._answers = Answerer(table, self.stats, domain=domain, cache_size=cache_size)
        self._forwarder = Forwarder(
            self.stats,
            upstreams=list(upstreams) if upstreams is not None else None,
            timeout=upstream_timeout,
            max_inflight=max_inflight_forwards,
        )
        self.domain = self._answers.domain
        self._udp_sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._tcp_handlers: set[asyncio.Task[Any]] = set()

    @property
    def upstreams(self) -> list[tuple[str, int]] | None:
        """The upstream resolvers (None until ``run`` read resolv.conf, without any given)."""
        return self._forwarder.upstreams

    @upstreams.setter
    def upstreams(self, value: list[tuple[str, int]] | None) -> None:
        self._forwarder.upstreams = value

    def answer(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The local answer to one query (cached), None when it would be dropped or must be
        forwarded. For tests and benchmarks; the servers use the same path."""
        return self._answers.answer(data, tcp=tcp)

    # ---------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        if self.upstreams is None:
            self.upstreams = read_resolv_conf(self.resolv_conf)
        gate: asyncio.Task[None] | None = None
        if self.readiness is not None and not self.table.first_table.is_set():
            self.readiness.block(READINESS_KEY, READINESS_REASON)
            gate = asyncio.create_task(self._first_table_gate(), name="dns-first-table")
        try:
            udp, server = await self._bind()
        except BaseException:
            if gate is not None:
                gate.cancel()
            raise
        self._udp_sock = udp
        me = {(self.host, self.port), ("127.0.0.1", self.port), ("::1", self.port)}
        upstreams = self.upstreams
        looped = [u for u in upstreams if u in me]
        if looped:
            log.warning("DNS upstream %s is this resolver itself; ignored", looped)
            self.upstreams = upstreams = [u for u in upstreams if u not in me]
        if not upstreams:
            log.warning("no DNS upstream: names outside .%s will get SERVFAIL", self.domain)
        loop.add_reader(udp.fileno(), self._on_udp_readable)
        self.started.set()
        log.info(
            "DNS resolver for .%s listening on %s:%d (UDP, TCP); upstreams %s",
            self.domain,
            self.host,
            self.port,
            ", ".join(f"{h}:{p}" for h, p in upstreams) or "none",
        )
        try:
            await stop.wait()
        finally:
            loop.remove_reader(udp.fileno())
            server.close()
            for writer in list(self._tcp_writers):
                writer.close()
            tasks = list(self._tasks) + list(self._tcp_handlers)
            if gate is not None:
                tasks.append(gate)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await server.wait_closed()
            udp.close()
            self._udp_sock = None

    async def _bind(self) -> tuple[socket.socket, asyncio.Server]:
        """UDP and TCP on the same port; with port 0, retry until both get the same one."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        attempts = 20 if self.port == 0 else 1
        for attempt in range(attempts):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp.setblocking(False)
                with contextlib.suppress(OSError):
                    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                udp.bind((self.host, self.port))
                port = udp.getsockname()[1]
                server = await asyncio.start_server(
                    self._serve_tcp, self.host, port, reuse_address=True
                )
            except OSError as exc:
                udp.close()
                if attempt + 1 < attempts:
                    continue
                raise OSError(
                    exc.errno,
                    f"DNS resolver cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                ) from exc
            except BaseException:
                udp.close()
                raise
            self.port = port
            return udp, server
        raise AssertionError("unreachable")

    async def _first_table_gate(self) -> None:
        assert self.readiness is not None
        try:
            await asyncio.wait_for(self.table.first_table.wait(), self.first_table_timeout)
        except TimeoutError:
            log.warning(
                "no name table from the control plane after %.0fs; ready anyway "
                "(.%s names get SERVFAIL until it arrives)",
                self.first_table_timeout,
                self.domain,
            )
        self.readiness.unblock(READINESS_KEY)

    # ---------------------------------------------------------------- UDP

    def _on_udp_readable(self) -> None:
        sock = self._udp_sock
        if sock is None:
            return
        recvfrom, sendto = sock.recvfrom, sock.sendto
        stats, table, answers = self.stats, self.table, self._answers
        cache = answers.udp_cache  # cleared in place, never replaced
        counts = stats.answers
        for _ in range(self.udp_batch):
            try:
                data, addr = recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("DNS UDP receive failed: %s", exc)
                return
            stats.queries_udp += 1
            if answers.cache_generation != table.generation:
                answers.clear_cache()
            hit = cache.get(data[2:])
            if hit is not None:
                body, rcode, kind = hit
                try:
                    sendto(data[:2] + body, addr)
                except OSError:
                    stats.dropped += 1
                    continue
                stats.cache_hits += 1
                counts[rcode] += 1
                if kind == KIND_MESH:
                    stats.mesh_answers += 1
                elif kind == KIND_NXDOMAIN:
                    stats.nxdomain += 1
                continue
            try:
                result = answers.handle(data, tcp=False)
                if isinstance(result, Forward):
                    self._spawn(self._forward_udp(result, addr))
                elif result is not None:
                    self._send_udp(result, addr)
            except Exception as exc:  # never let one packet stop the server
                stats.dropped += 1
                log.warning("DNS: failed to handle a UDP packet from %s: %s", addr, exc)

    def _send_udp(self, reply: bytes, addr: Any) -> None:
        sock = self._udp_sock
        if sock is None:
            return
        try:
            sock.sendto(reply, addr)
        except OSError as exc:
            self.stats.dropped += 1
            log.debug("DNS: cannot send to %s: %s", addr, exc)
            return
        self.stats.answers[reply[3] & 0xF if len(reply) >= 4 else SERVFAIL] += 1

    async def _forward_udp(self, fwd: Forward, addr: Any) -> None:
        reply = await self._forwarder.forward(fwd, tcp=False, inflight=len(self._tasks))
        self._send_udp(reply, addr)

    # ---------------------------------------------------------------- TCP

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tcp_writers) >= self.max_tcp_connections:
            self._refuse_tcp(writer)
            return
        self._tcp_writers.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._tcp_handlers.add(handler)
        stats, answers = self.stats, self._answers
        try:
            while not writer.is_closing():
                async with asyncio.timeout(self.tcp_idle_timeout):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    if size == 0 or size > self.max_tcp_query:
                        stats.malformed += 1
                        log.debug("DNS TCP: length prefix %d; closing the connection", size)
                        return
                    data = await reader.readexactly(size)
                stats.queries_tcp += 1
                if answers.cache_generation != self.table.generation:
                    answers.clear_cache()
                hit = answers.tcp_cache.get(data[2:])
                if hit is not None:
                    stats.cache_hits += 1
                    body, _, kind = hit
                    stats.count_kind(kind)
                    self._send_tcp(writer, data[:2] + body)
                else:
                    try:
                        result = answers.handle(data, tcp=True)
                    except Exception as exc:
                        stats.dropped += 1
                        log.warning("DNS: failed to handle a TCP query: %s", exc)
                        continue
                    if isinstance(result, Forward):
                        self._spawn(self._forward_tcp(result, writer))
                    elif result is not None:
                        self._send_tcp(writer, result)
                async with asyncio.timeout(self.tcp_idle_timeout):
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            if handler is not None:
                self._tcp_handlers.discard(handler)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _refuse_tcp(self, writer: asyncio.StreamWriter) -> None:
        self.tcp_refused += 1
        now = time.monotonic()
        if now - self._tcp_refused_warned >= 60:
            self._tcp_refused_warned = now
            log.warning(
                "DNS TCP: %d connections open (the limit); closing new ones (%d so far)",
                len(self._tcp_writers),
                self.tcp_refused,
            )
        transport = writer.transport
        transport.abort()  # no lingering close: the descriptor is freed now

    def _send_tcp(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        if writer.is_closing():
            self.stats.dropped += 1
            return
        writer.write(len(reply).to_bytes(2, "big") + reply)
        self.stats.answers[reply[3] & 0xF if len(reply) >= 4 else SERVFAIL] += 1

    async def _forward_tcp(self, fwd: Forward, writer: asyncio.StreamWriter) -> None:
        reply = await self._forwarder.forward(fwd, tcp=True, inflight=len(self._tasks))
        self._send_tcp(writer, reply)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
