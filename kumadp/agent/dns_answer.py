"""Answering DNS queries from the name table: pure (no I/O), shared by the UDP and TCP
transports of ``kumadp.agent.dns``.

- A / AAAA for names in the ``NameTable``: authoritative, TTL from the table, every address of
  the family. A known name without an address of the asked family, or asked another type
  (TXT, MX, ...), gets NOERROR with no answer; so does a name that only has names below it
  (``svc.mesh`` when ``my.svc.mesh`` exists), as RFC 8020 requires.
- Any other name under the mesh domain: NXDOMAIN, authoritative, never forwarded. No SOA is
  added to negative answers, so stub resolvers do not cache them and a service that joins the
  mesh resolves at once. Before the first table has arrived mesh names get SERVFAIL (we do not
  know yet) instead of a NXDOMAIN that could be remembered.
- Everything else is to be relayed upstream (``Forward``).
- EDNS0: a query with an OPT record gets one back (UDP size = the client's, 512..4096, DO bit
  copied); EDNS version > 0 gets BADVERS. UDP answers larger than the client's size are packed
  truncated (TC, question only) so the client retries over TCP.
- Bad input: fewer than 12 bytes (no header) or a response (QR set) are dropped; anything else
  unparseable, or with a question count other than 1, gets FORMERR; an opcode other than QUERY
  gets NOTIMP.

Local answers are cached packed, per exact query bytes after the ID and per transport
(``udp_cache``, ``tcp_cache``: body after the ID, rcode, kind); the transports look them up
themselves on their fast path, after ``clear_cache()`` when ``cache_generation`` is not the
table's generation any more.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, CLASS, EDNS0, QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from kumadp.agent.nametable import NameTable

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended rcode: header 0, OPT ext_rcode 1

QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
OPCODE = 0x7800
HEADER = struct.Struct("!HHHHHH")
_MIN_UDP = 512
_MAX_UDP = 4096
_QTYPE_A, _QTYPE_AAAA, _QTYPE_ANY, _QTYPE_OPT = QTYPE.A, QTYPE.AAAA, QTYPE.ANY, QTYPE.OPT
_CLASS_IN, _CLASS_ANY = CLASS.IN, getattr(CLASS, "*")

# what a cached local answer counts as
KIND_MESH, KIND_NXDOMAIN, KIND_OTHER = 0, 1, 2

Cached = tuple[bytes, int, int]  # the answer after its ID, its rcode, its kind


def rcode_name(rcode: int) -> str:
    if rcode == BADVERS:
        return "BADVERS"
    name = RCODE.get(rcode)
    return str(name) if name is not None else f"RCODE{rcode}"


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

    def count_kind(self, kind: int) -> None:
        if kind == KIND_MESH:
            self.mesh_answers += 1
        elif kind == KIND_NXDOMAIN:
            self.nxdomain += 1

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
class Forward:
    """A query to relay upstream (as received; the reply gets ``data[:2]`` as its ID)."""

    data: bytes
    udp_limit: int  # the largest UDP answer the client takes


class Answerer:
    """Answers queries for names under ``domain`` from ``table``, counting in ``stats``."""

    def __init__(
        self, table: NameTable, stats: DnsStats, *, domain: str = "mesh", cache_size: int = 10_000
    ) -> None:
        self.table = table
        self.stats = stats
        self.domain = domain.strip(".").lower()
        self.cache_size = cache_size
        self.udp_cache: dict[bytes, Cached] = {}
        self.tcp_cache: dict[bytes, Cached] = {}
        self.cache_generation = -1
        self._domain_labels = tuple(label.encode() for label in self.domain.split("."))

    def clear_cache(self) -> None:
        self.udp_cache.clear()
        self.tcp_cache.clear()
        self.cache_generation = self.table.generation

    def answer(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The local answer to one query (cached), None when it would be dropped or must be
        forwarded. For tests and benchmarks; the transports take the same path."""
        if self.cache_generation != self.table.generation:
            self.clear_cache()
        cache = self.tcp_cache if tcp else self.udp_cache
        hit = cache.get(data[2:])
        if hit is not None:
            return data[:2] + hit[0]
        result = self.handle(data, tcp=tcp)
        return None if isinstance(result, Forward) else result

    def handle(self, data: bytes, tcp: bool) -> bytes | Forward | None:
        """Answer locally (bytes, cached), forward (``Forward``) or drop (None)."""
        stats = self.stats
        if len(data) < 12:
            stats.malformed += 1
            stats.dropped += 1
            return None
        qid, flags, qdcount, _, _, _ = HEADER.unpack_from(data)
        if flags & QR:  # a response: never answer one (no loops between resolvers)
            stats.malformed += 1
            stats.dropped += 1
            return None
        if flags & OPCODE:
            return header_only(qid, flags, NOTIMP)
        if qdcount != 1:
            stats.malformed += 1
            return header_only(qid, flags, FORMERR)
        try:
            query = DNSRecord.parse(data)
        except Exception:  # dnslib raises several kinds on garbage
            stats.malformed += 1
            return header_only(qid, flags, FORMERR)
        opts = [rr for rr in query.ar if rr.rtype == _QTYPE_OPT]
        if len(opts) > 1 or (opts and opts[0].rname.label):
            stats.malformed += 1
            return header_only(qid, flags, FORMERR)
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
            return Forward(bytes(data), udp_limit)
        reply, rcode, kind = self._local(qid, flags, question, opt, labels, tcp, udp_limit)
        cache = self.tcp_cache if tcp else self.udp_cache
        if len(cache) >= self.cache_size:
            cache.clear()
        cache[bytes(data[2:])] = (reply[2:], rcode, kind)
        stats.count_kind(kind)
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
    ) -> Cached:
        table = self.table
        if not table.first_table.is_set():
            reply = self._build(qid, flags, question, opt, SERVFAIL, [], tcp, udp_limit, aa=False)
            return reply, SERVFAIL, KIND_OTHER
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
                return reply, NOERROR, KIND_MESH
            reply = self._build(qid, flags, question, opt, NXDOMAIN, [], tcp, udp_limit)
            return reply, NXDOMAIN, KIND_NXDOMAIN
        answers: list[RR] = []
        if question.qclass in (_CLASS_IN, _CLASS_ANY):
            qtype, ttl, qname = question.qtype, table.ttl, question.qname
            if qtype in (_QTYPE_A, _QTYPE_ANY):
                answers += [RR(qname, _QTYPE_A, ttl=ttl, rdata=A(ip)) for ip in record.ipv4]
            if qtype in (_QTYPE_AAAA, _QTYPE_ANY):
                answers += [RR(qname, _QTYPE_AAAA, ttl=ttl, rdata=AAAA(ip)) for ip in record.ipv6]
        reply = self._build(qid, flags, question, opt, NOERROR, answers, tcp, udp_limit)
        return reply, NOERROR, KIND_MESH

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
        bitmap = QR | RA | (flags & (RD | CD)) | (rcode & 0xF) | (AA if aa else 0)
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
            reply = DNSRecord(DNSHeader(qid, bitmap | TC), questions=[question], ar=extra)
            packed = bytes(reply.pack())
        return packed


def header_only(qid: int, flags: int, rcode: int) -> bytes:
    """A reply of just a header: ID, opcode and RD of the query, RA, ``rcode``."""
    bitmap = QR | (flags & (OPCODE | RD)) | RA | rcode
    return HEADER.pack(qid, bitmap, 0, 0, 0, 0)


def question_end(data: bytes) -> int:
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


def header_only_with_question(data: bytes, rcode: int) -> bytes:
    """A reply to ``data`` with its question and no records (SERVFAIL for a forward)."""
    qid, flags = struct.unpack_from("!HH", data)
    bitmap = QR | (flags & (OPCODE | RD | CD)) | RA | rcode
    end = question_end(data)
    if end < 0:
        return HEADER.pack(qid, bitmap, 0, 0, 0, 0)
    return HEADER.pack(qid, bitmap, 1, 0, 0, 0) + data[12:end]
