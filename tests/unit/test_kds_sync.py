"""The KDS sync with the real code on both ends (store source, delta server, delta client,
receivers), over in-memory streams: what arrives, what is NACKed alone, what a reconnect
writes (nothing, when nothing changed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from envoy.config.core.v3 import base_pb2

from kumadp.cp.kds.catalog import sync_types
from kumadp.cp.kds.global_receiver import GlobalReceiver
from kumadp.cp.kds.mapping import copy_name
from kumadp.cp.kds.receiver import Receiver
from kumadp.cp.kds.source import StoreSource
from kumadp.cp.kds.zone_receiver import ZoneReceiver
from kumadp.cp.store import MemoryStore
from kumadp.resources import REGISTRY, Sync
from kumadp.wire import kds as wire
from kumadp.xds.delta import DeltaServer, Nack, NoopDeltaCallbacks
from kumadp.xds.delta_client import DeltaClient, Update
from testkit.procs import until
from tests.unit.test_xds_delta_client import Pipe

DOWN = sync_types(REGISTRY, Sync.GLOBAL_TO_ZONE)
UP = sync_types(REGISTRY, Sync.ZONE_TO_GLOBAL)


class CountingStore(MemoryStore):
    """A memory store that counts every write it is asked for, by type."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: dict[str, int] = {}
        self.deletes: dict[str, int] = {}

    async def put(
        self,
        type: str,
        mesh: str,
        name: str,
        spec: dict[str, Any],
        expected_version: int | None = None,
    ) -> Any:  # type: ignore[override]
        self.puts[type] = self.puts.get(type, 0) + 1
        return await super().put(type, mesh, name, spec, expected_version)

    async def delete(self, type: str, mesh: str, name: str) -> bool:
        self.deletes[type] = self.deletes.get(type, 0) + 1
        return await super().delete(type, mesh, name)

    def reset(self) -> None:
        self.puts.clear()
        self.deletes.clear()


class Callbacks(NoopDeltaCallbacks):
    def __init__(self) -> None:
        self.acks: list[str] = []
        self.nacks: list[Nack] = []

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.acks.append(type_url)

    def on_nack(self, node_id: str, rejected: Nack) -> None:
        self.nacks.append(rejected)


def mesh(name: str) -> dict[str, Any]:
    return {"type": "Mesh", "name": name}


def mtp(mesh_name: str, name: str, action: str = "Allow") -> dict[str, Any]:
    return {
        "type": "MeshTrafficPermission",
        "mesh": mesh_name,
        "name": name,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": action}}],
        },
    }


def dataplane(name: str, zone: str | None = None) -> dict[str, Any]:
    tags = {"kuma.io/service": "web"} | ({"kuma.io/zone": zone} if zone else {})
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": tags}]},
    }


async def put(store: MemoryStore, doc: dict[str, Any]) -> None:
    await store.put(doc["type"], doc.get("mesh", ""), doc["name"], doc)


@contextlib.asynccontextmanager
async def running(source: StoreSource) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(source.run(stop))
    try:
        await until(lambda: source.get_snapshot("x") is not None, "the first snapshot")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def link(
    source: StoreSource, receiver: Receiver, types: list[Any]
) -> AsyncIterator[tuple[Callbacks, DeltaClient]]:
    """One stream from ``source`` to ``receiver``, as a new connection makes it."""
    callbacks = Callbacks()
    server = DeltaServer(source, callbacks, type_urls=[t.name for t in types])
    client = DeltaClient(
        base_pb2.Node(id="peer"),
        [t.name for t in types],
        receiver,
        initial_versions=await receiver.initial_versions(),
    )
    pipe = Pipe()
    tasks = [
        asyncio.ensure_future(server.handle_stream(pipe.server)),
        asyncio.ensure_future(client.run(pipe.client)),
    ]
    try:
        yield callbacks, client
    finally:
        pipe.close()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)


async def names(store: MemoryStore, type: str, mesh: str | None = None) -> set[str]:
    return {r.name for r in await store.list(type, mesh)}


def seen(source: StoreSource, key: str) -> bool:
    snapshot = source.get_snapshot("x")
    return snapshot is not None and key in snapshot.packed("MeshTrafficPermission")


async def settled(callbacks: Callbacks, types: int) -> None:
    await until(lambda: len(callbacks.acks) + len(callbacks.nacks) >= types, "every type answered")


