"""The agent's ``.mesh`` DNS resolver (UDP and TCP on one port, 127.0.0.1:15053 by default).

- A / AAAA for names in the ``NameTable``: authoritative, TTL from the table, every address of
  the family. A known name without an address of the asked family, or asked another type
  (TXT, MX, ...), gets NOERROR with no answer; so does a name that only has names below it
  (``svc.mesh`` when ``my.svc.mesh`` exists), as RFC 8020 requires.
- Any other name under the mesh domain: NXDOMAIN, authoritative, never forwarded. No SOA is
  added to negative answers, so stub resolvers do not cache them and a service that joins the
  mesh resolves at once. Before the first table has arrived mesh names get SERVFAIL (we do not
  know yet) instead of a NXDOMAIN that could be remembered.
- Everything else is relayed (the query unchanged but its ID) to the upstream resolvers in
  order, each with a timeout: UDP first, TCP when the UDP answer is truncated, TCP only for
  queries that came over TCP. An upstream SERVFAIL / REFUSED moves on to the next upstream;
  SERVFAIL when none answers.
- EDNS0: a query with an OPT record gets one back (UDP size = the client's, 512..4096, DO bit
  copied); EDNS version > 0 gets BADVERS. UDP answers larger than the client's size are sent
  truncated (TC, question only) so the client retries over TCP.
- Bad input never stops the server: fewer than 12 bytes (no header) or a response (QR set)
  are dropped; anything else unparseable, or with a question count other than 1, gets
  FORMERR; an opcode other than QUERY gets NOTIMP; a TCP length prefix of 0 or larger than
  ``max_tcp_query`` closes that connection.

Fast path: local answers are cached, packed, per exact query bytes after the ID (and per
transport) and the cache is dropped whenever the table changes, so a repeated question costs
one dict lookup and the ID patch. UDP packets are read in batches straight from the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, CLASS, EDNS0, QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from kumadp.agent.nametable import NameTable
from kumadp.agent.readiness import Readiness

log = logging.getLogger(__name__)

DEFAULT_PORT = 15053
READINESS_KEY = "dns"
READINESS_REASON = "waiting for the first name table from the control plane"

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended rcode: header 0, OPT ext_rcode 1

_QR, _AA, _TC, _RD, _RA, _CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
_OPCODE = 0x7800
_HEADER = struct.Struct("!HHHHHH")
_MIN_UDP = 512
_MAX_UDP = 4096
_RECV_SIZE = 65535
_QTYPE_A, _QTYPE_AAAA, _QTYPE_ANY, _QTYPE_OPT = QTYPE.A, QTYPE.AAAA, QTYPE.ANY, QTYPE.OPT
_CLASS_IN, _CLASS_ANY = CLASS.IN, getattr(CLASS, "*")

# what a cached local answer counts as
_KIND_MESH, _KIND_NXDOMAIN, _KIND_OTHER = 0, 1, 2


def rcode_name(rcode: int) -> str:
    if rcode == BADVERS:
        return "BADVERS"
    name = RCODE.get(rcode)
    return str(name) if name is not None else f"RCODE{rcode}"


def read_resolv_conf(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The ``nameserver`` entries of a resolv.conf, in order, as ``(ip, 53)``. Entries that
    are not IP addresses are skipped; a missing file gives an empty list."""
    upstreams: list[tuple[str, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return upstreams
    for line in lines:
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) < 2 or parts[0] != "nameserver":
            continue
        address = parts[1].split("%", 1)[0]  # fe80::1%eth0: the zone is not needed for ::1
        try:
            ipaddress.ip_address(address)
        except ValueError:
            log.warning("%s: nameserver %r is not an IP address; ignored", path, parts[1])
            continue
        if (address, 53) not in upstreams:
            upstreams.append((address, 53))
    return upstreams


def parse_upstream(text: str, default_port: int = 53) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353`` -> ``(ip, port)``."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad DNS upstream {text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bad DNS upstream {text!r}: {host!r} is not an IP address") from None
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad DNS upstream {text!r}: port must be 1-65535")
    return host, int(port_text)


