"""The control plane's composition root: builds the parts a control plane is made of, over
one store. Which of them run in each mode, and in what order they stop, is
``kumadp.cp.runtime.modes``; its HTTP servers are ``kumadp.cp.runtime.servers``.

Only this package (and the CLI above it) imports ``kumadp.cp.api``: the domain modules of
``kumadp.cp`` never do.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import kumadp
from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.agent_service import AgentChannelService
from kumadp.cp.api import BootstrapHandler
from kumadp.cp.api.dp_port import dp_port_app
from kumadp.cp.auth import DpAuth
from kumadp.cp.available_services import AvailableServicesUpdater
from kumadp.cp.bootstrap import BootstrapParams, BootstrapService
from kumadp.cp.ca import MeshCAs
from kumadp.cp.deregistration import Deregistrar
from kumadp.cp.dp_server import DpServer
from kumadp.cp.election import AlwaysLeader, Election
from kumadp.cp.insight_janitor import InsightJanitor
from kumadp.cp.insights import InsightStore, control_plane_instance_id
from kumadp.cp.instance import CpInstance
from kumadp.cp.instances import InstanceInfo, Instances
from kumadp.cp.mode_guards import RefusingBootstrap, WriteGuard
from kumadp.cp.provisioners import CaProvisioner, VipProvisioner
from kumadp.cp.public_keys import StoredPublicKeys
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.runtime.config import GLOBAL, ZONE, ControlPlaneConfig
from kumadp.cp.runtime.multizone import GlobalKds, ZoneKds, global_kds, zone_kds
from kumadp.cp.runtime.phases import Phase, run_in_phases
from kumadp.cp.runtime.tls import server_certificate
from kumadp.cp.self_guard import SelfGuard
from kumadp.cp.shared_registration import SharedDataplaneRegistry
from kumadp.cp.signing_keys import PURPOSES
from kumadp.cp.store.base import Store
from kumadp.cp.tokens import TokenIssuer
from kumadp.cp.user_tokens import UserTokens
from kumadp.cp.vips import VipAllocator
from kumadp.cp.zone_proxies import ZoneProxies
from kumadp.cp.zone_proxy_streams import ZoneProxyStreams
from kumadp.cp.zone_tokens import ZoneTokens
from kumadp.resources.zone_proxies import (
    ZONE_EGRESS_INSIGHT_TYPE,
    ZONE_EGRESS_TYPE,
    ZONE_INGRESS_INSIGHT_TYPE,
    ZONE_INGRESS_TYPE,
)
from kumadp.wire.names import PROXY_EGRESS, PROXY_INGRESS
from kumadp.xds.cache import SnapshotCache

log = logging.getLogger(__name__)


class ControlPlane:
    """Every part of a control plane over one store; ``modes.components_for(cp, mode)``
    says which run in a mode, phase by phase; ``run(phases, stop)`` runs them."""

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
        # A zone verifies tokens with the public keys synced from global and signs none.
        self._public_keys = {
            purpose: StoredPublicKeys(store, purpose) for purpose in PURPOSES if zone
        }
        self.tokens = TokenIssuer(store, public_keys=self._public_keys.get("dataplane"))
        self.zone_tokens = ZoneTokens(store, public_keys=self._public_keys.get("zone"))
        self.user_tokens = UserTokens(store, public_keys=self._public_keys.get("user"))
        # The API and bootstraps refuse dataplanes pointed at the CP's own ports.
        self.self_guard = SelfGuard.for_ports(
            [
                (config.api_port, "API"),
                (config.api_https_port, "HTTPS API"),
                (config.dp_port, "DP server"),
                (config.diagnostics_port, "diagnostics"),
            ],
            extra=[config.address, config.api_address or "", config.xds_host or ""],
        )
        self.auth = DpAuth(config.dp_auth, self.tokens)
        self.cas = MeshCAs(store, create=not zone)
        self.vips = VipAllocator(store, cidr=config.vip_cidr, loopback_cidr=config.loopback_cidr)
        self.tls = server_certificate(config)
        self.insights = InsightStore(store, instance_id=instance_id, shared=self.shared)
        # A zone's ingresses and egresses (kumadp.cp.zone_proxies), their insights and streams
        zone_name = config.zone if zone else None
        self.zone_proxies = ZoneProxies(
            store,
            zone_name,
            self.zone_tokens,
            auth=config.dp_auth == "dpToken",
            deregistration_delay=config.deregistration_delay,
        )
        self.zone_proxy_insights = zone_proxy_insights(store, instance_id) if zone else {}
        self.instance = CpInstance(store, instance_id, mode=config.mode, zone=config.zone)
        self.registrations: DataplaneRegistry
        if self.shared:
            self.registrations = SharedDataplaneRegistry(
                store, instance_id, deregistration_delay=config.deregistration_delay
            )
        else:
            self.registrations = DataplaneRegistry(
                store,
                deregistration_delay=config.deregistration_delay,
                on_readiness_change=self._readiness_changed,
            )
        self.reconciler = Reconciler(
            store,
            self.cache,
            self.registrations,
            vips=self.vips,
            cas=self.cas,
            hub=self.hub,
            debounce=config.debounce,
            ca_from_global=zone,
            zone=zone_name,
        )
        self.vip_provisioner = VipProvisioner(
            leader_store,
            VipAllocator(leader_store, cidr=config.vip_cidr, loopback_cidr=config.loopback_cidr),
        )
        self.ca_provisioner = CaProvisioner(leader_store, MeshCAs(leader_store))
        # a zone's ingresses list its services for the other zones
        self.available_services = AvailableServicesUpdater(
            leader_store, pending=self.registrations.pending
        )
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
            zone_proxies=self.zone_proxies,
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
            guard=self.self_guard.check,
            zone_proxies=self.zone_proxies,
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
            zone_proxies=ZoneProxyStreams(
                self.zone_proxies, self.reconciler, self.zone_proxy_insights
            ),
        )
        self.write_guard = WriteGuard(config.mode, config.zone if zone else None)
        self.global_kds: GlobalKds | None = None
        self.zone_kds: ZoneKds | None = None
        if config.mode == GLOBAL:
            self.global_kds = global_kds(config, store, self.zone_tokens, leader_store)
        elif zone:
            self.zone_kds = zone_kds(config, store)

    def _readiness_changed(self, mesh: str) -> None:
        """A dataplane's listeners are up (it stops being pending): it becomes an endpoint."""
        self.reconciler.mark_dirty(mesh)
        self.available_services.mark_dirty(mesh)

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

    async def _peer_dp_servers(self) -> list[str]:
        """The DP servers of the other live instances (for the bootstraps' ADS cluster)."""
        try:
            live = await self.instances.live()
        except Exception as exc:  # the bootstrap still works with this instance alone
            log.warning("listing the other control plane instances failed: %s", exc)
            return []
        return [i.dp_server for i in live if i.id != self.instances.instance_id and i.dp_server]

    # -- running -------------------------------------------------------------------------
    async def run(self, phases: list[Phase], stop: asyncio.Event) -> None:
        if self.config.mode != GLOBAL:  # a global CP's insights are its zones' copies
            await self.insights.load()  # before any stream opens
            for insights in self.zone_proxy_insights.values():
                await insights.load()
        try:
            await run_in_phases(phases, stop)
        finally:
            self.registrations.close()
            self.zone_proxies.close()
            for tokens in (self.tokens, self.zone_tokens, self.user_tokens):
                tokens.close()
            for keys in self._public_keys.values():
                keys.close()


def zone_proxy_insights(store: Store, instance_id: str) -> dict[str, InsightStore]:
    """ZoneIngressInsight and ZoneEgressInsight, kept as the dataplanes' are."""
    return {
        PROXY_INGRESS: InsightStore(
            store,
            instance_id=instance_id,
            insight_type=ZONE_INGRESS_INSIGHT_TYPE,
            resource_type=ZONE_INGRESS_TYPE,
        ),
        PROXY_EGRESS: InsightStore(
            store,
            instance_id=instance_id,
            insight_type=ZONE_EGRESS_INSIGHT_TYPE,
            resource_type=ZONE_EGRESS_TYPE,
        ),
    }


__all__ = ["ControlPlane", "server_certificate", "zone_proxy_insights"]
