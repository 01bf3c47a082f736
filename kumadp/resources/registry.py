"""The registry of resource types: the one table the API, ctl, the store's users, the
reconciler, KDS and the web UI read.

Each ``ResourceType`` says what a type is called (``Mesh``), where the HTTP API serves it
(``meshes``; None = not served by the generic resource routes), whether it is global or lives
in a mesh, how a document is parsed into its model, whether it is a policy, and who owns it
in a multi-zone deployment:

=====================  ==========================================================
``Sync.GLOBAL_TO_ZONE`` created on the global CP, copied to every zone: Mesh, policies
                        and what zones need to verify tokens: the PUBLIC signing
                        keys, the revocation list; each mesh's trust bundle
``Sync.ZONE_TO_GLOBAL`` created in a zone, copied up to the global CP: Dataplane,
                        DataplaneInsight, ZoneIngress, ZoneEgress and their insights;
                        ``relayed`` ones (ZoneIngress) also go on from the global CP
                        to the OTHER zones (how zones learn each other's ingresses)
``Sync.NONE``           never synced: Zone, ZoneInsight (the global CP's view of zones)
``Sync.INTERNAL``       the CP's own bookkeeping, never synced nor served: VirtualIPs,
                        MeshCA, the token signing (private) keys, zone intermediates
=====================  ==========================================================

Adding a type is one ``ResourceType`` in ``default_registry()`` plus its model and parser.
A ``Registry`` is an ordinary object, so tests (and later modes) can build their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from kumadp.resources import (
    meshcircuitbreaker,
    meshhealthcheck,
    meshloadbalancingstrategy,
    meshretry,
    meshtimeout,
)
from kumadp.resources.errors import ValidationError, ValidationResult, collect_warnings, quoted
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE, Dataplane, Mesh
from kumadp.resources.policies import (
    MESH_TRAFFIC_PERMISSION_TYPE,
    MeshTrafficPermission,
    parse_mesh_traffic_permission,
)
from kumadp.resources.targeted import parse_policy
from kumadp.resources.validate import parse_dataplane, parse_mesh
from kumadp.resources.zone_proxies import (
    ZONE_EGRESS_INSIGHT_TYPE,
    ZONE_EGRESS_TYPE,
    ZONE_INGRESS_INSIGHT_TYPE,
    ZONE_INGRESS_TYPE,
    ZoneEgress,
    ZoneIngress,
    parse_zone_egress,
    parse_zone_ingress,
)
from kumadp.resources.zones import ZONE_INSIGHT_TYPE, ZONE_TYPE, Zone, parse_zone

# Types the control plane keeps for itself (models in kumadp.cp).
DATAPLANE_INSIGHT_TYPE = "DataplaneInsight"
VIRTUAL_IPS_TYPE = "VirtualIPs"
MESH_CA_TYPE = "MeshCA"
SIGNING_KEY_TYPE = "SigningKey"
SIGNING_PUBLIC_KEY_TYPE = "SigningPublicKey"  # the public half, what zones verify with
TOKEN_REVOCATIONS_TYPE = "TokenRevocations"
# Zone intermediate CAs (kumadp.cp.intermediate_ca): a mesh's root certificate and CRLs, for
# every zone; the intermediates the global CP signed; zones an admin refused new ones.
MESH_TRUST_BUNDLE_TYPE = "MeshTrustBundle"
ZONE_INTERMEDIATE_CA_TYPE = "ZoneIntermediateCA"
ZONE_CA_REFUSAL_TYPE = "ZoneCARefusal"
# Several CP instances on one store (kumadp.cp.instances, kumadp.cp.shared_registration).
CONTROL_PLANE_INSTANCE_TYPE = "ControlPlaneInstance"
DATAPLANE_CONNECTION_TYPE = "DataplaneConnection"
DATAPLANE_PENDING_TYPE = "DataplanePending"
CONFIG_TYPE = "Config"  # Kuma's system type: the control plane cluster's id


class Scope(Enum):
    GLOBAL = "global"  # stored with mesh=""
    MESH = "mesh"  # stored with the mesh's name


class Sync(Enum):
    """Who owns a type in multi-zone, and which way KDS copies it."""

    GLOBAL_TO_ZONE = "global-to-zone"
    ZONE_TO_GLOBAL = "zone-to-global"
    NONE = "none"
    INTERNAL = "internal"


class Model(Protocol):
    """What a parsed resource offers: its type, name and universal document."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


Parser = Callable[[Any], Model]


