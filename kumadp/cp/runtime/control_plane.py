"""The control plane's composition root: builds the parts, lists the components each mode
runs (``components_for``) in the order they stop, and runs them.

Only this package (and the CLI above it) imports ``kumadp.cp.api``: the domain modules of
``kumadp.cp`` never do.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import ClassVar

import kumadp
from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.agent_service import AgentChannelService
from kumadp.cp.api import BootstrapHandler, create_app
from kumadp.cp.api.control_planes import control_plane_routes
from kumadp.cp.api.dp_port import dp_port_app
from kumadp.cp.api.insights import insight_routes
from kumadp.cp.api.inspect import inspect_routes
from kumadp.cp.api.meta import meta_routes
from kumadp.cp.api.rules import rules_routes
from kumadp.cp.api.tokens import token_routes
from kumadp.cp.api.zones import token_refusals, zone_routes
from kumadp.cp.auth import DpAuth
from kumadp.cp.bootstrap import BootstrapParams, BootstrapService
from kumadp.cp.ca import MeshCAs
from kumadp.cp.deregistration import Deregistrar
from kumadp.cp.diagnostics import create_diagnostics_app
from kumadp.cp.dp_server import DpServer
from kumadp.cp.election import AlwaysLeader, Election
from kumadp.cp.http_server import HttpServer
from kumadp.cp.insight_janitor import InsightJanitor
from kumadp.cp.insights import InsightStore, control_plane_instance_id
from kumadp.cp.instance import CpInstance
from kumadp.cp.instances import InstanceInfo, Instances
from kumadp.cp.metrics import CpMetrics
from kumadp.cp.mode_guards import RefusingBootstrap, RefusingDpServer, WriteGuard
from kumadp.cp.provisioners import CaProvisioner, VipProvisioner
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.runtime.config import GLOBAL, STANDALONE, ZONE, ControlPlaneConfig
from kumadp.cp.runtime.kuma_config import config_document
from kumadp.cp.runtime.leader_only import leader_only
from kumadp.cp.runtime.multizone import GlobalKds, ZoneKds, global_kds, zone_kds
from kumadp.cp.runtime.phases import Phase, run_in_phases
from kumadp.cp.server_tls import (
    ServerCertificate,
    ensure_server_certificate,
    load_server_certificate,
)
from kumadp.cp.shared_registration import SharedDataplaneRegistry
from kumadp.cp.store.base import Store
from kumadp.cp.tokens import ISSUE_ON_GLOBAL, TokenIssuer
from kumadp.cp.vips import VipAllocator
from kumadp.lifecycle import Component
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

    def __init__(
        self, config: ControlPlaneConfig, store: Store, election: Election | None = None
    ) -> None:
        self.config = config
        self.store = store
        # Several instances on one store: the leader runs the jobs that must run once
        # (``leader_only``), each instance has an id and a heartbeat (``instances``).
        self.shared = election is not None and not isinstance(election, AlwaysLeader)
        instance_id = config.instance_id or control_plane_instance_id()
        self.election: Election = election or AlwaysLeader(instance_id)
        self.instances = Instances(store, self._instance_info(instance_id), shared=self.shared)
        leader_store = self.election.fenced(store)  # the writes of leader-only components
        zone = config.mode == ZONE  # verifies tokens and CAs synced from global, makes none
        self.cache = SnapshotCache()
        self.hub = AgentHub()
        self.tokens = TokenIssuer(store, public_only=zone)
        self.auth = DpAuth(config.dp_auth, self.tokens)
        self.cas = MeshCAs(store, create=not zone)
        self.vips = VipAllocator(store, cidr=config.vip_cidr, loopback_cidr=config.loopback_cidr)
        self.tls = server_certificate(config)
        self.insights = InsightStore(store, instance_id=instance_id, shared=self.shared)
        self.instance = CpInstance(store, instance_id)
        self.registrations: DataplaneRegistry
        if self.shared:
            self.registrations = SharedDataplaneRegistry(
                store, instance_id, deregistration_delay=config.deregistration_delay
            )
        else:
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
            serve_without_ca=zone,
        )
        self.vip_provisioner = VipProvisioner(
            leader_store,
            VipAllocator(leader_store, cidr=config.vip_cidr, loopback_cidr=config.loopback_cidr),
        )
        self.ca_provisioner = CaProvisioner(leader_store, MeshCAs(leader_store))
        self.deregistrar = Deregistrar(
            leader_store, self.instances, delay=config.deregistration_delay
        )
        self.insight_janitor = InsightJanitor(leader_store, self.instances)
        self.agent_channel = AgentChannelService(
            store=store,
            registrations=self.registrations,
            auth=self.auth,
            cas=self.cas,
            hub=self.hub,
            refresh_agent_state=self.reconciler.refresh_agent_state,
            insights=self.insights,
        )
        # POST /bootstrap, on the API port and (as Kuma) on the DP port
        self.bootstrap: BootstrapHandler = BootstrapService(
            store,
            BootstrapParams(
                xds_port=config.dp_port,
                xds_host=config.xds_host,
                dp_server_ca_pem=self.tls.ca_pem if self.tls else None,
                peers=self._peer_dp_servers if self.shared else None,
            ),
            self.registrations,
            self.auth,
            zone=config.zone if zone else None,
        )
        if config.mode == GLOBAL:
            self.bootstrap = RefusingBootstrap()
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
        self.guard = WriteGuard(config.mode, config.zone if zone else None)
        self.global_kds: GlobalKds | None = None
        self.zone_kds: ZoneKds | None = None
        if config.mode == GLOBAL:
            self.global_kds = global_kds(config, store)
        elif zone:
            self.zone_kds = zone_kds(config, store)

    # -- components per mode -----------------------------------------------------------
    # mode -> the method listing its components
    MODES: ClassVar[dict[str, str]] = {
        STANDALONE: "_standalone",
        GLOBAL: "_global",
        ZONE: "_zone",
    }

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
                (
                    self.reconciler,
                    *leader_only(self.election, self._leader_jobs()),
                    *self._connection_records(),
                ),
                timeout,
            ),
            Phase("flush insights", (self.insights,), timeout),
            self._last_phase(),
        ]

    def _last_phase(self) -> Phase:
        return Phase(
            "stop diagnostics; leave the instance list, hand over the leader lease",
            (self._diagnostics_server(), self.instances, self.election),
            self.config.shutdown_phase_timeout,
        )

    def _leader_jobs(self, *, ca: bool = True) -> list[Component]:
        """What runs once among the instances sharing the store (on the leader); a zone
        makes no CA of its own (``ca=False``)."""
        jobs: list[Component] = [self.vip_provisioner]
        if ca:
            jobs.append(self.ca_provisioner)
        if self.shared:  # one instance alone does these in its registry and insight store
            jobs += [self.deregistrar, self.insight_janitor]
        return jobs

    def _connection_records(self) -> tuple[Component, ...]:
        registry = self.registrations
        return (registry,) if isinstance(registry, SharedDataplaneRegistry) else ()

    def _instance_info(self, instance_id: str) -> InstanceInfo:
        config = self.config
        unspecified = ("", "0.0.0.0", "::")
        host = config.xds_host or (
            config.address if config.address not in unspecified else socket.gethostname()
        )
        api_host = config.address if config.address not in unspecified else host
        return InstanceInfo(
            id=instance_id,
            dp_server=f"{host}:{config.dp_port}",
            api=f"{api_host}:{config.api_port}",
            mode=config.mode,
            version=kumadp.__version__,
        )

    def _global(self) -> list[Phase]:
        """Meshes and policies are written here and sent to the zones; dataplanes are
        refused (they connect to zones), the zones' inventory is received."""
        timeout = self.config.shutdown_phase_timeout
        kds = self.global_kds
        assert kds is not None
        refusing = RefusingDpServer(
            address=self.config.address, port=self.config.dp_port, tls=self.tls
        )
        return [
            Phase(
                "stop accepting zones, dataplane connections and API requests",
                (kds.server, refusing, self._api_server()),
                timeout,
            ),
            Phase(
                "stop provisioning and syncing; write the zone insights",
                (
                    *leader_only(self.election, [self.ca_provisioner, kds.keys]),
                    kds.source,
                    kds.zones,
                ),
                timeout,
            ),
            self._last_phase(),
        ]

    def _zone(self) -> list[Phase]:
        """A standalone CP for its own dataplanes, with meshes, policies and token keys from
        the global CP (read-only here) and its inventory sent there."""
        timeout = self.config.shutdown_phase_timeout
        kds = self.zone_kds
        assert kds is not None
        return [
            Phase(
                "disconnect from the global CP; stop accepting ADS/agent streams and API "
                "requests; drain open streams",
                (*leader_only(self.election, [kds.client]), self.dp_server, self._api_server()),
                timeout,
            ),
            Phase(
                "stop reconciling, provisioning and syncing",
                (
                    self.reconciler,
                    *leader_only(self.election, self._leader_jobs(ca=False)),
                    *self._connection_records(),
                    kds.source,
                ),
                timeout,
            ),
            Phase("flush insights", (self.insights,), timeout),
            self._last_phase(),
        ]

    # -- the HTTP servers ----------------------------------------------------------------
    def _api_server(self) -> HttpServer:
        mode = self.config.mode
        api = create_app(
            self.store,
            self.bootstrap,
            extra_routes=[
                *(token_refusals(ISSUE_ON_GLOBAL) if mode == ZONE else []),
                *token_routes(self.tokens, self.tls.ca_pem if self.tls else None),
                *insight_routes(self.store, None if mode == GLOBAL else self.insights, self.cache),
                *rules_routes(self.store),
                *control_plane_routes(self.instances, self.election),
                *zone_routes(self.store),
                # Kuma compatibility: Kuma's API about itself, and its dataplane inspection
                *meta_routes(self.store, config_document(self.config)),
                *inspect_routes(self.store, self.hub),
            ],
            guard=self.guard,
            instance=self.instance,
        )
        return HttpServer("api-server", api, self.config.address, self.config.api_port)

    async def _peer_dp_servers(self) -> list[str]:
        """The DP servers of the other live instances (for the bootstraps' ADS cluster)."""
        try:
            live = await self.instances.live()
        except Exception as exc:  # the bootstrap still works with this instance alone
            log.warning("listing the other control plane instances failed: %s", exc)
            return []
        return [i.dp_server for i in live if i.id != self.instances.instance_id and i.dp_server]

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
        if self.config.mode != GLOBAL:  # a global CP's insights are its zones' copies
            await self.insights.load()  # before any stream opens
        try:
            await run_in_phases(phases, stop)
        finally:
            self.registrations.close()
            self.tokens.close()


__all__ = ["ControlPlane", "server_certificate"]
