"""The KDS parts of a global and of a zone control plane, built from the configuration
(the composition root, ``control_plane``, puts them in its phases)."""

from __future__ import annotations

from dataclasses import dataclass

import kumadp
from kumadp.cp.insights import control_plane_instance_id
from kumadp.cp.kds.catalog import down_types, sync_types
from kumadp.cp.kds.client import KdsClientConfig, ZoneKdsClient, parse_global_address
from kumadp.cp.kds.keys import PublicKeyPublisher
from kumadp.cp.kds.relay import RelaySource
from kumadp.cp.kds.server import KdsServer
from kumadp.cp.kds.source import StoreSource
from kumadp.cp.kds.zones import ZoneRegistry
from kumadp.cp.runtime.config import ControlPlaneConfig
from kumadp.cp.server_tls import (
    ServerCertificate,
    ensure_server_certificate,
    load_server_certificate,
)
from kumadp.cp.store.base import Store
from kumadp.resources.registry import REGISTRY, Sync
from kumadp.wire import kds as wire

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
    relay: RelaySource  # the zones' ingresses, on to the other zones


def global_kds(config: ControlPlaneConfig, store: Store) -> GlobalKds:
    down = sync_types(REGISTRY, Sync.GLOBAL_TO_ZONE)
    up = sync_types(REGISTRY, Sync.ZONE_TO_GLOBAL)
    source = StoreSource(store, down, wire.ORIGIN_GLOBAL)
    zones = ZoneRegistry(
        store, control_plane_instance_id(), health_timeout=config.zone_health_timeout
    )
    tls = kds_certificate(config)
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
        relay=relay,
    )
    return GlobalKds(source, zones, server, PublicKeyPublisher(store), tls, relay)


@dataclass
class ZoneKds:
    source: StoreSource
    client: ZoneKdsClient


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
        ),
        store,
        source,
        down=down,
        up=up,
    )
    return ZoneKds(source, client)


__all__ = ["KDS_TLS_SUBDIR", "GlobalKds", "ZoneKds", "global_kds", "kds_certificate", "zone_kds"]
