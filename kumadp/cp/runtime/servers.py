"""The control plane's HTTP servers: the API (HTTP, and HTTPS unless its port is 0, one app
behind both) and the diagnostics server, built from a ``ControlPlane``'s parts for the
per-mode component lists; and the admin token the CP writes for the first remote admin."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from kumadp.cp.api import create_app
from kumadp.cp.api.authn import ApiSecurity
from kumadp.cp.api.control_planes import control_plane_routes
from kumadp.cp.api.insights import insight_routes
from kumadp.cp.api.inspect import inspect_routes
from kumadp.cp.api.meta import meta_routes
from kumadp.cp.api.rules import rules_routes
from kumadp.cp.api.tokens import TokenServices, token_routes
from kumadp.cp.api.zone_admin import zone_admin_routes
from kumadp.cp.api.zone_proxies import zone_proxy_routes
from kumadp.cp.api.zones import token_refusals, zone_routes
from kumadp.cp.data_dir import write_private_file
from kumadp.cp.diagnostics import create_diagnostics_app
from kumadp.cp.http_server import HttpServer
from kumadp.cp.jwt import TokenError
from kumadp.cp.metrics import CpMetrics
from kumadp.cp.runtime.config import GLOBAL, STANDALONE, ZONE, ControlPlaneConfig
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.runtime.kuma_config import config_document
from kumadp.cp.runtime.tls import api_tls_context
from kumadp.cp.tokens import ISSUE_ON_GLOBAL
from kumadp.cp.user_tokens import ADMIN_GROUP, UserTokens
from kumadp.cp.zone_lifecycle import connected_elsewhere
from kumadp.resources.model import DATAPLANE_TYPE

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-user-token"
ADMIN_TOKEN_VALID_FOR = 365 * 86400.0


def api_servers(cp: ControlPlane) -> list[HttpServer]:
    """The API on HTTP and (unless its port is 0) HTTPS, one app behind both."""
    config = cp.config
    api = api_app(cp)
    http_address = config.api_address or config.address
    servers = [HttpServer("api-server", api, http_address, config.api_port)]
    if config.api_https_port:
        servers.append(
            HttpServer(
                "api-server-https",
                api,
                config.api_https_address or http_address,
                config.api_https_port,
                tls=api_tls_context(config, cp.tls),
            )
        )
    return servers


def api_app(cp: ControlPlane) -> ASGIApp:
    mode = cp.config.mode
    tokens = TokenServices(cp.tokens, zone=cp.zone_tokens, user=cp.user_tokens)
    return create_app(
        cp.store,
        cp.bootstrap,
        extra_routes=[
            *(token_refusals(ISSUE_ON_GLOBAL) if mode == ZONE else []),
            *token_routes(tokens, cp.tls.ca_pem if cp.tls else None),
            *insight_routes(
                cp.store,
                None if mode == GLOBAL else cp.insights,
                cp.cache,
                cross_zone=cp.reconciler.cross_zone_reason,
            ),
            *(zone_proxy_routes(cp.store, cp.zone_proxy_insights) if mode != STANDALONE else []),
            *rules_routes(cp.store),
            *control_plane_routes(cp.instances, cp.election),
            *zone_routes(cp.store),
            *(global_zone_routes(cp) if mode == GLOBAL else []),
            # Kuma compatibility: Kuma's API about itself, and its dataplane inspection
            *meta_routes(cp.store, config_document(cp.config)),
            *inspect_routes(cp.store, cp.hub),
        ],
        guard=cp.write_guard,
        instance=cp.instance,
        security=ApiSecurity(
            users=cp.user_tokens,
            localhost_is_admin=cp.config.localhost_is_admin,
            anonymous_read=cp.config.api_anonymous_read,
        ),
        max_body_bytes=cp.config.api_max_body_bytes,
        validators={DATAPLANE_TYPE: cp.self_guard.check},
    )


def global_zone_routes(cp: ControlPlane) -> list[BaseRoute]:
    """A global CP's zone administration: the delete guard, the zones' intermediate CAs."""
    kds = cp.global_kds
    assert kds is not None

    async def connected(zone: str) -> bool:
        if kds.zones.online(zone):
            return True
        if not cp.shared:
            return False
        others = {i.id for i in await cp.instances.live() if i.id != cp.instances.instance_id}
        return await connected_elsewhere(cp.store, zone, others)

    return zone_admin_routes(cp.store, connected, kds.cas)


def diagnostics_server(cp: ControlPlane) -> HttpServer:
    metrics = CpMetrics(
        xds=cp.dp_server.callbacks,
        reconcile_stats=cp.reconciler.stats,
        hub=cp.hub,
        agent_channel=cp.agent_channel,
        mode=cp.config.mode,
    )
    app = create_diagnostics_app(lambda: True, metrics=metrics.render)
    return HttpServer("diagnostics", app, cp.config.address, cp.config.diagnostics_port)


async def write_bootstrap_admin_token(config: ControlPlaneConfig, users: UserTokens) -> Path | None:
    """``<data dir>/admin-user-token`` (0600): an admin user token for the first remote
    admin, renewed when it no longer verifies. None when turned off, without a data dir, or
    on a CP that holds no signing key."""
    if not config.bootstrap_admin_token or config.data_dir is None:
        return None
    path = Path(config.data_dir) / ADMIN_TOKEN_FILE
    with contextlib.suppress(OSError, TokenError):
        await users.verify(path.read_text())
        return path
    token = await users.issue("mesh-system:admin", [ADMIN_GROUP], valid_for=ADMIN_TOKEN_VALID_FOR)
    write_private_file(path, token + "\n")
    log.info("wrote an admin user token to %s (readable by this user only)", path)
    return path


__all__ = [
    "ADMIN_TOKEN_FILE",
    "api_app",
    "api_servers",
    "diagnostics_server",
    "global_zone_routes",
    "write_bootstrap_admin_token",
]
