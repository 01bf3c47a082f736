"""The control plane's composition root: builds the parts, lists the components each mode
runs (``components_for``) in the order they stop, and runs them.

Only this package (and the CLI above it) imports ``kumadp.cp.api``: the domain modules of
``kumadp.cp`` never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from starlette.types import ASGIApp

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.agent_service import AgentChannelService
from kumadp.cp.api import create_app
from kumadp.cp.api.authn import ApiSecurity
from kumadp.cp.api.insights import insight_routes
from kumadp.cp.api.tokens import TokenServices, token_routes
from kumadp.cp.auth import DpAuth
from kumadp.cp.bootstrap import BootstrapParams, BootstrapService
from kumadp.cp.ca import MeshCAs
from kumadp.cp.data_dir import write_private_file
from kumadp.cp.diagnostics import create_diagnostics_app
from kumadp.cp.dp_server import DpServer
from kumadp.cp.http_server import HttpServer, server_tls_context
from kumadp.cp.insights import InsightStore
from kumadp.cp.jwt import TokenError
from kumadp.cp.metrics import CpMetrics
from kumadp.cp.provisioners import CaProvisioner, VipProvisioner
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.runtime.config import STANDALONE, ControlPlaneConfig
from kumadp.cp.runtime.phases import Phase, run_in_phases
from kumadp.cp.self_guard import SelfGuard
from kumadp.cp.server_tls import (
    ServerCertificate,
    ensure_server_certificate,
    load_server_certificate,
)
from kumadp.cp.store.base import Store
from kumadp.cp.tokens import TokenIssuer
from kumadp.cp.user_tokens import ADMIN_GROUP, UserTokens
from kumadp.cp.vips import VipAllocator
from kumadp.cp.zone_tokens import ZoneTokens
from kumadp.resources.model import DATAPLANE_TYPE
from kumadp.xds.cache import SnapshotCache

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-user-token"
ADMIN_TOKEN_VALID_FOR = 365 * 86400.0


def api_tls_context(
    config: ControlPlaneConfig, cp_certificate: ServerCertificate | None
) -> ssl.SSLContext:
    """The HTTPS API's TLS: its own certificate files, else the CP's (the DP server's)."""
    if config.api_tls_cert_file or config.api_tls_key_file:
        if not (config.api_tls_cert_file and config.api_tls_key_file):
            raise ValueError("--api-https-tls-cert-file and --api-https-tls-key-file go together")
        cert = load_server_certificate(config.api_tls_cert_file, config.api_tls_key_file)
    elif cp_certificate is not None:
        cert = cp_certificate
    else:
        hosts = [h for h in [config.xds_host, config.address, *config.hostnames] if h]
        cert = ensure_server_certificate(config.data_dir, [h for h in hosts if h != "0.0.0.0"])
    return server_tls_context(
        cert.cert_pem,
        cert.key_pem,
        client_ca=config.api_client_ca_file,
        require_client_cert=config.api_require_client_cert,
    )


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
        self.zone_tokens = ZoneTokens(store)
        self.user_tokens = UserTokens(store)
        self.guard = SelfGuard.for_ports(
            [
                (config.api_port, "API"),
                (config.api_https_port, "HTTPS API"),
                (config.dp_port, "DP server"),
                (config.diagnostics_port, "diagnostics"),
            ],
            extra=[config.address, config.api_address or "", config.xds_host or ""],
        )
        self.auth = DpAuth(config.dp_auth, self.tokens)
        self.cas = MeshCAs(store)
        self.vips = VipAllocator(store, cidr=config.vip_cidr, loopback_cidr=config.loopback_cidr)
        self.tls = server_certificate(config)
        self.insights = InsightStore(store)
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
                (self.dp_server, *self._api_servers()),
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
    def _api_servers(self) -> list[HttpServer]:
        """The API on HTTP and (unless its port is 0) HTTPS, one app behind both."""
        config = self.config
        api = self._api_app()
        http_address = config.api_address or config.address
        servers = [HttpServer("api-server", api, http_address, config.api_port)]
        if config.api_https_port:
            servers.append(
                HttpServer(
                    "api-server-https",
                    api,
                    config.api_https_address or http_address,
                    config.api_https_port,
                    tls=api_tls_context(config, self.tls),
                )
            )
        return servers

    async def write_bootstrap_admin_token(self) -> Path | None:
        """``<data dir>/admin-user-token`` (0600): an admin user token for the first remote
        admin, renewed when it no longer verifies. None when turned off or no data dir."""
        if not self.config.bootstrap_admin_token or self.config.data_dir is None:
            return None
        path = Path(self.config.data_dir) / ADMIN_TOKEN_FILE
        with contextlib.suppress(OSError, TokenError):
            await self.user_tokens.verify(path.read_text())
            return path
        token = await self.user_tokens.issue(
            "mesh-system:admin", [ADMIN_GROUP], valid_for=ADMIN_TOKEN_VALID_FOR
        )
        write_private_file(path, token + "\n")
        log.info("wrote an admin user token to %s (readable by this user only)", path)
        return path

    def _bootstrap_service(self) -> BootstrapService:
        return BootstrapService(
            self.store,
            BootstrapParams(
                xds_port=self.config.dp_port,
                xds_host=self.config.xds_host,
                dp_server_ca_pem=self.tls.ca_pem if self.tls else None,
            ),
            self.registrations,
            self.auth,
            guard=self.guard.check,
        )

    def _api_app(self) -> ASGIApp:
        bootstrap = self._bootstrap_service()
        tokens = TokenServices(self.tokens, zone=self.zone_tokens, user=self.user_tokens)
        return create_app(
            self.store,
            bootstrap,
            extra_routes=[
                *token_routes(tokens, self.tls.ca_pem if self.tls else None),
                *insight_routes(self.store, self.insights, self.cache),
            ],
            security=ApiSecurity(
                users=self.user_tokens,
                localhost_is_admin=self.config.localhost_is_admin,
                anonymous_read=self.config.api_anonymous_read,
            ),
            max_body_bytes=self.config.api_max_body_bytes,
            validators={DATAPLANE_TYPE: self.guard.check},
        )

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
            self.zone_tokens.close()
            self.user_tokens.close()


__all__ = ["ADMIN_TOKEN_FILE", "ControlPlane", "api_tls_context", "server_certificate"]
