"""The agent's name table and its .mesh DNS resolver, over real UDP and TCP sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from kumadp.agent.dns import (
    READINESS_KEY,
    DnsServer,
    parse_upstream,
    read_resolv_conf,
)
from kumadp.agent.dns_forward import matches
from kumadp.agent.nametable import DEFAULT_TTL, NameTable
from kumadp.agent.readiness import Readiness, State
from kumadp.wire import agent_pb2
from testkit.dns_upstream import UpstreamServer
from testkit.procs import eventually, free_port, until

WAIT = 3.0  # seconds for any one answer
MANY = [f"240.0.1.{i}" for i in range(1, 61)]  # too many for a 512-byte UDP answer


def make_table() -> NameTable:
    table = NameTable()
    table.update(
        "v1",
        30,
        {
            "backend.mesh": (["240.0.0.1"], []),
            "web.mesh": (["240.0.0.2", "240.0.0.3"], ["fd00::2"]),
            "my.svc.mesh": (["240.0.0.4"], []),
            "big.mesh": (MANY, []),
        },
    )
    return table


@contextlib.asynccontextmanager
async def serving(component: Any) -> AsyncIterator[Any]:
    stop = asyncio.Event()
    task = asyncio.create_task(component.run(stop))
    started = asyncio.create_task(component.started.wait())
    try:
        await asyncio.wait({task, started}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises the failure
        assert component.started.is_set(), f"{component.name} did not start"
        yield component
    finally:
        started.cancel()
        stop.set()
        await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def resolver(table: NameTable | None = None, **kwargs: Any) -> AsyncIterator[DnsServer]:
    kwargs.setdefault("upstreams", [])
    server = DnsServer(make_table() if table is None else table, port=0, **kwargs)
    async with serving(server):
        yield server


@contextlib.asynccontextmanager
async def upstream(mode: str = "normal") -> AsyncIterator[UpstreamServer]:
    records = {"example.test": ["192.0.2.7", "2001:db8::7"], "other.test": ["192.0.2.8"]}
    async with serving(UpstreamServer(records, mode=mode)) as server:
        yield server


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data)


@contextlib.asynccontextmanager
async def udp_client(port: int) -> AsyncIterator[tuple[asyncio.DatagramTransport, _Client]]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        _Client, remote_addr=("127.0.0.1", port)
    )
    try:
        yield transport, client
    finally:
        transport.close()


async def udp_ask(port: int, query: DNSRecord | bytes) -> DNSRecord:
    raw = query if isinstance(query, bytes) else bytes(query.pack())
    async with udp_client(port) as (transport, client):
        transport.sendto(raw)
        reply = await asyncio.wait_for(client.replies.get(), WAIT)
    return DNSRecord.parse(reply)


async def tcp_ask(port: int, *queries: DNSRecord) -> list[DNSRecord]:
    """Several queries on one connection; answers in the order of the queries (by ID)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for query in queries:
            raw = bytes(query.pack())
            writer.write(len(raw).to_bytes(2, "big") + raw)
        await writer.drain()
        by_id = {}
        async with asyncio.timeout(WAIT):
            for _ in queries:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = DNSRecord.parse(await reader.readexactly(size))
                by_id[reply.header.id] = reply
    finally:
        writer.close()
        await writer.wait_closed()
    return [by_id[q.header.id] for q in queries]


def question(
    name: str, qtype: str = "A", *, edns: int | None = None, do: bool = False
) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    if edns is not None:
        query.add_ar(EDNS0(rname=".", udp_len=edns, flags="do" if do else ""))
    return query


