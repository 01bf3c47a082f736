"""Transparent-proxy generator: Kuma's passthrough listeners for a dataplane whose traffic
iptables redirects to Envoy (``networking.transparentProxying``; see ``kumadp.tproxy``).

- ``outbound:passthrough:ipv4`` on ``0.0.0.0:<redirectPortOutbound>`` (15001): every outbound
  TCP connection of the application lands here. ``use_original_dst`` hands it to the listener
  of its original destination when there is one (the per-VIP outbound listeners, which then
  use ``bind_to_port: false``); anything else is proxied to where it was going, through the
  ORIGINAL_DST cluster ``outbound:passthrough:ipv4``.
- ``inbound:passthrough:ipv4`` on ``0.0.0.0:<redirectPortInbound>`` (15006): every inbound TCP
  connection. It is handed to the dataplane's ``inbound:<ip>:<port>`` listener (which does not
  bind its port under transparent proxying, so the application can); connections to other
  ports go to their original destination through the ORIGINAL_DST cluster
  ``inbound:passthrough:ipv4``, whose connections leave from 127.0.0.6: the application sees a
  local peer that is not 127.0.0.1, and the iptables rules let that source through untouched.

Dataplanes without ``transparentProxying`` get nothing from this generator. Kuma lets a Mesh
turn passthrough off (``networking.outbound.passthrough: false``); kumadp always has it.
IPv4 only for now (Kuma adds ``...:ipv6`` twins on ``[::]``).
"""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from kumadp.cp.generate import listeners, names
from kumadp.cp.generate.context import Context

ORIGINAL_DST_FILTER = "envoy.filters.listener.original_dst"
ANY_IPV4 = "0.0.0.0"
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"  # kumadp.tproxy.rules lets this source through
CONNECT_TIMEOUT_SECONDS = 10  # Kuma's passthrough clusters


def original_dst_listener_filter() -> listener_components_pb2.ListenerFilter:
    """Reads the pre-redirect destination (SO_ORIGINAL_DST) of an accepted connection."""
    listener_filter = listener_components_pb2.ListenerFilter(name=ORIGINAL_DST_FILTER)
    listener_filter.typed_config.Pack(original_dst_pb2.OriginalDst())
    return listener_filter


def passthrough_listener(
    name: str, port: int, direction: base_pb2.TrafficDirection.ValueType, cluster: str
) -> Listener:
    """``0.0.0.0:port``, original destination, every connection TCP-proxied to ``cluster``."""
    listener = listeners.listener(
        name,
        ANY_IPV4,
        port,
        direction,
        [listeners.tcp_proxy_filter(names.stat_prefix(cluster), cluster)],
    )
    listener.use_original_dst.CopyFrom(wrappers_pb2.BoolValue(value=True))
    listener.listener_filters.append(original_dst_listener_filter())
    return listener


def original_dst_cluster(name: str, source_address: str | None = None) -> Cluster:
    """Connects to each connection's original destination; optionally from ``source_address``."""
    cluster = Cluster(
        name=name,
        type=Cluster.ORIGINAL_DST,
        lb_policy=Cluster.CLUSTER_PROVIDED,
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_SECONDS),
        alt_stat_name=names.stat_prefix(name),
    )
    if source_address is not None:
        cluster.upstream_bind_config.CopyFrom(
            address_pb2.BindConfig(
                source_address=address_pb2.SocketAddress(address=source_address, port_value=0)
            )
        )
    return cluster


def uses_transparent_proxy(ctx: Context) -> bool:
    """Whether iptables redirects this dataplane's traffic (its listeners then do not bind)."""
    return ctx.dataplane.networking.transparent_proxying is not None


class TransparentProxyGenerator:
    name = "transparent-proxy"

    def generate(self, ctx: Context) -> Iterator[Message]:
        tp = ctx.dataplane.networking.transparent_proxying
        if tp is None:
            return
        outbound = names.outbound_passthrough()
        yield original_dst_cluster(outbound)
        yield passthrough_listener(
            outbound, tp.redirect_port_outbound, listeners.OUTBOUND, outbound
        )
        inbound = names.inbound_passthrough()
        yield original_dst_cluster(inbound, source_address=INBOUND_PASSTHROUGH_SOURCE)
        yield passthrough_listener(inbound, tp.redirect_port_inbound, listeners.INBOUND, inbound)
