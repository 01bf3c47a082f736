"""The KDS parts of a global and of a zone control plane, built from the configuration
(the composition root, ``control_plane``, puts them in its phases)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import kumadp
from kumadp.cp.ca import MeshCAs
from kumadp.cp.insights import control_plane_instance_id
from kumadp.cp.kds.auth import ZoneTokenAuth
from kumadp.cp.kds.catalog import down_types, sync_types
from kumadp.cp.kds.client import KdsClientConfig, ZoneKdsClient, parse_global_address
from kumadp.cp.kds.keys import PublicKeyPublisher
from kumadp.cp.kds.relay import RelaySource
from kumadp.cp.kds.server import KdsServer
from kumadp.cp.kds.source import StoreSource
from kumadp.cp.kds.zone_filter import DisabledZones
from kumadp.cp.kds.zones import ZoneRegistry
from kumadp.cp.runtime.config import ControlPlaneConfig
from kumadp.cp.server_tls import (
    ServerCertificate,
    ensure_server_certificate,
    load_server_certificate,
)
from kumadp.cp.store.base import Store
from kumadp.cp.trust_bundles import TrustBundlePublisher
from kumadp.cp.zone_cas import ZoneCAs
from kumadp.cp.zone_intermediates import ZoneIntermediates
from kumadp.cp.zone_tokens import ZoneTokens
from kumadp.resources.registry import REGISTRY, Sync
from kumadp.wire import kds as wire

log = logging.getLogger(__name__)

KDS_TLS_SUBDIR = "kds-server"


def kds_certificate(config: ControlPlaneConfig) -> ServerCertificate:
    """The global CP's KDS certificate: given, else made on first start under
    ``<data dir>/kds-server`` (a CA of its own, as the DP server's)."""
    if config.kds_tls_cert_file and config.kds_tls_key_file:
        return load_server_certificate(config.kds_tls_cert_file, config.kds_tls_key_file)
    hosts = [h for h in [config.address, *config.hostnames] if h and h != "0.0.0.0"]
    return ensure_server_certificate(config.data_dir, hosts, KDS_TLS_SUBDIR, "KDS server")


@dataclass
class GlobalKds:
    source: StoreSource
    zones: ZoneRegistry
    server: KdsServer
    keys: PublicKeyPublisher
    tls: ServerCertificate
    cas: ZoneCAs  # the zones' intermediate CAs
    bundles: TrustBundlePublisher  # leader only, as ``keys``
    relay: RelaySource  # the zones' ingresses, on to the other zones


def global_kds(
    config: ControlPlaneConfig, store: Store, zone_tokens: ZoneTokens, leader_store: Store
) -> GlobalKds:
    down = sync_types(REGISTRY, Sync.GLOBAL_TO_ZONE)
    up = sync_types(REGISTRY, Sync.ZONE_TO_GLOBAL)
    source = StoreSource(store, down, wire.ORIGIN_GLOBAL, node_filter=DisabledZones(store))
    zones = ZoneRegistry(
        store, control_plane_instance_id(), health_timeout=config.zone_health_timeout
    )
    tls = kds_certificate(config)
    cas = ZoneCAs(store, MeshCAs(store, create=False), lifetime=config.zone_ca_validity)
    if config.kds_auth == "none":
        log.warning("--kds-auth none: any zone CP that reaches the KDS port is accepted")
    relay = RelaySource(store, REGISTRY.relayed())
    server = KdsServer(
        address=config.address,
        port=config.kds_port,
        tls=tls,
        store=store,
        source=source,
        zones=zones,
        down=down,
        up=up,
        authenticate=ZoneTokenAuth(zone_tokens) if config.kds_auth == "cpToken" else None,
        sign_intermediate=cas.handle,
        relay=relay,
    )
    bundles = TrustBundlePublisher(leader_store, MeshCAs(leader_store, create=False))
    return GlobalKds(source, zones, server, PublicKeyPublisher(store), tls, cas, bundles, relay)


@dataclass
class ZoneKds:
    source: StoreSource
    client: ZoneKdsClient
    intermediates: ZoneIntermediates  # leader only, as ``client``


def zone_kds(config: ControlPlaneConfig, store: Store) -> ZoneKds:
    assert config.zone and config.kds_global_address  # ControlPlaneConfig.check
    parse_global_address(config.kds_global_address)  # a bad address fails the start
    down = down_types(REGISTRY)  # the global CP's types, and the other zones' ingresses
    up = sync_types(REGISTRY, Sync.ZONE_TO_GLOBAL)
    source = StoreSource(store, up, wire.ORIGIN_ZONE)
    client = ZoneKdsClient(
        KdsClientConfig(
            zone=config.zone,
            global_address=config.kds_global_address,
            instance_id=control_plane_instance_id(),
            version=kumadp.__version__,
            ca_file=config.kds_ca_file,
            skip_verify=config.kds_skip_verify,
            stuck_timeout=config.kds_stuck_timeout,
            token=config.kds_token,
            token_file=config.kds_token_file,
        ),
        store,
        source,
        down=down,
        up=up,
    )
    if client.config.read_token() is None:  # a bad token file fails the start
        log.warning(
            "zone %s: no zone token (--kds-token-file): a global CP with --kds-auth cpToken "
            "(its default) refuses this zone",
            config.zone,
        )
    intermediates = ZoneIntermediates(store, config.zone, client.sign_intermediate)
    return ZoneKds(source, client, intermediates)


__all__ = ["KDS_TLS_SUBDIR", "GlobalKds", "ZoneKds", "global_kds", "kds_certificate", "zone_kds"]