def addresses(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


# ------------------------------------------------------------------ the name table


def test_name_table_normalises_and_replaces_atomically() -> None:
    table = NameTable()
    assert not table.first_table.is_set() and table.lookup("backend.mesh") is None
    seen: list[str] = []
    table.changed.append(lambda t: seen.append(t.version))
    table.update("1", 10, {"BackEnd.Mesh.": (["240.0.0.1", "bad", "fd00::1"], ["fd00::1"])})
    record = table.lookup("BACKEND.mesh.")
    assert record is not None and record.name == "backend.mesh"
    assert record.ipv4 == ("240.0.0.1",) and record.ipv6 == ("fd00::1",)
    assert table.first_table.is_set() and (table.version, table.ttl) == ("1", 10)
    assert table.has_children("mesh") and not table.has_children("backend.mesh")
    generation = table.generation
    table.update("2", 5, {"web.mesh": (["240.0.0.2"], [])})
    assert table.lookup("backend.mesh") is None and table.lookup("web.mesh") is not None
    assert table.generation == generation + 1 and seen == ["1", "2"] and table.names == ["web.mesh"]


def test_name_table_from_proto() -> None:
    msg = agent_pb2.NameTable(
        version="7",
        records=[agent_pb2.NameRecord(name="backend.mesh", ipv4=["240.0.0.1"], ipv6=["fd00::1"])],
    )
    table = NameTable()
    table.update_from_proto(msg)
    assert table.ttl == DEFAULT_TTL and table.version == "7"
    record = table.lookup("backend.mesh")
    assert record is not None and record.ipv6 == ("fd00::1",)


def test_read_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver   fe80::1%eth0 # x\n"
        "nameserver not-an-ip\nnameserver 10.0.0.2\noptions ndots:5\n"
    )
    assert read_resolv_conf(str(conf)) == [("10.0.0.2", 53), ("fe80::1", 53)]
    assert read_resolv_conf(str(tmp_path / "missing")) == []


def test_parse_upstream() -> None:
    assert parse_upstream("1.2.3.4") == ("1.2.3.4", 53)
    assert parse_upstream("1.2.3.4:5353") == ("1.2.3.4", 5353)
    assert parse_upstream("::1") == ("::1", 53)
    assert parse_upstream("[::1]:5353") == ("::1", 5353)
    for bad in ("dns.google:53", "1.2.3.4:0", "1.2.3.4:x", "[::1"):
        with pytest.raises(ValueError, match="bad DNS upstream"):
            parse_upstream(bad)


# ------------------------------------------------------------------ local answers


async def test_a_answer_is_authoritative_with_every_address_and_the_table_ttl() -> None:
    async with resolver() as server:
        query = question("web.mesh")
        reply = await udp_ask(server.port, query)
        assert reply.header.id == query.header.id
        assert reply.header.rcode == RCODE.NOERROR and reply.header.aa and reply.header.qr
        assert reply.header.rd and reply.header.ra
        assert sorted(addresses(reply)) == ["240.0.0.2", "240.0.0.3"]
        assert {rr.ttl for rr in reply.rr} == {30}
        assert all(rr.rtype == QTYPE.A for rr in reply.rr)


async def test_aaaa_and_other_types() -> None:
    async with resolver() as server:
        reply = await udp_ask(server.port, question("web.mesh", "AAAA"))
        assert addresses(reply) == ["fd00::2"] and reply.rr[0].rtype == QTYPE.AAAA
        for name, qtype in (("backend.mesh", "AAAA"), ("backend.mesh", "TXT"), ("web.mesh", "MX")):
            reply = await udp_ask(server.port, question(name, qtype))
            assert reply.header.rcode == RCODE.NOERROR and reply.header.aa, (name, qtype)
            assert reply.rr == [], (name, qtype)


async def test_names_are_case_insensitive_and_the_question_is_echoed_as_asked() -> None:
    async with resolver() as server:
        reply = await udp_ask(server.port, question("BaCkEnD.MeSh."))
        assert addresses(reply) == ["240.0.0.1"]
        assert reply.q.qname.label == (b"BaCkEnD", b"MeSh")
        assert reply.rr[0].rname.label == (b"BaCkEnD", b"MeSh")


async def test_edns0_is_kept() -> None:
    async with resolver() as server:
        reply = await udp_ask(server.port, question("backend.mesh", edns=1232, do=True))
        [opt] = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
        assert opt.rclass == 1232 and opt.ttl & 0x8000  # size and the DO bit
        reply = await udp_ask(server.port, question("backend.mesh", edns=65000))
        [opt] = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
        assert opt.rclass == 4096 and not opt.ttl & 0x8000
        reply = await udp_ask(server.port, question("backend.mesh"))
        assert reply.ar == []
        query = question("backend.mesh")
        query.add_ar(EDNS0(rname=".", udp_len=1232, version=1))
        reply = await udp_ask(server.port, query)
        [opt] = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
        assert (opt.ttl >> 24) == 1 and reply.rr == []  # BADVERS = 16: ext_rcode 1


