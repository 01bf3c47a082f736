"""The zone ingress profile: traffic from other zones into this one.

One listener on the ingress's ``networking.address:port`` with the TLS inspector and a
filter chain per SNI (``passthrough``): for every service of every mesh with instances in
this zone, its plain SNI (``backend{mesh=default}``) and one per subset of its instances'
tags (``backend{mesh=default,version=2}``), each TCP-proxying, without terminating TLS, to
an EDS cluster ``<mesh>:<service>`` of the local instances (the sidecars' inbounds). The
ingress never forwards to another zone: only local endpoints are in its clusters. No policy
plug-in applies to it: policies are enforced by the sidecars at both ends.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message

from kumadp.cp.generate import clusters
from kumadp.cp.generate.passthrough import SniRoute, routes_of, sni_listener
from kumadp.cp.generate.profile import INGRESS, Profile
from kumadp.cp.generate.zone_context import ZoneProxyContext


def ingress_routes(ctx: ZoneProxyContext) -> list[SniRoute]:
    """Every SNI the ingress answers, by mesh then service."""
    routes: list[SniRoute] = []
    for view in ctx.views:
        for service in sorted(view.endpoints):
            endpoints = view.local_endpoints_of(service)
            if endpoints:
                routes += routes_of(view.mesh.name, service, endpoints)
    return routes


class IngressListenerGenerator:
    name = "ingress-listener"

    def generate(self, ctx: ZoneProxyContext) -> Iterator[Message]:
        routes = ingress_routes(ctx)
        if routes:  # Envoy refuses a listener without filter chains: none until then
            net = ctx.ingress.networking
            yield sni_listener(net.address, net.port, routes)


class IngressClusterGenerator:
    """An EDS cluster (plain TCP: the TLS inside is the client's) per route, with its local
    endpoints."""

    name = "ingress-clusters"

    def generate(self, ctx: ZoneProxyContext) -> Iterator[Message]:
        for route in ingress_routes(ctx):
            yield clusters.eds_cluster(route.cluster)
            yield clusters.service_load_assignment(route.cluster, route.endpoints)


PROFILE: Profile[ZoneProxyContext] = Profile(
    INGRESS, generators=(IngressListenerGenerator(), IngressClusterGenerator())
)
