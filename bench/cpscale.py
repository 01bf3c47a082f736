"""control-plane scale: N simulated dataplanes (``testkit.ads_client``, one gRPC
channel and TLS connection each, as N Envoys would hold) against one real CP, for N = 100,
500 and 1,000 in a mesh of 100 HTTP services.

Per N, on a fresh CP (memory store, ``--dp-auth none``, info logs):

1. the N dataplanes are created through the API (``dp-<i>``: inbound of ``svc-<i % 100>``,
   outbounds to 3 other services); the CP's RSS, settled, is the idle baseline;
2. the N clients connect at once; "initial snapshots" = the time until the last of them has
   CDS, LDS and EDS (RDS too if it had any); baseline: the same clients against the floor
   server (``ads_floor``: our ADS code serving one pre-built snapshot, no CP work);
3. RSS again, settled: (RSS - idle RSS) / N = memory per connected dataplane;
4. endpoint changes: one dataplane's inbound port changes (a PUT); for every client with
   that service as an outbound, the time until its EDS has the new port. p99 over all
   (client, change) samples.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import psutil

from bench.core import (
    REFERENCE,
    Figure,
    Options,
    close_fast,
    median,
    percentile,
    raise_fd_limit,
    rss_mb,
    start_quiet_cp,
)
from bench.generation import dataplane_doc
from testkit.ads_client import AdsClient, channel
from testkit.mesh import MeshEnv
from testkit.procs import ProcessSet, free_port, wait_until

KONG_MB_PER_DP = 1.0  # Kong's sizing guide for Kuma: about 1 MB of CP memory per dataplane
KUMA_REFRESH_S = 1.0


def _rss_settled(pid: int, samples: int = 5, interval: float = 0.3) -> float:
    values = []
    for _ in range(samples):
        values.append(rss_mb(pid))
        time.sleep(interval)
    return median(values)


async def _put_all(url: str, docs: list[dict[str, object]], concurrency: int = 8) -> None:
    queue = list(reversed(docs))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            doc = queue.pop()
            resp = await client.put(f"{url}/meshes/default/dataplanes/{doc['name']}", json=doc)
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"PUT {doc['name']}: {resp.status_code} {resp.text[:200]}")

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


class Fleet:
    """N clients on N channels, all in this event loop."""

    def __init__(self, target: str, ca_pem: bytes, n: int) -> None:
        self.target = target
        self.ca_pem = ca_pem
        self.clients = [AdsClient(f"default.dp-{i}") for i in range(n)]
        self.channels: list[object] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, limit: float) -> float:
        """Open every stream at once; seconds until the last initial snapshot is complete."""
        t0 = time.monotonic()
        for client in self.clients:
            chan = channel(self.target, self.ca_pem)
            self.channels.append(chan)
            self.tasks.append(asyncio.create_task(client.run(chan)))
        waiting = [asyncio.create_task(c.complete.wait()) for c in self.clients]
        _done, pending = await asyncio.wait(waiting, timeout=limit)
        for task in pending:
            task.cancel()
        broken = [t for t in self.tasks if t.done() and t.exception() is not None]
        if broken:
            raise RuntimeError(f"{len(broken)} ADS streams failed: {broken[0].exception()!r}")
        if pending:
            raise TimeoutError(
                f"{len(pending)} of {len(self.clients)} clients had no complete snapshot "
                f"after {limit:.0f} s"
            )
        return max(c.complete_at or 0.0 for c in self.clients) - t0

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.channels), return_exceptions=True)  # type: ignore[attr-defined]


async def _changes(
    fleet: Fleet, url: str, docs: list[dict[str, object]], changes: int
) -> list[float]:
    samples: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for k in range(changes):
            i = (k * 37 + 11) % len(docs)
            doc = docs[i]
            networking = doc["networking"]
            assert isinstance(networking, dict)
            inbound = networking["inbound"][0]
            service = inbound["tags"]["kuma.io/service"]
            inbound["port"] = 30000 + k
            endpoint = ("127.0.0.1", inbound["port"])
            affected = [c for c in fleet.clients if service in c.endpoints]
            futures = [c.watch_endpoint(service, endpoint) for c in affected]
            t0 = time.monotonic()
            resp = await http.put(f"{url}/meshes/default/dataplanes/{doc['name']}", json=doc)
            if resp.status_code != 200:
                raise RuntimeError(f"PUT {doc['name']}: {resp.status_code} {resp.text[:200]}")
            arrived = await asyncio.wait_for(asyncio.gather(*futures), 60)
            samples += [t - t0 for t in arrived]
            await asyncio.sleep(0.5)
    return samples


def _floor(tmp: Path, n: int) -> float:
    """Seconds for N clients to get their snapshots from the floor server."""
    procs = ProcessSet(tmp)
    try:
        port = free_port()
        ca = tmp / f"floor-ca-{n}.pem"
        proc = procs.start(
            f"ads-floor-{n}",
            [
                sys.executable,
                "-m",
                "bench.ads_floor",
                "--port",
                str(port),
                "--ca-out",
                str(ca),
            ],
        )
        wait_until(
            lambda: "listening on" in proc.output(), timeout=30, what="floor server", proc=proc
        )

        async def go() -> float:
            fleet = Fleet(f"127.0.0.1:{port}", ca.read_bytes(), n)
            try:
                return await fleet.connect(limit=120)
            finally:
                await fleet.close()

        return asyncio.run(go())
    finally:
        procs.close()


def _one_size(tmp: Path, n: int, changes: int) -> dict[str, float | list[float]]:
    env = MeshEnv(tmp)
    try:
        cp = start_quiet_cp(env, dp_auth="none")
        docs = [dataplane_doc(i) for i in range(n)]
        asyncio.run(_put_all(cp.url, docs))
        time.sleep(1.0)  # the reconciler has seen every change
        idle = _rss_settled(cp.proc.pid)
        ca_pem = httpx.get(f"{cp.url}/certs/dp-server-ca.pem", timeout=10).content

        async def go() -> tuple[float, list[float], float]:
            fleet = Fleet(f"127.0.0.1:{cp.dp_port}", ca_pem, n)
            try:
                serve = await fleet.connect(limit=180)
                await asyncio.sleep(1.0)
                loaded = await asyncio.to_thread(_rss_settled, cp.proc.pid)
                samples = await _changes(fleet, cp.url, docs, changes)
                return serve, samples, loaded
            finally:
                await fleet.close()

        serve, samples, loaded = asyncio.run(go())
        cpu_s = sum(psutil.Process(cp.proc.pid).cpu_times()[:2])
    finally:
        close_fast(env)
    return {"idle": idle, "loaded": loaded, "serve": serve, "samples": samples, "cpu": cpu_s}


def bench_cp_scale(tmp: Path, opts: Options) -> list[Figure]:
    raise_fd_limit()
    sizes = (100, 300) if opts.quick else (100, 500, 1000)
    changes = 2 if opts.quick else 5
    figures: list[Figure] = []
    for n in sizes:
        sub = tmp / f"n{n}"
        sub.mkdir()
        got = _one_size(sub, n, changes)
        floor = _floor(sub, n)
        idle, loaded, serve = float(got["idle"]), float(got["loaded"]), float(got["serve"])  # type: ignore[arg-type]
        samples: list[float] = got["samples"]  # type: ignore[assignment]
        per_dp = (loaded - idle) / n
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(
            f"    [{n} clients] idle RSS {idle:.0f} MB, with clients {loaded:.0f} MB; initial "
            f"snapshots {serve:.2f} s (floor {floor:.2f} s); change p50 {p50 * 1000:.0f} ms "
            f"p99 {p99 * 1000:.0f} ms over {len(samples)} samples",
            flush=True,
        )
        mem_met = per_dp <= 0.5
        figures.append(
            Figure(
                f"cp-scale {n}: CP RSS with {n} clients connected",
                loaded,
                "MB",
                idle,
                f"the same CP idle, the same {n} dataplanes stored, measured",
                "-",
                None,
            )
        )
        figures.append(
            Figure(
                f"cp-scale {n}: CP RSS per connected dataplane",
                per_dp,
                "MB",
                KONG_MB_PER_DP,
                f"Kong's sizing guide for Kuma ({REFERENCE})",
                "<= 0.5 MB",
                mem_met,
                "(RSS with clients - idle RSS) / N"
                if mem_met
                else "per-stream state (snapshot per node, ADS session, gRPC and TLS buffers) "
                "in a Python process",
            )
        )
        figures.append(
            Figure(
                f"cp-scale {n}: time to serve all {n} initial snapshots",
                serve,
                "s",
                floor,
                "the same clients, our ADS code serving one pre-built snapshot (no CP work)",
                "-",
                None,
                ""
                if serve <= 3 * floor
                else "every new stream makes the reconciler rebuild the mesh state and "
                "republish every dataplane's identity before generating its snapshot: O(N) per "
                "connection, O(N^2) for a burst; keeping the mesh state between changes "
                "would make a burst O(N)",
            )
        )
        target = n == max(sizes)
        met = p99 <= 1.0 if target else None
        note = ""
        if met is False:
            note = (
                f"a change regenerates the snapshot of every connected dataplane of the mesh "
                f"({n}) before any is sent; see the generation figure for the cost of one. "
                "What it would take: regenerate only the dataplanes whose config the change "
                "touches (outbounds to the changed service) and push EDS first"
            )
        figures.append(
            Figure(
                f"cp-scale {n}: endpoint change -> every affected client's EDS, p99 "
                f"({len(samples)} samples, {changes} changes)",
                p99,
                "s",
                KUMA_REFRESH_S,
                f"Kuma's default refresh interval ({REFERENCE})",
                "<= 1 s" if target else "-",
                met,
                note,
            )
        )
    return figures
