"""Policies (Kuma 2.x, ``targetRef`` style): typed models and their validation.

Only ``MeshTrafficPermission`` so far::

    type: MeshTrafficPermission
    mesh: default
    name: allow-web
    spec:
      targetRef: {kind: MeshService, name: backend}     # whom it protects (default: Mesh)
      from:
        - targetRef: {kind: MeshService, name: web}     # which callers
          default: {action: Allow}                      # Allow | Deny | AllowWithShadowDeny
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kumadp.resources.checks import (
    OUTPUT_ONLY_FIELDS,
    check_type,
    open_document,
    resource_name,
)
from kumadp.resources.errors import ErrorCollector, field_path, index_path
from kumadp.resources.targetref import (
    CALLER_KINDS,
    DATAPLANE,
    GATEWAY,
    MESH,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    PROXY_TYPES,
    SIDECAR,
    TOP_LEVEL_KINDS,
    TargetRef,
    parse_target_ref,
)

MESH_TRAFFIC_PERMISSION_TYPE = "MeshTrafficPermission"

# what a MeshTrafficPermission's top-level targetRef may select, and a ``from`` item (Kuma 2.x)
TARGET_KINDS = TOP_LEVEL_KINDS
FROM_KINDS = CALLER_KINDS

ALLOW = "Allow"
DENY = "Deny"
ALLOW_WITH_SHADOW_DENY = "AllowWithShadowDeny"
ACTIONS = (ALLOW, DENY, ALLOW_WITH_SHADOW_DENY)


@dataclass(frozen=True)
class From:
    """One ``spec.from`` item: callers selected by ``target_ref`` get ``action``."""

    target_ref: TargetRef
    action: str

    def to_dict(self) -> dict[str, Any]:
        return {"targetRef": self.target_ref.to_dict(), "default": {"action": self.action}}


@dataclass(frozen=True)
class MeshTrafficPermission:
    mesh: str
    name: str
    target_ref: TargetRef
    from_: tuple[From, ...]
    labels: dict[str, str] = field(default_factory=dict)

    type = MESH_TRAFFIC_PERMISSION_TYPE

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "mesh": self.mesh, "name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        out["spec"] = {
            "targetRef": self.target_ref.to_dict(),
            "from": [item.to_dict() for item in self.from_],
        }
        return out


def default_traffic_permission_name(mesh: str) -> str:
    return f"allow-all-{mesh}"


def default_traffic_permission(mesh: str) -> MeshTrafficPermission:
    """What the CP creates with every mesh, as Kuma does: everyone may call everyone."""
    return MeshTrafficPermission(
        mesh=mesh,
        name=default_traffic_permission_name(mesh),
        target_ref=TargetRef(MESH),
        from_=(From(TargetRef(MESH), ALLOW),),
    )


# --- validation ------------------------------------------------------------------------------

_MTP_FIELDS = ("type", "mesh", "name", "labels", "spec", *OUTPUT_ONLY_FIELDS)
_SPEC_FIELDS = ("targetRef", "from")
_SPEC_UNSUPPORTED = ("rules",)
_FROM_FIELDS = ("targetRef", "default")


def _target_ref(
    c: ErrorCollector, obj: dict[str, Any], parent: str, required: bool, top: bool = True
) -> TargetRef | None:
    """``parent.targetRef``; absent and not ``required``: the whole mesh. ``top``: a policy's
    own targetRef (which proxies it applies to), else a ``from`` item's (which callers)."""
    kinds = TARGET_KINDS if top else FROM_KINDS
    return parse_target_ref(c, obj, parent, kinds=kinds, required=required, top=top)


def _from(c: ErrorCollector, raw: Any, path: str) -> From | None:
    obj = c.is_object(raw, path)
    if obj is None:
        return None
    c.fields(obj, path, _FROM_FIELDS)
    ref = _target_ref(c, obj, path, required=True, top=False)
    action = None
    default = c.mapping(obj, path, "default", required=True)
    if default is not None:
        default_path = field_path(path, "default")
        c.fields(default, default_path, ("action",))
        action = c.one_of(default, default_path, "action", ACTIONS, required=True)
    if ref is None or action is None:
        return None
    return From(target_ref=ref, action=action)


def parse_mesh_traffic_permission(doc: Any) -> MeshTrafficPermission:
    """A validated ``MeshTrafficPermission`` from a document (as ``load_document`` returns
    it); raises ``ValidationError`` listing every problem with its field path."""
    c, obj = open_document(doc)
    c.fields(obj, "", _MTP_FIELDS)
    check_type(c, obj, MESH_TRAFFIC_PERMISSION_TYPE)
    mesh = resource_name(c, obj, "", "mesh", dns_label=True)
    name = resource_name(c, obj, "", "name", dns_label=False)
    labels = c.string_map(obj, "", "labels")
    spec = c.mapping(obj, "", "spec", required=True)
    target_ref: TargetRef | None = None
    items: list[From | None] = []
    if spec is not None:
        c.fields(spec, "spec", _SPEC_FIELDS, _SPEC_UNSUPPORTED)
        target_ref = _target_ref(c, spec, "spec", required=False)
        raw_from = c.sequence(spec, "spec", "from")
        if raw_from == []:
            c.add("spec.from", "needs at least one item")
        items = [_from(c, raw, index_path("spec.from", n)) for n, raw in enumerate(raw_from or [])]
    c.raise_if_any()
    assert target_ref is not None
    return MeshTrafficPermission(
        mesh=mesh,
        name=name,
        target_ref=target_ref,
        from_=tuple(item for item in items if item is not None),
        labels=labels or {},
    )


__all__ = [
    "ACTIONS",
    "ALLOW",
    "ALLOW_WITH_SHADOW_DENY",
    "DATAPLANE",
    "DENY",
    "FROM_KINDS",
    "GATEWAY",
    "MESH",
    "MESH_SERVICE",
    "MESH_SERVICE_SUBSET",
    "MESH_SUBSET",
    "MESH_TRAFFIC_PERMISSION_TYPE",
    "PROXY_TYPES",
    "SIDECAR",
    "TARGET_KINDS",
    "From",
    "MeshTrafficPermission",
    "TargetRef",
    "default_traffic_permission",
    "default_traffic_permission_name",
    "parse_mesh_traffic_permission",
]
