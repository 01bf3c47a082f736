"""Outbound generator: a listener per outbound, an EDS cluster and its endpoints per service."""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.listener.v3.listener_components_pb2 import Filter
from google.protobuf.message import Message

from kumadp.cp.generate import clusters, listeners, names, protocol, tls
from kumadp.cp.generate.context import Context
from kumadp.cp.generate.view import MeshView
from kumadp.resources.model import PROTOCOL_TAG


def service_protocol(view: MeshView, service: str) -> str:
    """The protocol every endpoint of ``service`` agrees on (``tcp`` when none exists)."""
    found = view.protocols.get(service)
    if found is None:
        found = view.protocols[service] = protocol.common_protocol(
            protocol.normalise(e.tags.get(PROTOCOL_TAG)) for e in view.endpoints_of(service)
        )
    return found


def service_filters(service: str, proto: str) -> list[Filter]:
    """The filters of an outbound listener to ``service`` (shared by every generator that
    makes one, e.g. explicit outbounds and VIPs)."""
    return listeners.proxy_filters(
        proto,
        stat_prefix=names.stat_prefix(service),
        cluster=names.outbound_cluster(service),
        route_name=names.outbound_route(service),
        virtual_host=service,
    )


def service_cluster(ctx: Context, service: str, proto: str) -> Iterator[Message]:
    """The EDS cluster of ``service`` and its endpoints. Every generator that routes to a
    service yields them from here, so the copies are identical and the ResourceSet keeps one.
    They are the same for every dataplane of the view: built once per view."""

    def build() -> Iterator[Message]:
        cluster_name = names.outbound_cluster(service)
        cluster = clusters.eds_cluster(cluster_name)
        if protocol.uses_http2(proto):
            clusters.use_http2(cluster)
        if ctx.mtls is not None:
            tls.originate_mtls(cluster, ctx.mtls, ctx.mesh, service)
        yield cluster
        yield clusters.service_load_assignment(cluster_name, ctx.view.endpoints_of(service))

    yield from ctx.view.memoized(("service-cluster", service, proto, ctx.mtls), build)


def outbound_listener(
    ctx: Context, service: str, proto: str, address: str, port: int, *, bind: bool = True
) -> Message:
    """The outbound listener on ``address:port`` to ``service`` (built once per view)."""

    def build() -> Iterator[Message]:
        listener = listeners.listener(
            names.outbound_listener(address, port),
            address,
            port,
            listeners.OUTBOUND,
            service_filters(service, proto),
        )
        if not bind:
            listener.bind_to_port.value = False  # reached through the passthrough listener
        yield listener

    key = ("outbound-listener", service, proto, address, port, bind)
    return ctx.view.memoized(key, build)[0]


class OutboundGenerator:
    name = "outbound"

    def generate(self, ctx: Context) -> Iterator[Message]:
        services: dict[str, str] = {}  # service -> protocol, one cluster each
        for outbound in ctx.dataplane.networking.outbound:
            service = outbound.service
            proto = services.setdefault(service, service_protocol(ctx.view, service))
            yield outbound_listener(ctx, service, proto, outbound.address, outbound.port)

        for service, proto in sorted(services.items()):
            yield from service_cluster(ctx, service, proto)