async def test_global_to_zone_copies_with_labels_and_hashed_names() -> None:
    global_store, zone_store = MemoryStore(), CountingStore()
    await put(global_store, mesh("default"))
    await put(global_store, mtp("default", "allow-all-default"))
    source = StoreSource(global_store, DOWN, wire.ORIGIN_GLOBAL)
    receiver = ZoneReceiver(zone_store, DOWN)
    async with running(source), link(source, receiver, DOWN) as (callbacks, _):
        await settled(callbacks, len(DOWN))
        assert not callbacks.nacks
        stored_mesh = await zone_store.get("Mesh", "", "default")
        assert stored_mesh is not None
        assert stored_mesh.spec["labels"][wire.ORIGIN_LABEL] == "global"
        hashed = copy_name(True, "allow-all-default", "default", None)
        assert await names(zone_store, "MeshTrafficPermission") == {hashed}
        policy = await zone_store.get("MeshTrafficPermission", "default", hashed)
        assert policy is not None
        assert policy.spec["labels"][wire.DISPLAY_NAME_LABEL] == "allow-all-default"
        assert policy.spec["spec"]["from"][0]["default"]["action"] == "Allow"

        # a change is pushed at once, and only it
        zone_store.reset()
        await put(global_store, mtp("default", "deny-web", "Deny"))
        await until(lambda: zone_store.puts.get("MeshTrafficPermission") == 1, "the new policy")
        assert zone_store.puts == {"MeshTrafficPermission": 1}


async def test_a_rejected_resource_is_nacked_alone_and_the_rest_arrives() -> None:
    global_store, zone_store = MemoryStore(), MemoryStore()
    await put(global_store, mesh("default"))
    bad = mtp("default", "bad")
    bad["spec"]["from"][0]["default"]["action"] = "Maybe"  # the store takes it, a parser would not
    for doc in (mtp("default", "a"), bad, mtp("default", "c")):
        await put(global_store, doc)
    source = StoreSource(global_store, DOWN, wire.ORIGIN_GLOBAL)
    receiver = ZoneReceiver(zone_store, DOWN)
    async with running(source), link(source, receiver, DOWN) as (callbacks, client):
        await settled(callbacks, len(DOWN))
        (nack,) = callbacks.nacks
        assert nack.type_url == "MeshTrafficPermission"
        assert set(nack.resources) == {"default/bad"}
        assert "spec.from[0].default.action" in nack.resources["default/bad"]
        shown = {copy_name(True, n, "default", None) for n in ("a", "c")}
        assert await names(zone_store, "MeshTrafficPermission") == shown
        assert "default/bad" not in client.versions("MeshTrafficPermission")

        # fixed upstream: it is retried because it changed
        await put(global_store, mtp("default", "bad"))
        await until(lambda: len(callbacks.acks) > len(DOWN) - 1, "the fixed policy's ACK")
        await until(lambda: names(zone_store, "MeshTrafficPermission"), "stored")
        assert len(await names(zone_store, "MeshTrafficPermission")) == 3


async def test_a_reconnect_writes_nothing_unchanged_and_applies_what_changed_meanwhile() -> None:
    global_store, zone_store = MemoryStore(), CountingStore()
    await put(global_store, mesh("default"))
    for name in ("a", "b", "c"):
        await put(global_store, mtp("default", name))
    source = StoreSource(global_store, DOWN, wire.ORIGIN_GLOBAL)
    receiver = ZoneReceiver(zone_store, DOWN)
    async with running(source):
        async with link(source, receiver, DOWN) as (callbacks, _):
            await settled(callbacks, len(DOWN))
        zone_store.reset()
        # a new connection, nothing changed: nothing sent, nothing written, nothing deleted
        async with link(source, receiver, DOWN) as (callbacks, _):
            await settled(callbacks, len(DOWN))
        assert zone_store.puts == {} and zone_store.deletes == {}
        assert receiver.stats.writes == 4  # the first sync only
        # while disconnected: c goes, d comes, a changes
        await global_store.delete("MeshTrafficPermission", "default", "c")
        await put(global_store, mtp("default", "d"))
        await put(global_store, mtp("default", "a", "Deny"))
        await until(lambda: seen(source, "default/d"), "the source saw the changes")
        zone_store.reset()
        async with link(source, receiver, DOWN) as (callbacks, _):
            await settled(callbacks, len(DOWN))
        assert zone_store.puts == {"MeshTrafficPermission": 2}
        assert zone_store.deletes == {"MeshTrafficPermission": 1}
        shown = {copy_name(True, n, "default", None) for n in ("a", "b", "d")}
        assert await names(zone_store, "MeshTrafficPermission") == shown


