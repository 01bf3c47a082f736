"""Locality-aware load balancing: which priority each zone's endpoints get for a proxy."""

from __future__ import annotations

from typing import Any

from kumadp.cp.generate.policies.locality import locality_assignment, overprovisioning_factor
from kumadp.cp.generate.view import Endpoint
from kumadp.resources import Dataplane, parse_dataplane, parse_resource
from kumadp.resources.meshloadbalancingstrategy import (
    LocalityAwareness,
    MeshLoadBalancingStrategy,
)


def proxy(zone: str | None) -> Dataplane:
    tags = {"kuma.io/service": "web"}
    if zone:
        tags["kuma.io/zone"] = zone
    return parse_dataplane(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "web-1",
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 1, "tags": tags}]},
        }
    )


def endpoint(zone: str | None, n: int = 1) -> Endpoint:
    tags = {"kuma.io/service": "backend"}
    if zone:
        tags["kuma.io/zone"] = zone
    return Endpoint(address=f"10.0.{n}.1", port=80, tags=tags, dataplane=f"b-{n}")


def awareness(**locality: Any) -> LocalityAwareness:
    doc = {
        "type": "MeshLoadBalancingStrategy",
        "mesh": "default",
        "name": "lb",
        "spec": {
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"localityAwareness": locality}}]
        },
    }
    policy = parse_resource(doc)
    assert isinstance(policy, MeshLoadBalancingStrategy)
    found = policy.to[0].default.locality_awareness
    assert found is not None
    return found


ENDPOINTS = [endpoint("zone-a", 1), endpoint("zone-b", 2), endpoint("zone-c", 3), endpoint(None, 4)]


def zones_by_priority(conf: LocalityAwareness, zone: str | None = "zone-a") -> list[list[str]]:
    assignment = locality_assignment("backend", ENDPOINTS, proxy(zone), conf)
    assert assignment is not None
    out: dict[int, list[str]] = {}
    for group in assignment.endpoints:
        out.setdefault(group.priority, []).append(group.locality.zone)
    return [sorted(out[p]) for p in sorted(out)]


def failover(*rules: dict[str, Any], **extra: Any) -> LocalityAwareness:
    return awareness(crossZone={"failover": list(rules), **extra})


def test_without_cross_zone_traffic_stays_in_the_zone() -> None:
    # the endpoint without a zone counts as local
    assert zones_by_priority(awareness()) == [["zone-a"]]


def test_failover_rules_in_order() -> None:
    conf = failover({"to": {"type": "Only", "zones": ["zone-c"]}}, {"to": {"type": "Any"}})
    assert zones_by_priority(conf) == [["zone-a"], ["zone-c"], ["zone-b"]]


def test_any_except_excludes_its_zones() -> None:
    conf = failover({"to": {"type": "AnyExcept", "zones": ["zone-b"]}})
    assert zones_by_priority(conf) == [["zone-a"], ["zone-c"]]


def test_rules_for_other_zones_and_none_rules_are_skipped() -> None:
    conf = failover(
        {"from": {"zones": ["zone-b"]}, "to": {"type": "Any"}},
        {"to": {"type": "None"}},
        {"from": {"zones": ["zone-a"]}, "to": {"type": "Only", "zones": ["zone-b"]}},
    )
    assert zones_by_priority(conf) == [["zone-a"], ["zone-b"]]
    # the same policy seen from zone-b: its first rule applies
    assert zones_by_priority(conf, zone="zone-b") == [["zone-b"], ["zone-a", "zone-c"]]


def test_disabled_or_no_zone_leaves_the_endpoints_alone() -> None:
    assert locality_assignment("b", ENDPOINTS, proxy("zone-a"), awareness(disabled=True)) is None
    assert locality_assignment("b", ENDPOINTS, proxy(None), awareness()) is None


def test_failover_threshold_is_the_overprovisioning_factor() -> None:
    assert overprovisioning_factor(None) == 200
    conf = failover({"to": {"type": "Any"}}, failoverThreshold={"percentage": "25"})
    assert overprovisioning_factor(conf.cross_zone) == 400
    assignment = locality_assignment("b", ENDPOINTS, proxy("zone-a"), conf)
    assert assignment is not None and assignment.policy.overprovisioning_factor.value == 400
