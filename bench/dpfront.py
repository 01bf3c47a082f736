"""dp-front: what sharing the DP port with ``POST /bootstrap`` costs the gRPC path.

The CP's DP port (``kumadp.cp.dp_front``) routes each TLS connection by its ClientHello and
copies the still-encrypted bytes to the gRPC server on a private Unix socket. One server
process here serves the same gRPC server both ways at once: directly on a TCP port (the
baseline: how the DP port worked before) and through the router on another port. The
client, in this process, measures the same things against both, in the same run:

- unary round trips over one open connection (``AgentChannel.Leave`` answered at once):
  the per-message cost of the extra copy;
- connecting: TLS handshake plus the first round trip, on a new connection each time;
- N simulated dataplanes (``testkit.ads_client``) opening ADS at once and receiving the
  floor's snapshot (``bench.ads_floor``): bulk bytes through the router.

    python -m bench.dpfront --serve --direct-port P --front-port Q --ca-out ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.ads_floor import StaticSource, floor_snapshot
from bench.core import Figure, Options, median, percentile
from kumadp.cp.dp_front import Backends, DpFront
from kumadp.cp.server_tls import ServerCertificate, ensure_server_certificate
from kumadp.wire import agent_pb2, agent_pb2_grpc
from kumadp.xds.grpc_adapter import add_ads_to_server
from kumadp.xds.server import AdsServer
from testkit.ads_client import AdsClient, channel
from testkit.procs import ProcessSet, free_port, wait_until

BASELINE = "the same gRPC server straight on its TCP port, same run"


class Echo(agent_pb2_grpc.AgentChannelServicer):
    async def Leave(self, request: Any, context: Any) -> Any:
        return agent_pb2.LeaveResponse(removed=False)


async def serve(direct_port: int, front_port: int, tls: ServerCertificate) -> None:
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 10_000)])
    add_ads_to_server(server, AdsServer(StaticSource(floor_snapshot())))
    agent_pb2_grpc.add_AgentChannelServicer_to_server(Echo(), server)
    credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
    with tempfile.TemporaryDirectory(prefix="kumadp-bench-front-") as tmp:
        socket = f"{tmp}/grpc.sock"
        server.add_secure_port(f"127.0.0.1:{direct_port}", credentials)
        server.add_secure_port(f"unix:{socket}", credentials)
        await server.start()
        front = DpFront(Backends(http=f"{tmp}/none.sock", grpc=socket), tls=True)
        await front.serve("127.0.0.1", front_port)
        print("listening", flush=True)
        await server.wait_for_termination()


async def _round_trips(target: str, ca: bytes, count: int) -> list[float]:
    chan = channel(target, ca)
    try:
        stub = agent_pb2_grpc.AgentChannelStub(chan)  # type: ignore[no-untyped-call]
        request = agent_pb2.LeaveRequest(mesh="m", name="n", reason="bench")
        await stub.Leave(request, timeout=10)  # connected, warm
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            await stub.Leave(request, timeout=10)
            samples.append(time.perf_counter() - t0)
        return samples
    finally:
        await chan.close()


async def _connects(target: str, ca: bytes, count: int) -> list[float]:
    samples = []
    request = agent_pb2.LeaveRequest(mesh="m", name="n", reason="bench")
    for _ in range(count):
        t0 = time.perf_counter()
        chan = channel(target, ca)
        try:
            stub = agent_pb2_grpc.AgentChannelStub(chan)  # type: ignore[no-untyped-call]
            await stub.Leave(request, timeout=10)
            samples.append(time.perf_counter() - t0)
        finally:
            await chan.close()
    return samples


async def _snapshots(target: str, ca: bytes, n: int) -> float:
    clients = [AdsClient(f"default.dp-{i}") for i in range(n)]
    channels = [channel(target, ca) for _ in clients]
    t0 = time.monotonic()
    tasks = [asyncio.create_task(c.run(ch)) for c, ch in zip(clients, channels, strict=True)]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.complete.wait() for c in clients)), 120)
        return max(c.complete_at or 0.0 for c in clients) - t0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)


def bench_dp_front(tmp: Path, opts: Options) -> list[Figure]:
    rounds = 3 if opts.quick else 5
    trips = 300 if opts.quick else 1000
    connects = 10 if opts.quick else 30
    fleet = 50 if opts.quick else 200
    procs = ProcessSet(tmp)
    direct_port, front_port, ca_path = free_port(), free_port(), tmp / "ca.pem"
    try:
        proc = procs.start(
            "dp-front-server",
            [
                sys.executable,
                "-m",
                "bench.dpfront",
                "--serve",
                "--direct-port",
                str(direct_port),
                "--front-port",
                str(front_port),
                "--ca-out",
                str(ca_path),
            ],
        )
        wait_until(lambda: "listening" in proc.output(), timeout=30, what="server", proc=proc)
        ca = ca_path.read_bytes()
        targets = {"direct": f"127.0.0.1:{direct_port}", "front": f"127.0.0.1:{front_port}"}

        async def measure() -> dict[str, dict[str, list[float]]]:
            got: dict[str, dict[str, list[float]]] = {
                k: {"trip": [], "connect": [], "fleet": []} for k in targets
            }
            for _ in range(rounds):  # alternate, so that drift hits both the same
                for kind, target in targets.items():
                    got[kind]["trip"] += await _round_trips(target, ca, trips)
                    got[kind]["connect"] += await _connects(target, ca, connects)
                    got[kind]["fleet"].append(await _snapshots(target, ca, fleet))
            return got

        got = asyncio.run(measure())
    finally:
        procs.close()
    direct, front = got["direct"], got["front"]
    ms = 1000.0
    p50_added = (percentile(front["trip"], 50) - percentile(direct["trip"], 50)) * ms
    return [
        Figure(
            f"dp-front: gRPC round trip over an open connection, p50 ({rounds} x {trips})",
            percentile(front["trip"], 50) * ms,
            "ms",
            percentile(direct["trip"], 50) * ms,
            BASELINE,
            "added <= 0.2 ms",
            p50_added <= 0.2,
            note=f"added {p50_added:.3f} ms per round trip (two copies: request and answer)",
        ),
        Figure(
            f"dp-front: gRPC round trip over an open connection, p99 ({rounds} x {trips})",
            percentile(front["trip"], 99) * ms,
            "ms",
            percentile(direct["trip"], 99) * ms,
            BASELINE,
            "-",
            None,
        ),
        Figure(
            f"dp-front: new connection (TLS handshake + first round trip), p50 "
            f"({rounds} x {connects})",
            percentile(front["connect"], 50) * ms,
            "ms",
            percentile(direct["connect"], 50) * ms,
            BASELINE,
            "-",
            None,
        ),
        Figure(
            f"dp-front: {fleet} ADS clients get their initial snapshot (median of {rounds})",
            median(front["fleet"]),
            "s",
            median(direct["fleet"]),
            BASELINE,
            "<= 1.25x",
            median(front["fleet"]) <= 1.25 * median(direct["fleet"]),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--direct-port", type=int, required=True)
    parser.add_argument("--front-port", type=int, required=True)
    parser.add_argument("--ca-out", type=Path, required=True)
    args = parser.parse_args()
    tls = ensure_server_certificate(None, [])
    args.ca_out.write_bytes(tls.ca_pem)
    try:
        asyncio.run(serve(args.direct_port, args.front_port, tls))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
