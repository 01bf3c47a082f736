"""What the policies do to one dataplane, as ``GET /meshes/{m}/dataplanes/{name}/_rules``
answers it (the shape of Kuma's inspect-rules API, trimmed to what kumadp has)::

    {"resource": {"type": "Dataplane", "mesh": "default", "name": "web-1", "labels": {}},
     "rules": [
       {"type": "MeshTimeout",
        "toRules": [                       # outbound: any service, then the named ones
          {"matchers": [], "conf": {...},
           "origin": [{"resourceMeta": {"type", "mesh", "name"}}, ...]},
          {"matchers": [{"key": "kuma.io/service", "value": "backend"}], "conf": {...},
           "origin": [...]}],
        "fromRules": [                     # inbound, per inbound
          {"inbound": {"port": 10001, "tags": {...}},
           "rules": [{"matchers": [], "conf": {...}, "origin": [...]}]}],
        "warnings": []},
       {"type": "MeshTrafficPermission", "toRules": [], "fromRules": [...], ...}]}

``conf`` is the merged configuration (``rules.ProxyRules``) as a policy document writes it;
``origin`` the policies it comes from, in merge order. A type with no policy selecting the
dataplane is left out. MeshTrafficPermission lists, per inbound, the ``from`` items that
apply (its callers are matched by identity, not merged: see ``policies.rbac``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kumadp.cp.generate.policies import rbac
from kumadp.cp.generate.policies.rules import ProxyRules, Rule
from kumadp.resources.confschema import to_doc
from kumadp.resources.model import SERVICE_TAG, Dataplane
from kumadp.resources.policies import MeshTrafficPermission
from kumadp.resources.targeted import TargetedPolicy
from kumadp.resources.targetref import MESH_SERVICE, MESH_SERVICE_SUBSET, MESH_SUBSET, TargetRef


def _origin(policy_type: str, mesh: str, names: Iterable[str]) -> list[dict[str, Any]]:
    """Kuma's ``origin`` items: the ``resourceMeta`` of each policy a rule comes from."""
    return [{"resourceMeta": {"type": policy_type, "mesh": mesh, "name": n}} for n in names]


def _rule(
    policy_type: str, mesh: str, rule: Rule[Any], matchers: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "matchers": matchers,
        "conf": to_doc(rule.conf),
        "origin": _origin(policy_type, mesh, rule.origins),
    }


def _inbound(dataplane: Dataplane, index: int) -> dict[str, Any]:
    inbound = dataplane.networking.inbound[index]
    out: dict[str, Any] = {"port": inbound.port, "tags": dict(inbound.tags)}
    if inbound.name:
        out["name"] = inbound.name
    return out


def targeted_rules(
    policy_type: str, policies: Sequence[TargetedPolicy[Any]], dataplane: Dataplane
) -> dict[str, Any] | None:
    rules = ProxyRules(policies, dataplane)
    if not rules.policies:
        return None
    mesh = dataplane.mesh
    to_rules = []
    for service in (None, *rules.named_services()):
        found = rules.outbound(service)
        if found is not None:
            matchers = [] if service is None else [{"key": SERVICE_TAG, "value": service}]
            to_rules.append(_rule(policy_type, mesh, found, matchers))
    from_rules = []
    for n, inbound in enumerate(dataplane.networking.inbound):
        found = rules.inbound(inbound)
        if found is not None:
            from_rules.append(
                {"inbound": _inbound(dataplane, n), "rules": [_rule(policy_type, mesh, found, [])]}
            )
    return {"type": policy_type, "toRules": to_rules, "fromRules": from_rules, "warnings": []}


def _caller_matchers(ref: TargetRef) -> list[dict[str, str]]:
    matchers = []
    if ref.kind in (MESH_SERVICE, MESH_SERVICE_SUBSET) and ref.name is not None:
        matchers.append({"key": SERVICE_TAG, "value": ref.name})
    if ref.kind in (MESH_SUBSET, MESH_SERVICE_SUBSET):
        matchers.extend({"key": k, "value": v} for k, v in sorted(ref.tags.items()))
    return matchers


def permission_rules(
    permissions: Sequence[MeshTrafficPermission], dataplane: Dataplane
) -> dict[str, Any] | None:
    from_rules = []
    for n, inbound in enumerate(dataplane.networking.inbound):
        found = rbac.rules_for(permissions, dataplane, inbound)
        if found:
            items = [
                {
                    "matchers": _caller_matchers(rule.source),
                    "conf": {"action": rule.action},
                    "origin": _origin(MeshTrafficPermission.type, dataplane.mesh, [rule.policy]),
                }
                for rule in found
            ]
            from_rules.append({"inbound": _inbound(dataplane, n), "rules": items})
    if not from_rules:
        return None
    return {
        "type": MeshTrafficPermission.type,
        "toRules": [],
        "fromRules": from_rules,
        "warnings": [],
    }


def dataplane_rules(
    dataplane: Dataplane, policies: Mapping[str, Sequence[object]]
) -> dict[str, Any]:
    """The inspection document of ``dataplane`` given the mesh's policies by type."""
    rules = []
    for policy_type, found in sorted(policies.items()):
        if policy_type == MeshTrafficPermission.type:
            entry = permission_rules(
                [p for p in found if isinstance(p, MeshTrafficPermission)], dataplane
            )
        else:
            targeted = [p for p in found if isinstance(p, TargetedPolicy)]
            entry = targeted_rules(policy_type, targeted, dataplane) if targeted else None
        if entry is not None:
            rules.append(entry)
    return {
        "resource": {
            "type": dataplane.type,
            "mesh": dataplane.mesh,
            "name": dataplane.name,
            "labels": dict(dataplane.labels),
        },
        "rules": rules,
    }


__all__ = ["dataplane_rules", "permission_rules", "targeted_rules"]
