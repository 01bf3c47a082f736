"""Cross-references within Envoy config that a snapshot must satisfy: every EDS cluster has
its ClusterLoadAssignment, every RDS name a listener uses has its RouteConfiguration.

Apart from ``snapshot`` so that only snapshots with clusters or listeners load Envoy's
cluster, listener and connection-manager modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from kumadp.xds import types

_HCM_TYPE_URL = types.TYPE_URL_PREFIX + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name


def eds_reference(name: str, cluster: Message) -> str | None:
    """The ClusterLoadAssignment an EDS cluster named ``name`` needs (None: not EDS)."""
    assert isinstance(cluster, cluster_pb2.Cluster)
    if cluster.WhichOneof("cluster_discovery_type") != "type":
        return None
    if cluster.type != cluster_pb2.Cluster.EDS:
        return None
    return cluster.eds_cluster_config.service_name or name


def rds_references(listener: Message) -> list[str]:
    """The RouteConfigurations a listener loads over RDS, sorted; ``ValueError`` naming the
    listener when one of its HTTP connection managers does not unpack."""
    assert isinstance(listener, listener_pb2.Listener)
    return sorted(set(_rds_names(listener)))


def dangling_references(
    clusters: Mapping[str, Message],
    endpoints: Mapping[str, Message],
    listeners: Mapping[str, Message],
    routes: Mapping[str, Message],
    *,
    eds: Callable[[str, Message], str | None] = eds_reference,
    rds: Callable[[Message], list[str]] = rds_references,
) -> list[str]:
    """Every reference that points nowhere, as one sentence each (empty: consistent).
    ``eds``/``rds``: what a cluster/listener refers to (``eds_reference``/``rds_references``,
    or a caller's memo of them)."""
    problems: list[str] = []
    for name, cluster in clusters.items():
        wanted = eds(name, cluster)
        if wanted is not None and wanted not in endpoints:
            problems.append(f"cluster {name!r} (EDS) has no ClusterLoadAssignment {wanted!r}")
    for name, listener in listeners.items():
        try:
            used = rds(listener)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        for route_name in used:
            if route_name not in routes:
                problems.append(
                    f"listener {name!r} uses RouteConfiguration {route_name!r}, "
                    "which is not in the snapshot"
                )
    return problems


def _rds_names(listener: listener_pb2.Listener) -> Iterator[str]:
    """Route configuration names the listener's HTTP connection managers load over RDS."""
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    configs = [
        f.typed_config for chain in chains for f in chain.filters if f.HasField("typed_config")
    ]
    if listener.HasField("api_listener"):
        configs.append(listener.api_listener.api_listener)
    for config in configs:
        if config.type_url != _HCM_TYPE_URL:
            continue
        route_name = _RDS_BY_CONFIG.get(config.value)
        if route_name is None:
            hcm = hcm_pb2.HttpConnectionManager()
            if not config.Unpack(hcm):
                raise ValueError(f"listener {listener.name!r}: bad HttpConnectionManager")
            route_name = hcm.rds.route_config_name if hcm.HasField("rds") else ""
            if len(_RDS_BY_CONFIG) >= _RDS_CACHE_SIZE:
                _RDS_BY_CONFIG.clear()
            _RDS_BY_CONFIG[config.value] = route_name
        if route_name:
            yield route_name


# The RDS name (or "") of an HttpConnectionManager, by its packed bytes: every dataplane of a
# mesh carries the same connection managers, and unpacking each one again costs more than
# generating it.
_RDS_BY_CONFIG: dict[bytes, str] = {}
_RDS_CACHE_SIZE = 8192