@dataclass(frozen=True)
class ResourceType:
    name: str  # "Dataplane": the documents' ``type``
    scope: Scope
    sync: Sync
    plural: str | None = None  # API path segment and ctl name; None: not served
    parse: Parser | None = None  # document -> model; raises ValidationError
    model: type | None = None
    policy: bool = False
    sides: tuple[str, ...] = ()  # a policy's item lists: "to" (outbound), "from" (inbound)
    aliases: tuple[str, ...] = ()  # short ctl names ("dp", "mtp")
    relayed: bool = False  # zone -> global, and global -> the other zones (ZoneIngress)

    @property
    def mesh_scoped(self) -> bool:
        return self.scope is Scope.MESH

    @property
    def singular(self) -> str:
        return self.name.lower()

    @property
    def served(self) -> bool:
        """Served by the API's resource routes (and so by ``kumadp ctl``)."""
        return self.plural is not None and self.parse is not None


class Registry:
    """An ordered table of resource types, by name."""

    def __init__(self, types: Iterable[ResourceType] = ()) -> None:
        self._types: dict[str, ResourceType] = {}
        for resource_type in types:
            self.register(resource_type)

    def register(self, resource_type: ResourceType) -> ResourceType:
        """Add a type; its name and plural must be new."""
        if resource_type.name in self._types:
            raise ValueError(f"resource type {resource_type.name} is already registered")
        if resource_type.plural is not None and any(
            t.plural == resource_type.plural for t in self._types.values()
        ):
            raise ValueError(f"API plural {resource_type.plural} is already registered")
        if resource_type.plural is not None and resource_type.parse is None:
            raise ValueError(f"resource type {resource_type.name}: served types need a parser")
        self._types[resource_type.name] = resource_type
        return resource_type

    def copy(self) -> Registry:
        return Registry(self._types.values())

    def get(self, name: str) -> ResourceType | None:
        return self._types.get(name)

    def __getitem__(self, name: str) -> ResourceType:
        return self._types[name]

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._types.values())

    def served(self) -> list[ResourceType]:
        """The types the API serves, in registration order."""
        return [t for t in self if t.served]

    def policies(self) -> list[ResourceType]:
        return [t for t in self if t.policy]

    def synced(self, direction: Sync) -> list[ResourceType]:
        return [t for t in self if t.sync is direction]

    def relayed(self) -> list[ResourceType]:
        """Zone-owned types the global CP passes on to the other zones."""
        return [t for t in self if t.relayed]

    def parseable(self) -> list[str]:
        """Names of the types a user may write, sorted (what error messages list)."""
        return sorted(t.name for t in self if t.parse is not None)

    def parse(self, doc: Any) -> Model:
        """A validated resource of any parseable type, chosen by the document's ``type``."""
        supported = ", ".join(self.parseable())
        if not isinstance(doc, dict):
            raise ValidationError.single("document", "must be an object")
        kind = doc.get("type")
        if kind is None:
            raise ValidationError.single("type", f"is required (one of {supported})")
        found = self._types.get(kind) if isinstance(kind, str) else None
        if found is None or found.parse is None:
            raise ValidationError.single(
                "type", f"unknown type {quoted(kind)} (supported: {supported})"
            )
        return found.parse(doc)

    def validate(self, doc: Any) -> ValidationResult[Model]:
        """``parse(doc)`` with the warnings of the document (Kuma fields accepted without
        being implemented)."""
        with collect_warnings() as warnings:
            model = self.parse(doc)
        return ValidationResult(model, tuple(warnings))


def _targeted(module: Any, plural: str, aliases: tuple[str, ...]) -> ResourceType:
    """A targeted policy type from its module's ``KIND``: global to zone, like every
    policy."""
    kind = module.KIND
    return ResourceType(
        kind.type,
        Scope.MESH,
        Sync.GLOBAL_TO_ZONE,
        plural=plural,
        parse=functools.partial(parse_policy, kind=kind),
        model=kind.model,
        policy=True,
        sides=kind.sides,
        aliases=aliases,
    )


