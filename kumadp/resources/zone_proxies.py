"""The proxies of a zone's edge: ``ZoneIngress`` (traffic from other zones into this one) and
``ZoneEgress`` (traffic from this zone out to others), as Kuma 2.x writes them::

    type: ZoneIngress
    name: zi-1
    zone: zone-b                 # set by the zone control plane
    networking:
      address: 10.0.0.5          # where its listener binds
      port: 10001
      advertisedAddress: 203.0.113.7   # what other zones dial
      advertisedPort: 10001
      admin: {port: 9901}
    availableServices:           # kept current by the zone control plane
      - {mesh: default, instances: 2, tags: {kuma.io/service: backend, kuma.io/zone: zone-b}}

    type: ZoneEgress
    name: ze-1
    zone: zone-a
    networking: {address: 127.0.0.1, port: 10002, admin: {port: 9902}}

Both are global-scoped (no mesh: one proxy serves every mesh of its zone). Their Envoy node id
is ``.<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kumadp.resources.checks import (
    OUTPUT_ONLY_FIELDS,
    TAG_CHARS,
    TAG_RULE,
    check_type,
    open_document,
    resource_name,
)
from kumadp.resources.errors import ErrorCollector, ValidationError, field_path, index_path
from kumadp.resources.model import DEFAULT_ADMIN_PORT, SERVICE_TAG
from kumadp.resources.zones import check_zone_name

ZONE_INGRESS_TYPE = "ZoneIngress"
ZONE_EGRESS_TYPE = "ZoneEgress"
ZONE_INGRESS_INSIGHT_TYPE = "ZoneIngressInsight"
ZONE_EGRESS_INSIGHT_TYPE = "ZoneEgressInsight"


@dataclass(frozen=True)
class AvailableService:
    """One set of tags served in the ingress's zone, and how many instances carry it."""

    mesh: str
    tags: dict[str, str]
    instances: int

    @property
    def service(self) -> str:
        return self.tags.get(SERVICE_TAG, "")

    def sort_key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        return self.mesh, self.service, tuple(sorted(self.tags.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"tags": dict(self.tags), "instances": self.instances, "mesh": self.mesh}


@dataclass(frozen=True)
class ZoneProxyNetworking:
    address: str
    port: int
    advertised_address: str | None = None  # ingress only
    advertised_port: int | None = None  # ingress only
    admin_port: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "port": self.port}
        if self.advertised_address is not None:
            out["advertisedAddress"] = self.advertised_address
        if self.advertised_port is not None:
            out["advertisedPort"] = self.advertised_port
        if self.admin_port is not None:
            out["admin"] = {"port": self.admin_port}
        return out


