"""Listener configurers: each builds one aspect of a listener (address, filters, routes)."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.listener.v3.listener_components_pb2 import Filter
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from kumadp.cp.generate.clusters import socket_address
from kumadp.cp.generate.protocol import is_http

TCP_PROXY = "envoy.filters.network.tcp_proxy"
HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"

# Kuma's MeshTimeout default for an HTTP request; stream idle timeout stays Envoy's default.
ROUTE_TIMEOUT_SECONDS = 15

INBOUND = base_pb2.INBOUND
OUTBOUND = base_pb2.OUTBOUND


def _any(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def listener(
    name: str,
    address: str,
    port: int,
    direction: base_pb2.TrafficDirection.ValueType,
    filters: Sequence[Filter],
) -> Listener:
    """A listener on ``address:port`` with one filter chain of ``filters``.

    Outbound listeners are ``MODIFY_ONLY`` (as Kuma's): the agent's ``/healthcheck/fail``
    at shutdown drains inbound traffic only, so the application keeps its keep-alive
    connections to other services while its own sidecar drains."""
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=direction,
        filter_chains=[listener_components_pb2.FilterChain(filters=list(filters))],
        drain_type=Listener.MODIFY_ONLY if direction == OUTBOUND else Listener.DEFAULT,
    )


def tcp_proxy_filter(stat_prefix: str, cluster: str) -> Filter:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)
    return Filter(name=TCP_PROXY, typed_config=_any(proxy))


def route_configuration(name: str, virtual_host: str, cluster: str) -> route_pb2.RouteConfiguration:
    """Every request (any host, prefix ``/``) to ``cluster``."""
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(
            cluster=cluster, timeout=duration_pb2.Duration(seconds=ROUTE_TIMEOUT_SECONDS)
        ),
    )
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(name=virtual_host, domains=["*"], routes=[route])
        ],
    )


def http_connection_manager_filter(
    stat_prefix: str, routes: route_pb2.RouteConfiguration
) -> Filter:
    """An HTTP connection manager (HTTP/1.1 or HTTP/2, detected) with an inline route config."""
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        route_config=routes,
        http_filters=[hcm_pb2.HttpFilter(name=ROUTER, typed_config=_any(router_pb2.Router()))],
    )
    return Filter(name=HTTP_CONNECTION_MANAGER, typed_config=_any(manager))


def proxy_filters(
    protocol: str, stat_prefix: str, cluster: str, route_name: str, virtual_host: str
) -> list[Filter]:
    """The terminal filter for ``protocol``: a TCP proxy, or an HCM routing to ``cluster``."""
    if is_http(protocol):
        routes = route_configuration(route_name, virtual_host, cluster)
        return [http_connection_manager_filter(stat_prefix, routes)]
    return [tcp_proxy_filter(stat_prefix, cluster)]
