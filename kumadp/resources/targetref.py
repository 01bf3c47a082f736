"""``targetRef``: what a policy (or one of its ``to``/``from`` items) selects, as Kuma 2.x
spells it; one model and one parser for every policy type.

==================  ==============================  =======================================
kind                fields                          selects
==================  ==============================  =======================================
Mesh                proxyTypes                      everything (of those proxy types)
MeshSubset          tags, proxyTypes                inbounds (callers) with all the tags
MeshService         name                            the ``kuma.io/service`` ``name``
MeshServiceSubset   name, tags                      that service's inbounds with the tags
Dataplane           name or labels, sectionName     one dataplane, those with the labels, or
                                                    every one; ``sectionName``: one inbound
==================  ==============================  =======================================

``proxyTypes`` (``Sidecar``, ``Gateway``; kumadp's proxies are all sidecars) and ``sectionName``
are top-level only.

Each context allows some kinds only (a policy's ``to`` items take Mesh and MeshService, its
top level every kind above): ``parse_target_ref`` gets them and its errors name them.
``priority`` orders top-level targetRefs as Kuma does when it merges policies: ``Mesh`` <
``Dataplane`` < ``MeshSubset`` < ``MeshService`` < ``MeshServiceSubset``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kumadp.resources.checks import TAG_CHARS, TAG_RULE
from kumadp.resources.errors import ErrorCollector, field_path, index_path

MESH = "Mesh"
MESH_SUBSET = "MeshSubset"
MESH_SERVICE = "MeshService"
MESH_SERVICE_SUBSET = "MeshServiceSubset"
DATAPLANE = "Dataplane"
ALL_KINDS = (MESH, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET, DATAPLANE)
TOP_LEVEL_KINDS = ALL_KINDS
OUTBOUND_KINDS = (MESH, MESH_SERVICE)  # a policy's ``to`` items (kumadp: no MeshExternalService)
INBOUND_KINDS = (MESH,)  # ``from`` items of the resilience policies
CALLER_KINDS = (MESH, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET)  # MeshTrafficPermission
SIDECAR, GATEWAY = "Sidecar", "Gateway"
PROXY_TYPES = (SIDECAR, GATEWAY)  # a Mesh/MeshSubset targetRef's ``proxyTypes``

# Kuma's order of top-level kinds when several policies apply (kumahq/kuma
# api/common/v1alpha1/targetref.go): more specific later, so its configuration wins.
_KIND_ORDER = {MESH: 1, DATAPLANE: 2, MESH_SUBSET: 3, MESH_SERVICE: 5, MESH_SERVICE_SUBSET: 8}

_FIELDS = ("kind", "name", "tags", "labels", "sectionName", "proxyTypes")
_UNSUPPORTED = ("namespace", "mesh")
# the fields each kind allows besides ``kind`` (Kuma's ValidateTargetRef)
_ALLOWED = {
    MESH: ("proxyTypes",),
    MESH_SUBSET: ("tags", "proxyTypes"),
    MESH_SERVICE: ("name",),
    MESH_SERVICE_SUBSET: ("name", "tags"),
    DATAPLANE: ("name", "labels", "sectionName"),
}
_TOP_LEVEL_ONLY = ("sectionName", "proxyTypes")
_NAME_REQUIRED = (MESH_SERVICE, MESH_SERVICE_SUBSET)


@dataclass(frozen=True)
class TargetRef:
    """One selector (see the module's table); fields a kind does not use stay empty."""

    kind: str = MESH
    name: str | None = None  # MeshService, MeshServiceSubset, Dataplane
    tags: dict[str, str] = field(default_factory=dict)  # MeshSubset, MeshServiceSubset
    labels: dict[str, str] = field(default_factory=dict)  # Dataplane
    section_name: str | None = None  # Dataplane
    proxy_types: tuple[str, ...] = ()  # Mesh, MeshSubset; empty: every type

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.name is not None:
            out["name"] = self.name
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.section_name is not None:
            out["sectionName"] = self.section_name
        if self.proxy_types:
            out["proxyTypes"] = list(self.proxy_types)
        return out

    def __hash__(self) -> int:
        tags, labels = tuple(sorted(self.tags.items())), tuple(sorted(self.labels.items()))
        return hash((self.kind, self.name, tags, labels, self.section_name, self.proxy_types))

    @property
    def priority(self) -> int:
        """Where this top-level targetRef sorts among the policies applying to a proxy."""
        return _KIND_ORDER.get(self.kind, 0)

    def describe(self) -> str:
        """``MeshService backend``, ``MeshSubset {version: v2}``: for messages and tables."""
        parts = [self.kind]
        if self.name is not None:
            parts.append(self.name)
        for values in (self.tags, self.labels):
            if values:
                parts.append("{" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}")
        if self.section_name is not None:
            parts.append(f"sectionName {self.section_name}")
        return " ".join(parts)


def parse_target_ref(
    c: ErrorCollector,
    obj: dict[str, Any],
    parent: str,
    *,
    kinds: tuple[str, ...],
    required: bool,
    top: bool = True,
) -> TargetRef | None:
    """``parent.targetRef`` of one of ``kinds``; absent and not ``required``: the whole mesh.
    ``top``: a policy's own targetRef (``sectionName`` and ``proxyTypes`` allowed), else a
    ``to``/``from`` item's. None when it is invalid (the problems are in ``c``)."""
    path = field_path(parent, "targetRef")
    ref = c.mapping(obj, parent, "targetRef", required=required)
    if ref is None:
        return None if required or obj.get("targetRef") is not None else TargetRef(MESH)
    before = len(c.errors)
    c.fields(ref, path, _FIELDS, _UNSUPPORTED)
    kind = c.one_of(ref, path, "kind", kinds, required=True)
    name = c.string(ref, path, "name")
    tags = c.string_map(ref, path, "tags", TAG_CHARS, TAG_RULE)
    labels = c.string_map(ref, path, "labels")
    section = c.string(ref, path, "sectionName")
    proxy_types = _proxy_types(c, ref, path)
    if kind is not None:
        for key in _FIELDS[1:]:
            if ref.get(key) is None:
                continue
            if key not in _ALLOWED[kind]:
                c.add(field_path(path, key), f"is not allowed for kind {kind}")
            elif key in _TOP_LEVEL_ONLY and not top:
                c.add(field_path(path, key), "is only allowed in a policy's own targetRef")
        if kind in _NAME_REQUIRED and not name:
            c.add(field_path(path, "name"), f"is required for kind {kind}")
        if kind == DATAPLANE and name and labels:
            c.add(field_path(path, "labels"), "give either name or labels, not both")
    if len(c.errors) > before or kind is None:
        return None
    return TargetRef(
        kind=kind,
        name=name or None,
        tags=tags or {},
        labels=labels or {},
        section_name=section or None,
        proxy_types=proxy_types,
    )


def _proxy_types(c: ErrorCollector, ref: dict[str, Any], path: str) -> tuple[str, ...]:
    out: list[str] = []
    for n, item in enumerate(c.sequence(ref, path, "proxyTypes") or []):
        if item not in PROXY_TYPES:
            c.add(
                index_path(field_path(path, "proxyTypes"), n),
                f"must be one of {', '.join(PROXY_TYPES)}",
            )
        else:
            out.append(item)
    return tuple(out)


def tags_match(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    """Every tag of ``selector`` is in ``tags`` with the same value (empty: always)."""
    return all(tags.get(key) == value for key, value in selector.items())


__all__ = [
    "ALL_KINDS",
    "CALLER_KINDS",
    "DATAPLANE",
    "GATEWAY",
    "INBOUND_KINDS",
    "MESH",
    "MESH_SERVICE",
    "MESH_SERVICE_SUBSET",
    "MESH_SUBSET",
    "OUTBOUND_KINDS",
    "PROXY_TYPES",
    "SIDECAR",
    "TOP_LEVEL_KINDS",
    "TargetRef",
    "parse_target_ref",
    "tags_match",
]
