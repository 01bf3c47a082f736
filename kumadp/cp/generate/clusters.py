"""Cluster configurers: each builds or changes one aspect of a cluster."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import duration_pb2

from kumadp.cp.generate.view import Endpoint
from kumadp.resources.model import ZONE_TAG

CONNECT_TIMEOUT_SECONDS = 5
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def load_assignment(name: str, endpoints: Iterable[tuple[str, int]]) -> ClusterLoadAssignment:
    """One locality-less group of endpoints; health left unknown (Envoy treats it healthy)."""
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=socket_address(address, port))
        )
        for address, port in endpoints
    ]
    assignment = ClusterLoadAssignment(cluster_name=name)
    if lb_endpoints:
        assignment.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)
        )
    return assignment


def lb_endpoint(endpoint: Endpoint) -> endpoint_components_pb2.LbEndpoint:
    """One endpoint; its weight when it stands for several instances (another zone's)."""
    out = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=socket_address(endpoint.address, endpoint.port)
        )
    )
    if endpoint.weight != 1:
        out.load_balancing_weight.value = endpoint.weight
    return out


def service_load_assignment(
    name: str, endpoints: Iterable[Endpoint], *, local_zone: str | None = None
) -> ClusterLoadAssignment:
    """The endpoints of a service: one group, each weighted by the instances it stands for;
    with ``local_zone`` (``mesh.routing.localityAwareLoadBalancing``) this zone's at priority
    0 and every other zone's at priority 1, a locality per zone, so Envoy leaves the zone only
    as its instances become unhealthy."""
    found = list(endpoints)
    if local_zone is None or not any(e.remote for e in found):
        assignment = ClusterLoadAssignment(cluster_name=name)
        if found:
            assignment.endpoints.append(
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[lb_endpoint(e) for e in found]
                )
            )
        return assignment
    groups: dict[tuple[int, str], list[Endpoint]] = {}
    for endpoint in found:
        zone = endpoint.tags.get(ZONE_TAG) or ("" if endpoint.remote else local_zone)
        priority = 1 if endpoint.remote and zone != local_zone else 0
        groups.setdefault((priority, zone), []).append(endpoint)
    assignment = ClusterLoadAssignment(cluster_name=name)
    levels = {p: n for n, p in enumerate(sorted({p for p, _ in groups}))}  # no gaps
    for (priority, zone), members in sorted(groups.items()):
        assignment.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(zone=zone),
                priority=levels[priority],
                lb_endpoints=[lb_endpoint(e) for e in members],
            )
        )
    return assignment


def static_cluster(name: str, address: str, port: int) -> Cluster:
    """A cluster of one fixed endpoint: STATIC for an IP, STRICT_DNS for a host name."""
    cluster = Cluster(
        name=name,
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_SECONDS),
        load_assignment=load_assignment(name, [(address, port)]),
    )
    if is_ip(address):
        cluster.type = Cluster.STATIC
    else:
        cluster.type = Cluster.STRICT_DNS
        cluster.dns_lookup_family = Cluster.V4_PREFERRED
    return cluster


def eds_cluster(name: str) -> Cluster:
    """A cluster whose endpoints come over ADS (EDS resource named like the cluster)."""
    return Cluster(
        name=name,
        type=Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_SECONDS),
        lb_policy=Cluster.ROUND_ROBIN,
        eds_cluster_config=Cluster.EdsClusterConfig(
            eds_config=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            )
        ),
    )


def use_http2(cluster: Cluster) -> None:
    """Talk HTTP/2 (prior knowledge) to the cluster's endpoints: http2 and gRPC services."""
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Pack(options)
