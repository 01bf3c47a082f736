"""Helpers for cross-zone tests, demos and benchmarks: zone tokens, zone ingress and egress
agents, and a mesh CA shared by every zone.

``seed_shared_ca`` stands in for the zone intermediate CA the global CP will sign for each
zone (issue 10 part 2): until it exists, a zone serves an mTLS mesh without mTLS unless its
store already holds the mesh's CA. Writing one CA into every control plane's store before
it starts gives the zones one trust root, so cross-zone mTLS works end to end today.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from kumadp.cp.ca import MeshCAs
from kumadp.cp.data_dir import prepare_data_dir, restrict_store_files
from kumadp.cp.store.sqlite import SqliteStore
from kumadp.resources import Mesh
from kumadp.resources.registry import MESH_CA_TYPE
from testkit.mesh import Agent, ControlPlane, MeshEnv

SQLITE_FILE = "kumadp.db"
MTLS = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}


def seed_shared_ca(data_dirs: Sequence[Path], mesh: str = "default", backend: str = "ca-1") -> None:
    """One builtin CA for (``mesh``, ``backend``) in the SQLite store of every data dir
    (CPs not started yet)."""

    async def seed() -> None:
        spec: dict[str, Any] | None = None
        for data_dir in data_dirs:
            prepare_data_dir(data_dir, SQLITE_FILE)
            store = SqliteStore(data_dir / SQLITE_FILE)
            try:
                if spec is None:
                    mtls = {
                        "enabledBackend": backend,
                        "backends": [{"name": backend, "type": "builtin"}],
                    }
                    await MeshCAs(store).ca_for(Mesh(name=mesh, mtls=mtls))
                    stored = await store.get(MESH_CA_TYPE, mesh, backend)
                    assert stored is not None
                    spec = dict(stored.spec)
                else:
                    await store.put(MESH_CA_TYPE, mesh, backend, spec)
            finally:
                await store.close()
            restrict_store_files(data_dir)

    asyncio.run(seed())


def zone_token(global_cp: ControlPlane, zone: str, *scopes: str) -> str:
    resp = httpx.post(
        global_cp.url + "/tokens/zone", json={"zone": zone, "scope": list(scopes)}, timeout=5
    )
    resp.raise_for_status()
    return resp.text.strip()


def zone_ingress_doc(
    name: str, address: str, port: int, advertised: tuple[str, int] | None = None
) -> dict[str, Any]:
    host, advertised_port = advertised or (address, port)
    return {
        "type": "ZoneIngress",
        "name": name,
        "networking": {
            "address": address,
            "port": port,
            "advertisedAddress": host,
            "advertisedPort": advertised_port,
        },
    }


def zone_egress_doc(name: str, address: str, port: int) -> dict[str, Any]:
    return {"type": "ZoneEgress", "name": name, "networking": {"address": address, "port": port}}


def start_zone_proxy(
    env: MeshEnv,
    cp: ControlPlane,
    doc: dict[str, Any],
    token: str,
    *,
    wait: bool = True,
    extra: list[str] | None = None,
) -> Agent:
    """``kumadp run --proxy-type ingress|egress`` for ``doc`` (a ZoneIngress/ZoneEgress)."""
    proxy_type = "ingress" if doc["type"] == "ZoneIngress" else "egress"
    return env.start_agent(
        doc["name"],
        json.dumps(doc),
        cp=cp,
        token=token,
        wait=wait,
        extra=["--proxy-type", proxy_type, *(extra or [])],
    )


__all__ = [
    "MTLS",
    "seed_shared_ca",
    "start_zone_proxy",
    "zone_egress_doc",
    "zone_ingress_doc",
    "zone_token",
]
