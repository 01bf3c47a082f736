"""The control plane's composition root: builds every component and supervises them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.agent_service import AgentChannelService
from kumadp.cp.api import create_app
from kumadp.cp.api.insights import insight_routes
from kumadp.cp.api.resources import create_default_policies
from kumadp.cp.api.tokens import token_routes
from kumadp.cp.auth import DpAuth
from kumadp.cp.bootstrap import BootstrapParams, BootstrapService
from kumadp.cp.ca import MeshCAs
from kumadp.cp.diagnostics import create_diagnostics_app
from kumadp.cp.dp_server import DpServer
from kumadp.cp.http_server import HttpServer
from kumadp.cp.insights import InsightStore
from kumadp.cp.lifecycle import DataplaneLifecycle
from kumadp.cp.metrics import CpMetrics
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.server_tls import (
    ServerCertificate,
    ensure_server_certificate,
    load_server_certificate,
)
from kumadp.cp.store import open_store
from kumadp.cp.store.base import Store
from kumadp.cp.tokens import TokenIssuer
from kumadp.cp.vips import VipAllocator
from kumadp.lifecycle import Component, supervise
from kumadp.resources.model import DEFAULT_MESH, MESH_TYPE, Mesh
from kumadp.xds.cache import SnapshotCache

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
    dp_auth: str = "dpToken"
    tls_cert_file: Path | None = None  # the DP server's certificate; default: generated
    tls_key_file: Path | None = None
    dp_server_tls: bool = True
    vip_cidr: str = "240.0.0.0/4"
    loopback_cidr: str = "127.1.0.0/16"
    hostnames: list[str] = field(default_factory=list)


async def ensure_default_mesh(store: Store) -> None:
    if await store.get(MESH_TYPE, "", DEFAULT_MESH) is None:
        await store.put(MESH_TYPE, "", DEFAULT_MESH, Mesh(name=DEFAULT_MESH).to_dict(), 0)
        log.info('created the "%s" mesh', DEFAULT_MESH)
        await create_default_policies(store, DEFAULT_MESH)  # allow-all, as Kuma


def server_certificate(config: ControlPlaneConfig) -> ServerCertificate | None:
    if not config.dp_server_tls:
        return None
    if config.tls_cert_file or config.tls_key_file:
        if not (config.tls_cert_file and config.tls_key_file):
            raise ValueError("--tls-cert-file and --tls-key-file go together")
        return load_server_certificate(config.tls_cert_file, config.tls_key_file)
    hosts = [h for h in [config.xds_host, config.address, *config.hostnames] if h]
    return ensure_server_certificate(config.data_dir, [h for h in hosts if h != "0.0.0.0"])


class ControlPlane:
    def __init__(self, config: ControlPlaneConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.cache = SnapshotCache()
        self.hub = AgentHub()
        self.tokens = TokenIssuer(store)
        self.auth = DpAuth(config.dp_auth, self.tokens)
        self.cas = MeshCAs(store)
        self.vips = VipAllocator(store, cidr=config.vip_cidr, loopback_cidr=config.loopback_cidr)
        self.tls = server_certificate(config)
        self.insights = InsightStore(store)
        self.lifecycle = DataplaneLifecycle(
            store,
            deregistration_delay=config.deregistration_delay,
            on_readiness_change=lambda mesh: self.reconciler.mark_dirty(mesh),
        )
        self.reconciler = Reconciler(
            store,
            self.cache,
            self.lifecycle,
            vips=self.vips,
            cas=self.cas,
            hub=self.hub,
            debounce=config.debounce,
        )
        bootstrap = BootstrapService(
            store,
            BootstrapParams(
                xds_port=config.dp_port,
                xds_host=config.xds_host,
                dp_server_ca_pem=self.tls.ca_pem if self.tls else None,
            ),
            self.lifecycle,
            self.auth,
        )
        agent_channel = AgentChannelService(
            store=store,
            lifecycle=self.lifecycle,
            auth=self.auth,
            cas=self.cas,
            hub=self.hub,
            refresh_agent_state=self.reconciler.refresh_agent_state,
            insights=self.insights,
        )
        self.dp_server = DpServer(
            address=config.address,
            port=config.dp_port,
            cache=self.cache,
            lifecycle=self.lifecycle,
            reconciler=self.reconciler,
            agent_channel=agent_channel,
            auth=self.auth,
            tls=self.tls,
            insights=self.insights,
        )
        api = create_app(
            store,
            bootstrap,
            extra_routes=[
                *token_routes(self.tokens, self.tls.ca_pem if self.tls else None),
                *insight_routes(store, self.insights, self.cache),
            ],
        )
        self.components: list[Component] = [
            self.reconciler,
            self.insights,
            self.dp_server,
            HttpServer("api-server", api, config.address, config.api_port),
            HttpServer(
                "diagnostics",
                create_diagnostics_app(
                    lambda: True,
                    metrics=CpMetrics(
                        xds=self.dp_server.callbacks,
                        reconcile_stats=self.reconciler.stats,
                        hub=self.hub,
                        agent_channel=agent_channel,
                        mode=config.mode,
                    ).render,
                ),
                config.address,
                config.diagnostics_port,
            ),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await self.insights.load()  # before any stream opens
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
        if cp.tls is not None:
            where = f" (also at {cp.tls.ca_path})" if cp.tls.ca_path else ""
            log.info(
                "DP server CA%s; agents can fetch it from GET /certs/dp-server-ca.pem:\n%s",
                where,
                cp.tls.ca_pem.decode().strip(),
            )
        if config.dp_auth == "none":
            log.warning("--dp-auth none: any process that can reach the CP may join a mesh")
        log.info(
            "control plane starting: API :%d, DP server :%d, diagnostics :%d, store %s",
            config.api_port,
            config.dp_port,
            config.diagnostics_port,
            config.store,
        )
        await cp.run(stop)
    finally:
        await store.close()
