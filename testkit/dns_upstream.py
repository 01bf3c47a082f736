"""A tiny upstream DNS server for tests and benchmarks of the agent's resolver.

``UpstreamServer`` answers A / AAAA for fixed names over UDP and TCP on one port (NXDOMAIN for
others), in one of these modes:

- ``normal``: answers over both transports;
- ``truncate``: over UDP only a truncated answer (TC, no records), the full one over TCP;
- ``silent``: reads queries and never answers;
- ``servfail``: answers SERVFAIL to everything.

``background(*components)`` runs components (this server, the agent's ``DnsServer``...) on an
event loop in a thread, for tests that drive them from blocking code (``dig``, dnsperf).

Standalone: ``python -m testkit.dns_upstream --record example.com=192.0.2.1`` prints
``listening on 127.0.0.1:PORT`` and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

from kumadp.lifecycle import Component, supervise

MODES = ("normal", "truncate", "silent", "servfail")


class UpstreamServer:
    name = "dns-upstream"

    def __init__(
        self,
        records: Mapping[str, Sequence[str]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "normal",
        ttl: int = 60,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.records = {k.rstrip(".").lower(): list(v) for k, v in records.items()}
        self.host = host
        self.port = port
        self.mode = mode
        self.ttl = ttl
        self.udp_queries = 0
        self.tcp_queries = 0
        self.started = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()

    def reply(self, data: bytes, *, tcp: bool) -> bytes | None:
        try:
            query = DNSRecord.parse(data)
        except Exception:
            return None
        reply = query.reply()
        if self.mode == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
            return bytes(reply.pack())
        if self.mode == "truncate" and not tcp:
            reply.header.tc = 1
            return bytes(reply.pack())
        qname = str(query.q.qname).rstrip(".").lower()
        addresses = self.records.get(qname)
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return bytes(reply.pack())
        for text in addresses:
            ip = ipaddress.ip_address(text)
            if ip.version == 4 and query.q.qtype in (QTYPE.A, QTYPE.ANY):
                reply.add_answer(RR(query.q.qname, QTYPE.A, ttl=self.ttl, rdata=A(text)))
            elif ip.version == 6 and query.q.qtype in (QTYPE.AAAA, QTYPE.ANY):
                reply.add_answer(RR(query.q.qname, QTYPE.AAAA, ttl=self.ttl, rdata=AAAA(text)))
        return bytes(reply.pack())

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class Udp(asyncio.DatagramProtocol):
            transport: asyncio.DatagramTransport

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: Any) -> None:
                server.udp_queries += 1
                if server.mode == "silent":
                    return
                answer = server.reply(data, tcp=False)
                if answer is not None:
                    self.transport.sendto(answer, addr)

        wanted = self.port
        for attempt in range(20):
            # UDP and TCP must share one port number: with port 0 the UDP socket picks it and
            # the TCP bind may find it taken; then try another.
            transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=(self.host, wanted))
            port = transport.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
                break
            except OSError:
                transport.close()
                if wanted or attempt == 19:
                    raise
        self.port = port
        try:
            handlers = self._handlers
            self.started.set()
            async with tcp:
                await stop.wait()
                tcp.close()
                for task in list(handlers):
                    task.cancel()
                await asyncio.gather(*handlers, return_exceptions=True)
        finally:
            transport.close()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                self.tcp_queries += 1
                if self.mode == "silent":
                    continue
                answer = self.reply(data, tcp=True)
                if answer is None:
                    return
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.contextmanager
def background(
    *components: Component, timeout: float = 10.0
) -> Iterator[asyncio.AbstractEventLoop]:
    """Run ``components`` (supervised) on a new event loop in a thread; return once each one
    that has a ``started`` event has set it; stop them all on exit and re-raise a failure."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["stop"] = stop
        task = asyncio.ensure_future(supervise(components, stop))
        events = [getattr(c, "started", None) for c in components]
        started = asyncio.ensure_future(
            asyncio.gather(*(e.wait() for e in events if isinstance(e, asyncio.Event)))
        )
        waiting: set[asyncio.Future[Any]] = {task, started}
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if started not in done:
            started.cancel()
            stop.set()
            if task not in done:
                holder["error"] = TimeoutError("background components did not start in time")
            elif task.exception() is not None:
                holder["error"] = task.exception()
        ready.set()
        await task

    def target() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            holder.setdefault("error", exc)
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=target, name="dns-background", daemon=True)
    thread.start()
    try:
        ready.wait(timeout + 5)
        if "error" in holder:
            raise holder["error"]
        yield loop
    finally:
        stop = holder.get("stop")
        if stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("background components did not stop in time")
    if "error" in holder:
        raise holder["error"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--record", action="append", default=[], metavar="NAME=IP[,IP...]")
    args = parser.parse_args(argv)
    records: dict[str, list[str]] = {}
    for item in args.record:
        name, sep, ips = item.partition("=")
        if not sep:
            parser.error(f"--record {item!r}: expected NAME=IP[,IP...]")
        records.setdefault(name, []).extend(ip for ip in ips.split(",") if ip)
    server = UpstreamServer(records, host=args.host, port=args.port, mode=args.mode)

    async def serve() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        await server.started.wait()
        print(f"listening on {server.host}:{server.port}", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
