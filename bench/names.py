"""names: a service joining the mesh is resolvable by every agent. A dataplane with a new
service is created through the API; each of 5 agents' resolvers is asked over UDP (every
2 ms, concurrently) until ``<service>.mesh`` has an address; a trial ends when the last one
answers. p50/p99 over 20 trials. Baseline: Kuma's DNS, which polls for the table once per
second (reference, not measured)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
from dnslib import QTYPE, DNSRecord

from bench.core import (
    QUIET,
    REFERENCE,
    Figure,
    Options,
    close_fast,
    percentile,
    start_quiet_cp,
)
from testkit.mesh import Agent, MeshEnv
from testkit.procs import free_port, wait_until

KUMA_DNS_POLL_MS = 1000.0


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.answers.put_nowait(data)


async def _resolvable(dns_port: int, name: str, t0: float, limit: float) -> float:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Udp, remote_addr=("127.0.0.1", dns_port), family=socket.AF_INET
    )
    try:
        query = DNSRecord.question(name, "A").pack()
        while time.monotonic() - t0 < limit:
            transport.sendto(query)
            try:
                reply = DNSRecord.parse(await asyncio.wait_for(proto.answers.get(), 0.5))
            except TimeoutError:
                continue
            if any(rr.rtype == QTYPE.A for rr in reply.rr):
                return time.monotonic() - t0
            await asyncio.sleep(0.002)
        raise TimeoutError(f"{name} never resolvable on :{dns_port}")
    finally:
        transport.close()


async def _all(agents: list[Agent], name: str, t0: float) -> float:
    times = await asyncio.gather(*(_resolvable(a.dns_port or 0, name, t0, 15) for a in agents))
    return max(times)


def bench_names(tmp: Path, opts: Options) -> list[Figure]:
    trials = 8 if opts.quick else 20
    env = MeshEnv(tmp)
    samples: list[float] = []
    try:
        cp = start_quiet_cp(env)
        app_port = free_port()
        agents = []
        for i in range(5):
            member, inbound = env.dataplane_yaml(f"member-{i}", f"member-{i}", app_port)
            agents.append(
                env.start_agent(
                    f"member-{i}",
                    member,
                    inbound_port=inbound,
                    wait=False,
                    drain_time="0s",
                    extra=QUIET,
                )
            )
        for agent in agents:
            wait_until(agent.ready, timeout=60, what=f"agent {agent.name} ready", proc=agent.proc)
        with httpx.Client(timeout=10) as client:
            for i in range(trials):
                service = f"joiner-{i}"
                port = free_port()
                doc: dict[str, object] = {
                    "type": "Dataplane",
                    "mesh": "default",
                    "name": f"{service}-1",
                    "networking": {
                        "address": "127.0.0.1",
                        "inbound": [
                            {
                                "port": port,
                                "servicePort": port + 1,
                                "tags": {"kuma.io/service": service},
                            }
                        ],
                    },
                }
                t0 = time.monotonic()
                resp = client.put(f"{cp.url}/meshes/default/dataplanes/{service}-1", json=doc)
                if resp.status_code != 201:
                    raise RuntimeError(f"PUT: {resp.status_code} {resp.text[:200]}")
                samples.append(asyncio.run(_all(agents, f"{service}.mesh", t0)))
                time.sleep(0.2)
    finally:
        close_fast(env)
    p50, p99 = percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
    base = f"Kuma's resolver polls the table every second ({REFERENCE})"
    return [
        Figure(
            f"names: new service -> resolvable by all 5 agents, p50 ({trials} trials)",
            p50,
            "ms",
            KUMA_DNS_POLL_MS,
            base,
            "-",
            None,
        ),
        Figure(
            f"names: new service -> resolvable by all 5 agents, p99 ({trials} trials)",
            p99,
            "ms",
            KUMA_DNS_POLL_MS,
            base,
            "<= 200 ms",
            p99 <= 200,
            ""
            if p99 <= 200
            else "the name table push follows the same debounced reconcile as xDS; see convergence",
        ),
    ]
