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
# Kuma 2.14: the dataplane label naming its workload, the service of inbounds without tags
WORKLOAD_LABEL = "kuma.io/workload"

# Inbound states (Kuma's ``state``): NotReady is no endpoint; Ignored has no listener either
READY = "Ready"
NOT_READY = "NotReady"
IGNORED = "Ignored"
INBOUND_STATES = (READY, NOT_READY, IGNORED)

PROTOCOLS = ("tcp", "http", "http2", "grpc")
DEFAULT_PROTOCOL = "tcp"

MESH_TYPE = "Mesh"
DATAPLANE_TYPE = "Dataplane"

DEFAULT_MESH = "default"
DEFAULT_ADMIN_PORT = 9901


@dataclass(frozen=True)
class Inbound:
    """One inbound of a Dataplane: traffic for ``service`` arrives on ``address:port`` and is
    forwarded to the application on ``service_address:service_port``.

    ``tags`` are the effective tags: for an inbound written without tags (Kuma 2.14), the
    parser derives ``kuma.io/service`` from the dataplane's ``kuma.io/workload`` label and
    ``kuma.io/protocol`` from the inbound's ``protocol``, and sets ``tags_derived`` so that
    ``to_dict`` writes the inbound back as it was given."""

    port: int
    tags: dict[str, str]
    service_port: int
    address: str | None = None  # defaults to networking.address
    service_address: str | None = None  # defaults to 127.0.0.1
    name: str | None = None  # Kuma 2.14: what policies' sectionName may name
    app_protocol: str | None = None  # the inbound's own ``protocol`` field
    state: str = READY
    health_ready: bool | None = None  # ``health.ready``; None: not given (healthy)
    tags_derived: bool = False

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]

    @property
    def protocol(self) -> str:
        return self.tags.get(PROTOCOL_TAG) or self.app_protocol or DEFAULT_PROTOCOL

    @property
    def section_name(self) -> str:
        """What a policy's ``sectionName`` matches: the name, else the port (Kuma's rule)."""
        return self.name or str(self.port)

    @property
    def has_listener(self) -> bool:
        return self.state != IGNORED

    @property
    def serving(self) -> bool:
        """Whether other dataplanes get it as an endpoint (Ready, and not unhealthy)."""
        return self.state == READY and self.health_ready is not False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port}
        if self.name is not None:
            out["name"] = self.name
        if self.service_port != self.port:
            out["servicePort"] = self.service_port
        if self.service_address is not None:
            out["serviceAddress"] = self.service_address
        if self.address is not None:
            out["address"] = self.address
        if not self.tags_derived:
            out["tags"] = dict(self.tags)
        if self.app_protocol is not None:
            out["protocol"] = self.app_protocol
        if self.health_ready is not None:
            out["health"] = {"ready": self.health_ready}
        if self.state != READY:
            out["state"] = self.state
        return out


@dataclass(frozen=True)
class BackendRef:
    """An outbound's ``backendRef`` (Kuma 2.x): a MeshService by name and port. kumadp makes
    no MeshService resources; it reads the name as Kuma's MeshService generator makes it on
    universal: the ``kuma.io/service`` of the inbounds, each inbound port one of its ports."""

    name: str
    port: int
    kind: str = "MeshService"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "port": self.port}


@dataclass(frozen=True)
class Outbound:
    """One outbound of a Dataplane: the application reaches ``service`` on ``address:port``.

    Written with ``tags`` (``kuma.io/service``) or a ``backend_ref``; for the latter ``tags``
    holds the ``kuma.io/service`` it names, and only the inbounds on its port are endpoints."""

    port: int
    tags: dict[str, str]
    address: str = "127.0.0.1"
    backend_ref: BackendRef | None = None

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]

    @property
    def backend_port(self) -> int | None:
        """The port of the service's inbounds this outbound reaches (None: every inbound)."""
        return self.backend_ref.port if self.backend_ref is not None else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port, "address": self.address}
        if self.backend_ref is not None:
            out["backendRef"] = self.backend_ref.to_dict()
        else:
            out["tags"] = dict(self.tags)
        return out


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
    def identity_services(self) -> tuple[str, ...]:
        """The services its certificate names: those of its inbounds; for a dataplane without
        inbounds (outbound only), its ``kuma.io/workload`` label when it has one."""
        services = self.services
        if services or not self.labels.get(WORKLOAD_LABEL):
            return services
        return (self.labels[WORKLOAD_LABEL],)

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
class MeshRouting:
    """A mesh's ``routing``: cross-zone traffic prefers the local zone
    (``localityAwareLoadBalancing``) and leaves the zone through its ZoneEgress
    (``zoneEgress``)."""

    locality_aware_load_balancing: bool = False
    zone_egress: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "localityAwareLoadBalancing": self.locality_aware_load_balancing,
            "zoneEgress": self.zone_egress,
        }


@dataclass(frozen=True)
class Mesh:
    name: str
    # Kept as validated plain data for now; mTLS/metrics/logging get typed models as the
    # issues that need them land.
    mtls: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # policy types not to create with the mesh ("*": none), Kuma's skipCreatingInitialPolicies
    skip_creating_initial_policies: tuple[str, ...] = ()
    mesh_services_mode: str | None = None  # kept as given; kumadp routes by kuma.io/service
    routing: MeshRouting | None = None

    type = MESH_TYPE

    def skips_initial_policy(self, policy_type: str) -> bool:
        skip = self.skip_creating_initial_policies
        return "*" in skip or policy_type in skip

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.mtls is not None:
            out["mtls"] = self.mtls
        if self.skip_creating_initial_policies:
            out["skipCreatingInitialPolicies"] = list(self.skip_creating_initial_policies)
        if self.mesh_services_mode is not None:
            out["meshServices"] = {"mode": self.mesh_services_mode}
        if self.routing is not None:
            out["routing"] = self.routing.to_dict()
        return out

    @property
    def locality_aware(self) -> bool:
        return self.routing is not None and self.routing.locality_aware_load_balancing

    @property
    def zone_egress(self) -> bool:
        return self.routing is not None and self.routing.zone_egress


Resource = Mesh | Dataplane
