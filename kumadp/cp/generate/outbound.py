"""Outbound generator: a listener per outbound, an EDS cluster and its endpoints per service."""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.listener.v3.listener_components_pb2 import Filter
from google.protobuf.message import Message

from kumadp.cp.generate import clusters, crosszone, listeners, names, protocol, tls
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


def cluster_name(ctx: Context, service: str, port: int | None) -> str:
    """The cluster of ``service`` (every inbound of it), or of one of its ports (an
    outbound's ``backendRef``: only the inbounds on ``port``)."""
    if port is None:
        return names.outbound_cluster(service)
    return names.mesh_service_cluster(ctx.mesh, service, port)


def service_filters(service: str, proto: str, cluster: str | None = None) -> list[Filter]:
    """The filters of an outbound listener to ``service`` (shared by every generator that
    makes one, e.g. explicit outbounds and VIPs); ``cluster``: the service's own by default."""
    return listeners.proxy_filters(
        proto,
        stat_prefix=names.stat_prefix(cluster or service),
        cluster=cluster or names.outbound_cluster(service),
        route_name=names.outbound_route(service),
        virtual_host=service,
    )


def service_cluster(
    ctx: Context, service: str, proto: str, port: int | None = None
) -> Iterator[Message]:
    """The EDS cluster of ``service`` (of its inbounds on ``port`` only, when given) and its
    endpoints. Every generator that routes to a service yields them from here, so the copies
    are identical and the ResourceSet keeps one. They are the same for every dataplane of the
    view: built once per view."""

    def build() -> Iterator[Message]:
        name = cluster_name(ctx, service, port)
        cluster = clusters.eds_cluster(name)
        if protocol.uses_http2(proto):
            clusters.use_http2(cluster)
        if ctx.mtls is not None:
            tls.originate_mtls(cluster, ctx.mtls, ctx.mesh, service)
        if port is None:
            endpoints = ctx.view.endpoints_of(service)  # other zones' too
        else:  # a MeshService port: only the local inbounds on it
            endpoints = tuple(e for e in ctx.view.local_endpoints_of(service) if e.port == port)
        if any(e.remote for e in endpoints):
            crosszone.eject_fast(cluster)
        yield cluster
        local_zone = ctx.view.zone if ctx.view.locality_aware else None
        yield clusters.service_load_assignment(name, endpoints, local_zone=local_zone)

    yield from ctx.view.memoized(("service-cluster", service, proto, ctx.mtls, port), build)


def outbound_listener(
    ctx: Context,
    service: str,
    proto: str,
    address: str,
    port: int,
    *,
    bind: bool = True,
    backend_port: int | None = None,
) -> Message:
    """The outbound listener on ``address:port`` to ``service`` (to its inbounds on
    ``backend_port`` only, when given); built once per view."""

    def build() -> Iterator[Message]:
        listener = listeners.listener(
            names.outbound_listener(address, port),
            address,
            port,
            listeners.OUTBOUND,
            service_filters(service, proto, cluster_name(ctx, service, backend_port)),
        )
        if not bind:
            listener.bind_to_port.value = False  # reached through the passthrough listener
        yield listener

    key = ("outbound-listener", service, proto, address, port, bind, backend_port)
    return ctx.view.memoized(key, build)[0]


class OutboundGenerator:
    name = "outbound"

    def generate(self, ctx: Context) -> Iterator[Message]:
        # (service, backend port or None) -> protocol: one cluster each
        targets: dict[tuple[str, int | None], str] = {}
        for outbound in ctx.dataplane.networking.outbound:
            service, backend_port = outbound.service, outbound.backend_port
            proto = service_protocol(ctx.view, service)
            targets.setdefault((service, backend_port), proto)
            yield outbound_listener(
                ctx, service, proto, outbound.address, outbound.port, backend_port=backend_port
            )

        for (service, backend_port), proto in sorted(targets.items(), key=_target_order):
            yield from service_cluster(ctx, service, proto, backend_port)


def _target_order(item: tuple[tuple[str, int | None], str]) -> tuple[str, int]:
    (service, port), _ = item
    return service, -1 if port is None else port
