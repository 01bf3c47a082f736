"""MeshTrafficPermission -> Envoy network RBAC on an inbound (mesh mTLS only; the plug-in that
puts it on the listeners is ``traffic_permission``).

Which permissions apply to an inbound: those whose ``spec.targetRef`` selects it
(``match.selects``). Their ``from`` items, pooled, decide who may connect, caller by
caller:

- no item selects the caller (and with no permission at all): denied, as in Kuma 2.x;
- the most specific items selecting the caller decide: ``MeshServiceSubset`` (more tags over
  fewer) over ``MeshService`` over ``MeshSubset`` (more tags over fewer) over ``Mesh``, so
  "deny everyone, allow web" allows web;
- among equally specific items, ``Deny`` wins over ``Allow``;
- ``AllowWithShadowDeny`` is ``Allow``, and ``Deny`` in the filter's shadow rules (logged
  and counted as a deny, never enforced).

A caller is known by its certificate's URI SANs: ``spiffe://<mesh>/<service>`` for each of
its services and ``kuma://<tag>/<value>`` for each tag of its inbounds. The result is one
ALLOW-action RBAC filter whose principals say exactly this: for every allowing item, "its
callers, except those selected by a denying item at least as specific".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from envoy.config.listener.v3.listener_components_pb2 import Filter
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2

from kumadp.cp.generate.policies.match import selects
from kumadp.resources.model import Dataplane, Inbound
from kumadp.resources.policies import (
    ALLOW,
    ALLOW_WITH_SHADOW_DENY,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    MeshTrafficPermission,
    TargetRef,
)
from kumadp.wire.names import kuma_tag_uri, spiffe_id

NETWORK_RBAC = "envoy.filters.network.rbac"
POLICY_NAME = "MeshTrafficPermission"  # the key of the one policy in the RBAC rules


@dataclass(frozen=True)
class Rule:
    """One ``from`` item of a permission that applies to the inbound."""

    source: TargetRef  # which callers
    action: str  # Allow | Deny | AllowWithShadowDeny
    policy: str  # the MeshTrafficPermission it comes from


def rules_for(
    permissions: Iterable[MeshTrafficPermission], dataplane: Dataplane, inbound: Inbound
) -> list[Rule]:
    """The ``from`` items of every permission that selects ``inbound`` of ``dataplane``, in
    order."""
    return [
        Rule(source=item.target_ref, action=item.action, policy=permission.name)
        for permission in permissions
        if selects(permission.target_ref, dataplane, inbound)
        for item in permission.from_
    ]


def specificity(ref: TargetRef) -> tuple[int, int]:
    """How specific a caller selector is; the most specific matching one decides."""
    if ref.kind == MESH_SERVICE_SUBSET:
        return (3, len(ref.tags))
    if ref.kind == MESH_SERVICE:
        return (2, 0)
    if ref.kind == MESH_SUBSET:
        return (1, len(ref.tags))
    return (0, 0)


def _uri(uri: str) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(
        authenticated=rbac_pb2.Principal.Authenticated(
            principal_name=string_pb2.StringMatcher(exact=uri)
        )
    )


def _any_principal() -> rbac_pb2.Principal:
    return rbac_pb2.Principal(any=True)


def _all_of(ids: Sequence[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    flat: list[rbac_pb2.Principal] = []
    for p in ids:
        flat.extend(p.and_ids.ids if p.HasField("and_ids") else [p])
    if len(flat) == 1:
        return flat[0]
    return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=flat))


def _one_of(ids: Sequence[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if len(ids) == 1:
        return ids[0]
    return rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=list(ids)))


def principal(ref: TargetRef, mesh: str) -> rbac_pb2.Principal:
    """The callers a ``from`` targetRef selects, by their certificate's URI SANs."""
    if ref.kind in (MESH_SERVICE, MESH_SERVICE_SUBSET):
        assert ref.name is not None
        service = _uri(spiffe_id(mesh, ref.name))
        if ref.kind == MESH_SERVICE or not ref.tags:
            return service
        tags = [_uri(kuma_tag_uri(k, v)) for k, v in sorted(ref.tags.items())]
        return _all_of([service, *tags])
    if ref.kind == MESH_SUBSET and ref.tags:
        return _all_of([_uri(kuma_tag_uri(k, v)) for k, v in sorted(ref.tags.items())])
    return _any_principal()


def _key(message: rbac_pb2.Principal) -> bytes:
    return message.SerializeToString(deterministic=True)


def _unique(principals: Iterable[rbac_pb2.Principal]) -> list[rbac_pb2.Principal]:
    seen: dict[bytes, rbac_pb2.Principal] = {}
    for p in principals:
        seen.setdefault(_key(p), p)
    return list(seen.values())


def allowed_principals(
    rules: Sequence[Rule], mesh: str, *, shadow: bool = False
) -> list[rbac_pb2.Principal]:
    """Principals of the callers ``rules`` allow (see the module's docstring).

    ``shadow``: the shadow view, where ``AllowWithShadowDeny`` counts as ``Deny``."""
    allow_actions = (ALLOW,) if shadow else (ALLOW, ALLOW_WITH_SHADOW_DENY)
    denies = [r for r in rules if r.action not in allow_actions]
    out: list[rbac_pb2.Principal] = []
    for rule in rules:
        if rule.action not in allow_actions:
            continue
        allowed = principal(rule.source, mesh)
        rank = specificity(rule.source)
        vetoes = _unique(principal(d.source, mesh) for d in denies if specificity(d.source) >= rank)
        if any(_key(v) in (_key(allowed), _key(_any_principal())) for v in vetoes):
            continue  # every caller of this item is denied
        if vetoes:
            allowed = _all_of([allowed, rbac_pb2.Principal(not_id=_one_of(vetoes))])
        out.append(allowed)
    unique = _unique(out)
    if any(_key(p) == _key(_any_principal()) for p in unique):
        return [_any_principal()]  # someone allows every caller, and no one denies any
    return unique


def rbac_rules(rules: Sequence[Rule], mesh: str, *, shadow: bool = False) -> rbac_pb2.RBAC:
    """ALLOW-action rules; without principals they are empty, and empty rules deny all."""
    out = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    principals = allowed_principals(rules, mesh, shadow=shadow)
    if principals:
        out.policies[POLICY_NAME].CopyFrom(
            rbac_pb2.Policy(permissions=[rbac_pb2.Permission(any=True)], principals=principals)
        )
    return out


def rbac_filter(rules: Sequence[Rule], mesh: str, stat_prefix: str) -> Filter:
    """The network RBAC filter enforcing ``rules`` (shadow rules when some item is
    ``AllowWithShadowDeny``). It must come before the terminal filter of the chain."""
    config = network_rbac_pb2.RBAC(stat_prefix=stat_prefix)
    config.rules.CopyFrom(rbac_rules(rules, mesh))  # set even when empty: empty denies all
    if any(r.action == ALLOW_WITH_SHADOW_DENY for r in rules):
        config.shadow_rules.CopyFrom(rbac_rules(rules, mesh, shadow=True))
    packed = any_pb2.Any()
    packed.Pack(config)
    return Filter(name=NETWORK_RBAC, typed_config=packed)


def inbound_rbac_filter(
    permissions: Iterable[MeshTrafficPermission],
    mesh: str,
    dataplane: Dataplane,
    inbound: Inbound,
    stat_prefix: str,
) -> Filter:
    """The RBAC filter of one inbound of a dataplane."""
    return rbac_filter(rules_for(permissions, dataplane, inbound), mesh, stat_prefix)