@dataclass
class DnsStats:
    """Counters of the resolver. ``answers`` is indexed by rcode (see ``snapshot``)."""

    queries_udp: int = 0
    queries_tcp: int = 0
    answers: list[int] = field(default_factory=lambda: [0] * 24)
    mesh_answers: int = 0  # answered from the name table (with or without addresses)
    nxdomain: int = 0  # unknown names under the mesh domain
    cache_hits: int = 0  # local answers served already packed
    forwards: int = 0  # queries relayed upstream
    forward_failures: int = 0  # relayed queries no upstream answered well (SERVFAIL sent)
    forward_tcp_retries: int = 0  # truncated upstream UDP answers retried over TCP
    truncated: int = 0  # UDP answers sent truncated (too big for the client)
    malformed: int = 0  # garbage, truncated or otherwise bad packets
    dropped: int = 0  # packets not answered at all (no header, responses, send errors)

    @property
    def queries(self) -> dict[str, int]:
        return {"udp": self.queries_udp, "tcp": self.queries_tcp}

    def answers_by_rcode(self) -> dict[str, int]:
        return {rcode_name(rc): n for rc, n in enumerate(self.answers) if n}

    def snapshot(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "answers": self.answers_by_rcode(),
            "mesh_answers": self.mesh_answers,
            "nxdomain": self.nxdomain,
            "cache_hits": self.cache_hits,
            "forwards": self.forwards,
            "forward_failures": self.forward_failures,
            "forward_tcp_retries": self.forward_tcp_retries,
            "truncated": self.truncated,
            "malformed": self.malformed,
            "dropped": self.dropped,
        }


@dataclass(frozen=True, slots=True)
class _Forward:
    """A query to relay upstream (as received; the reply gets ``data[:2]`` as its ID)."""

    data: bytes
    udp_limit: int  # the largest UDP answer the client takes