async def test_unknown_mesh_names_get_nxdomain_and_are_never_forwarded() -> None:
    async with upstream() as up, resolver(upstreams=[("127.0.0.1", up.port)]) as server:
        for name in ("nothing.mesh", "a.backend.mesh", "NOTHING.MESH."):
            reply = await udp_ask(server.port, question(name))
            assert reply.header.rcode == RCODE.NXDOMAIN and reply.header.aa, name
        [reply] = await tcp_ask(server.port, question("nothing.mesh", "AAAA"))
        assert reply.header.rcode == RCODE.NXDOMAIN
        # names with names below them, and the domain itself, exist: NOERROR, no answer
        for name in ("svc.mesh", "mesh"):
            reply = await udp_ask(server.port, question(name))
            assert reply.header.rcode == RCODE.NOERROR and reply.rr == [], name
        assert up.udp_queries == 0 and up.tcp_queries == 0
        assert server.stats.nxdomain == 4 and server.stats.forwards == 0


async def test_table_changes_are_served_at_once_and_servfail_before_the_first_table() -> None:
    table = NameTable()
    async with resolver(table) as server:
        reply = await udp_ask(server.port, question("backend.mesh"))
        assert reply.header.rcode == RCODE.SERVFAIL  # not known yet, not "does not exist"
        table.update("1", 30, {"backend.mesh": (["240.0.0.1"], [])})
        for _ in range(2):  # the second one comes from the cache
            assert addresses(await udp_ask(server.port, question("backend.mesh"))) == ["240.0.0.1"]
        assert server.stats.cache_hits >= 1
        table.update("2", 5, {"backend.mesh": (["240.0.0.9"], [])})
        reply = await udp_ask(server.port, question("backend.mesh"))
        assert addresses(reply) == ["240.0.0.9"] and reply.rr[0].ttl == 5
        table.update("3", 5, {})
        reply = await udp_ask(server.port, question("backend.mesh"))
        assert reply.header.rcode == RCODE.NXDOMAIN


async def test_big_answers_are_truncated_over_udp_and_complete_over_tcp() -> None:
    async with resolver() as server:
        reply = await udp_ask(server.port, question("big.mesh"))
        assert reply.header.tc and reply.rr == [] and reply.q.qname == "big.mesh"
        reply = await udp_ask(server.port, question("big.mesh", edns=4096))
        assert not reply.header.tc and sorted(addresses(reply)) == sorted(MANY)
        [reply] = await tcp_ask(server.port, question("big.mesh"))
        assert not reply.header.tc and len(reply.rr) == len(MANY)
        assert server.stats.truncated == 1


async def test_tcp_serves_several_queries_per_connection() -> None:
    async with upstream() as up, resolver(upstreams=[("127.0.0.1", up.port)]) as server:
        queries = [question("backend.mesh"), question("example.test"), question("web.mesh", "AAAA")]
        replies = await tcp_ask(server.port, *queries, question("backend.mesh"))
        assert addresses(replies[0]) == ["240.0.0.1"] == addresses(replies[3])
        assert addresses(replies[1]) == ["192.0.2.7"] and addresses(replies[2]) == ["fd00::2"]
        # forwarded over TCP, since the query came over TCP
        assert up.tcp_queries == 1 and up.udp_queries == 0
        assert server.stats.queries == {"udp": 0, "tcp": 4}


# ------------------------------------------------------------------ forwarding


async def test_other_names_are_forwarded_with_the_clients_id() -> None:
    async with upstream() as up, resolver(upstreams=[("127.0.0.1", up.port)]) as server:
        query = question("Example.Test", "A")
        reply = await udp_ask(server.port, query)
        assert reply.header.id == query.header.id and addresses(reply) == ["192.0.2.7"]
        reply = await udp_ask(server.port, question("example.test", "AAAA"))
        assert addresses(reply) == ["2001:db8::7"]
        reply = await udp_ask(server.port, question("unknown.test"))
        assert reply.header.rcode == RCODE.NXDOMAIN
        assert up.udp_queries == 3 and up.tcp_queries == 0
        assert server.stats.forwards == 3 and server.stats.forward_failures == 0


