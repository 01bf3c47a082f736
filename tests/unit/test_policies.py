"""MeshTrafficPermission: model, validation with field paths, the HTTP API, default policies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kumadp.cp.api import create_app
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.store import MemoryStore
from kumadp.resources import (
    SUPPORTED_TYPES,
    MeshTrafficPermission,
    ValidationError,
    default_traffic_permission,
    parse_mesh_traffic_permission,
    parse_resource,
)
from kumadp.resources.policies import (
    ALLOW,
    ALLOW_WITH_SHADOW_DENY,
    DENY,
    MESH,
    MESH_SERVICE,
    MESH_SUBSET,
    From,
    TargetRef,
)

MTP = "MeshTrafficPermission"
BASE_URL = "http://127.0.0.1:5681"  # a loopback caller: an admin


def mtp_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": MTP,
        "mesh": "default",
        "name": "backend-from-web",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "backend"},
            "from": [
                {
                    "targetRef": {"kind": "MeshService", "name": "web"},
                    "default": {"action": "Deny"},
                },
                {
                    "targetRef": {"kind": "MeshSubset", "tags": {"team": "payments"}},
                    "default": {"action": "AllowWithShadowDeny"},
                },
                {"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}},
            ],
        },
    }
    doc.update(overrides)
    return doc


def errors_of(doc: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_mesh_traffic_permission(doc)
    return [str(e) for e in info.value.errors]


def with_spec(spec: Any) -> dict[str, Any]:
    return mtp_doc(spec=spec)


def one_from(item: Any) -> dict[str, Any]:
    return with_spec({"targetRef": {"kind": "Mesh"}, "from": [item]})


# --- model ----------------------------------------------------------------------------------


def test_parse_and_round_trip() -> None:
    policy = parse_mesh_traffic_permission(mtp_doc())
    assert policy == MeshTrafficPermission(
        mesh="default",
        name="backend-from-web",
        target_ref=TargetRef(MESH_SERVICE, name="backend"),
        from_=(
            From(TargetRef(MESH_SERVICE, name="web"), DENY),
            From(TargetRef(MESH_SUBSET, tags={"team": "payments"}), ALLOW_WITH_SHADOW_DENY),
            From(TargetRef(MESH), ALLOW),
        ),
    )
    assert policy.to_dict() == mtp_doc()
    assert parse_mesh_traffic_permission(policy.to_dict()) == policy


def test_labels_and_api_times_are_accepted() -> None:
    doc = mtp_doc(labels={"team": "a"}, creationTime="x", modificationTime="y")
    policy = parse_mesh_traffic_permission(doc)
    assert policy.labels == {"team": "a"}
    assert policy.to_dict()["labels"] == {"team": "a"}


def test_top_level_target_ref_defaults_to_mesh() -> None:
    spec = {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}
    policy = parse_mesh_traffic_permission(with_spec(spec))
    assert policy.target_ref == TargetRef(MESH)


def test_default_policy() -> None:
    policy = default_traffic_permission("payments")
    assert policy.to_dict() == {
        "type": MTP,
        "mesh": "payments",
        "name": "allow-all-payments",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
        },
    }


def test_parse_resource_dispatches_to_it() -> None:
    assert MTP in SUPPORTED_TYPES
    assert parse_resource(mtp_doc()) == parse_mesh_traffic_permission(mtp_doc())


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            one_from({"targetRef": {"kind": "Mesh"}, "default": {"action": "allow"}}),
            ["spec.from[0].default.action: must be one of Allow, Deny, AllowWithShadowDeny"],
        ),
        (
            one_from({"targetRef": {"kind": "Mesh"}, "default": {}}),
            ["spec.from[0].default.action: is required"],
        ),
        (one_from({"targetRef": {"kind": "Mesh"}}), ["spec.from[0].default: is required"]),
        (
            one_from({"default": {"action": "Allow"}}),
            ["spec.from[0].targetRef: is required"],
        ),
        (
            one_from({"targetRef": {"kind": "Service"}, "default": {"action": "Deny"}}),
            [
                "spec.from[0].targetRef.kind: must be one of Mesh, MeshSubset, MeshService, "
                "MeshServiceSubset"
            ],
        ),
        (
            one_from({"targetRef": {"kind": "MeshService"}, "default": {"action": "Deny"}}),
            ["spec.from[0].targetRef.name: is required for kind MeshService"],
        ),
        (
            one_from({"targetRef": {"kind": "Mesh", "name": "x"}, "default": {"action": "Deny"}}),
            ["spec.from[0].targetRef.name: is not allowed for kind Mesh"],
        ),
        (
            one_from(
                {
                    "targetRef": {"kind": "MeshService", "name": "a", "tags": {"a": "b"}},
                    "default": {"action": "Deny"},
                }
            ),
            ["spec.from[0].targetRef.tags: is not allowed for kind MeshService"],
        ),
        (
            one_from(
                {
                    "targetRef": {"kind": "MeshSubset", "tags": {"a": "b c"}},
                    "default": {"action": "Deny"},
                }
            ),
            [
                'spec.from[0].targetRef.tags["a"]: value must contain only letters, digits '
                "and '.', '-', '_', ':', '/'"
            ],
        ),
        (
            one_from({"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}, "to": []}),
            ["spec.from[0].to: unknown field"],
        ),
        (
            with_spec({"targetRef": {"kind": "Mesh"}, "from": []}),
            ["spec.from: needs at least one item"],
        ),
        (with_spec({"targetRef": {"kind": "Mesh"}}), ["spec.from: needs at least one item"]),
        (with_spec({"from": "x"}), ["spec.from: must be a list"]),
        (with_spec({"from": ["x"]}), ["spec.from[0]: must be an object"]),
        (
            with_spec(
                {
                    "targetRef": {"kind": "Mesh"},
                    "rules": [],
                    "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
                }
            ),
            ["spec.rules: not supported yet by kumadp"],
        ),
        (with_spec(None), ["spec: is required"]),
        (mtp_doc(type="Mesh"), ['type: must be "MeshTrafficPermission", not "Mesh"']),
        (
            mtp_doc(mesh="Default"),
            [
                "mesh: must be a DNS-1123 label: 1-63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            ],
        ),
        (mtp_doc(specs={}), ['specs: unknown field (did you mean "spec"?)']),
    ],
)
def test_validation_errors_name_the_field(doc: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(doc) == expected


def test_every_problem_is_reported_at_once() -> None:
    doc = with_spec(
        {
            "targetRef": {"kind": "Nope"},
            "from": [
                {"targetRef": {"kind": "Mesh"}, "default": {"action": "Maybe"}},
                {"targetRef": {"kind": "MeshService"}, "default": {"action": "Deny"}},
            ],
        }
    )
    assert errors_of(doc) == [
        "spec.targetRef.kind: must be one of Mesh, MeshSubset, MeshService, MeshServiceSubset, "
        "Dataplane",
        "spec.from[0].default.action: must be one of Allow, Deny, AllowWithShadowDeny",
        "spec.from[1].targetRef.name: is required for kind MeshService",
    ]


# --- HTTP API and default policies ----------------------------------------------------------


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


async def test_creating_a_mesh_creates_allow_all(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    r = await client.put("/meshes/payments", json={"type": "Mesh", "name": "payments"})
    assert r.status_code == 201
    r = await client.get("/meshes/payments/meshtrafficpermissions")
    body = r.json()
    assert body["total"] == 1
    (item,) = body["items"]
    assert item["name"] == "allow-all-payments"
    assert parse_mesh_traffic_permission(item) == default_traffic_permission("payments")


async def test_updating_a_mesh_does_not_recreate_it(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    await client.put("/meshes/m", json={"type": "Mesh", "name": "m"})
    r = await client.delete("/meshes/m/meshtrafficpermissions/allow-all-m")
    assert r.status_code == 200
    r = await client.put("/meshes/m", json={"type": "Mesh", "name": "m", "labels": {"a": "b"}})
    assert r.status_code == 200
    assert await store.list(MTP, "m") == []


async def test_policy_crud(client: httpx.AsyncClient, store: MemoryStore) -> None:
    await client.put("/meshes/default", json={"type": "Mesh", "name": "default"})
    url = "/meshes/default/meshtrafficpermissions/backend-from-web"
    r = await client.put(url, json=mtp_doc())
    assert r.status_code == 201, r.text
    body = (await client.get(url)).json()
    assert body["spec"] == mtp_doc()["spec"]
    assert list(body)[:5] == ["type", "mesh", "name", "creationTime", "modificationTime"]
    all_meshes = (await client.get("/meshtrafficpermissions")).json()
    assert [i["name"] for i in all_meshes["items"]] == ["allow-all-default", "backend-from-web"]

    bad = one_from({"targetRef": {"kind": "Mesh"}, "default": {"action": "Nope"}})
    r = await client.put(url, json=bad)
    assert r.status_code == 400
    assert [c["field"] for c in r.json()["causes"]] == ["spec.from[0].default.action"]

    # type, mesh and name come from the URL when absent
    r = await client.put(
        "/meshes/default/meshtrafficpermissions/short", json={"spec": mtp_doc()["spec"]}
    )
    assert r.status_code == 201, r.text

    assert (await client.delete("/meshes/default")).status_code == 200
    assert await store.list(MTP, "default") == []  # deleted with its mesh


async def test_policy_into_a_missing_mesh(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/meshes/nope/meshtrafficpermissions/x", json=mtp_doc(mesh="nope", name="x")
    )
    assert r.status_code == 400
    assert [c["field"] for c in r.json()["causes"]] == ["mesh"]


async def test_default_mesh_at_first_start_comes_with_allow_all(store: MemoryStore) -> None:
    await ensure_default_mesh(store)
    (stored,) = await store.list(MTP, "default")
    assert parse_mesh_traffic_permission(stored.spec) == default_traffic_permission("default")
    # a second start changes nothing, even if the user removed the policy
    await store.delete(MTP, "default", "allow-all-default")
    await ensure_default_mesh(store)
    assert await store.list(MTP, "default") == []
