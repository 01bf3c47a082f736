"""Merging: the effective configuration of one policy type for one proxy, per outbound
service (``to``) and per inbound (``from``), as Kuma 2.x computes it.

1. The policies whose top-level ``targetRef`` selects the proxy (``match.selects_proxy``;
   for ``from``, those selecting the inbound) are ordered from the least to the most
   specific: ``Mesh`` < ``Dataplane`` < ``MeshSubset`` < ``MeshService`` <
   ``MeshServiceSubset``; among equals, by name in reverse, so that the name first in
   alphabetical order comes last and wins (Kuma's rule).
2. In that order, each policy's items that match the traffic are taken, its ``Mesh`` items
   before its ``MeshService`` items: a ``to`` item matches an outbound service when it is
   ``Mesh`` or names the service; a ``from`` item (``Mesh``) every caller.
3. Their ``default`` confs merge field by field, a later one overriding (lists replaced,
   ``kumadp.resources.confschema.merge``).

``ProxyRules`` computes this once per proxy and policy type; the plug-ins and the
``_rules`` inspection API read it. No policy matching: None (the plug-in leaves the
generated config as it is).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kumadp.cp.generate.policies.edit import OutboundTarget, outbound_targets
from kumadp.cp.generate.policies.match import selects, selects_proxy
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.cp.generate.view import MeshView
from kumadp.resources.confschema import Conf, merge
from kumadp.resources.model import Dataplane, Inbound
from kumadp.resources.targeted import FROM, TO, Item, TargetedPolicy
from kumadp.resources.targetref import MESH, MESH_SERVICE

C = TypeVar("C", bound=Conf)
_ITEM_ORDER = {MESH: 0, MESH_SERVICE: 1}


@dataclass(frozen=True)
class Rule(Generic[C]):
    """The merged conf for some traffic, and the policies it comes from (in merge order)."""

    conf: C
    origins: tuple[str, ...]


def ordered(policies: Iterable[TargetedPolicy[C]]) -> list[TargetedPolicy[C]]:
    """Least specific first; among equals the name first in alphabetical order last."""
    by_name = sorted(policies, key=lambda p: p.name, reverse=True)
    return sorted(by_name, key=lambda p: p.target_ref.priority)


def _items(policy: TargetedPolicy[C], side: str) -> list[Item[C]]:
    return sorted(policy.items(side), key=lambda i: _ITEM_ORDER.get(i.target_ref.kind, 2))


def _merged(pairs: Iterable[tuple[str, Item[C]]]) -> Rule[C] | None:
    conf: C | None = None
    origins: list[str] = []
    for name, item in pairs:
        conf = merge(conf, item.default)
        if name not in origins:
            origins.append(name)
    return None if conf is None else Rule(conf, tuple(origins))


def _to_matches(item: Item[Any], service: str | None) -> bool:
    ref = item.target_ref
    return ref.kind == MESH or (ref.kind == MESH_SERVICE and ref.name == service)


class OutboundRules(Generic[C]):
    """The ``to`` rules of an ordered list of policies: they depend on nothing else, so
    proxies selected by the same policies share one (``ProxyRules`` with a view)."""

    def __init__(self, policies: list[TargetedPolicy[C]]) -> None:
        self.policies = policies
        self.named = sorted(
            {
                item.target_ref.name
                for policy in policies
                for item in policy.to
                if item.target_ref.kind == MESH_SERVICE and item.target_ref.name is not None
            }
        )
        self._named = frozenset(self.named)
        self._to: dict[str | None, Rule[C] | None] = {}

    def rule(self, service: str | None) -> Rule[C] | None:
        if service is not None and service not in self._named:
            service = None  # only the Mesh items apply: the same rule as any other service
        if service not in self._to:
            self._to[service] = _merged(
                (policy.name, item)
                for policy in self.policies
                for item in _items(policy, TO)
                if _to_matches(item, service)
            )
        return self._to[service]


class ProxyRules(Generic[C]):
    """The rules of one policy type (its policies in the mesh) for one proxy. With ``view``,
    the outbound rules are shared by the view's proxies selected by the same policies (and
    their ``Rule`` objects live as long as the view: plug-ins may key by their identity)."""

    def __init__(
        self,
        policies: Iterable[TargetedPolicy[C]],
        dataplane: Dataplane,
        view: MeshView | None = None,
    ) -> None:
        self.dataplane = dataplane
        self._policies = ordered(p for p in policies if selects_proxy(p.target_ref, dataplane))
        selected = self._policies
        if view is None:
            self._outbound = OutboundRules(selected)
        else:
            key = ("outbound-rules", *((p.type, p.name) for p in selected))
            self._outbound = view.fact(key, lambda: OutboundRules(selected))

    @property
    def policies(self) -> list[TargetedPolicy[C]]:
        """The policies selecting the proxy, in merge order."""
        return list(self._policies)

    def named_services(self) -> list[str]:
        """The services some ``to`` item names (their rule may differ from the rest's)."""
        return list(self._outbound.named)

    def outbound(self, service: str | None) -> Rule[C] | None:
        """The merged ``to`` conf for the proxy's traffic to ``service`` (None: to a service
        no item names, i.e. the ``Mesh`` items only)."""
        return self._outbound.rule(service)

    def inbound(self, inbound: Inbound) -> Rule[C] | None:
        """The merged ``from`` conf for traffic arriving at ``inbound``."""
        return _merged(
            (policy.name, item)
            for policy in self._policies
            if selects(policy.target_ref, self.dataplane, inbound)
            for item in _items(policy, FROM)
        )


def outbound_rules(
    view: MeshView,
    dataplane: Dataplane,
    resources: ResourceSet,
    model: type[TargetedPolicy[C]],
) -> Iterator[tuple[str, OutboundTarget, Rule[C]]]:
    """(service, its outbound target, the merged rule) for every outbound a ``model``
    policy selects on this proxy: what a ``to``-side plug-in walks."""
    policies = view.policies_of(model)
    if not policies:
        return
    rules = ProxyRules(policies, dataplane, view)
    for service, target in outbound_targets(view, resources).items():
        rule = rules.outbound(service)
        if rule is not None:
            yield service, target, rule


__all__ = [
    "OutboundRules",
    "ProxyRules",
    "Rule",
    "ordered",
    "outbound_rules",
]
