"""VIP outbounds: a listener per service of the mesh on its address, port 80 and its own ports.

``ctx.vips`` maps each service to the address this dataplane reaches it on (its VIP, or its
loopback address under bind-outbounds). Kuma's rule: listeners ``outbound:<vip>:80`` and
``outbound:<vip>:<port>`` for every distinct inbound port of the service's endpoints, all
routed to the service's EDS cluster, with the same filters and cluster as an explicit
outbound (``outbound.service_filters`` / ``outbound.service_cluster``).

How traffic reaches them:

- bind-outbounds: the listener binds the service's loopback address (no root needed; the
  agent's resolver answers ``<service>.mesh`` with it);
- transparent proxy: ``bind_to_port: false``; iptables sends outbound traffic to the
  passthrough listener (15001), which hands each connection to the listener of its original
  destination;
- neither: nothing. A listener bound to a VIP the host does not own would fail to bind and
  Envoy would reject the listener update.

A service without endpoints (gone, in its VIP grace period) still gets its port-80 listener:
Envoy answers 503 or resets, which is the truth. An explicit outbound on the same address
and port wins over the VIP listener.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message

from kumadp.cp.generate.context import Context
from kumadp.cp.generate.outbound import outbound_listener, service_cluster, service_protocol

VIP_PORT = 80


def vip_ports(ctx: Context, service: str) -> list[int]:
    """80, and every distinct port the service's local endpoints listen on, sorted (an
    instance in another zone is reached through its zone's ingress: port 80 only)."""
    return sorted({VIP_PORT} | {e.port for e in ctx.view.local_endpoints_of(service)})


class VipOutboundGenerator:
    name = "vip-outbound"

    def generate(self, ctx: Context) -> Iterator[Message]:
        if not ctx.vips or not (ctx.bind_outbounds or ctx.transparent_proxy):
            return
        explicit = {(o.address, o.port) for o in ctx.dataplane.networking.outbound}
        for service in sorted(ctx.vips):
            address = ctx.vips[service]
            proto = service_protocol(ctx.view, service)
            for port in vip_ports(ctx, service):
                if (address, port) in explicit:
                    continue
                # bind_to_port false under the transparent proxy: reached through the
                # passthrough listener.
                yield outbound_listener(ctx, service, proto, address, port, bind=ctx.bind_outbounds)
            yield from service_cluster(ctx, service, proto)
