"""``targetRef``: what a policy (or one of its ``to``/``from`` items) selects, as Kuma 2.x
spells it; one model and one parser for every policy type.

==================  ==============================  =======================================
kind                fields                          selects
==================  ==============================  =======================================
Mesh                -                               everything
MeshSubset          tags                            inbounds (callers) with all the tags
MeshService         name                            the ``kuma.io/service`` ``name``
MeshServiceSubset   name, tags                      that service's inbounds with the tags
Dataplane           name, or labels                 one dataplane, or those with the labels
==================  ==============================  =======================================

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
from kumadp.resources.errors import ErrorCollector, field_path

MESH = "Mesh"
MESH_SUBSET = "MeshSubset"
MESH_SERVICE = "MeshService"
MESH_SERVICE_SUBSET = "MeshServiceSubset"
DATAPLANE = "Dataplane"
ALL_KINDS = (MESH, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET, DATAPLANE)
TOP_LEVEL_KINDS = ALL_KINDS
OUTBOUND_KINDS = (MESH, MESH_SERVICE)  # a policy's ``to`` items (kumadp: no MeshExternalService)
INBOUND_KINDS = (MESH,)  # ``from`` items of the resilience policies

# Kuma's order of top-level kinds when several policies apply (kumahq/kuma
# api/common/v1alpha1/targetref.go): more specific later, so its configuration wins.
_KIND_ORDER = {MESH: 1, DATAPLANE: 2, MESH_SUBSET: 3, MESH_SERVICE: 5, MESH_SERVICE_SUBSET: 8}

_NAMED = (MESH_SERVICE, MESH_SERVICE_SUBSET, DATAPLANE)
_TAGGED = (MESH_SUBSET, MESH_SERVICE_SUBSET)
_LABELLED = (DATAPLANE,)
_FIELDS = ("kind", "name", "tags", "labels")
_UNSUPPORTED = ("namespace", "sectionName", "proxyTypes", "mesh")


@dataclass(frozen=True)
class TargetRef:
    """One selector (see the module's table); fields a kind does not use stay empty."""

    kind: str = MESH
    name: str | None = None  # MeshService, MeshServiceSubset, Dataplane
    tags: dict[str, str] = field(default_factory=dict)  # MeshSubset, MeshServiceSubset
    labels: dict[str, str] = field(default_factory=dict)  # Dataplane

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.name is not None:
            out["name"] = self.name
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.labels:
            out["labels"] = dict(self.labels)
        return out

    def __hash__(self) -> int:
        tags, labels = tuple(sorted(self.tags.items())), tuple(sorted(self.labels.items()))
        return hash((self.kind, self.name, tags, labels))

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
        return " ".join(parts)


def _only_for(kinds: tuple[str, ...], allowed: tuple[str, ...], kind: str) -> str:
    usable = [k for k in allowed if k in kinds]
    if not usable:
        return f"is not allowed for kind {kind}"
    if len(usable) == 1:
        return f"is only allowed for kind {usable[0]}"
    return f"is only allowed for kinds {', '.join(usable)}"


def parse_target_ref(
    c: ErrorCollector,
    obj: dict[str, Any],
    parent: str,
    *,
    kinds: tuple[str, ...],
    required: bool,
) -> TargetRef | None:
    """``parent.targetRef`` of one of ``kinds``; absent and not ``required``: the whole mesh.
    None when it is invalid (the problems are in ``c``)."""
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
    if kind is not None:
        if ref.get("name") is not None and kind not in _NAMED:
            c.add(field_path(path, "name"), _only_for(_NAMED, kinds, kind))
        if ref.get("tags") is not None and kind not in _TAGGED:
            c.add(field_path(path, "tags"), _only_for(_TAGGED, kinds, kind))
        if ref.get("labels") is not None and kind not in _LABELLED:
            c.add(field_path(path, "labels"), _only_for(_LABELLED, kinds, kind))
        if kind in (MESH_SERVICE, MESH_SERVICE_SUBSET) and not name:
            c.add(field_path(path, "name"), f"is required for kind {kind}")
        if kind == DATAPLANE and bool(name) == bool(labels):
            c.add(path, "kind Dataplane needs either name or labels (not both)")
    if len(c.errors) > before or kind is None:
        return None
    return TargetRef(kind=kind, name=name, tags=tags or {}, labels=labels or {})


def tags_match(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    """Every tag of ``selector`` is in ``tags`` with the same value (empty: always)."""
    return all(tags.get(key) == value for key, value in selector.items())


__all__ = [
    "ALL_KINDS",
    "DATAPLANE",
    "INBOUND_KINDS",
    "MESH",
    "MESH_SERVICE",
    "MESH_SERVICE_SUBSET",
    "MESH_SUBSET",
    "OUTBOUND_KINDS",
    "TOP_LEVEL_KINDS",
    "TargetRef",
    "parse_target_ref",
    "tags_match",
]
