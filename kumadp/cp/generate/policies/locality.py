"""Locality-aware load balancing (MeshLoadBalancingStrategy's ``localityAwareness``): the
endpoints of one outbound service regrouped into Envoy priorities and localities for one
proxy, from the endpoints' ``kuma.io/zone`` tags.

- The local zone is the proxy's own ``kuma.io/zone`` tag (its first inbound's); a proxy
  without one is left alone. Endpoints without the tag count as local.
- Local endpoints get priority 0. With ``localZone.affinityTags``, an endpoint sharing the
  proxy's value of a tag (the first tag that matches, in order) goes into a locality of its
  own, ``sub_zone: <key>=<value>``, weighted by the tag's weight (by default 9·10^(n-i-1)
  for the i-th of n tags, so the first gets about 90 %); the others keep weight 1.
- Other zones get traffic only through ``crossZone.failover``: the rules whose ``from``
  lists the local zone (or have no ``from``), in order; rule i gives priority i+1 to the
  zones it admits (``Any``: every zone; ``Only``: its zones; ``AnyExcept``: every zone but
  its zones; ``None``: none). A zone takes the priority of the first rule admitting it; a
  zone no rule admits is left out. Without ``crossZone`` traffic never leaves the zone.
  Priorities no zone uses are skipped (Envoy wants them without gaps), which keeps the order.
- Envoy moves traffic to the next priority as the healthy share of a priority drops below
  ``failoverThreshold.percentage`` (default 50): the assignment's overprovisioning factor
  is 100·100/percentage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

from kumadp.cp.generate.clusters import lb_endpoint
from kumadp.cp.generate.view import Endpoint
from kumadp.resources.meshloadbalancingstrategy import CrossZone, LocalityAwareness
from kumadp.resources.model import ZONE_TAG, Dataplane

DEFAULT_THRESHOLD = Decimal(50)


@dataclass(frozen=True)
class Group:
    """One Envoy locality of a priority."""

    priority: int
    zone: str
    sub_zone: str = ""
    weight: int = 1


def local_zone(dataplane: Dataplane) -> str | None:
    for inbound in dataplane.networking.inbound:
        zone = inbound.tags.get(ZONE_TAG)
        if zone:
            return zone
    return None


def _affinity(awareness: LocalityAwareness, tags: dict[str, str]) -> list[tuple[str, str, int]]:
    """(key, the proxy's value, weight) of each affinity tag the proxy has."""
    found = awareness.local_zone.affinity_tags if awareness.local_zone else None
    rules = list(found or ())
    out = []
    for n, rule in enumerate(rules):
        weight = rule.weight if rule.weight is not None else 9 * 10 ** (len(rules) - n - 1)
        if rule.key is not None and rule.key in tags:
            out.append((rule.key, tags[rule.key], weight))
    return out


def _cross_zone_priority(cross: CrossZone | None, local: str, zone: str) -> int | None:
    for n, rule in enumerate(cross.failover or () if cross else ()):
        if rule.from_ is not None and local not in (rule.from_.zones or ()):
            continue
        to = rule.to
        if to is None or to.type in (None, "None"):
            continue
        zones = set(to.zones or ())
        if to.type == "Any" or (to.type == "Only") == (zone in zones):
            return n + 1
    return None


def group_of(
    endpoint: Endpoint,
    local: str,
    affinity: Sequence[tuple[str, str, int]],
    cross: CrossZone | None,
) -> Group | None:
    """Where an endpoint goes for a proxy in zone ``local``; None: left out."""
    zone = endpoint.tags.get(ZONE_TAG) or ("" if endpoint.remote else local)
    if zone == local:
        for key, value, weight in affinity:
            if endpoint.tags.get(key) == value:
                return Group(0, local, f"{key}={value}", weight)
        return Group(0, local)
    priority = _cross_zone_priority(cross, local, zone)
    return None if priority is None else Group(priority, zone)


def overprovisioning_factor(cross: CrossZone | None) -> int:
    threshold = cross.failover_threshold if cross else None
    percentage = threshold.percentage if threshold and threshold.percentage is not None else None
    chosen = DEFAULT_THRESHOLD if percentage is None else Decimal(percentage)
    return int(Decimal(100) * 100 / chosen)


def locality_assignment(
    name: str,
    endpoints: Iterable[Endpoint],
    dataplane: Dataplane,
    awareness: LocalityAwareness,
) -> ClusterLoadAssignment | None:
    """The assignment of cluster ``name`` for ``dataplane``; None: leave it as generated
    (locality awareness disabled, or the proxy has no zone)."""
    local = local_zone(dataplane)
    if awareness.disabled or local is None:
        return None
    tags = dict(dataplane.networking.inbound[0].tags) if dataplane.networking.inbound else {}
    affinity = _affinity(awareness, tags)
    groups: dict[Group, list[Endpoint]] = {}
    for endpoint in endpoints:
        group = group_of(endpoint, local, affinity, awareness.cross_zone)
        if group is not None:
            groups.setdefault(group, []).append(endpoint)
    assignment = ClusterLoadAssignment(cluster_name=name)
    assignment.policy.overprovisioning_factor.value = overprovisioning_factor(awareness.cross_zone)
    # Envoy wants priorities without gaps: rule i+1 becomes the next priority in use.
    levels = {p: n for n, p in enumerate(sorted({g.priority for g in groups}))}
    for group in sorted(groups, key=lambda g: (g.priority, g.zone, g.sub_zone)):
        localities = assignment.endpoints.add(
            locality=base_pb2.Locality(zone=group.zone, sub_zone=group.sub_zone),
            priority=levels[group.priority],
        )
        localities.load_balancing_weight.value = group.weight
        for endpoint in groups[group]:  # weighted: another zone's stand for its instances
            localities.lb_endpoints.append(lb_endpoint(endpoint))
    return assignment


def uses_locality_weights(awareness: LocalityAwareness) -> bool:
    """Affinity tags weight the local localities: the cluster must weigh localities."""
    return bool(awareness.local_zone and awareness.local_zone.affinity_tags)


__all__ = [
    "Group",
    "group_of",
    "local_zone",
    "locality_assignment",
    "overprovisioning_factor",
    "uses_locality_weights",
]
