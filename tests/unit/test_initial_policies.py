"""The policies a new mesh starts with, and ``skipCreatingInitialPolicies``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from kumadp.cp.api import create_app
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.store import MemoryStore
from kumadp.resources import Mesh, parse_mesh, parse_resource
from kumadp.resources.initial_policies import INITIAL_POLICY_TYPES, initial_policies

ALL = [
    ("MeshTrafficPermission", "allow-all-m"),
    ("MeshTimeout", "mesh-timeout-all-m"),
    ("MeshCircuitBreaker", "mesh-circuit-breaker-all-m"),
    ("MeshRetry", "mesh-retry-all-m"),
]


def test_initial_policies_and_skipping_them() -> None:
    assert [(p.type, p.name) for p in initial_policies("m")] == ALL
    assert [p.type for p in initial_policies("m", ("MeshRetry", "MeshTimeout"))] == [
        "MeshTrafficPermission",
        "MeshCircuitBreaker",
    ]
    assert initial_policies("m", ("*",)) == []
    for policy in initial_policies("m"):  # each is a valid document of its type
        assert parse_resource(policy.to_dict()) == policy


def test_mesh_field() -> None:
    doc = {"type": "Mesh", "name": "m", "skipCreatingInitialPolicies": ["MeshRetry"]}
    mesh = parse_mesh(doc)
    assert mesh == Mesh(name="m", skip_creating_initial_policies=("MeshRetry",))
    assert mesh.to_dict() == doc
    # Kuma takes any policy type name (skipping one kumadp does not create is harmless)
    other = parse_mesh({"type": "Mesh", "name": "m", "skipCreatingInitialPolicies": ["Nope"]})
    assert other.skip_creating_initial_policies == ("Nope",)
    assert all(
        parse_mesh({**doc, "skipCreatingInitialPolicies": ["*"]}).skips_initial_policy(t)
        for t in INITIAL_POLICY_TYPES
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5681") as c:
        yield c


async def _policies(store: MemoryStore, mesh: str) -> list[tuple[str, str]]:
    return [
        (stored.type, stored.name)
        for kind in INITIAL_POLICY_TYPES
        for stored in await store.list(kind, mesh)
    ]


async def test_a_new_mesh_gets_them(client: httpx.AsyncClient, store: MemoryStore) -> None:
    r = await client.put("/meshes/m", json={"type": "Mesh", "name": "m"})
    assert r.status_code == 201
    assert await _policies(store, "m") == ALL
    r = await client.get("/meshes/m/meshtimeouts/mesh-timeout-all-m")
    assert r.status_code == 200 and r.json()["spec"]["from"]


async def test_a_mesh_may_skip_them(client: httpx.AsyncClient, store: MemoryStore) -> None:
    skip_some = {"type": "Mesh", "name": "m", "skipCreatingInitialPolicies": ["MeshRetry"]}
    assert (await client.put("/meshes/m", json=skip_some)).status_code == 201
    assert await _policies(store, "m") == ALL[:3]
    skip_all = {"type": "Mesh", "name": "n", "skipCreatingInitialPolicies": ["*"]}
    assert (await client.put("/meshes/n", json=skip_all)).status_code == 201
    assert await _policies(store, "n") == []


async def test_the_default_mesh_gets_them(store: MemoryStore) -> None:
    await ensure_default_mesh(store)
    assert [name for _, name in await _policies(store, "default")] == [
        name.replace("-m", "-default") for _, name in ALL
    ]
