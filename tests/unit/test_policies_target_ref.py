"""Kuma 2.x targetRef kinds (issue 16, item 4): ``Dataplane`` (by name, by labels, with
``sectionName``) and ``MeshServiceSubset``, ``proxyTypes``: their validation, what they select
(``match``) and who they let in (``rbac``)."""

from __future__ import annotations

from typing import Any

import pytest

from kumadp.cp.generate.policies import match, rbac
from kumadp.resources import ValidationError, parse_dataplane, parse_mesh_traffic_permission
from kumadp.resources.policies import (
    DATAPLANE,
    MESH,
    MESH_SERVICE_SUBSET,
    TargetRef,
)


def mtp(target: dict[str, Any], *froms: tuple[dict[str, Any], str]) -> dict[str, Any]:
    items = [{"targetRef": ref, "default": {"action": action}} for ref, action in froms]
    return {
        "type": "MeshTrafficPermission",
        "mesh": "default",
        "name": "p",
        "spec": {"targetRef": target, "from": items or [({"kind": "Mesh"}, "Allow")]},
    }


def errors_of(doc: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_mesh_traffic_permission(doc)
    return [str(e) for e in info.value.errors]


BACKEND = parse_dataplane(
    {
        "type": "Dataplane",
        "mesh": "default",
        "name": "backend-1",
        "labels": {"app": "backend", "team": "a"},
        "networking": {
            "address": "10.0.0.2",
            "inbound": [
                {"port": 1, "name": "api", "tags": {"kuma.io/service": "backend", "v": "2"}},
                {"port": 2, "tags": {"kuma.io/service": "backend-admin"}},
            ],
        },
    }
)
API, ADMIN = BACKEND.networking.inbound


def test_dataplane_target_refs_parse_and_round_trip() -> None:
    for target in (
        {"kind": "Dataplane"},
        {"kind": "Dataplane", "name": "backend-1"},
        {"kind": "Dataplane", "labels": {"app": "backend"}, "sectionName": "api"},
        {"kind": "MeshServiceSubset", "name": "backend", "tags": {"v": "2"}},
        {"kind": "Mesh", "proxyTypes": ["Sidecar"]},
    ):
        doc = mtp(target, ({"kind": "Mesh"}, "Allow"))
        policy = parse_mesh_traffic_permission(doc)
        assert policy.to_dict()["spec"]["targetRef"] == target
    caller = {"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v2"}}
    policy = parse_mesh_traffic_permission(mtp({"kind": "Mesh"}, (caller, "Allow")))
    assert policy.from_[0].target_ref == TargetRef(MESH_SERVICE_SUBSET, "web", {"version": "v2"})


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            {"kind": "Dataplane", "name": "a", "labels": {"x": "y"}},
            "spec.targetRef.labels: give either name or labels, not both",
        ),
        (
            {"kind": "Dataplane", "tags": {"a": "b"}},
            "spec.targetRef.tags: is not allowed for kind Dataplane",
        ),
        (
            {"kind": "Dataplane", "namespace": "kuma-demo"},
            "spec.targetRef.namespace: not supported yet by kumadp",
        ),
        (
            {"kind": "MeshServiceSubset", "tags": {"a": "b"}},
            "spec.targetRef.name: is required for kind MeshServiceSubset",
        ),
        (
            {"kind": "MeshService", "name": "a", "sectionName": "http"},
            "spec.targetRef.sectionName: is not allowed for kind MeshService",
        ),
        (
            {"kind": "Mesh", "proxyTypes": ["Zone"]},
            "spec.targetRef.proxyTypes[0]: must be one of Sidecar, Gateway",
        ),
    ],
)
def test_target_ref_errors(target: dict[str, Any], expected: str) -> None:
    assert errors_of(mtp(target, ({"kind": "Mesh"}, "Allow"))) == [expected]


def test_dataplane_is_not_a_caller_kind() -> None:
    assert errors_of(mtp({"kind": "Mesh"}, ({"kind": "Dataplane", "name": "x"}, "Allow"))) == [
        "spec.from[0].targetRef.kind: must be one of Mesh, MeshSubset, MeshService, "
        "MeshServiceSubset"
    ]


@pytest.mark.parametrize(
    ("target", "selected"),
    [
        (TargetRef(DATAPLANE), [API, ADMIN]),
        (TargetRef(DATAPLANE, name="backend-1"), [API, ADMIN]),
        (TargetRef(DATAPLANE, name="backend-2"), []),
        (TargetRef(DATAPLANE, labels={"app": "backend"}), [API, ADMIN]),
        (TargetRef(DATAPLANE, labels={"app": "backend", "team": "b"}), []),
        (TargetRef(DATAPLANE, section_name="api"), [API]),
        (TargetRef(DATAPLANE, section_name="2"), [ADMIN]),  # no name: its port
        (TargetRef(MESH_SERVICE_SUBSET, "backend", {"v": "2"}), [API]),
        (TargetRef(MESH_SERVICE_SUBSET, "backend", {"v": "3"}), []),
        (TargetRef(MESH, proxy_types=("Gateway",)), []),
        (TargetRef(MESH, proxy_types=("Sidecar",)), [API, ADMIN]),
    ],
)
def test_what_a_top_level_target_ref_selects(target: TargetRef, selected: list[Any]) -> None:
    assert match.selected_inbounds(target, BACKEND) == selected
    assert match.selects_proxy(target, BACKEND) is bool(selected)


def test_mesh_service_subset_caller_needs_the_service_and_its_tags() -> None:
    principal = rbac.principal(TargetRef(MESH_SERVICE_SUBSET, "web", {"version": "v2"}), "m")
    ids = [p.authenticated.principal_name.exact for p in principal.and_ids.ids]
    assert ids == ["spiffe://m/web", "kuma://version/v2"]
    assert rbac.specificity(TargetRef(MESH_SERVICE_SUBSET, "web", {"a": "1"})) > rbac.specificity(
        TargetRef("MeshService", "web")
    )


def test_rules_for_an_inbound_follow_section_names() -> None:
    doc = mtp({"kind": "Dataplane", "sectionName": "api"}, ({"kind": "Mesh"}, "Deny"))
    policy = parse_mesh_traffic_permission(doc)
    assert [r.action for r in rbac.rules_for([policy], BACKEND, API)] == ["Deny"]
    assert rbac.rules_for([policy], BACKEND, ADMIN) == []