@dataclass(frozen=True)
class ZoneIngress:
    name: str
    networking: ZoneProxyNetworking
    zone: str = ""
    available_services: tuple[AvailableService, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    type = ZONE_INGRESS_TYPE
    mesh = ""  # global-scoped

    @property
    def admin_port(self) -> int:
        return self.networking.admin_port or DEFAULT_ADMIN_PORT

    @property
    def advertised(self) -> tuple[str, int] | None:
        """Where other zones reach it; None when it advertises nothing (no cross-zone use)."""
        net = self.networking
        if net.advertised_address is None or net.advertised_port is None:
            return None
        return net.advertised_address, net.advertised_port

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.zone:
            out["zone"] = self.zone
        out["networking"] = self.networking.to_dict()
        if self.available_services:
            out["availableServices"] = [s.to_dict() for s in self.available_services]
        return out


@dataclass(frozen=True)
class ZoneEgress:
    name: str
    networking: ZoneProxyNetworking
    zone: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    type = ZONE_EGRESS_TYPE
    mesh = ""

    @property
    def admin_port(self) -> int:
        return self.networking.admin_port or DEFAULT_ADMIN_PORT

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.zone:
            out["zone"] = self.zone
        out["networking"] = self.networking.to_dict()
        return out


ZoneProxy = ZoneIngress | ZoneEgress

_COMMON_FIELDS = ("type", "name", "labels", "zone", "networking", *OUTPUT_ONLY_FIELDS)
_INGRESS_NETWORKING = ("address", "port", "advertisedAddress", "advertisedPort", "admin")
_EGRESS_NETWORKING = ("address", "port", "admin")
_SERVICE_FIELDS = ("tags", "instances", "mesh", "externalService")


def _zone(c: ErrorCollector, obj: dict[str, Any]) -> str:
    zone = c.string(obj, "", "zone")
    if zone:
        try:
            check_zone_name(zone, "zone")
        except ValidationError as exc:  # keep collecting
            c.add("zone", exc.errors[0].reason)
            return ""
    return zone or ""


def _networking(
    c: ErrorCollector, obj: dict[str, Any], known: tuple[str, ...]
) -> ZoneProxyNetworking | None:
    net = c.mapping(obj, "", "networking", required=True)
    if net is None:
        return None
    c.fields(net, "networking", known)
    address = c.address(net, "networking", "address", required=True)
    port = c.port(net, "networking", "port", required=True)
    advertised_address = advertised_port = None
    if "advertisedAddress" in known:
        advertised_address = c.address(net, "networking", "advertisedAddress", routable=True)
        advertised_port = c.port(net, "networking", "advertisedPort")
        given = [k for k in ("advertisedAddress", "advertisedPort") if net.get(k) is not None]
        if len(given) == 1:
            other = "advertisedPort" if given[0] == "advertisedAddress" else "advertisedAddress"
            c.add(f"networking.{other}", f"is required with networking.{given[0]}")
    admin_port = None
    admin = c.mapping(net, "networking", "admin")
    if admin is not None:
        c.fields(admin, "networking.admin", ("port",))
        admin_port = c.port(admin, "networking.admin", "port")
    if address is None or port is None:
        return None
    return ZoneProxyNetworking(address, port, advertised_address, advertised_port, admin_port)


def _available_services(c: ErrorCollector, obj: dict[str, Any]) -> tuple[AvailableService, ...]:
    out: list[AvailableService] = []
    for n, raw in enumerate(c.sequence(obj, "", "availableServices") or []):
        path = index_path("availableServices", n)
        item = c.is_object(raw, path)
        if item is None:
            continue
        c.fields(item, path, _SERVICE_FIELDS)
        tags = c.string_map(item, path, "tags", TAG_CHARS, TAG_RULE)
        instances = c.integer(item, path, "instances")
        mesh = c.string(item, path, "mesh") or "default"
        if tags is not None and not tags.get(SERVICE_TAG):
            c.add(field_path(path, "tags"), f'must have "{SERVICE_TAG}"')
        if instances is not None and instances < 0:
            c.add(field_path(path, "instances"), "must not be negative")
        if tags is not None and instances is not None:
            out.append(AvailableService(mesh, tags, instances))
    return tuple(sorted(out, key=AvailableService.sort_key))


def parse_zone_ingress(doc: Any) -> ZoneIngress:
    """A validated ``ZoneIngress``; every problem with its field path."""
    c, obj = open_document(doc)
    c.fields(obj, "", (*_COMMON_FIELDS, "availableServices"))
    check_type(c, obj, ZONE_INGRESS_TYPE)
    name = resource_name(c, obj, "", "name", dns_label=False)
    labels = c.string_map(obj, "", "labels")
    zone = _zone(c, obj)
    networking = _networking(c, obj, _INGRESS_NETWORKING)
    services = _available_services(c, obj)
    c.raise_if_any()
    assert networking is not None
    return ZoneIngress(name, networking, zone, services, labels or {})


def parse_zone_egress(doc: Any) -> ZoneEgress:
    """A validated ``ZoneEgress``; every problem with its field path."""
    c, obj = open_document(doc)
    c.fields(obj, "", _COMMON_FIELDS)
    check_type(c, obj, ZONE_EGRESS_TYPE)
    name = resource_name(c, obj, "", "name", dns_label=False)
    labels = c.string_map(obj, "", "labels")
    zone = _zone(c, obj)
    networking = _networking(c, obj, _EGRESS_NETWORKING)
    c.raise_if_any()
    assert networking is not None
    return ZoneEgress(name, networking, zone, labels or {})


def in_zone(proxy: ZoneProxy, zone: str) -> ZoneProxy:
    """``proxy`` with ``zone`` set (what a zone CP does to the proxies it accepts); one that
    names another zone is refused with its field path."""
    if proxy.zone and proxy.zone != zone:
        raise ValidationError.single(
            "zone", f'must be "{zone}" (the zone of this control plane), not "{proxy.zone}"'
        )
    return replace(proxy, zone=zone)


__all__ = [
    "ZONE_EGRESS_INSIGHT_TYPE",
    "ZONE_EGRESS_TYPE",
    "ZONE_INGRESS_INSIGHT_TYPE",
    "ZONE_INGRESS_TYPE",
    "AvailableService",
    "ZoneEgress",
    "ZoneIngress",
    "ZoneProxy",
    "ZoneProxyNetworking",
    "in_zone",
    "parse_zone_egress",
    "parse_zone_ingress",
]