async def test_what_upstream_no_longer_has_is_deleted_on_the_first_response() -> None:
    global_store, zone_store = MemoryStore(), MemoryStore()
    await put(global_store, mesh("default"))
    await put(global_store, mtp("default", "kept"))
    receiver = ZoneReceiver(zone_store, DOWN)
    # a stale copy from an earlier life (no version kept for it by anyone) and a local mesh
    stale = {
        **mtp("default", "stale"),
        "labels": {wire.ORIGIN_LABEL: "global", wire.DISPLAY_NAME_LABEL: "stale"},
    }
    stale["name"] = copy_name(True, "stale", "default", None)
    await put(zone_store, mesh("default"))
    await put(zone_store, stale)
    source = StoreSource(global_store, DOWN, wire.ORIGIN_GLOBAL)
    async with running(source), link(source, receiver, DOWN) as (callbacks, _):
        await settled(callbacks, len(DOWN))
    assert await names(zone_store, "MeshTrafficPermission") == {
        copy_name(True, "kept", "default", None)
    }
    default = await zone_store.get("Mesh", "", "default")
    assert default is not None and default.spec["labels"][wire.ORIGIN_LABEL] == "global"


async def test_a_policy_before_its_mesh_is_kept_until_the_mesh_arrives() -> None:
    zone_store = MemoryStore()
    receiver = ZoneReceiver(zone_store, DOWN)
    source_store = MemoryStore()
    await put(source_store, mesh("late"))
    await put(source_store, mtp("late", "p"))
    source = StoreSource(source_store, DOWN, wire.ORIGIN_GLOBAL)
    async with running(source):
        snapshot = source.get_snapshot("z")
        assert snapshot is not None

        def update(type_url: str) -> Update:
            packed, versions = snapshot.packed(type_url), snapshot.resource_versions(type_url)
            from envoy.service.discovery.v3 import discovery_pb2

            changed = {
                k: discovery_pb2.Resource(name=k, version=versions[k], resource=v)
                for k, v in packed.items()
            }
            return Update(type_url, "1", changed, (), None)

        failed = await receiver.apply(update("MeshTrafficPermission"))
        assert "does not exist: kept" in failed["late/p"]
        assert await receiver.apply(update("Mesh")) == {}
    assert await names(zone_store, "MeshTrafficPermission", "late") == {
        copy_name(True, "p", "late", None)
    }


async def test_zone_to_global_keeps_zones_apart_and_trusts_the_stream() -> None:
    global_store = MemoryStore()
    await put(global_store, mesh("default"))
    zone_a, zone_b = MemoryStore(), MemoryStore()
    await put(zone_a, dataplane("web-1"))
    await put(zone_b, dataplane("web-1"))
    await put(zone_b, dataplane("liar", zone="zone-a"))
    sources = [StoreSource(s, UP, wire.ORIGIN_ZONE) for s in (zone_a, zone_b)]
    receivers = [GlobalReceiver(global_store, UP, z) for z in ("zone-a", "zone-b")]
    async with running(sources[0]), running(sources[1]):
        async with (
            link(sources[0], receivers[0], UP) as (cb_a, _),
            link(sources[1], receivers[1], UP) as (cb_b, _),
        ):
            await settled(cb_a, len(UP))
            await settled(cb_b, len(UP))
    stored = {r.name: r.spec for r in await global_store.list("Dataplane", "default")}
    a, b = (
        copy_name(True, "web-1", "default", "zone-a"),
        copy_name(True, "web-1", "default", "zone-b"),
    )
    assert set(stored) == {a, b}  # the liar was rejected
    assert stored[a]["labels"][wire.ZONE_LABEL] == "zone-a"
    assert stored[b]["labels"][wire.ZONE_LABEL] == "zone-b"
    assert stored[b]["labels"][wire.ORIGIN_LABEL] == "zone"
    (nack,) = cb_b.nacks
    assert "comes from zone zone-b" in nack.resources["default/liar"]


async def test_copies_are_never_sent_back() -> None:
    zone_store = MemoryStore()
    await put(zone_store, dataplane("own"))
    copy = {**mesh("default"), "labels": {wire.ORIGIN_LABEL: "global"}}
    await put(zone_store, copy)
    source = StoreSource(zone_store, [*UP, REGISTRY["Mesh"]], wire.ORIGIN_ZONE)
    async with running(source):
        snapshot = source.get_snapshot("g")
        assert snapshot is not None
        assert set(snapshot.packed("Dataplane")) == {"default/own"}
        assert set(snapshot.packed("Mesh")) == set()