def default_registry() -> Registry:
    """Every type kumadp knows today."""
    return Registry(
        [
            ResourceType(
                MESH_TYPE,
                Scope.GLOBAL,
                Sync.GLOBAL_TO_ZONE,
                plural="meshes",
                parse=parse_mesh,
                model=Mesh,
            ),
            ResourceType(
                DATAPLANE_TYPE,
                Scope.MESH,
                Sync.ZONE_TO_GLOBAL,
                plural="dataplanes",
                parse=parse_dataplane,
                model=Dataplane,
                aliases=("dp", "dps"),
            ),
            ResourceType(
                MESH_TRAFFIC_PERMISSION_TYPE,
                Scope.MESH,
                Sync.GLOBAL_TO_ZONE,
                plural="meshtrafficpermissions",
                parse=parse_mesh_traffic_permission,
                model=MeshTrafficPermission,
                policy=True,
                sides=("from",),
                aliases=("mtp", "mtps"),
            ),
            # Resilience policies (kumadp.resources.mesh*): global-to-zone, like every policy.
            _targeted(meshtimeout, "meshtimeouts", ("mt", "mts")),
            _targeted(meshretry, "meshretries", ("mr", "mrs")),
            _targeted(meshcircuitbreaker, "meshcircuitbreakers", ("mcb", "mcbs")),
            _targeted(meshhealthcheck, "meshhealthchecks", ("mhc", "mhcs")),
            _targeted(meshloadbalancingstrategy, "meshloadbalancingstrategies", ("mlbs", "mlbss")),
            ResourceType(DATAPLANE_INSIGHT_TYPE, Scope.MESH, Sync.ZONE_TO_GLOBAL),
            ResourceType(VIRTUAL_IPS_TYPE, Scope.MESH, Sync.INTERNAL),
            ResourceType(MESH_CA_TYPE, Scope.MESH, Sync.INTERNAL),
            ResourceType(SIGNING_KEY_TYPE, Scope.GLOBAL, Sync.INTERNAL),
            ResourceType(SIGNING_PUBLIC_KEY_TYPE, Scope.GLOBAL, Sync.GLOBAL_TO_ZONE),
            ResourceType(TOKEN_REVOCATIONS_TYPE, Scope.GLOBAL, Sync.GLOBAL_TO_ZONE),
            ResourceType(MESH_TRUST_BUNDLE_TYPE, Scope.MESH, Sync.GLOBAL_TO_ZONE),
            ResourceType(ZONE_INTERMEDIATE_CA_TYPE, Scope.MESH, Sync.INTERNAL),
            ResourceType(ZONE_CA_REFUSAL_TYPE, Scope.GLOBAL, Sync.INTERNAL),
            ResourceType(
                ZONE_TYPE, Scope.GLOBAL, Sync.NONE, plural="zones", parse=parse_zone, model=Zone
            ),
            ResourceType(ZONE_INSIGHT_TYPE, Scope.GLOBAL, Sync.NONE),
            # A zone's edge proxies (kumadp.resources.zone_proxies): zone-owned; ingresses
            # also reach the other zones, with the services they make available.
            ResourceType(
                ZONE_INGRESS_TYPE,
                Scope.GLOBAL,
                Sync.ZONE_TO_GLOBAL,
                plural="zoneingresses",
                parse=parse_zone_ingress,
                model=ZoneIngress,
                aliases=("zi", "zone-ingresses", "zone-ingress"),
                relayed=True,
            ),
            ResourceType(ZONE_INGRESS_INSIGHT_TYPE, Scope.GLOBAL, Sync.ZONE_TO_GLOBAL),
            ResourceType(
                ZONE_EGRESS_TYPE,
                Scope.GLOBAL,
                Sync.ZONE_TO_GLOBAL,
                plural="zoneegresses",
                parse=parse_zone_egress,
                model=ZoneEgress,
                aliases=("ze", "zone-egresses", "zone-egress"),
            ),
            ResourceType(ZONE_EGRESS_INSIGHT_TYPE, Scope.GLOBAL, Sync.ZONE_TO_GLOBAL),
            ResourceType(CONTROL_PLANE_INSTANCE_TYPE, Scope.GLOBAL, Sync.INTERNAL),
            ResourceType(DATAPLANE_CONNECTION_TYPE, Scope.MESH, Sync.INTERNAL),
            ResourceType(DATAPLANE_PENDING_TYPE, Scope.MESH, Sync.INTERNAL),
            ResourceType(CONFIG_TYPE, Scope.GLOBAL, Sync.INTERNAL),
        ]
    )


REGISTRY = default_registry()
SUPPORTED_TYPES = tuple(REGISTRY.parseable())


def parse_resource(doc: Any) -> Model:
    """A validated resource of any type a user may write (see ``Registry.parse``)."""
    return REGISTRY.parse(doc)


def validate_resource(doc: Any) -> ValidationResult[Model]:
    """``parse_resource`` with the document's warnings (see ``Registry.validate``)."""
    return REGISTRY.validate(doc)


__all__ = [
    "CONFIG_TYPE",
    "CONTROL_PLANE_INSTANCE_TYPE",
    "DATAPLANE_CONNECTION_TYPE",
    "DATAPLANE_INSIGHT_TYPE",
    "DATAPLANE_PENDING_TYPE",
    "MESH_CA_TYPE",
    "MESH_TRUST_BUNDLE_TYPE",
    "REGISTRY",
    "SIGNING_KEY_TYPE",
    "SIGNING_PUBLIC_KEY_TYPE",
    "SUPPORTED_TYPES",
    "TOKEN_REVOCATIONS_TYPE",
    "VIRTUAL_IPS_TYPE",
    "ZONE_CA_REFUSAL_TYPE",
    "ZONE_EGRESS_INSIGHT_TYPE",
    "ZONE_EGRESS_TYPE",
    "ZONE_INGRESS_INSIGHT_TYPE",
    "ZONE_INGRESS_TYPE",
    "ZONE_INSIGHT_TYPE",
    "ZONE_INTERMEDIATE_CA_TYPE",
    "ZONE_TYPE",
    "Model",
    "Registry",
    "ResourceType",
    "Scope",
    "Sync",
    "default_registry",
    "parse_resource",
    "validate_resource",
]
