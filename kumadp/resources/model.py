"""Typed, immutable views of Kuma 2.x universal resources.

These are the values the rest of kumadp works with once a document has been validated
(see ``kumadp.resources.validate``). They are plain frozen dataclasses: cheap to build,
hashable where it matters, and serialisable back to Kuma's universal JSON/YAML shape with
``to_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"
ZONE_TAG = "kuma.io/zone"

PROTOCOLS = ("tcp", "http", "http2", "grpc")
DEFAULT_PROTOCOL = "tcp"

MESH_TYPE = "Mesh"
DATAPLANE_TYPE = "Dataplane"

DEFAULT_MESH = "default"
DEFAULT_ADMIN_PORT = 9901


def _tags_protocol(tags: dict[str, str]) -> str:
    return tags.get(PROTOCOL_TAG, DEFAULT_PROTOCOL)


@dataclass(frozen=True)
class Inbound:
    """One inbound of a Dataplane: traffic for ``service`` arrives on ``address:port`` and is
    forwarded to the application on ``service_address:service_port``."""

    port: int
    tags: dict[str, str]
    service_port: int
    address: str | None = None  # defaults to networking.address
    service_address: str | None = None  # defaults to 127.0.0.1

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]

    @property
    def protocol(self) -> str:
        return _tags_protocol(self.tags)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port}
        if self.service_port != self.port:
            out["servicePort"] = self.service_port
        if self.service_address is not None:
            out["serviceAddress"] = self.service_address
        if self.address is not None:
            out["address"] = self.address
        out["tags"] = dict(self.tags)
        return out


@dataclass(frozen=True)
class Outbound:
    """One outbound of a Dataplane: the application reaches ``service`` on ``address:port``."""

    port: int
    tags: dict[str, str]
    address: str = "127.0.0.1"

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "address": self.address, "tags": dict(self.tags)}


@dataclass(frozen=True)
class TransparentProxying:
    redirect_port_inbound: int = 15006
    redirect_port_outbound: int = 15001

    def to_dict(self) -> dict[str, Any]:
        return {
            "redirectPortInbound": self.redirect_port_inbound,
            "redirectPortOutbound": self.redirect_port_outbound,
        }


@dataclass(frozen=True)
class Networking:
    address: str
    inbound: tuple[Inbound, ...] = ()
    outbound: tuple[Outbound, ...] = ()
    advertised_address: str | None = None
    admin_port: int | None = None  # networking.admin.port; None = default 9901
    transparent_proxying: TransparentProxying | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address}
        if self.advertised_address is not None:
            out["advertisedAddress"] = self.advertised_address
        if self.admin_port is not None:
            out["admin"] = {"port": self.admin_port}
        if self.inbound:
            out["inbound"] = [i.to_dict() for i in self.inbound]
        if self.outbound:
            out["outbound"] = [o.to_dict() for o in self.outbound]
        if self.transparent_proxying is not None:
            out["transparentProxying"] = self.transparent_proxying.to_dict()
        return out


@dataclass(frozen=True)
class Dataplane:
    mesh: str
    name: str
    networking: Networking
    labels: dict[str, str] = field(default_factory=dict)

    type = DATAPLANE_TYPE

    @property
    def services(self) -> tuple[str, ...]:
        """The distinct ``kuma.io/service`` values of the inbounds, in order of appearance."""
        seen: dict[str, None] = {}
        for inbound in self.networking.inbound:
            seen.setdefault(inbound.service, None)
        return tuple(seen)

    @property
    def admin_port(self) -> int:
        return self.networking.admin_port or DEFAULT_ADMIN_PORT

    def inbound_address(self, inbound: Inbound) -> str:
        """The address an inbound listens on (its own, else the dataplane's)."""
        return inbound.address or self.networking.address

    def advertised_inbound_address(self, inbound: Inbound) -> str:
        """The address other dataplanes use to reach this inbound."""
        return inbound.address or self.networking.advertised_address or self.networking.address

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "mesh": self.mesh, "name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        out["networking"] = self.networking.to_dict()
        return out


@dataclass(frozen=True)
class Mesh:
    name: str
    # Kept as validated plain data for now; mTLS/metrics/logging get typed models as the
    # issues that need them land.
    mtls: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # policy types not to create with the mesh ("*": none), Kuma's skipCreatingInitialPolicies
    skip_initial_policies: tuple[str, ...] = ()
    mesh_services_mode: str | None = None  # kept as given; kumadp routes by kuma.io/service

    type = MESH_TYPE

    def skips_initial_policy(self, policy_type: str) -> bool:
        return "*" in self.skip_initial_policies or policy_type in self.skip_initial_policies

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.mtls is not None:
            out["mtls"] = self.mtls
        if self.skip_initial_policies:
            out["skipCreatingInitialPolicies"] = list(self.skip_initial_policies)
        if self.mesh_services_mode is not None:
            out["meshServices"] = {"mode": self.mesh_services_mode}
        return out


Resource = Mesh | Dataplane
