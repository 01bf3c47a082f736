"""Cross-zone endpoints: a mesh's services in other zones, as a sidecar of this zone reaches
them.

The zone learns the other zones' ZoneIngresses from the global CP (KDS), each with its
``availableServices``. For a mesh with mTLS on, each such service becomes, per ingress, one
endpoint at the ingress's advertised address and port, tagged with the service's tags
(``kuma.io/zone`` among them) and weighted by its instances, so that a zone with two instances
gets twice the share of a zone with one, while every local instance keeps weight 1. The
client's cluster is unchanged otherwise: it sends the service's SNI and expects the service's
SPIFFE identity, because the ingress forwards the TLS stream by SNI without terminating it.

- Without mTLS there is no SNI to route by and no identity across zones: no cross-zone
  endpoints, and ``CrossZone.reason`` says why (the API and ``ctl inspect`` show it).
- An ingress that advertises no address, or belongs to this zone, gives nothing.
- ``mesh.routing.zoneEgress: true``: the endpoints are this zone's ZoneEgresses instead
  (their ``address:port``), weighted by every remote instance; the egress forwards by SNI to
  the other zones' ingresses.

Clusters with cross-zone endpoints get a fast active health check (``eject_fast``) so that a
dead instance, or a whole zone, is out of rotation within about two seconds; a
MeshHealthCheck that applies replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.health_check_pb2 import HealthCheck
from google.protobuf import duration_pb2

from kumadp.cp.generate.view import Endpoint
from kumadp.resources.model import SERVICE_TAG, ZONE_TAG, Mesh
from kumadp.resources.zone_proxies import AvailableService, ZoneEgress, ZoneIngress

HEALTH_CHECK_INTERVAL_MS = 1000
HEALTH_CHECK_TIMEOUT_MS = 1000
UNHEALTHY_THRESHOLD = 2
HEALTHY_THRESHOLD = 1


@dataclass(frozen=True)
class CrossZone:
    """What a mesh's sidecars get of other zones: endpoints by service, or why none."""

    endpoints: dict[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    reason: str | None = None  # set when other zones have services this mesh cannot reach


NONE = CrossZone()


def remote_ingresses(ingresses: Iterable[ZoneIngress], zone: str | None) -> list[ZoneIngress]:
    """The ingresses of other zones that other zones can dial, sorted by (zone, name)."""
    if not zone:
        return []
    found = [i for i in ingresses if i.zone and i.zone != zone and i.advertised is not None]
    return sorted(found, key=lambda i: (i.zone, i.name))


def _common_tags(services: list[AvailableService]) -> dict[str, str]:
    """The tags every instance group of one service at one ingress shares."""
    common = dict(services[0].tags)
    for other in services[1:]:
        common = {k: v for k, v in common.items() if other.tags.get(k) == v}
    return common


def services_at(ingress: ZoneIngress, mesh: str) -> dict[str, tuple[dict[str, str], int]]:
    """Service -> (shared tags, instances) of what ``ingress`` offers in ``mesh``."""
    groups: dict[str, list[AvailableService]] = {}
    for available in ingress.available_services:
        if available.mesh == mesh and available.service and available.instances > 0:
            groups.setdefault(available.service, []).append(available)
    out: dict[str, tuple[dict[str, str], int]] = {}
    for service, found in sorted(groups.items()):
        tags = _common_tags(found)
        tags.setdefault(ZONE_TAG, ingress.zone)
        out[service] = (tags, sum(s.instances for s in found))
    return out


def remote_endpoints(
    mesh: Mesh,
    *,
    mtls: bool,
    zone: str | None,
    ingresses: Iterable[ZoneIngress],
    egresses: Iterable[ZoneEgress] = (),
) -> CrossZone:
    """The cross-zone endpoints of ``mesh``'s services for sidecars of ``zone``."""
    by_service: dict[str, list[Endpoint]] = {}
    for ingress in remote_ingresses(ingresses, zone):
        advertised = ingress.advertised
        assert advertised is not None
        for service, (tags, instances) in services_at(ingress, mesh.name).items():
            endpoint = Endpoint(
                address=advertised[0],
                port=advertised[1],
                tags={SERVICE_TAG: service, **tags},
                dataplane=f"zoneingress:{ingress.zone}/{ingress.name}",
                weight=instances,
                remote=True,
            )
            by_service.setdefault(service, []).append(endpoint)
    if not by_service:
        return NONE
    count = len(by_service)
    what = f"{count} service{'s' if count != 1 else ''} in other zones"
    are = "are" if count != 1 else "is"
    if not mtls:
        return CrossZone(
            reason=(
                f'mesh "{mesh.name}" has no mTLS: {what} {are} not reachable from this zone '
                "(zone ingresses route by the SNI of mesh mTLS, and identities must be "
                "verified end to end); enable mtls on the mesh"
            )
        )
    if not mesh.zone_egress:
        return CrossZone({s: tuple(e) for s, e in sorted(by_service.items())})
    local = sorted((e for e in egresses if e.zone == zone), key=lambda e: e.name)
    if not local:
        return CrossZone(
            reason=(
                f'mesh "{mesh.name}" has routing.zoneEgress on but zone {zone} has no '
                f"ZoneEgress: {what} {are} not reachable until one runs "
                "(kumadp run --proxy-type egress)"
            )
        )
    return CrossZone(
        {s: _through_egress(s, found, local) for s, found in sorted(by_service.items())}
    )


def _through_egress(
    service: str, remote: list[Endpoint], egresses: list[ZoneEgress]
) -> tuple[Endpoint, ...]:
    """One endpoint per local egress for every remote instance of ``service``; it keeps the
    remote zone's tag when there is only one such zone."""
    zones = sorted({e.tags.get(ZONE_TAG, "") for e in remote})
    tags = {SERVICE_TAG: service}
    if len(zones) == 1 and zones[0]:
        tags[ZONE_TAG] = zones[0]
    weight = sum(e.weight for e in remote)
    return tuple(
        Endpoint(
            address=egress.networking.address,
            port=egress.networking.port,
            tags=dict(tags),
            dataplane=f"zoneegress:{egress.name}",
            weight=weight,
            remote=True,
        )
        for egress in egresses
    )


def _duration_ms(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def fast_health_check() -> HealthCheck:
    """A TCP connect check (through the cluster's transport socket: the TLS handshake with
    the far end, across the ingress) every second, also without traffic."""
    interval = _duration_ms(HEALTH_CHECK_INTERVAL_MS)
    check = HealthCheck(
        timeout=_duration_ms(HEALTH_CHECK_TIMEOUT_MS),
        interval=interval,
        no_traffic_interval=interval,
        tcp_health_check=HealthCheck.TcpHealthCheck(),
    )
    check.unhealthy_threshold.value = UNHEALTHY_THRESHOLD
    check.healthy_threshold.value = HEALTHY_THRESHOLD
    return check


def eject_fast(cluster: Cluster) -> None:
    """A cluster with endpoints in other zones: check its endpoints actively, so that dead
    ones (a local instance, a zone's ingress) leave the rotation within seconds. An endpoint
    the control plane removes goes at once (Envoy would keep a health-checked one until it
    fails its checks: a disabled zone would keep its traffic)."""
    del cluster.health_checks[:]
    cluster.health_checks.append(fast_health_check())
    cluster.ignore_health_on_host_removal = True


__all__ = [
    "NONE",
    "CrossZone",
    "eject_fast",
    "fast_health_check",
    "remote_endpoints",
    "remote_ingresses",
    "services_at",
]
