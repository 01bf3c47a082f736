"""The floor for the control-plane scale benchmark: the same ADS protocol code (``AdsServer``
on ``grpc.aio``, TLS) serving one pre-built snapshot to every node. No store, no
generation, no lifecycle: what serving N clients costs before any control-plane work.

    python -m bench.ads_floor --port P --ca-out ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc

from bench.generation import SERVICES, dataplane_doc
from kumadp.cp.generate import build_mesh_view, generate
from kumadp.cp.server_tls import ServerCertificate, ensure_server_certificate
from kumadp.resources import parse_dataplane, parse_mesh
from kumadp.xds.grpc_adapter import add_ads_to_server
from kumadp.xds.server import AdsServer
from kumadp.xds.snapshot import Snapshot


class StaticSource:
    """Every node gets the same snapshot, at once, and never a newer one."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._never = asyncio.Event()

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        return self.snapshot

    async def next_snapshot(self, node_id: str, known: Snapshot | None) -> Snapshot:
        if known is not self.snapshot:
            return self.snapshot
        await self._never.wait()
        raise AssertionError("unreachable")


def floor_snapshot() -> Snapshot:
    """What the CP would send ``dp-0`` of the benchmark's mesh (one endpoint per service)."""
    mesh = parse_mesh({"type": "Mesh", "name": "default"})
    dataplanes = [parse_dataplane(dataplane_doc(i)) for i in range(SERVICES)]
    view = build_mesh_view(mesh, dataplanes)
    return Snapshot.build(generate(view, dataplanes[0]))


async def serve(port: int, tls: ServerCertificate) -> None:
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 10_000)])
    add_ads_to_server(server, AdsServer(StaticSource(floor_snapshot())))
    credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
    bound = server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca-out", type=Path, required=True)
    args = parser.parse_args()
    try:
        tls = ensure_server_certificate(None, [])
        args.ca_out.write_bytes(tls.ca_pem)
        asyncio.run(serve(args.port, tls))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
