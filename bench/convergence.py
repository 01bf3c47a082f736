"""convergence: a backend dataplane joins through the API; the time until *every* running
Envoy with an outbound to ``backend`` shows the new endpoint in its admin ``/clusters``.

10 and then 30 real sidecars (agents with real Envoys); every Envoy is polled concurrently
(asyncio, raw HTTP/1.1 to each admin port) and a trial ends when the last one has it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

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

KUMA_REFRESH_MS = 1000.0  # Kuma's default xDS refresh interval


async def admin_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
    finally:
        writer.close()
    return data.decode(errors="replace")


async def _wait_all(ports: list[int], needle: str, present: bool, limit: float) -> list[float]:
    """Seconds until ``needle`` is in (or gone from) each admin's /clusters."""
    t0 = time.monotonic()

    async def one(port: int) -> float:
        while True:
            try:
                found = needle in await admin_get(port, "/clusters")
            except OSError:
                found = not present
            if found == present:
                return time.monotonic() - t0
            if time.monotonic() - t0 > limit:
                raise TimeoutError(f"admin :{port} never {'got' if present else 'lost'} {needle}")
            await asyncio.sleep(0.002)

    return list(await asyncio.gather(*(one(p) for p in ports)))


def _start_sidecars(env: MeshEnv, first: int, count: int, app_port: int) -> list[Agent]:
    agents = []
    for i in range(first, first + count):
        outbounds = {"backend": free_port()}
        doc, inbound = env.dataplane_yaml(f"web-{i}", "web", app_port, outbounds=outbounds)
        agents.append(
            env.start_agent(
                f"web-{i}",
                doc,
                inbound_port=inbound,
                outbound_ports=outbounds,
                wait=False,
                drain_time="0s",
                extra=QUIET,
            )
        )
    for agent in agents:  # started concurrently, then waited for
        wait_until(agent.ready, timeout=90, what=f"agent {agent.name} ready", proc=agent.proc)
    return agents


def _trials(env: MeshEnv, agents: list[Agent], trials: int, tag: str) -> list[float]:
    assert env.cp is not None
    ports = [a.admin_port for a in agents]
    samples: list[float] = []
    with httpx.Client(timeout=10) as client:
        for i in range(trials):
            name = f"backend-{tag}-{i}"
            port = free_port()
            doc = {
                "type": "Dataplane",
                "mesh": "default",
                "name": name,
                "networking": {
                    "address": "127.0.0.1",
                    "inbound": [
                        {
                            "port": port,
                            "servicePort": port + 1,
                            "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"},
                        }
                    ],
                },
            }
            needle = f"backend::127.0.0.1:{port}::"
            t0 = time.monotonic()
            resp = client.put(f"{env.cp.url}/meshes/default/dataplanes/{name}", json=doc)
            assert resp.status_code == 201, resp.text
            put_s = time.monotonic() - t0
            got = asyncio.run(_wait_all(ports, needle, True, 15))
            samples.append(max(got) + put_s)
            client.delete(f"{env.cp.url}/meshes/default/dataplanes/{name}")
            asyncio.run(_wait_all(ports, needle, False, 15))  # settled before the next trial
    return samples


def bench_convergence(tmp: Path, opts: Options) -> list[Figure]:
    trials = 8 if opts.quick else 20
    sizes = (10, 30)
    env = MeshEnv(tmp)
    results: dict[int, list[float]] = {}
    try:
        start_quiet_cp(env)
        env.start_service("backend-0", "backend", drain_time="0s", extra=QUIET)
        app_port = free_port()  # the web inbounds' app: never called here
        agents: list[Agent] = []
        for size in sizes:
            agents += _start_sidecars(env, len(agents), size - len(agents), app_port)
            results[size] = _trials(env, agents, trials, str(size))
    finally:
        close_fast(env)
    figures = []
    for size, samples in results.items():
        p50, p99 = percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
        base = f"Kuma's default refresh interval ({REFERENCE})"
        figures.append(
            Figure(
                f"convergence: new endpoint -> all {size} Envoys, p50 ({trials} trials)",
                p50,
                "ms",
                KUMA_REFRESH_MS,
                base,
                "-",
                None,
            )
        )
        met = p99 <= 200 if size == 30 else None
        note = ""
        if met is False:
            note = (
                f"p99 {p99:.0f} ms: the CP regenerates every connected sidecar of the mesh on "
                "each change; see the generation and control-plane scale figures"
            )
        figures.append(
            Figure(
                f"convergence: new endpoint -> all {size} Envoys, p99 ({trials} trials)",
                p99,
                "ms",
                KUMA_REFRESH_MS,
                base,
                "<= 200 ms" if size == 30 else "-",
                met,
                note,
            )
        )
    return figures
