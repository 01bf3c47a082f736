"""The store conformance suite: what every ``Store`` backend must do, as pytest tests.

A backend runs it with one line in a test module::

    TestMemoryStore = store_conformance_suite(lambda tmp_path: MemoryStore())

The factory gets pytest's ``tmp_path`` and returns a new, empty store (or an awaitable of
one); the suite closes it. Change events are awaited with a deadline, never assumed to be
there at once, so a backend whose feed is asynchronous (a shared database) passes too.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kumadp.cp.store.base import ConflictError, Store, StoreError
from kumadp.cp.store.feed import ChangeSubscription
from kumadp.cp.store.records import ChangeEvent

DP = "Dataplane"
MESH = "Mesh"
EVENT_TIMEOUT = 5.0

StoreFactory = Callable[[Path], Store | Awaitable[Store]]


def dp_spec(mesh: str, name: str, port: int = 8080) -> dict[str, object]:
    return {
        "type": DP,
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "tags": {"kuma.io/service": name}}],
        },
    }


async def collect(sub: ChangeSubscription, count: int) -> list[ChangeEvent]:
    """The next ``count`` events of ``sub``; fails after ``EVENT_TIMEOUT`` seconds."""
    events: list[ChangeEvent] = []
    async with asyncio.timeout(EVENT_TIMEOUT):
        while len(events) < count:
            event = await sub.next()
            assert event is not None, "the subscription was closed"
            events.append(event)
    return events


def ops(events: list[ChangeEvent]) -> list[tuple[str, str, str, str]]:
    return [(e.op, e.type, e.mesh, e.name) for e in events]


class StoreConformance:
    """The suite; ``store_conformance_suite`` makes a runnable subclass of it."""

    factory: StoreFactory

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        made = type(self).factory(tmp_path)
        s = await made if inspect.isawaitable(made) else made
        try:
            yield s
        finally:
            await s.close()

    @pytest.fixture
    def sub(self, store: Store) -> ChangeSubscription:
        return store.changes()

    async def test_create_and_get(self, store: Store, sub: ChangeSubscription) -> None:
        assert await store.get(DP, "default", "web") is None
        res, created = await store.put(DP, "default", "web", dp_spec("default", "web"))
        assert created
        assert res.version == 1
        assert (res.type, res.mesh, res.name) == (DP, "default", "web")
        assert res.spec == dp_spec("default", "web")
        assert res.creation_time == res.modification_time
        offset = res.creation_time.utcoffset()
        assert offset is not None and offset.total_seconds() == 0
        assert await store.get(DP, "default", "web") == res
        events = await collect(sub, 1)
        assert ops(events) == [("create", DP, "default", "web")]
        assert events[0].resource == res

    async def test_update_bumps_version_keeps_creation_time(
        self, store: Store, sub: ChangeSubscription
    ) -> None:
        first, _ = await store.put(DP, "default", "web", dp_spec("default", "web", 1))
        second, created = await store.put(DP, "default", "web", dp_spec("default", "web", 2))
        third, _ = await store.put(DP, "default", "web", dp_spec("default", "web", 3))
        assert not created
        assert (first.version, second.version, third.version) == (1, 2, 3)
        assert third.creation_time == first.creation_time
        assert third.modification_time >= second.modification_time >= first.modification_time
        assert third.spec["networking"]["inbound"][0]["port"] == 3  # type: ignore[index]
        got = await store.get(DP, "default", "web")
        assert got is not None and got.version == 3 and got.spec == third.spec
        events = await collect(sub, 3)
        assert [e.op for e in events] == ["create", "update", "update"]
        assert events[-1].resource == third

    async def test_identical_put_is_a_noop(self, store: Store, sub: ChangeSubscription) -> None:
        first, _ = await store.put(DP, "default", "web", dp_spec("default", "web"))
        # Same document, keys in another order: still identical.
        reordered = dict(reversed(list(dp_spec("default", "web").items())))
        again, created = await store.put(DP, "default", "web", reordered)
        assert not created
        assert again == first
        await store.delete(DP, "default", "web")
        # Events of one resource are ordered: a spurious update would come before the delete.
        assert [e.op for e in await collect(sub, 2)] == ["create", "delete"]

    async def test_true_and_one_are_different_specs(self, store: Store) -> None:
        await store.put(MESH, "", "m", {"type": MESH, "name": "m", "x": 1})
        res, _ = await store.put(MESH, "", "m", {"type": MESH, "name": "m", "x": True})
        assert res.version == 2
        assert res.spec["x"] is True

    async def test_caller_mutation_does_not_leak_into_store(self, store: Store) -> None:
        spec = dp_spec("default", "web")
        await store.put(DP, "default", "web", spec)
        spec["name"] = "changed"
        got = await store.get(DP, "default", "web")
        assert got is not None and got.spec["name"] == "web"

    async def test_expected_version(self, store: Store, sub: ChangeSubscription) -> None:
        res, created = await store.put(DP, "m", "a", dp_spec("m", "a"), expected_version=0)
        assert created and res.version == 1
        with pytest.raises(ConflictError):
            await store.put(DP, "m", "a", dp_spec("m", "a", 2), expected_version=0)
        with pytest.raises(ConflictError):
            await store.put(DP, "m", "a", dp_spec("m", "a", 2), expected_version=5)
        with pytest.raises(ConflictError):
            await store.put(DP, "m", "missing", dp_spec("m", "missing"), expected_version=1)
        res, created = await store.put(DP, "m", "a", dp_spec("m", "a", 2), expected_version=1)
        assert not created and res.version == 2
        got = await store.get(DP, "m", "a")
        assert got is not None and got.version == 2
        assert await store.get(DP, "m", "missing") is None
        await store.delete(DP, "m", "a")
        assert [e.op for e in await collect(sub, 3)] == ["create", "update", "delete"]

    async def test_list_ordering_and_mesh_filter(self, store: Store) -> None:
        for mesh, name in [("m2", "b"), ("m1", "z"), ("m2", "a"), ("m1", "a"), ("", "g")]:
            await store.put(DP, mesh, name, dp_spec(mesh, name))
        await store.put(MESH, "", "m1", {"type": MESH, "name": "m1"})
        everything = await store.list(DP)
        assert [(r.mesh, r.name) for r in everything] == [
            ("", "g"),
            ("m1", "a"),
            ("m1", "z"),
            ("m2", "a"),
            ("m2", "b"),
        ]
        assert [r.name for r in await store.list(DP, "m2")] == ["a", "b"]
        assert await store.list(DP, "nope") == []
        assert [r.name for r in await store.list(MESH)] == ["m1"]
        assert [r.name for r in await store.list(MESH, "")] == ["m1"]
        assert await store.list("Unknown") == []

    async def test_same_name_in_different_meshes_and_types(self, store: Store) -> None:
        await store.put(DP, "a", "x", dp_spec("a", "x", 1))
        await store.put(DP, "b", "x", dp_spec("b", "x", 2))
        await store.put(MESH, "", "x", {"type": MESH, "name": "x"})
        a = await store.get(DP, "a", "x")
        b = await store.get(DP, "b", "x")
        m = await store.get(MESH, "", "x")
        assert a is not None and b is not None and m is not None
        assert a.spec["mesh"] == "a" and b.spec["mesh"] == "b" and m.type == MESH
        assert await store.delete(DP, "a", "x")
        assert await store.get(DP, "b", "x") is not None
        assert await store.get(MESH, "", "x") is not None

    async def test_delete(self, store: Store, sub: ChangeSubscription) -> None:
        await store.put(DP, "m", "a", dp_spec("m", "a"))
        assert await store.delete(DP, "m", "a") is True
        assert await store.get(DP, "m", "a") is None
        assert await store.delete(DP, "m", "a") is False
        # A re-created resource starts over at version 1.
        res, created = await store.put(DP, "m", "a", dp_spec("m", "a"))
        assert created and res.version == 1
        events = await collect(sub, 3)
        assert [(e.op, e.resource is None) for e in events] == [
            ("create", False),
            ("delete", True),
            ("create", False),
        ]

    async def test_event_comes_after_commit(self, store: Store, sub: ChangeSubscription) -> None:
        for port in (1, 2, 3):
            await store.put(DP, "m", "a", dp_spec("m", "a", port))
            (event,) = await collect(sub, 1)
            assert event.resource is not None
            got = await store.get(DP, "m", "a")
            assert got is not None and got.version >= event.resource.version

    async def test_subscriptions_are_independent(self, store: Store) -> None:
        first, second = store.changes(), store.changes()
        await store.put(DP, "m", "a", dp_spec("m", "a"))
        second.close()
        await store.put(DP, "m", "b", dp_spec("m", "b"))
        assert [e.name for e in await collect(first, 2)] == ["a", "b"]
        assert await second.next() is None  # closed: nothing more, no waiting
        late = store.changes()  # sees only what comes after it
        await store.delete(DP, "m", "a")
        assert ops(await collect(late, 1)) == [("delete", DP, "m", "a")]

    async def test_a_subscription_may_pick_types(self, store: Store) -> None:
        meshes = store.changes([MESH])
        await store.put(DP, "m", "a", dp_spec("m", "a"))
        await store.put(MESH, "", "m", {"type": MESH, "name": "m"})
        await store.delete(DP, "m", "a")
        await store.delete(MESH, "", "m")
        assert ops(await collect(meshes, 2)) == [
            ("create", MESH, "", "m"),
            ("delete", MESH, "", "m"),
        ]

    async def test_close_ends_subscriptions(self, store: Store, sub: ChangeSubscription) -> None:
        waiter = asyncio.ensure_future(sub.next())
        await store.close()
        async with asyncio.timeout(EVENT_TIMEOUT):
            assert await waiter is None

    async def test_non_json_spec_is_refused(self, store: Store) -> None:
        with pytest.raises(StoreError):
            await store.put(DP, "m", "a", {"bad": object()})
        assert await store.get(DP, "m", "a") is None

    async def test_closed_store_refuses_calls(self, store: Store) -> None:
        await store.close()
        with pytest.raises(StoreError):
            await store.get(DP, "m", "a")


def store_conformance_suite(factory: StoreFactory) -> type[StoreConformance]:
    """A pytest test class running the whole suite on stores made by ``factory``."""
    return type("TestStoreConformance", (StoreConformance,), {"factory": staticmethod(factory)})


__all__ = [
    "StoreConformance",
    "StoreFactory",
    "collect",
    "dp_spec",
    "store_conformance_suite",
]
