"""The control plane's composition root: builds every component and supervises them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from kumadp.cp.api import create_app
from kumadp.cp.bootstrap import BootstrapParams, BootstrapService
from kumadp.cp.diagnostics import create_diagnostics_app
from kumadp.cp.dp_server import DpServer
from kumadp.cp.http_server import HttpServer
from kumadp.cp.lifecycle import DataplaneLifecycle
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.store import open_store
from kumadp.cp.store.base import Store
from kumadp.cp.xds.cache import SnapshotCache
from kumadp.lifecycle import Component, supervise
from kumadp.resources.model import DEFAULT_MESH, MESH_TYPE, Mesh

log = logging.getLogger(__name__)


@dataclass
class ControlPlaneConfig:
    mode: str = "standalone"
    store: str = "sqlite"
    data_dir: Path | None = None
    address: str = "0.0.0.0"
    api_port: int = 5681
    dp_port: int = 5678
    diagnostics_port: int = 5680
    xds_host: str | None = None  # host written into bootstraps; default: the one agents used
    deregistration_delay: float = 10.0
    debounce: float = 0.01


async def ensure_default_mesh(store: Store) -> None:
    if await store.get(MESH_TYPE, "", DEFAULT_MESH) is None:
        await store.put(MESH_TYPE, "", DEFAULT_MESH, Mesh(name=DEFAULT_MESH).to_dict(), 0)
        log.info('created the "%s" mesh', DEFAULT_MESH)


class ControlPlane:
    def __init__(self, config: ControlPlaneConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.cache = SnapshotCache()
        self.lifecycle = DataplaneLifecycle(
            store,
            deregistration_delay=config.deregistration_delay,
            on_readiness_change=lambda mesh: self.reconciler.mark_dirty(mesh),
        )
        self.reconciler = Reconciler(store, self.cache, self.lifecycle, debounce=config.debounce)
        bootstrap = BootstrapService(
            store,
            BootstrapParams(xds_port=config.dp_port, xds_host=config.xds_host),
            self.lifecycle,
        )
        self.dp_server = DpServer(
            address=config.address,
            port=config.dp_port,
            cache=self.cache,
            lifecycle=self.lifecycle,
            reconciler=self.reconciler,
        )
        self.components: list[Component] = [
            self.reconciler,
            self.dp_server,
            HttpServer("api-server", create_app(store, bootstrap), config.address, config.api_port),
            HttpServer(
                "diagnostics",
                create_diagnostics_app(lambda: True),
                config.address,
                config.diagnostics_port,
            ),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await supervise(self.components, stop)
        finally:
            self.lifecycle.close()


async def run_control_plane(config: ControlPlaneConfig, stop: asyncio.Event) -> None:
    if config.mode != "standalone":
        raise ValueError(f"--mode {config.mode} is not supported yet (standalone only)")
    store = open_store(config.store, config.data_dir)
    try:
        await ensure_default_mesh(store)
        cp = ControlPlane(config, store)
        log.info(
            "control plane up: API :%d, DP server :%d, diagnostics :%d, store %s",
            config.api_port,
            config.dp_port,
            config.diagnostics_port,
            config.store,
        )
        await cp.run(stop)
    finally:
        await store.close()