async def test_truncated_upstream_answers_are_retried_over_tcp() -> None:
    async with upstream("truncate") as up, resolver(upstreams=[("127.0.0.1", up.port)]) as server:
        reply = await udp_ask(server.port, question("example.test"))
        assert not reply.header.tc and addresses(reply) == ["192.0.2.7"]
        assert up.udp_queries == 1 and up.tcp_queries == 1
        assert server.stats.forward_tcp_retries == 1


async def test_upstreams_are_tried_in_order() -> None:
    dead = ("127.0.0.1", free_port())  # nothing listens: refused at once
    async with upstream("silent") as silent, upstream("servfail") as failing, upstream() as up:
        upstreams = [dead, ("127.0.0.1", silent.port), ("127.0.0.1", failing.port)]
        upstreams.append(("127.0.0.1", up.port))
        async with resolver(upstreams=upstreams, upstream_timeout=0.3) as server:
            reply = await udp_ask(server.port, question("other.test"))
            assert addresses(reply) == ["192.0.2.8"]
            assert silent.udp_queries == 1 and failing.udp_queries == 1 and up.udp_queries == 1


async def test_servfail_when_every_upstream_fails() -> None:
    async with upstream("silent") as silent:
        upstreams = [("127.0.0.1", free_port()), ("127.0.0.1", silent.port)]
        async with resolver(upstreams=upstreams, upstream_timeout=0.2) as server:
            query = question("example.test")
            started = time.monotonic()
            reply = await udp_ask(server.port, query)
            assert time.monotonic() - started < 2
            assert reply.header.id == query.header.id
            assert reply.header.rcode == RCODE.SERVFAIL and reply.q.qname == "example.test"
            [reply] = await tcp_ask(server.port, question("example.test"))
            assert reply.header.rcode == RCODE.SERVFAIL
            assert server.stats.forward_failures == 2
    async with upstream("servfail") as failing:
        async with resolver(upstreams=[("127.0.0.1", failing.port)]) as server:
            reply = await udp_ask(server.port, question("example.test"))
            assert reply.header.rcode == RCODE.SERVFAIL  # relayed
    async with resolver(upstreams=[]) as server:
        reply = await udp_ask(server.port, question("example.test"))
        assert reply.header.rcode == RCODE.SERVFAIL


def test_upstream_answers_must_match_the_query() -> None:
    query = bytes(question("example.test").pack())
    good = bytearray(DNSRecord.parse(query).reply().pack())
    assert matches(query, bytes(good))
    assert not matches(query, bytes(good[:2]) + b"\x00" + bytes(good[3:]))  # QR unset
    other_id = bytes([good[0] ^ 1]) + bytes(good[1:])
    assert not matches(query, other_id)
    other = DNSRecord.question("other.test")
    other.header.id = DNSRecord.parse(query).header.id
    assert not matches(query, bytes(other.reply().pack()))


