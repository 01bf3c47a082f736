"""MeshLoadBalancingStrategy (Kuma 2.x): the load balancer of the proxy's outbound services
and locality-aware routing across zones (``to`` only)::

    default:
      loadBalancer:
        type: RingHash                      # RoundRobin | LeastRequest | RingHash | Random | Maglev
        leastRequest: {choiceCount: 2, activeRequestBias: "1.0"}
        ringHash:
          hashFunction: XXHash              # or MurmurHash2
          minRingSize: 1024
          maxRingSize: 8000000
          hashPolicies:
            - type: Header   # Header | Cookie | Connection | QueryParameter | FilterState
              header: {name: x-user}
              terminal: true
            - {type: Cookie, cookie: {name: session, ttl: 1h, path: /}}
            - {type: Connection, connection: {sourceIP: true}}
            - {type: QueryParameter, queryParameter: {name: user}}
            - {type: FilterState, filterState: {key: io.x}}
        maglev: {tableSize: 65537, hashPolicies: [...]}
      localityAwareness:
        disabled: false
        localZone:
          affinityTags: [{key: k8s.io/node, weight: 90}, {key: rack}]
        crossZone:
          failover:
            - from: {zones: [zone-a]}       # absent: every zone
              to: {type: Only, zones: [zone-b]}   # None | Only | Any | AnyExcept
            - to: {type: AnyExcept, zones: [zone-c]}
          failoverThreshold: {percentage: 50}

Locality awareness keeps traffic in the proxy's own zone (its ``kuma.io/zone`` tag) and
fails over to the zones of the ``failover`` list, in order; zones no rule lets in never get
traffic (see ``kumadp.cp.generate.policies.locality``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from kumadp.resources.confschema import (
    BOOL,
    DURATION,
    Conf,
    Integer,
    ListOf,
    Nested,
    OneOf,
    Percent,
    Text,
    conf_field,
    json_name,
)
from kumadp.resources.errors import ErrorCollector, field_path
from kumadp.resources.targeted import TO, PolicyKind, TargetedPolicy, parse_policy

MESH_LOAD_BALANCING_STRATEGY_TYPE = "MeshLoadBalancingStrategy"
LB_TYPES = ("RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev")
HASH_POLICY_TYPES = ("Header", "Cookie", "Connection", "QueryParameter", "FilterState")
ZONE_TYPES = ("None", "Only", "Any", "AnyExcept")
MAX_RING_SIZE = 8_000_000
MAX_MAGLEV_TABLE = 5_000_011
_NAME = Text()


def _required(c: ErrorCollector, path: str, **values: object) -> None:
    for key, value in values.items():
        if value is None:
            c.add(field_path(path, key), "is required")


@dataclass(frozen=True)
class Named(Conf):
    name: str | None = conf_field(_NAME)

    def check(self, c: ErrorCollector, path: str) -> None:
        _required(c, path, name=self.name)


@dataclass(frozen=True)
class Cookie(Conf):
    name: str | None = conf_field(_NAME)
    ttl: str | None = conf_field(DURATION)
    path: str | None = conf_field(_NAME)

    def check(self, c: ErrorCollector, path: str) -> None:
        _required(c, path, name=self.name)


@dataclass(frozen=True)
class Connection(Conf):
    source_ip: bool | None = conf_field(BOOL, key="sourceIP")


@dataclass(frozen=True)
class FilterState(Conf):
    key: str | None = conf_field(_NAME)

    def check(self, c: ErrorCollector, path: str) -> None:
        _required(c, path, key=self.key)


_NAMED, _COOKIE = Nested(Named), Nested(Cookie)
_CONNECTION, _FILTER_STATE = Nested(Connection), Nested(FilterState)
_HASH_KEYS = {
    "Header": "header",
    "Cookie": "cookie",
    "Connection": "connection",
    "QueryParameter": "query_parameter",
    "FilterState": "filter_state",
}


@dataclass(frozen=True)
class HashPolicy(Conf):
    type: str | None = conf_field(OneOf(*HASH_POLICY_TYPES))
    terminal: bool | None = conf_field(BOOL)
    header: Named | None = conf_field(_NAMED)  # noqa: RUF009 (an immutable conf)
    cookie: Cookie | None = conf_field(_COOKIE)  # noqa: RUF009 (an immutable conf)
    connection: Connection | None = conf_field(_CONNECTION)  # noqa: RUF009
    query_parameter: Named | None = conf_field(_NAMED)  # noqa: RUF009 (an immutable conf)
    filter_state: FilterState | None = conf_field(_FILTER_STATE)  # noqa: RUF009

    def check(self, c: ErrorCollector, path: str) -> None:
        _one_section(c, path, self, self.type, _HASH_KEYS)


def _one_section(
    c: ErrorCollector, path: str, conf: Conf, kind: str | None, sections: dict[str, str]
) -> None:
    """``type`` is required; only its own section (``sections``: type -> attribute) may
    be set, and sections marked required by the caller must be."""
    if kind is None:
        c.add(field_path(path, "type"), "is required")
        return
    for other, attribute in sections.items():
        if other != kind and getattr(conf, attribute) is not None:
            c.add(field_path(path, json_name(attribute)), f"is only allowed for type {other}")
    own = sections.get(kind)
    if own is not None and isinstance(conf, HashPolicy) and getattr(conf, own) is None:
        c.add(field_path(path, json_name(own)), f"is required for type {kind}")


_HASH_POLICIES = ListOf(Nested(HashPolicy))


@dataclass(frozen=True)
class LeastRequest(Conf):
    choice_count: int | None = conf_field(Integer(2))
    active_request_bias: int | str | None = conf_field(Percent(high=None))


@dataclass(frozen=True)
class RingHash(Conf):
    hash_function: str | None = conf_field(OneOf("XXHash", "MurmurHash2"))
    min_ring_size: int | None = conf_field(Integer(1, MAX_RING_SIZE))
    max_ring_size: int | None = conf_field(Integer(1, MAX_RING_SIZE))
    hash_policies: tuple[HashPolicy, ...] | None = conf_field(_HASH_POLICIES)

    def check(self, c: ErrorCollector, path: str) -> None:
        if self.min_ring_size and self.max_ring_size and self.min_ring_size > self.max_ring_size:
            c.add(field_path(path, "minRingSize"), "must not be greater than maxRingSize")


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


@dataclass(frozen=True)
class Maglev(Conf):
    table_size: int | None = conf_field(Integer(1, MAX_MAGLEV_TABLE))
    hash_policies: tuple[HashPolicy, ...] | None = conf_field(_HASH_POLICIES)

    def check(self, c: ErrorCollector, path: str) -> None:
        if self.table_size is not None and not _is_prime(self.table_size):
            c.add(field_path(path, "tableSize"), "must be a prime number")


@dataclass(frozen=True)
class Empty(Conf):
    pass


_LB_SECTIONS = {
    "RoundRobin": "round_robin",
    "LeastRequest": "least_request",
    "RingHash": "ring_hash",
    "Random": "random",
    "Maglev": "maglev",
}
_EMPTY, _LEAST = Nested(Empty), Nested(LeastRequest)
_RING, _MAGLEV = Nested(RingHash), Nested(Maglev)


@dataclass(frozen=True)
class LoadBalancer(Conf):
    type: str | None = conf_field(OneOf(*LB_TYPES))
    round_robin: Empty | None = conf_field(_EMPTY)  # noqa: RUF009 (an immutable conf)
    least_request: LeastRequest | None = conf_field(_LEAST)  # noqa: RUF009
    ring_hash: RingHash | None = conf_field(_RING)  # noqa: RUF009 (an immutable conf)
    random: Empty | None = conf_field(_EMPTY)  # noqa: RUF009 (an immutable conf)
    maglev: Maglev | None = conf_field(_MAGLEV)  # noqa: RUF009 (an immutable conf)

    def check(self, c: ErrorCollector, path: str) -> None:
        _one_section(c, path, self, self.type, _LB_SECTIONS)


@dataclass(frozen=True)
class AffinityTag(Conf):
    key: str | None = conf_field(_NAME)
    weight: int | None = conf_field(Integer(1))

    def check(self, c: ErrorCollector, path: str) -> None:
        _required(c, path, key=self.key)


@dataclass(frozen=True)
class LocalZone(Conf):
    affinity_tags: tuple[AffinityTag, ...] | None = conf_field(ListOf(Nested(AffinityTag)))

    def check(self, c: ErrorCollector, path: str) -> None:
        weights = [t.weight is not None for t in self.affinity_tags or ()]
        if any(weights) and not all(weights):
            c.add(field_path(path, "affinityTags"), "set a weight on every tag or on none")


@dataclass(frozen=True)
class Zones(Conf):
    zones: tuple[str, ...] | None = conf_field(ListOf(_NAME, min_items=1))

    def check(self, c: ErrorCollector, path: str) -> None:
        _required(c, path, zones=self.zones)


@dataclass(frozen=True)
class ToZones(Conf):
    type: str | None = conf_field(OneOf(*ZONE_TYPES))
    zones: tuple[str, ...] | None = conf_field(ListOf(_NAME, min_items=1))

    def check(self, c: ErrorCollector, path: str) -> None:
        if self.type is None:
            c.add(field_path(path, "type"), "is required")
        elif self.type in ("Only", "AnyExcept") and not self.zones:
            c.add(field_path(path, "zones"), f"is required for type {self.type}")
        elif self.type in ("None", "Any") and self.zones is not None:
            c.add(field_path(path, "zones"), f"is not allowed for type {self.type}")


_ZONES, _TO_ZONES = Nested(Zones), Nested(ToZones)


@dataclass(frozen=True)
class Failover(Conf):
    from_: Zones | None = conf_field(_ZONES, key="from")  # noqa: RUF009 (an immutable conf)
    to: ToZones | None = conf_field(_TO_ZONES)  # noqa: RUF009 (an immutable conf)

    def check(self, c: ErrorCollector, path: str) -> None:
        _required(c, path, to=self.to)


@dataclass(frozen=True)
class FailoverThreshold(Conf):
    percentage: int | str | None = conf_field(Percent(Decimal(100)))

    def check(self, c: ErrorCollector, path: str) -> None:
        _required(c, path, percentage=self.percentage)
        if self.percentage is not None and Decimal(self.percentage) == 0:
            c.add(field_path(path, "percentage"), "must be greater than 0")


_THRESHOLD = Nested(FailoverThreshold)


@dataclass(frozen=True)
class CrossZone(Conf):
    failover: tuple[Failover, ...] | None = conf_field(ListOf(Nested(Failover)))
    failover_threshold: FailoverThreshold | None = conf_field(_THRESHOLD)  # noqa: RUF009


_LOCAL, _CROSS = Nested(LocalZone), Nested(CrossZone)


@dataclass(frozen=True)
class LocalityAwareness(Conf):
    disabled: bool | None = conf_field(BOOL)
    local_zone: LocalZone | None = conf_field(_LOCAL)  # noqa: RUF009 (an immutable conf)
    cross_zone: CrossZone | None = conf_field(_CROSS)  # noqa: RUF009 (an immutable conf)


_LOCALITY, _LB = Nested(LocalityAwareness), Nested(LoadBalancer)


@dataclass(frozen=True)
class LoadBalancingConf(Conf):
    locality_awareness: LocalityAwareness | None = conf_field(_LOCALITY)  # noqa: RUF009
    load_balancer: LoadBalancer | None = conf_field(_LB)  # noqa: RUF009 (an immutable conf)


class MeshLoadBalancingStrategy(TargetedPolicy[LoadBalancingConf]):
    type = MESH_LOAD_BALANCING_STRATEGY_TYPE


KIND: PolicyKind[MeshLoadBalancingStrategy, LoadBalancingConf] = PolicyKind(
    MeshLoadBalancingStrategy, LoadBalancingConf, (TO,)
)


def parse_mesh_load_balancing_strategy(doc: object) -> MeshLoadBalancingStrategy:
    return parse_policy(doc, KIND)


__all__ = [
    "HASH_POLICY_TYPES",
    "KIND",
    "LB_TYPES",
    "MESH_LOAD_BALANCING_STRATEGY_TYPE",
    "ZONE_TYPES",
    "AffinityTag",
    "Cookie",
    "CrossZone",
    "Failover",
    "FailoverThreshold",
    "HashPolicy",
    "LeastRequest",
    "LoadBalancer",
    "LoadBalancingConf",
    "LocalZone",
    "LocalityAwareness",
    "Maglev",
    "MeshLoadBalancingStrategy",
    "RingHash",
    "ToZones",
    "Zones",
    "parse_mesh_load_balancing_strategy",
]
