"""KDS in one process, for tests: a global CP's KDS parts and zone CPs' KDS clients over real
gRPC with TLS on 127.0.0.1, each on its own memory store (or one given), all stopped on exit.

    async with kds_global() as g, kds_zone(g, "zone-a") as a:
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kumadp.cp.kds.catalog import down_types, sync_types
from kumadp.cp.kds.client import KdsClientConfig, ZoneKdsClient
from kumadp.cp.kds.keys import PublicKeyPublisher
from kumadp.cp.kds.relay import RelaySource
from kumadp.cp.kds.server import Authenticate, KdsServer, SignIntermediate
from kumadp.cp.kds.source import StoreSource
from kumadp.cp.kds.zone_insights import ZoneInsights
from kumadp.cp.kds.zones import ZoneRegistry
from kumadp.cp.server_tls import ServerCertificate, ensure_server_certificate
from kumadp.cp.store import MemoryStore
from kumadp.cp.store.base import Store
from kumadp.lifecycle import Backoff, Component
from kumadp.resources import REGISTRY, Sync
from kumadp.wire import kds as wire
from testkit.procs import until

DOWN = sync_types(REGISTRY, Sync.GLOBAL_TO_ZONE)
UP = sync_types(REGISTRY, Sync.ZONE_TO_GLOBAL)
ZONE_DOWN = down_types(REGISTRY)  # what a zone receives: DOWN and the other zones' ingresses


class Running:
    """Components run in the background until ``stop()``."""

    def __init__(self, components: Sequence[Component]) -> None:
        self._stop = asyncio.Event()
        self.tasks = [asyncio.ensure_future(c.run(self._stop)) for c in components]

    async def stop(self) -> None:
        self._stop.set()
        results = await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 10)
        for result in results:
            if isinstance(result, BaseException):
                raise result


@dataclass
class GlobalKds:
    store: Store
    source: StoreSource
    zones: ZoneRegistry
    server: KdsServer
    tls: ServerCertificate
    messages: list[tuple[str, bytes]] = field(default_factory=list)  # every message, both ways

    @property
    def address(self) -> str:
        return f"{wire.ADDRESS_SCHEME}://127.0.0.1:{self.server.bound_port}"


@dataclass
class ZoneKds:
    store: Store
    source: StoreSource
    client: ZoneKdsClient


@contextlib.asynccontextmanager
async def kds_global(
    store: Store | None = None,
    *,
    health_timeout: float = 20.0,
    port: int = 0,
    authenticate: Authenticate | None = None,
    sign_intermediate: SignIntermediate | None = None,
) -> AsyncIterator[GlobalKds]:
    store = store if store is not None else MemoryStore()
    tls = ensure_server_certificate(None, [], what="KDS server")
    source = StoreSource(store, DOWN, wire.ORIGIN_GLOBAL)
    zones = ZoneRegistry(
        store,
        "global-1",
        health_timeout=health_timeout,
        insights=ZoneInsights(store, "global-1", persist_interval=0.05),
    )
    messages: list[tuple[str, bytes]] = []
    relay = RelaySource(store, REGISTRY.relayed())
    server = KdsServer(
        address="127.0.0.1",
        port=port,
        tls=tls,
        store=store,
        source=source,
        zones=zones,
        down=DOWN,
        up=UP,
        authenticate=authenticate,
        sign_intermediate=sign_intermediate,
        tap=lambda method, data: messages.append((method, data)),
        relay=relay,
    )
    running = Running([source, relay, zones, server, PublicKeyPublisher(store)])
    try:
        await until(lambda: server.bound_port is not None, "the KDS server listening")
        yield GlobalKds(store, source, zones, server, tls, messages)
    finally:
        await running.stop()


@contextlib.asynccontextmanager
async def kds_zone(
    global_kds: GlobalKds | str,
    zone: str,
    store: Store | None = None,
    *,
    instance: str | None = None,
    ca_file: Path | None = None,
    skip_verify: bool = False,
    tmp: Path | None = None,
    **config: Any,
) -> AsyncIterator[ZoneKds]:
    """A zone's KDS client. Trust: ``ca_file``, else ``skip_verify``, else the global's CA
    (written to ``tmp``, which is then required)."""
    store = store if store is not None else MemoryStore()
    address = global_kds if isinstance(global_kds, str) else global_kds.address
    if ca_file is None and not skip_verify and isinstance(global_kds, GlobalKds):
        assert tmp is not None, "pass tmp (to write the global CA into) or a ca_file"
        ca_file = tmp / f"kds-ca-{zone}.pem"
        ca_file.write_bytes(global_kds.tls.ca_pem)
    source = StoreSource(store, UP, wire.ORIGIN_ZONE)
    settings = KdsClientConfig(
        zone=zone,
        global_address=address,
        instance_id=instance or f"{zone}-instance",
        version="test",
        ca_file=ca_file,
        skip_verify=skip_verify,
        backoff=Backoff(0.05, 0.2),
        **config,
    )
    client = ZoneKdsClient(settings, store, source, down=ZONE_DOWN, up=UP)
    running = Running([source, client])
    try:
        yield ZoneKds(store, source, client)
    finally:
        await running.stop()


__all__ = ["DOWN", "UP", "ZONE_DOWN", "GlobalKds", "Running", "ZoneKds", "kds_global", "kds_zone"]