async def test_the_resolver_does_not_forward_to_itself(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = DnsServer(make_table(), port=port, upstreams=[("127.0.0.1", port)])
    with caplog.at_level(logging.WARNING):
        async with serving(server):
            assert server.upstreams == []
            reply = await udp_ask(port, question("example.test"))
            assert reply.header.rcode == RCODE.SERVFAIL
    assert "this resolver itself" in caplog.text


async def test_upstreams_default_to_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\nnameserver ::1\n")
    server = DnsServer(make_table(), port=0, resolv_conf=str(conf))
    async with serving(server):
        assert server.upstreams == [("127.0.0.1", 53), ("::1", 53)]


# ------------------------------------------------------------------ bad input


def _header(qid: int, flags: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return b"".join(x.to_bytes(2, "big") for x in (qid, flags, qd, an, ns, ar))


async def test_bad_packets_get_formerr_or_are_dropped_and_the_server_keeps_answering() -> None:
    async with resolver() as server, udp_client(server.port) as (transport, client):
        good = bytes(question("backend.mesh").pack())
        two = question("backend.mesh")
        two.add_question(question("web.mesh").q)
        cases: list[tuple[bytes, int | None]] = [
            (b"\x12", None),  # no header: dropped
            (b"\x12\x34\x01", None),
            (_header(0x1111, 0x0100, 1) + b"\x07back", RCODE.FORMERR),  # truncated question
            (_header(0x2222, 0x0100, 1) + b"\xc0\x0c\x00\x01\x00\x01", RCODE.FORMERR),  # loop
            (_header(0x3333, 0x0100, 0), RCODE.FORMERR),  # no question
            (bytes(two.pack()), RCODE.FORMERR),  # two questions
            (_header(0x4444, 0x1000, 1) + good[12:], RCODE.NOTIMP),  # opcode STATUS
            (_header(0x5555, 0x8180, 1) + good[12:], None),  # a response: never answered
            (_header(0x6666, 0x0100, 1, ar=2) + good[12:] + b"\x00\x00\x29" * 2, RCODE.FORMERR),
        ]
        for packet, rcode in cases:
            transport.sendto(packet)
            transport.sendto(good)
            reply = DNSRecord.parse(await asyncio.wait_for(client.replies.get(), 3))
            if rcode is not None:
                assert reply.header.id == int.from_bytes(packet[:2], "big"), packet
                assert reply.header.rcode == rcode and reply.header.qr, packet
                reply = DNSRecord.parse(await asyncio.wait_for(client.replies.get(), 3))
            assert addresses(reply) == ["240.0.0.1"], packet
        assert client.replies.empty()
        assert server.stats.malformed >= 6


async def test_bad_tcp_input() -> None:
    async with resolver() as server:
        good = bytes(question("backend.mesh").pack())
        for prefix in (b"\xff\xff", b"\x00\x00"):  # oversized, empty: the connection closes
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(prefix + b"x" * 64)
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()
            await writer.wait_closed()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:  # garbage in a well-framed message: FORMERR, and the connection goes on
            bad = _header(0x7777, 0x0100, 1) + b"\x3fabc"
            writer.write(len(bad).to_bytes(2, "big") + bad + len(good).to_bytes(2, "big") + good)
            replies = []
            for _ in range(2):
                size = int.from_bytes(await reader.readexactly(2), "big")
                replies.append(DNSRecord.parse(await reader.readexactly(size)))
            assert replies[0].header.rcode == RCODE.FORMERR and replies[0].header.id == 0x7777
            assert addresses(replies[1]) == ["240.0.0.1"]
        finally:
            writer.close()
            await writer.wait_closed()
        [reply] = await tcp_ask(server.port, question("backend.mesh"))
        assert addresses(reply) == ["240.0.0.1"]


def _mutations(rng: random.Random, seeds: list[bytes], count: int) -> list[bytes]:
    packets = []
    for i in range(count):
        if i % 4 == 0:
            packets.append(rng.randbytes(rng.randrange(0, 80)))
            continue
        packet = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 6)):
            what = rng.randrange(4)
            if what == 0 and packet:
                packet[rng.randrange(len(packet))] = rng.randrange(256)
            elif what == 1:
                del packet[rng.randrange(len(packet) + 1) :]
            elif what == 2:
                packet[rng.randrange(len(packet) + 1) : 0] = rng.randbytes(rng.randrange(1, 9))
            elif len(packet) > 4:
                packet[2:4] = rng.randbytes(2)  # flags: opcode, QR, ...
        packets.append(bytes(packet))
    return packets


