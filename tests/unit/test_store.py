"""One conformance suite for every store backend, plus SQLite-specific durability checks."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumadp.cp.store import (
    ChangeEvent,
    ConflictError,
    MemoryStore,
    SqliteStore,
    Store,
    StoreError,
    open_store,
)

DP = "Dataplane"
MESH = "Mesh"


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


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield s
    await s.close()


@pytest.fixture
def events(store: Store) -> list[ChangeEvent]:
    received: list[ChangeEvent] = []
    store.subscribe(received.append)
    return received


async def test_create_and_get(store: Store, events: list[ChangeEvent]) -> None:
    assert await store.get(DP, "default", "web") is None
    res, created = await store.put(DP, "default", "web", dp_spec("default", "web"))
    assert created
    assert res.version == 1
    assert (res.type, res.mesh, res.name) == (DP, "default", "web")
    assert res.spec == dp_spec("default", "web")
    assert res.creation_time == res.modification_time
    assert res.creation_time.utcoffset() is not None
    assert res.creation_time.utcoffset().total_seconds() == 0  # type: ignore[union-attr]

    got = await store.get(DP, "default", "web")
    assert got == res
    assert [(e.op, e.type, e.mesh, e.name) for e in events] == [("create", DP, "default", "web")]
    assert events[0].resource == res


async def test_update_bumps_version_keeps_creation_time(
    store: Store, events: list[ChangeEvent]
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
    assert [e.op for e in events] == ["create", "update", "update"]
    assert events[-1].resource == third


async def test_identical_put_is_a_noop(store: Store, events: list[ChangeEvent]) -> None:
    first, _ = await store.put(DP, "default", "web", dp_spec("default", "web"))
    # Same document, keys in another order: still identical.
    reordered = dict(reversed(list(dp_spec("default", "web").items())))
    again, created = await store.put(DP, "default", "web", reordered)
    assert not created
    assert again == first
    assert [e.op for e in events] == ["create"]


async def test_true_and_one_are_different_specs(store: Store) -> None:
    await store.put(MESH, "", "m", {"type": MESH, "name": "m", "x": 1})
    res, _ = await store.put(MESH, "", "m", {"type": MESH, "name": "m", "x": True})
    assert res.version == 2
    assert res.spec["x"] is True


async def test_caller_mutation_does_not_leak_into_store(store: Store) -> None:
    spec = dp_spec("default", "web")
    await store.put(DP, "default", "web", spec)
    spec["name"] = "changed"
    got = await store.get(DP, "default", "web")
    assert got is not None and got.spec["name"] == "web"


async def test_expected_version(store: Store, events: list[ChangeEvent]) -> None:
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
    assert [e.op for e in events] == ["create", "update"]


async def test_list_ordering_and_mesh_filter(store: Store) -> None:
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


async def test_same_name_in_different_meshes_and_types(store: Store) -> None:
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


async def test_delete(store: Store, events: list[ChangeEvent]) -> None:
    await store.put(DP, "m", "a", dp_spec("m", "a"))
    assert await store.delete(DP, "m", "a") is True
    assert await store.get(DP, "m", "a") is None
    assert await store.delete(DP, "m", "a") is False
    assert [(e.op, e.resource is None) for e in events] == [("create", False), ("delete", True)]
    # A re-created resource starts over at version 1.
    res, created = await store.put(DP, "m", "a", dp_spec("m", "a"))
    assert created and res.version == 1


async def test_unsubscribe_and_failing_listener(store: Store) -> None:
    seen: list[str] = []

    def broken(event: ChangeEvent) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    unsubscribe = store.subscribe(lambda e: seen.append(e.name))
    await store.put(DP, "m", "a", dp_spec("m", "a"))
    unsubscribe()
    await store.put(DP, "m", "b", dp_spec("m", "b"))
    assert seen == ["a"]
    assert await store.get(DP, "m", "b") is not None


async def test_non_json_spec_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.put(DP, "m", "a", {"bad": object()})
    assert await store.get(DP, "m", "a") is None


async def test_closed_store_refuses_calls(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError):
        await store.get(DP, "m", "a")


# --- SQLite specifics -------------------------------------------------------------------


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "kumadp.db"
    first = SqliteStore(path)
    created, _ = await first.put(DP, "m", "a", dp_spec("m", "a"))
    updated, _ = await first.put(DP, "m", "a", dp_spec("m", "a", 9))
    await first.put(MESH, "", "m", {"type": MESH, "name": "m"})
    await first.close()

    second = SqliteStore(path)
    try:
        got = await second.get(DP, "m", "a")
        assert got is not None
        assert got == updated
        assert got.version == 2
        assert got.creation_time == created.creation_time
        assert got.creation_time.tzinfo is not None
        assert [r.name for r in await second.list(MESH)] == ["m"]
        res, _ = await second.put(DP, "m", "a", dp_spec("m", "a", 10))
        assert res.version == 3
    finally:
        await second.close()


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "kumadp.db"
    s = SqliteStore(path)
    await s.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_sqlite_event_is_emitted_after_commit(tmp_path: Path) -> None:
    path = tmp_path / "kumadp.db"
    s = SqliteStore(path)
    seen_by_other_connection: list[object] = []

    def listener(event: ChangeEvent) -> None:
        # Another connection only sees committed data.
        conn = sqlite3.connect(path)
        try:
            row = conn.execute(
                "SELECT version FROM resources WHERE type=? AND mesh=? AND name=?",
                (event.type, event.mesh, event.name),
            ).fetchone()
        finally:
            conn.close()
        seen_by_other_connection.append(row[0] if row else None)

    s.subscribe(listener)
    try:
        await s.put(DP, "m", "a", dp_spec("m", "a"))
        await s.put(DP, "m", "a", dp_spec("m", "a", 2))
        await s.delete(DP, "m", "a")
    finally:
        await s.close()
    assert seen_by_other_connection == [1, 2, None]


def test_sqlite_unopenable_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        SqliteStore(tmp_path / "missing-dir" / "kumadp.db")


# --- open_store -------------------------------------------------------------------------


async def test_open_store_memory() -> None:
    s = open_store("memory", None)
    assert isinstance(s, MemoryStore)
    await s.close()


async def test_open_store_sqlite_creates_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    s = open_store("sqlite", data_dir)
    try:
        assert isinstance(s, SqliteStore)
        await s.put(MESH, "", "m", {"type": MESH, "name": "m"})
    finally:
        await s.close()
    assert (data_dir / "kumadp.db").is_file()


def test_open_store_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown store kind 'etcd'.*memory, sqlite"):
        open_store("etcd", None)


def test_open_store_sqlite_needs_dir() -> None:
    with pytest.raises(ValueError, match="data directory"):
        open_store("sqlite", None)
