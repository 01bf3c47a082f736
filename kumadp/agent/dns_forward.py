"""Relaying queries outside the mesh domain to the upstream resolvers.

The query goes out unchanged but its ID (a random one per exchange) to the upstreams in
order, each with a timeout: UDP first, TCP when the UDP answer is truncated, TCP only for
queries that came over TCP. An answer counts only when it matches the query (ID, QR, the
question). An upstream SERVFAIL / REFUSED moves on to the next upstream; SERVFAIL when none
answers, and at once when too many queries are in flight already.

The upstreams come from ``--dns-upstream`` or the ``nameserver`` lines of resolv.conf.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket

from kumadp.agent.dns_answer import (
    NOERROR,
    REFUSED,
    SERVFAIL,
    TC,
    DnsStats,
    Forward,
    header_only_with_question,
    question_end,
)

log = logging.getLogger(__name__)

RECV_SIZE = 65535


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


class BadAnswer(Exception):
    pass


class Forwarder:
    """Relays queries to ``upstreams`` (read as the list is at the time of each query)."""

    def __init__(
        self,
        stats: DnsStats,
        *,
        upstreams: list[tuple[str, int]] | None = None,
        timeout: float = 2.0,
        max_inflight: int = 512,
    ) -> None:
        self.stats = stats
        self.upstreams = upstreams
        self.timeout = timeout
        self.max_inflight = max_inflight

    async def forward(self, fwd: Forward, *, tcp: bool, inflight: int = 0) -> bytes:
        """The relayed answer with the client's ID, or SERVFAIL. ``inflight``: the queries
        being relayed now, this one included."""
        data = fwd.data
        if inflight > self.max_inflight:
            log.debug("DNS: too many queries in flight; SERVFAIL")
            self.stats.forward_failures += 1
            return header_only_with_question(data, SERVFAIL)
        fallback: bytes | None = None
        for host, port in self.upstreams or ():
            try:
                if tcp:
                    answer = await self.exchange_tcp(data, host, port)
                else:
                    answer = await self.exchange_udp(data, host, port)
                    if answer[2] & (TC >> 8):
                        self.stats.forward_tcp_retries += 1
                        full = await self.exchange_tcp(data, host, port)
                        if len(full) <= fwd.udp_limit:
                            answer = full
            except (OSError, TimeoutError, BadAnswer, asyncio.IncompleteReadError) as exc:
                log.debug("DNS upstream %s:%d failed: %s", host, port, exc or type(exc).__name__)
                continue
            if answer[3] & 0xF in (SERVFAIL, REFUSED):
                fallback = answer
                continue
            return data[:2] + answer[2:]
        self.stats.forward_failures += 1
        if fallback is not None:
            return data[:2] + fallback[2:]
        return header_only_with_question(data, SERVFAIL)

    async def exchange_udp(self, data: bytes, host: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        upstream_id = os.urandom(2)
        query = upstream_id + data[2:]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect((host, port))  # a connected socket only takes that peer's answers
            async with asyncio.timeout(self.timeout):
                await loop.sock_sendall(sock, query)
                while True:
                    answer = await loop.sock_recv(sock, RECV_SIZE)
                    if matches(query, answer):
                        return answer

    async def exchange_tcp(self, data: bytes, host: str, port: int) -> bytes:
        upstream_id = os.urandom(2)
        query = upstream_id + data[2:]
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
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
        if not matches(query, answer):
            raise BadAnswer("TCP answer does not match the query")
        return answer


def matches(query: bytes, answer: bytes) -> bool:
    """``answer`` is a response to ``query``: same ID, QR set, the same question."""
    if len(answer) < 12 or answer[:2] != query[:2] or not answer[2] & 0x80:
        return False
    end = question_end(query)
    if end < 0:
        return True
    if answer[4:6] != b"\x00\x01":
        # some servers leave the question out of an error answer
        return answer[4:6] == b"\x00\x00" and answer[3] & 0xF != NOERROR
    return answer[12:end].lower() == query[12:end].lower()
