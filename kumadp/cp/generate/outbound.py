"""Outbound generator: a listener per outbound, an EDS cluster and its endpoints per service."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message

from kumadp.cp.generate import clusters, listeners, names, protocol
from kumadp.cp.generate.context import Context
from kumadp.cp.generate.view import MeshView
from kumadp.resources.model import PROTOCOL_TAG


def service_protocol(view: MeshView, service: str) -> str:
    """The protocol every endpoint of ``service`` agrees on (``tcp`` when none exists)."""
    return protocol.common_protocol(
        protocol.normalise(e.tags.get(PROTOCOL_TAG)) for e in view.endpoints_of(service)
    )


class OutboundGenerator:
    name = "outbound"

    def generate(self, ctx: Context) -> Iterator[Message]:
        services: dict[str, str] = {}  # service -> protocol, one cluster each
        for outbound in ctx.dataplane.networking.outbound:
            service = outbound.service
            proto = services.setdefault(service, service_protocol(ctx.view, service))
            cluster_name = names.outbound_cluster(service)
            filters = listeners.proxy_filters(
                proto,
                stat_prefix=names.stat_prefix(service),
                cluster=cluster_name,
                route_name=names.outbound_route(service),
                virtual_host=service,
            )
            yield listeners.listener(
                names.outbound_listener(outbound.address, outbound.port),
                outbound.address,
                outbound.port,
                listeners.OUTBOUND,
                filters,
            )

        for service, proto in sorted(services.items()):
            cluster_name = names.outbound_cluster(service)
            cluster = clusters.eds_cluster(cluster_name)
            if protocol.uses_http2(proto):
                clusters.use_http2(cluster)
            yield cluster
            yield clusters.service_load_assignment(cluster_name, ctx.view.endpoints_of(service))