class _BadAnswer(Exception):
    pass


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
        max_inflight_forwards: int = 512,
        cache_size: int = 10_000,
    ) -> None:
        self.table = table
        self.host = host
        self.port = port
        self.upstreams = list(upstreams) if upstreams is not None else None
        self.readiness = readiness
        self.first_table_timeout = first_table_timeout
        self.upstream_timeout = upstream_timeout
        self.domain = domain.strip(".").lower()
        self.resolv_conf = resolv_conf
        self.max_tcp_query = max_tcp_query
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_inflight_forwards = max_inflight_forwards
        self.cache_size = cache_size
        self.udp_batch = 64  # datagrams read per wake-up of the event loop
        self.stats = DnsStats()
        self.started = asyncio.Event()
        self._domain_labels = tuple(label.encode() for label in self.domain.split("."))
        self._udp_cache: dict[bytes, tuple[bytes, int, int]] = {}
        self._tcp_cache: dict[bytes, tuple[bytes, int, int]] = {}
        self._cache_generation = -1
        self._udp_sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._tcp_handlers: set[asyncio.Task[Any]] = set()

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
        looped = [u for u in self.upstreams if u in me]
        if looped:
            log.warning("DNS upstream %s is this resolver itself; ignored", looped)
            self.upstreams = [u for u in self.upstreams if u not in me]
        if not self.upstreams:
            log.warning("no DNS upstream: names outside .%s will get SERVFAIL", self.domain)
        loop.add_reader(udp.fileno(), self._on_udp_readable)
        self.started.set()
        log.info(
            "DNS resolver for .%s listening on %s:%d (UDP, TCP); upstreams %s",
            self.domain,
            self.host,
            self.port,
            ", ".join(f"{h}:{p}" for h, p in self.upstreams) or "none",
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
        stats, table = self.stats, self.table
        answers = stats.answers
        for _ in range(self.udp_batch):
            try:
                data, addr = recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("DNS UDP receive failed: %s", exc)
                return
            stats.queries_udp += 1
            if self._cache_generation != table.generation:
                self._clear_cache()
            hit = self._udp_cache.get(data[2:])
            if hit is not None:
                body, rcode, kind = hit
                try:
                    sendto(data[:2] + body, addr)
                except OSError:
                    stats.dropped += 1
                    continue
                stats.cache_hits += 1
                answers[rcode] += 1
                if kind == _KIND_MESH:
                    stats.mesh_answers += 1
                elif kind == _KIND_NXDOMAIN:
                    stats.nxdomain += 1
                continue
            try:
                result = self._handle(data, tcp=False)
                if isinstance(result, _Forward):
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

    async def _forward_udp(self, fwd: _Forward, addr: Any) -> None:
        reply = await self._forward(fwd, tcp=False)
        self._send_udp(reply, addr)

    # ---------------------------------------------------------------- TCP

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tcp_writers.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._tcp_handlers.add(handler)
        stats = self.stats
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
                if self._cache_generation != self.table.generation:
                    self._clear_cache()
                hit = self._tcp_cache.get(data[2:])
                if hit is not None:
                    stats.cache_hits += 1
                    body, _, kind = hit
                    self._count_kind(kind)
                    self._send_tcp(writer, data[:2] + body)
                else:
                    try:
                        result = self._handle(data, tcp=True)
                    except Exception as exc:
                        stats.dropped += 1
                        log.warning("DNS: failed to handle a TCP query: %s", exc)
                        continue
                    if isinstance(result, _Forward):
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

    def _send_tcp(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        if writer.is_closing():
            self.stats.dropped += 1
            return
        writer.write(len(reply).to_bytes(2, "big") + reply)
        self.stats.answers[reply[3] & 0xF if len(reply) >= 4 else SERVFAIL] += 1

    async def _forward_tcp(self, fwd: _Forward, writer: asyncio.StreamWriter) -> None:
        reply = await self._forward(fwd, tcp=True)
        self._send_tcp(writer, reply)

    # ---------------------------------------------------------------- answers

    def _count_kind(self, kind: int) -> None:
        if kind == _KIND_MESH:
            self.stats.mesh_answers += 1
        elif kind == _KIND_NXDOMAIN:
            self.stats.nxdomain += 1

    def _clear_cache(self) -> None:
        self._udp_cache.clear()
        self._tcp_cache.clear()
        self._cache_generation = self.table.generation

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def answer(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The local answer to one query (cached), None when it would be dropped or must be
        forwarded. For tests and benchmarks; the servers use the same path."""
        if self._cache_generation != self.table.generation:
            self._clear_cache()
        cache = self._tcp_cache if tcp else self._udp_cache
        hit = cache.get(data[2:])
        if hit is not None:
            return data[:2] + hit[0]
        result = self._handle(data, tcp=tcp)
        return None if isinstance(result, _Forward) else result

    def _handle(self, data: bytes, tcp: bool) -> bytes | _Forward | None:
        """Answer locally (bytes), forward (``_Forward``) or drop (None)."""
        stats = self.stats
        if len(data) < 12:
            stats.malformed += 1
            stats.dropped += 1
            return None
        qid, flags, qdcount, _, _, _ = _HEADER.unpack_from(data)
        if flags & _QR:  # a response: never answer one (no loops between resolvers)
            stats.malformed += 1
            stats.dropped += 1
            return None
        if flags & _OPCODE:
            return _header_only(qid, flags, NOTIMP)
        if qdcount != 1:
            stats.malformed += 1
            return _header_only(qid, flags, FORMERR)
        try:
            query = DNSRecord.parse(data)
        except Exception:  # dnslib raises several kinds on garbage
            stats.malformed += 1
            return _header_only(qid, flags, FORMERR)
        opts = [rr for rr in query.ar if rr.rtype == _QTYPE_OPT]
        if len(opts) > 1 or (opts and opts[0].rname.label):
            stats.malformed += 1
            return _header_only(qid, flags, FORMERR)
        opt = opts[0] if opts else None
        udp_limit = _MIN_UDP if opt is None else min(max(opt.rclass, _MIN_UDP), _MAX_UDP)
        question = query.questions[0]
        if opt is not None and (opt.ttl >> 16) & 0xFF:
            return self._build(qid, flags, question, opt, BADVERS, [], tcp, udp_limit)
        labels = question.qname.label
        n = len(self._domain_labels)
        if len(labels) < n or tuple(x.lower() for x in labels[len(labels) - n :]) != (
            self._domain_labels
        ):
            stats.forwards += 1
            return _Forward(bytes(data), udp_limit)
        reply, rcode, kind = self._local(qid, flags, question, opt, labels, tcp, udp_limit)
        cache = self._tcp_cache if tcp else self._udp_cache
        if len(cache) >= self.cache_size:
            cache.clear()
        cache[bytes(data[2:])] = (reply[2:], rcode, kind)
        self._count_kind(kind)
        return reply

    def _local(
        self,
        qid: int,
        flags: int,
        question: DNSQuestion,
        opt: RR | None,
        labels: tuple[bytes, ...],
        tcp: bool,
        udp_limit: int,
    ) -> tuple[bytes, int, int]:
        table = self.table
        if not table.first_table.is_set():
            reply = self._build(qid, flags, question, opt, SERVFAIL, [], tcp, udp_limit, aa=False)
            return reply, SERVFAIL, _KIND_OTHER
        record = None
        name = ""
        if not any(b"." in label for label in labels):
            try:
                name = b".".join(labels).decode().lower()
            except UnicodeDecodeError:
                name = ""
            record = table.lookup(name) if name else None
        if record is None:
            if name == self.domain or (name and table.has_children(name)):
                reply = self._build(qid, flags, question, opt, NOERROR, [], tcp, udp_limit)
                return reply, NOERROR, _KIND_MESH
            reply = self._build(qid, flags, question, opt, NXDOMAIN, [], tcp, udp_limit)
            return reply, NXDOMAIN, _KIND_NXDOMAIN
        answers: list[RR] = []
        if question.qclass in (_CLASS_IN, _CLASS_ANY):
            qtype, ttl, qname = question.qtype, table.ttl, question.qname
            if qtype in (_QTYPE_A, _QTYPE_ANY):
                answers += [RR(qname, _QTYPE_A, ttl=ttl, rdata=A(ip)) for ip in record.ipv4]
            if qtype in (_QTYPE_AAAA, _QTYPE_ANY):
                answers += [RR(qname, _QTYPE_AAAA, ttl=ttl, rdata=AAAA(ip)) for ip in record.ipv6]
        reply = self._build(qid, flags, question, opt, NOERROR, answers, tcp, udp_limit)
        return reply, NOERROR, _KIND_MESH

    def _build(
        self,
        qid: int,
        flags: int,
        question: DNSQuestion,
        opt: RR | None,
        rcode: int,
        answers: list[RR],
        tcp: bool,
        udp_limit: int,
        *,
        aa: bool = True,
    ) -> bytes:
        bitmap = _QR | _RA | (flags & (_RD | _CD)) | (rcode & 0xF) | (_AA if aa else 0)
        extra: list[RR] = []
        if opt is not None:
            extra.append(
                EDNS0(
                    rname=".",
                    udp_len=udp_limit,
                    ext_rcode=rcode >> 4,
                    flags="do" if opt.ttl & 0x8000 else "",
                )
            )
        reply = DNSRecord(DNSHeader(qid, bitmap), questions=[question], rr=answers, ar=extra)
        packed = bytes(reply.pack())
        if not tcp and len(packed) > udp_limit:
            self.stats.truncated += 1
            reply = DNSRecord(DNSHeader(qid, bitmap | _TC), questions=[question], ar=extra)
            packed = bytes(reply.pack())
        return packed

    # ---------------------------------------------------------------- forwarding

    async def _forward(self, fwd: _Forward, *, tcp: bool) -> bytes:
        """The relayed answer with the client's ID, or SERVFAIL."""
        data = fwd.data
        if len(self._tasks) > self.max_inflight_forwards:
            log.debug("DNS: too many queries in flight; SERVFAIL")
            self.stats.forward_failures += 1
            return _header_only_with_question(data, SERVFAIL)
        fallback: bytes | None = None
        for host, port in self.upstreams or ():
            try:
                if tcp:
                    answer = await self._exchange_tcp(data, host, port)
                else:
                    answer = await self._exchange_udp(data, host, port)
                    if answer[2] & (_TC >> 8):
                        self.stats.forward_tcp_retries += 1
                        full = await self._exchange_tcp(data, host, port)
                        if len(full) <= fwd.udp_limit:
                            answer = full
            except (OSError, TimeoutError, _BadAnswer, asyncio.IncompleteReadError) as exc:
                log.debug("DNS upstream %s:%d failed: %s", host, port, exc or type(exc).__name__)
                continue
            if answer[3] & 0xF in (SERVFAIL, REFUSED):
                fallback = answer
                continue
            return data[:2] + answer[2:]
        self.stats.forward_failures += 1
        if fallback is not None:
            return data[:2] + fallback[2:]
        return _header_only_with_question(data, SERVFAIL)

    async def _exchange_udp(self, data: bytes, host: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        upstream_id = os.urandom(2)
        query = upstream_id + data[2:]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect((host, port))  # a connected socket only takes that peer's answers
            async with asyncio.timeout(self.upstream_timeout):
                await loop.sock_sendall(sock, query)
                while True:
                    answer = await loop.sock_recv(sock, _RECV_SIZE)
                    if _matches(query, answer):
                        return answer

    async def _exchange_tcp(self, data: bytes, host: str, port: int) -> bytes:
        upstream_id = os.urandom(2)
        query = upstream_id + data[2:]
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.upstream_timeout):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(len(query).to_bytes(2, "big") + query)
                await writer.drain()
                size = int.from_bytes(await reader.readexactly(2), "big")
                answer = await reader.readexactly(size)
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        if not _matches(query, answer):
            raise _BadAnswer("TCP answer does not match the query")
        return answer


def _header_only(qid: int, flags: int, rcode: int) -> bytes:
    """A reply of just a header: ID, opcode and RD of the query, RA, ``rcode``."""
    bitmap = _QR | (flags & (_OPCODE | _RD)) | _RA | rcode
    return _HEADER.pack(qid, bitmap, 0, 0, 0, 0)


def _question_end(data: bytes) -> int:
    """Offset just after the first question of a message, or -1."""
    offset = 12
    size = len(data)
    while offset < size:
        length = data[offset]
        if length == 0:
            end = offset + 5
            return end if end <= size else -1
        if length & 0xC0:
            return -1 if offset + 6 > size else offset + 6  # a pointer ends the name
        offset += 1 + length
    return -1


def _header_only_with_question(data: bytes, rcode: int) -> bytes:
    """A reply to ``data`` with its question and no records (SERVFAIL for a forward)."""
    qid, flags = struct.unpack_from("!HH", data)
    bitmap = _QR | (flags & (_OPCODE | _RD | _CD)) | _RA | rcode
    end = _question_end(data)
    if end < 0:
        return _HEADER.pack(qid, bitmap, 0, 0, 0, 0)
    return _HEADER.pack(qid, bitmap, 1, 0, 0, 0) + data[12:end]


def _matches(query: bytes, answer: bytes) -> bool:
    """``answer`` is a response to ``query``: same ID, QR set, the same question."""
    if len(answer) < 12 or answer[:2] != query[:2] or not answer[2] & 0x80:
        return False
    end = _question_end(query)
    if end < 0:
        return True
    if answer[4:6] != b"\x00\x01":
        # some servers leave the question out of an error answer
        return answer[4:6] == b"\x00\x00" and answer[3] & 0xF != NOERROR
    return answer[12:end].lower() == query[12:end].lower()
