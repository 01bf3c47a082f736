"""PostgreSQL and several CP instances, beside one instance on SQLite in the same run.

A throw-away PostgreSQL (``testkit.postgres``: fsync off, so these are the CP's costs, not
the disk's) on this machine, CPs logging at info with ``--dp-auth none``:

1. API writes: ``N`` new dataplanes PUT by 8 concurrent clients, then every one updated;
   writes/s and p99 latency, on one SQLite CP (baseline), one PostgreSQL CP, and three
   PostgreSQL CPs with the clients spread over them.
2. Endpoint change -> EDS: 1,000 simulated dataplanes (``bench.cpscale``'s ADS clients)
   spread over 3 instances; one dataplane's port changes through instance 1's API; for every
   client with that service as an outbound, on whichever instance, the time until its EDS
   has the new port. p99 beside the same fleet on one SQLite CP.
3. Leader failover: three instances; SIGKILL the leader; the time until a survivor reports
   a new leader (``GET /control-planes``, polled every 50 ms), three times.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from bench.core import (
    Figure,
    Options,
    Skipped,
    close_fast,
    percentile,
    raise_fd_limit,
    start_quiet_cp,
)
from bench.cpscale import Fleet, _changes
from bench.generation import dataplane_doc
from testkit.ads_client import channel
from testkit.mesh import ControlPlane, MeshEnv
from testkit.postgres import PostgresServer, PostgresUnavailable
from testkit.procs import kumadp_command, wait_until

LEASE_S = 3.0  # kumadp cp run --leader-lease default


def _postgres() -> PostgresServer:
    try:
        return PostgresServer().start()
    except PostgresUnavailable as exc:
        raise Skipped(f"no PostgreSQL: {exc}") from exc


def _migrated_dsn(server: PostgresServer, env: MeshEnv) -> str:
    dsn = server.dsn(server.database("bench"))
    proc = env.procs.start("migrate", kumadp_command("cp", "migrate", "up", "--postgres-dsn", dsn))
    if proc.wait(60) != 0:
        raise RuntimeError(f"migrate failed: {proc.tail()}")
    return dsn


def _cps(env: MeshEnv, store: str, count: int, dsn: str = "") -> list[ControlPlane]:
    extra = ["--postgres-dsn", dsn] if dsn else []
    return [
        start_quiet_cp(
            env, store=store, dp_auth="none", data_dir=env.tmp / "cp-shared", extra=extra
        )
        for _ in range(count)
    ]


# -- 1. API writes ---------------------------------------------------------------------------


async def _write_all(urls: list[str], docs: list[dict[str, Any]]) -> tuple[float, list[float]]:
    """PUT every doc (8 clients, round-robin over ``urls``): (writes/s, latencies)."""
    queue = list(enumerate(reversed(docs)))
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            k, doc = queue.pop()
            url = f"{urls[k % len(urls)]}/meshes/default/dataplanes/{doc['name']}"
            t0 = time.monotonic()
            resp = await client.put(url, json=doc)
            latencies.append(time.monotonic() - t0)
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"PUT {doc['name']}: {resp.status_code} {resp.text[:200]}")

    async with httpx.AsyncClient(timeout=30) as client:
        t0 = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(8)))
        elapsed = time.monotonic() - t0
    return len(docs) / elapsed, latencies


def _writes(tmp: Path, store: str, count: int, n: int, server: PostgresServer | None) -> Any:
    env = MeshEnv(tmp)
    try:
        dsn = _migrated_dsn(server, env) if server is not None else ""
        cps = _cps(env, store, count, dsn)
        urls = [cp.url for cp in cps]
        docs = [dataplane_doc(i) for i in range(n)]
        create_rate, create_lat = asyncio.run(_write_all(urls, docs))
        for doc in docs:
            doc["networking"]["inbound"][0]["port"] += 1  # type: ignore[index]
        update_rate, update_lat = asyncio.run(_write_all(urls, docs))
    finally:
        close_fast(env)
    seconds = n / create_rate + n / update_rate
    return 2 * n / seconds, percentile(create_lat + update_lat, 99)


# -- 2. endpoint change -> EDS ---------------------------------------------------------------


class SpreadFleet(Fleet):
    """``Fleet`` whose clients are spread round-robin over several DP servers."""

    def __init__(self, targets: list[str], ca_pem: bytes, n: int) -> None:
        super().__init__(targets[0], ca_pem, n)
        self.targets = targets

    async def connect(self, limit: float) -> float:
        t0 = time.monotonic()
        for i, client in enumerate(self.clients):
            chan = channel(self.targets[i % len(self.targets)], self.ca_pem)
            self.channels.append(chan)
            self.tasks.append(asyncio.create_task(client.run(chan)))
        waiting = [asyncio.create_task(c.complete.wait()) for c in self.clients]
        _done, pending = await asyncio.wait(waiting, timeout=limit)
        for task in pending:
            task.cancel()
        if pending:
            raise TimeoutError(f"{len(pending)} clients had no complete snapshot after {limit} s")
        return max(c.complete_at or 0.0 for c in self.clients) - t0


def _eds(tmp: Path, store: str, count: int, n: int, changes: int, server: Any) -> list[float]:
    env = MeshEnv(tmp)
    try:
        dsn = _migrated_dsn(server, env) if server is not None else ""
        cps = _cps(env, store, count, dsn)
        docs = [dataplane_doc(i) for i in range(n)]
        asyncio.run(_write_all([cps[0].url], docs))
        time.sleep(1.0)
        ca_pem = httpx.get(f"{cps[0].url}/certs/dp-server-ca.pem", timeout=10).content

        async def go() -> list[float]:
            fleet = SpreadFleet([f"127.0.0.1:{cp.dp_port}" for cp in cps], ca_pem, n)
            try:
                await fleet.connect(limit=240)
                await asyncio.sleep(2.0)
                return await _changes(fleet, cps[0].url, docs, changes)
            finally:
                await fleet.close()

        return asyncio.run(go())
    finally:
        close_fast(env)


# -- 3. leader failover ----------------------------------------------------------------------


def _leader(cps: list[ControlPlane]) -> ControlPlane | None:
    for cp in cps:
        if cp.proc.poll() is not None:
            continue
        try:
            items = cp.get("/control-planes").json()["items"]
        except (httpx.HTTPError, ValueError, KeyError):
            continue
        for item in items:
            if item.get("leader"):
                pid = int(str(item["id"]).rsplit("-", 1)[1])
                return next((c for c in cps if c.proc.pid == pid and c.proc.poll() is None), None)
    return None


def _failovers(tmp: Path, server: PostgresServer, trials: int) -> list[float]:
    env = MeshEnv(tmp)
    times: list[float] = []
    try:
        dsn = _migrated_dsn(server, env)
        cps = _cps(env, "postgres", 3, dsn)
        for _ in range(trials):
            leader = wait_until(
                lambda c=cps: _leader(c),  # type: ignore[misc]
                timeout=30,
                what="a leader",
                interval=0.05,
            )
            leader.proc.signal(signal.SIGKILL)
            t0 = time.monotonic()
            leader.proc.wait(10)
            survivors = [c for c in cps if c.proc.poll() is None]
            wait_until(
                lambda s=survivors: _leader(s),  # type: ignore[misc]
                timeout=30,
                what="a new leader",
                interval=0.05,
            )
            times.append(time.monotonic() - t0)
            cps = [*survivors, *_cps(env, "postgres", 1, dsn)]  # back to three
    finally:
        close_fast(env)
    return times


def bench_postgres(tmp: Path, opts: Options) -> list[Figure]:
    raise_fd_limit()
    server = _postgres()
    writes_n = 200 if opts.quick else 500
    fleet_n = 300 if opts.quick else 1000
    changes = 2 if opts.quick else 5
    figures: list[Figure] = []
    try:
        results: dict[str, tuple[float, float]] = {}
        for label, store, count in (
            ("sqlite-1", "sqlite", 1),
            ("postgres-1", "postgres", 1),
            ("postgres-3", "postgres", 3),
        ):
            sub = tmp / f"writes-{label}"
            sub.mkdir()
            pg = server if store == "postgres" else None
            results[label] = _writes(sub, store, count, writes_n, pg)
            rate, p99 = results[label]
            print(f"    [{label}] {rate:.0f} writes/s, p99 {p99 * 1000:.1f} ms", flush=True)
        sqlite_rate, sqlite_p99 = results["sqlite-1"]
        for label, what in (("postgres-1", "one instance"), ("postgres-3", "three instances")):
            rate, p99 = results[label]
            figures.append(
                Figure(
                    f"postgres: API writes/s, {what} ({2 * writes_n} PUTs, 8 clients)",
                    rate,
                    "writes/s",
                    sqlite_rate,
                    "one CP on SQLite, the same PUTs, measured",
                    "-",
                    None,
                )
            )
            figures.append(
                Figure(
                    f"postgres: API write latency p99, {what}",
                    p99,
                    "s",
                    sqlite_p99,
                    "one CP on SQLite, the same PUTs, measured",
                    "-",
                    None,
                )
            )

        eds: dict[str, list[float]] = {}
        for label, store, count in (("sqlite-1", "sqlite", 1), ("postgres-3", "postgres", 3)):
            sub = tmp / f"eds-{label}"
            sub.mkdir()
            pg = server if store == "postgres" else None
            eds[label] = _eds(sub, store, count, fleet_n, changes, pg)
            p99 = percentile(eds[label], 99)
            print(f"    [{label}] EDS p99 {p99 * 1000:.0f} ms ({len(eds[label])} samples)")
        p99 = percentile(eds["postgres-3"], 99)
        figures.append(
            Figure(
                f"postgres: endpoint change -> every affected client's EDS, p99, 3 instances x "
                f"{fleet_n} dataplanes in all ({len(eds['postgres-3'])} samples)",
                p99,
                "s",
                percentile(eds["sqlite-1"], 99),
                f"one CP on SQLite with the same {fleet_n} clients, measured",
                "<= 1 s",
                p99 <= 1.0,
            )
        )

        sub = tmp / "failover"
        sub.mkdir()
        times = _failovers(sub, server, 2 if opts.quick else 3)
        print(f"    failovers: {', '.join(f'{t:.2f} s' for t in times)}", flush=True)
        worst = max(times)
        figures.append(
            Figure(
                f"postgres: leader SIGKILLed -> new leader, worst of {len(times)}",
                worst,
                "s",
                LEASE_S,
                "the leader lease (--leader-lease)",
                "<= 5 s",
                worst <= 5.0,
                "the lease must run out (a killed leader cannot release it), then a "
                "candidate's next attempt (every 0.5 s) takes it",
            )
        )
    finally:
        server.close()
    return figures
