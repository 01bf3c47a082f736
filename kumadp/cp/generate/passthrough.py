"""Configurers of the zone proxies: a listener that routes TLS by SNI without terminating it.

Both the zone ingress and the zone egress forward mesh mTLS untouched: the client's sidecar
and the destination's sidecar hold the TLS session, so identities are checked end to end
and the proxy in between holds no key. Envoy's TLS inspector reads the ClientHello's SNI
(``backend{mesh=default}``), one filter chain per SNI TCP-proxies the stream to one cluster.
A connection whose SNI no chain names (or without TLS) matches nothing and is closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from google.protobuf import any_pb2

from kumadp.cp.generate import listeners, names, tls
from kumadp.cp.generate.clusters import socket_address
from kumadp.cp.generate.view import Endpoint
from kumadp.resources.model import PROTOCOL_TAG, SERVICE_TAG, ZONE_TAG

# Tags that never tell instances of a service apart at one zone's edge: no SNI of their own.
NOT_SUBSET_TAGS = frozenset({SERVICE_TAG, ZONE_TAG, PROTOCOL_TAG})


@dataclass(frozen=True)
class SniRoute:
    """One filter chain: TLS with ``sni`` goes to ``cluster``, whose endpoints these are."""

    sni: str
    cluster: str
    endpoints: tuple[Endpoint, ...]


def sni_with_tags(service: str, mesh: str, tags: Mapping[str, str]) -> str:
    """Kuma's SNI of a service subset: ``backend{mesh=default,version=2}`` (keys sorted,
    ``mesh`` among them); without tags it is the plain ``tls.sni``."""
    if not tags:
        return tls.sni(service, mesh)
    pairs = sorted({**tags, "mesh": mesh}.items())
    return f"{service}{{{','.join(f'{k}={v}' for k, v in pairs)}}}"


def cluster_name(mesh: str, service: str, tags: Mapping[str, str] | None = None) -> str:
    """``<mesh>:<service>``, with its subset's tags: ``default:backend{version=2}``."""
    if not tags:
        return f"{mesh}:{service}"
    return f"{mesh}:{service}{{{','.join(f'{k}={v}' for k, v in sorted(tags.items()))}}}"


def subset_tags(endpoint: Endpoint) -> dict[str, str]:
    return {k: v for k, v in endpoint.tags.items() if k not in NOT_SUBSET_TAGS}


def routes_of(mesh: str, service: str, endpoints: tuple[Endpoint, ...]) -> list[SniRoute]:
    """The plain SNI of ``service`` to every endpoint, and one SNI per distinct subset of
    its endpoints' tags (``version=2``...) to those endpoints only."""
    routes = [SniRoute(tls.sni(service, mesh), cluster_name(mesh, service), endpoints)]
    subsets: dict[tuple[tuple[str, str], ...], list[Endpoint]] = {}
    for endpoint in endpoints:
        key = tuple(sorted(subset_tags(endpoint).items()))
        if key:
            subsets.setdefault(key, []).append(endpoint)
    for key, members in sorted(subsets.items()):
        tags = dict(key)
        routes.append(
            SniRoute(
                sni_with_tags(service, mesh, tags),
                cluster_name(mesh, service, tags),
                tuple(members),
            )
        )
    return routes


def _any(message: tls_inspector_pb2.TlsInspector) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def sni_listener(address: str, port: int, routes: Iterable[SniRoute]) -> Listener:
    """``inbound:<address>:<port>``: the TLS inspector, then a chain per SNI to its cluster."""
    listener = Listener(
        name=names.inbound_listener(address, port),
        address=socket_address(address, port),
        traffic_direction=listeners.INBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name=tls.TLS_INSPECTOR, typed_config=_any(tls_inspector_pb2.TlsInspector())
            )
        ],
    )
    for route in routes:
        listener.filter_chains.append(
            listener_components_pb2.FilterChain(
                filter_chain_match=listener_components_pb2.FilterChainMatch(
                    server_names=[route.sni], transport_protocol=tls.TLS_TRANSPORT_PROTOCOL
                ),
                filters=[
                    listeners.tcp_proxy_filter(names.stat_prefix(route.cluster), route.cluster)
                ],
            )
        )
    return listener


__all__ = [
    "NOT_SUBSET_TAGS",
    "SniRoute",
    "cluster_name",
    "routes_of",
    "sni_listener",
    "sni_with_tags",
    "subset_tags",
]