async def test_fuzzed_packets_leave_the_resolver_answering() -> None:
    rng = random.Random(4)
    seeds = [
        bytes(question("backend.mesh").pack()),
        bytes(question("web.mesh", "AAAA", edns=1232, do=True).pack()),
        bytes(question("nothing.mesh", "TXT").pack()),
    ]
    async with resolver() as server:
        packets = _mutations(rng, seeds, 3000)
        for packet in packets:  # the decision path alone: never raises, replies parse
            reply = server.answer(packet)
            if reply is not None:
                parsed = DNSRecord.parse(reply)
                assert parsed.header.qr and parsed.header.id == int.from_bytes(packet[:2], "big")
        async with udp_client(server.port) as (transport, client):
            for i, packet in enumerate(packets):
                transport.sendto(packet)
                if i % 200 == 0:
                    await asyncio.sleep(0)  # let the server read
            probe = question("backend.mesh")
            probe.header.id = 0xABCD

            async def probe_answered() -> DNSRecord:
                transport.sendto(bytes(probe.pack()))
                while True:  # the answers to the junk come first; then ours
                    raw = await asyncio.wait_for(client.replies.get(), 0.5)  # else: send again
                    if (answer := DNSRecord.parse(raw)).header.id == 0xABCD:
                        return answer

            reply = await eventually(probe_answered, "an answer", within=10, interval=0)
            assert addresses(reply) == ["240.0.0.1"]
        [reply] = await tcp_ask(server.port, question("web.mesh"))
        assert len(reply.rr) == 2


# ------------------------------------------------------------------ readiness and stats


async def test_readiness_waits_for_the_first_table() -> None:
    readiness = Readiness()
    readiness.set_ready(True)
    table = NameTable()
    async with resolver(table, readiness=readiness):
        assert readiness.state is State.NOT_READY
        assert any(r.startswith(f"{READINESS_KEY}: waiting") for r in readiness.reasons)
        table.update("1", 30, {"backend.mesh": (["240.0.0.1"], [])})
        await until(lambda: readiness.state is State.READY)


async def test_readiness_is_unblocked_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    readiness = Readiness()
    readiness.set_ready(True)
    with caplog.at_level(logging.WARNING):
        async with resolver(NameTable(), readiness=readiness, first_table_timeout=0.1):
            assert readiness.state is State.NOT_READY
            await until(lambda: readiness.state is State.READY)
    assert "no name table from the control plane" in caplog.text


async def test_readiness_is_not_blocked_when_the_table_is_there() -> None:
    readiness = Readiness()
    readiness.set_ready(True)
    async with resolver(make_table(), readiness=readiness):
        assert readiness.state is State.READY


async def test_stats() -> None:
    async with upstream() as up, resolver(upstreams=[("127.0.0.1", up.port)]) as server:
        for name in ("backend.mesh", "backend.mesh", "nothing.mesh", "example.test"):
            await udp_ask(server.port, question(name))
        await tcp_ask(server.port, question("web.mesh"))
        await udp_ask(server.port, _header(1, 0x0100, 1) + b"\xff" * 20)
        await until(lambda: server.stats.queries["udp"] == 5)
        snapshot = server.stats.snapshot()
    assert snapshot["queries"] == {"udp": 5, "tcp": 1}
    assert snapshot["answers"] == {"NOERROR": 4, "NXDOMAIN": 1, "FORMERR": 1}
    assert snapshot["mesh_answers"] == 3 and snapshot["nxdomain"] == 1
    assert snapshot["cache_hits"] == 1 and snapshot["forwards"] == 1
    assert snapshot["forward_failures"] == 0 and snapshot["malformed"] == 1


async def test_udp_and_tcp_share_the_port_and_a_busy_port_fails_clearly() -> None:
    async with resolver() as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(OSError):
                udp.bind(("127.0.0.1", server.port))
        busy = DnsServer(make_table(), port=server.port, upstreams=[])
        with pytest.raises(OSError, match="DNS resolver cannot listen"):
            await busy.run(asyncio.Event())


async def test_tcp_connections_are_capped_and_idle_ones_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with resolver(max_tcp_connections=5, tcp_idle_timeout=0.3) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(5)]
        await until(lambda: len(server._tcp_writers) == 5, what="5 connections held")
        # over the cap: closed at once, the held ones unaffected, no traceback logged
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
        assert server.tcp_refused == 1
        assert "connections open (the limit); closing new ones" in caplog.text
        assert "Traceback" not in caplog.text
        # idle ones go after the idle timeout, then new ones are served again
        for idle_reader, _ in idle:
            assert await asyncio.wait_for(idle_reader.read(), 3) == b""
        for _, idle_writer in idle:
            idle_writer.close()
        [reply] = await tcp_ask(server.port, question("backend.mesh"))
        assert addresses(reply) == ["240.0.0.1"]
