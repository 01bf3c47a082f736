"""VIPs and CAs are provisioned by components of their own, driven by the change feed; the
mesh state the reconciler builds only reads them, and reaches agents through the hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.ca import MeshCAs
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.mesh_state import MeshStateBuilder
from kumadp.cp.nametable import name_records
from kumadp.cp.provisioners import CaProvisioner, VipProvisioner
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.store import MemoryStore
from kumadp.cp.vips import VipAllocator
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE
from kumadp.resources.registry import MESH_CA_TYPE, VIRTUAL_IPS_TYPE
from kumadp.xds.cache import SnapshotCache
from testkit.procs import until


def dp_doc(name: str, service: str, mesh: str = "default") -> dict[str, Any]:
    return {
        "type": DATAPLANE_TYPE,
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {"port": 10001, "servicePort": 10002, "tags": {"kuma.io/service": service}}
            ],
        },
    }


def mtls_mesh(name: str = "default") -> dict[str, Any]:
    return {
        "type": MESH_TYPE,
        "name": name,
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
    }


@dataclass
class Env:
    store: MemoryStore
    hub: AgentHub
    reconciler: Reconciler

    def names(self, mesh: str = "default") -> set[str]:
        table = self.hub._tables.get((mesh, False))
        return set(name_records(table)) if table is not None else set()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    store = MemoryStore()
    await ensure_default_mesh(store)
    registrations = DataplaneRegistry(store)
    vips, cas, hub = VipAllocator(store), MeshCAs(store), AgentHub()
    reconciler = Reconciler(
        store, SnapshotCache(), registrations, vips=vips, cas=cas, hub=hub, debounce=0.001
    )
    components = [reconciler, VipProvisioner(store, vips), CaProvisioner(store, cas)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in components]
    try:
        yield Env(store, hub, reconciler)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        registrations.close()


async def test_a_new_service_gets_a_vip_and_agents_get_its_name(env: Env) -> None:
    await env.store.put(DATAPLANE_TYPE, "default", "web-1", dp_doc("web-1", "web"))

    async def named() -> bool:
        return "web.mesh" in env.names()

    await until(named, "web.mesh in the published name table")
    stored = await env.store.get(VIRTUAL_IPS_TYPE, "default", "vips")
    assert stored is not None and set(stored.spec["services"]) == {"web"}


async def test_a_deleted_mesh_loses_its_vips_and_cas(env: Env) -> None:
    await env.store.put(MESH_TYPE, "", "other", mtls_mesh("other"))
    await env.store.put(DATAPLANE_TYPE, "other", "db-1", dp_doc("db-1", "db", mesh="other"))

    async def provisioned() -> bool:
        vips = await env.store.get(VIRTUAL_IPS_TYPE, "other", "vips")
        return vips is not None and bool(await env.store.list(MESH_CA_TYPE, "other"))

    await until(provisioned, "VIPs and CA of mesh other")
    await env.store.delete(MESH_TYPE, "", "other")

    async def cleaned() -> bool:
        vips = await env.store.get(VIRTUAL_IPS_TYPE, "other", "vips")
        return vips is None and not await env.store.list(MESH_CA_TYPE, "other")

    await until(cleaned, "VIPs and CAs of the deleted mesh dropped")


async def test_enabling_mtls_creates_the_ca_and_identities_follow(env: Env) -> None:
    await env.store.put(DATAPLANE_TYPE, "default", "web-1", dp_doc("web-1", "web"))

    async def identity_off() -> bool:
        found = env.hub.identity("default", "web-1")
        return found is not None and not found.mtls_enabled

    await until(identity_off, "an identity without mTLS")
    await env.store.put(MESH_TYPE, "", "default", mtls_mesh())

    async def identity_on() -> bool:
        found = env.hub.identity("default", "web-1")
        return found is not None and found.mtls_enabled and bool(found.ca_fingerprint)

    await until(identity_on, "an identity with the new CA")
    (ca,) = await env.store.list(MESH_CA_TYPE, "default")
    assert ca.name == "ca-1"


async def test_a_ca_deleted_by_hand_is_created_again(env: Env) -> None:
    await env.store.put(MESH_TYPE, "", "default", mtls_mesh())

    async def has_ca() -> bool:
        return bool(await env.store.list(MESH_CA_TYPE, "default"))

    await until(has_ca, "the CA")
    (first,) = await env.store.list(MESH_CA_TYPE, "default")
    await env.store.delete(MESH_CA_TYPE, "default", "ca-1")

    async def recreated() -> bool:
        found = await env.store.get(MESH_CA_TYPE, "default", "ca-1")
        return found is not None and found.spec["certPem"] != first.spec["certPem"]

    await until(recreated, "a new CA")


async def test_building_a_mesh_state_never_writes() -> None:
    store = MemoryStore()
    await store.put(MESH_TYPE, "", "default", mtls_mesh())
    await store.put(DATAPLANE_TYPE, "default", "web-1", dp_doc("web-1", "web"))
    changes = store.changes()
    builder = MeshStateBuilder(
        store, DataplaneRegistry(store), vips=VipAllocator(store), cas=MeshCAs(store)
    )
    state = await builder.build("default")
    assert state is not None
    assert state.ca is None and state.ca_pending  # the provisioner's job, not the builder's
    assert state.vips is not None and len(state.vips) == 0
    assert changes.drain() == []
