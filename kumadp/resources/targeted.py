"""The shape every resilience policy shares (Kuma 2.x)::

    type: MeshTimeout
    mesh: default
    name: timeouts-for-web
    spec:
      targetRef: {kind: MeshService, name: web}   # which proxies (default: Mesh)
      to:                                         # their outbound traffic
        - targetRef: {kind: MeshService, name: backend}
          default: {...}                          # the policy type's conf
      from:                                       # their inbound traffic (some types)
        - targetRef: {kind: Mesh}
          default: {...}

A policy type is a ``PolicyKind`` (its name, its conf class, the sides it has and the
targetRef kinds each takes) and a subclass of ``TargetedPolicy``; ``parse_policy`` reads any
of them with field paths. Which policies apply to a proxy and how their confs merge is the
generator's (``kumadp.cp.generate.policies.rules``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kumadp.resources.checks import IGNORED_FIELDS, check_type, open_document, resource_name
from kumadp.resources.confschema import Conf, parse_conf, to_doc
from kumadp.resources.errors import ErrorCollector, field_path, index_path
from kumadp.resources.targetref import (
    INBOUND_KINDS,
    OUTBOUND_KINDS,
    TOP_LEVEL_KINDS,
    TargetRef,
    parse_target_ref,
)

C = TypeVar("C", bound=Conf)
TO = "to"
FROM = "from"
_ITEM_FIELDS = ("targetRef", "default")
_POLICY_FIELDS = ("type", "mesh", "name", "labels", "spec", *IGNORED_FIELDS)


@dataclass(frozen=True)
class Item(Generic[C]):
    """One ``to`` or ``from`` item: the traffic ``target_ref`` selects gets ``default``."""

    target_ref: TargetRef
    default: C

    def to_dict(self) -> dict[str, Any]:
        return {"targetRef": self.target_ref.to_dict(), "default": to_doc(self.default)}


@dataclass(frozen=True)
class TargetedPolicy(Generic[C]):
    """A policy with a top-level ``targetRef`` and ``to``/``from`` items; each type is a
    subclass setting ``type`` (a class attribute, as the registry and the view need)."""

    mesh: str
    name: str
    target_ref: TargetRef
    to: tuple[Item[C], ...] = ()
    from_: tuple[Item[C], ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    type = ""

    def items(self, side: str) -> tuple[Item[C], ...]:
        return self.to if side == TO else self.from_

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "mesh": self.mesh, "name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        spec: dict[str, Any] = {"targetRef": self.target_ref.to_dict()}
        if self.to:
            spec["to"] = [item.to_dict() for item in self.to]
        if self.from_:
            spec["from"] = [item.to_dict() for item in self.from_]
        out["spec"] = spec
        return out


P = TypeVar("P", bound=TargetedPolicy[Any])


@dataclass(frozen=True)
class PolicyKind(Generic[P, C]):
    """What tells one policy type from another: its model, its conf, and its sides."""

    model: type[P]
    conf: type[C]
    sides: tuple[str, ...] = (TO,)
    to_kinds: tuple[str, ...] = OUTBOUND_KINDS
    from_kinds: tuple[str, ...] = INBOUND_KINDS
    unsupported: tuple[str, ...] = ("rules",)  # spec fields of Kuma's kumadp lacks

    @property
    def type(self) -> str:
        return self.model.type


def _item(
    c: ErrorCollector, raw: Any, path: str, kind: PolicyKind[Any, C], kinds: tuple[str, ...]
) -> Item[C] | None:
    obj = c.is_object(raw, path)
    if obj is None:
        return None
    c.fields(obj, path, _ITEM_FIELDS)
    ref = parse_target_ref(c, obj, path, kinds=kinds, required=True)
    default_path = field_path(path, "default")
    raw_default = obj.get("default")
    if raw_default is None:
        c.add(default_path, "is required")
        return None
    before = len(c.errors)
    conf = parse_conf(c, raw_default, default_path, kind.conf)
    if conf is not None and len(c.errors) == before and conf.is_empty():
        c.add(default_path, "must configure something (it is empty)")
    if ref is None or conf is None:
        return None
    return Item(target_ref=ref, default=conf)


def parse_policy(doc: Any, kind: PolicyKind[P, Any]) -> P:
    """A validated policy of ``kind`` from a document (as ``load_document`` returns it);
    raises ``ValidationError`` listing every problem with its field path."""
    c, obj = open_document(doc)
    c.fields(obj, "", _POLICY_FIELDS)
    check_type(c, obj, kind.type)
    mesh = resource_name(c, obj, "", "mesh", dns_label=True)
    name = resource_name(c, obj, "", "name", dns_label=False)
    labels = c.string_map(obj, "", "labels")
    spec = c.mapping(obj, "", "spec", required=True)
    target_ref: TargetRef | None = None
    sides: dict[str, list[Any]] = {TO: [], FROM: []}
    if spec is not None:
        known = ("targetRef", *kind.sides)
        c.fields(spec, "spec", known, kind.unsupported)
        target_ref = parse_target_ref(c, spec, "spec", kinds=TOP_LEVEL_KINDS, required=False)
        for side in kind.sides:
            kinds = kind.to_kinds if side == TO else kind.from_kinds
            raw_items = c.sequence(spec, "spec", side) or []
            sides[side] = [
                _item(c, raw, index_path(f"spec.{side}", n), kind, kinds)
                for n, raw in enumerate(raw_items)
            ]
        if not any(spec.get(side) for side in kind.sides):
            c.add("spec", f"needs at least one item in {' or '.join(kind.sides)}")
    c.raise_if_any()
    assert target_ref is not None
    return kind.model(
        mesh=mesh,
        name=name,
        target_ref=target_ref,
        to=tuple(i for i in sides[TO] if i is not None),
        from_=tuple(i for i in sides[FROM] if i is not None),
        labels=labels or {},
    )


__all__ = ["FROM", "TO", "Item", "PolicyKind", "TargetedPolicy", "parse_policy"]
