"""The zone egress profile: traffic from this zone's sidecars out to other zones.

With ``mesh.routing.zoneEgress: true`` a sidecar's endpoints of another zone's service are
this zone's egress (``kumadp.cp.generate.crosszone``). The egress listens on its
``networking.address:port`` with the TLS inspector and a filter chain per SNI
(``passthrough``): one per service of every such mesh (served with mTLS) that other zones
offer, TCP-proxying, without terminating TLS, to an EDS cluster ``<mesh>:<service>`` of those
zones' ingresses (their advertised address and port, weighted by their instances), checked
actively so that a dead ingress leaves the rotation within seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message

from kumadp.cp.generate import clusters, crosszone
from kumadp.cp.generate.passthrough import SniRoute, cluster_name, sni_listener
from kumadp.cp.generate.profile import EGRESS, Profile
from kumadp.cp.generate.tls import sni
from kumadp.cp.generate.view import Endpoint
from kumadp.cp.generate.zone_context import ZoneProxyContext
from kumadp.resources.model import SERVICE_TAG


def egress_routes(ctx: ZoneProxyContext) -> list[SniRoute]:
    """Every SNI the egress forwards, by mesh then service."""
    routes: list[SniRoute] = []
    remote = crosszone.remote_ingresses(ctx.ingresses, ctx.zone)
    for view in ctx.views:
        mesh = view.mesh
        if not mesh.zone_egress or mesh.name not in ctx.mtls_meshes:
            continue
        by_service: dict[str, list[Endpoint]] = {}
        for ingress in remote:
            advertised = ingress.advertised
            assert advertised is not None
            for service, (tags, instances) in crosszone.services_at(ingress, mesh.name).items():
                by_service.setdefault(service, []).append(
                    Endpoint(
                        address=advertised[0],
                        port=advertised[1],
                        tags={SERVICE_TAG: service, **tags},
                        dataplane=f"zoneingress:{ingress.zone}/{ingress.name}",
                        weight=instances,
                        remote=True,
                    )
                )
        for service, endpoints in sorted(by_service.items()):
            routes.append(
                SniRoute(
                    sni(service, mesh.name), cluster_name(mesh.name, service), tuple(endpoints)
                )
            )
    return routes


class EgressListenerGenerator:
    name = "egress-listener"

    def generate(self, ctx: ZoneProxyContext) -> Iterator[Message]:
        routes = egress_routes(ctx)
        if routes:  # Envoy refuses a listener without filter chains: none until then
            net = ctx.egress.networking
            yield sni_listener(net.address, net.port, routes)


class EgressClusterGenerator:
    """An EDS cluster per route: the other zones' ingresses, weighted, health-checked."""

    name = "egress-clusters"

    def generate(self, ctx: ZoneProxyContext) -> Iterator[Message]:
        for route in egress_routes(ctx):
            cluster = clusters.eds_cluster(route.cluster)
            crosszone.eject_fast(cluster)
            yield cluster
            yield clusters.service_load_assignment(route.cluster, route.endpoints)


PROFILE: Profile[ZoneProxyContext] = Profile(
    EGRESS, generators=(EgressListenerGenerator(), EgressClusterGenerator())
)
