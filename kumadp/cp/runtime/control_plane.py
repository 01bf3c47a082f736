"""The control plane's composition root: builds the parts, lists the components each mode
runs (``components_for``) in the order they stop, and runs them.

Only this package (and the CLI above it) imports ``kumadp.cp.api``: the domain modules of
``kumadp.cp`` never do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.agent_service import AgentChannelService
from kumadp.cp.api import create_app
from kumadp.cp.api.dp_port import dp_port_app
from kumadp.cp.api.insights import insight_routes
from kumadp.cp.api.inspect import inspect_routes
from kumadp.cp.api.meta import meta_routes
from kumadp.cp.api.tokens import token_routes
from kumadp.cp.auth import DpAuth
from kumadp.cp.bootstrap import BootstrapParams, BootstrapService
from kumadp.cp.ca import MeshCAs
from kumadp.cp.diagnostics import create_diagnostics_app
from kumadp.cp.dp_server import DpServer
from kumadp.cp.http_server import HttpServer
from kumadp.cp.insights import InsightStore
from kumadp.cp.instance import CpInstance
from kumadp.cp.metrics import CpMetrics
from kumadp.cp.provisioners import CaProvisioner, VipProvisioner
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.runtime.config import STANDALONE, ControlPlaneConfig
from kumadp.cp.runtime.kuma_config import config_document
from kumadp.cp.runtime.phases import Phase, run_in_phases
from kumadp.cp.server_tls import (
    ServerCertificate,
    ensure_server_certificate,
    load_server_certificate,
)
from kumadp.cp.store.base import Store
from kumadp.cp.tokens import TokenIssuer
from kumadp.cp.vips import VipAllocator
from kumadp.xds.cache import SnapshotCache

log = logging.getLogger(__name__)


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
    """Every part of a control plane over one store; ``components_for(mode)`` says which
    run in a mode, phase by phase."""

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
        self.instance = CpInstance(store, self.insights.instance_id)
        self.registrations = DataplaneRegistry(
            store,
            deregistration_delay=config.deregistration_delay,
            on_readiness_change=lambda mesh: self.reconciler.mark_dirty(mesh),
        )
        self.reconciler = Reconciler(
            store,
            self.cache,
            self.registrations,
            vips=self.vips,
            cas=self.cas,
            hub=self.hub,
            debounce=config.debounce,
        )
        self.vip_provisioner = VipProvisioner(store, self.vips)
        self.ca_provisioner = CaProvisioner(store, self.cas)
        self.agent_channel = AgentChannelService(
            store=store,
            registrations=self.registrations,
            auth=self.auth,
            cas=self.cas,
            hub=self.hub,
            refresh_agent_state=self.reconciler.refresh_agent_state,
            insights=self.insights,
        )
        self.bootstrap = BootstrapService(
            store,
            BootstrapParams(
                xds_port=config.dp_port,
                xds_host=config.xds_host,
                dp_server_ca_pem=self.tls.ca_pem if self.tls else None,
            ),
            self.registrations,
            self.auth,
        )
        self.dp_server = DpServer(
            address=config.address,
            port=config.dp_port,
            cache=self.cache,
            lifecycle=self.registrations,
            reconciler=self.reconciler,
            agent_channel=self.agent_channel,
            auth=self.auth,
            tls=self.tls,
            insights=self.insights,
            http_app=dp_port_app(self.bootstrap),  # POST /bootstrap on the DP port, as Kuma
        )

    # -- components per mode -----------------------------------------------------------
    # mode -> the method listing its components; global and zone come next
    MODES: ClassVar[dict[str, str]] = {STANDALONE: "_standalone"}

    @classmethod
    def check_mode(cls, mode: str) -> None:
        if mode not in cls.MODES:
            supported = ", ".join(cls.MODES)
            raise ValueError(f"--mode {mode} is not supported yet ({supported} only)")

    def components_for(self, mode: str) -> list[Phase]:
        """The components of ``mode``, grouped in the order they stop."""
        self.check_mode(mode)
        build: Callable[[], list[Phase]] = getattr(self, self.MODES[mode])
        return build()

    def _standalone(self) -> list[Phase]:
        timeout = self.config.shutdown_phase_timeout
        return [
            Phase(
                "stop accepting new ADS/agent streams and API requests; drain open streams",
                (self.dp_server, self._api_server()),
                timeout,
            ),
            Phase(
                "stop reconciling and provisioning",
                (self.reconciler, self.vip_provisioner, self.ca_provisioner),
                timeout,
            ),
            Phase("flush insights", (self.insights,), timeout),
            Phase("stop diagnostics", (self._diagnostics_server(),), timeout),
        ]

    # -- the HTTP servers ----------------------------------------------------------------
    def _api_server(self) -> HttpServer:
        api = create_app(
            self.store,
            self.bootstrap,
            extra_routes=[
                *token_routes(self.tokens, self.tls.ca_pem if self.tls else None),
                *insight_routes(self.store, self.insights, self.cache),
                # Kuma compatibility: Kuma's API about itself, and its dataplane inspection
                *meta_routes(self.store, config_document(self.config)),
                *inspect_routes(self.store, self.hub),
            ],
            instance=self.instance,
        )
        return HttpServer("api-server", api, self.config.address, self.config.api_port)

    def _diagnostics_server(self) -> HttpServer:
        metrics = CpMetrics(
            xds=self.dp_server.callbacks,
            reconcile_stats=self.reconciler.stats,
            hub=self.hub,
            agent_channel=self.agent_channel,
            mode=self.config.mode,
        )
        app = create_diagnostics_app(lambda: True, metrics=metrics.render)
        return HttpServer("diagnostics", app, self.config.address, self.config.diagnostics_port)

    # -- running -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        phases = self.components_for(self.config.mode)
        await self.insights.load()  # before any stream opens
        try:
            await run_in_phases(phases, stop)
        finally:
            self.registrations.close()
            self.tokens.close()


__all__ = ["ControlPlane", "server_certificate"]
