"""The store conformance suite (testkit.store_conformance) on every backend, the change
feed's own rules, and SQLite-specific durability checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kumadp.cp.store import (
    RESYNC,
    ChangeEvent,
    ChangeFeed,
    MemoryStore,
    SqliteStore,
    StoreError,
    following,
    open_store,
)
from testkit.procs import eventually
from testkit.store_conformance import DP, MESH, dp_spec, store_conformance_suite

TestMemoryStore = store_conformance_suite(lambda tmp_path: MemoryStore())
TestSqliteStore = store_conformance_suite(lambda tmp_path: SqliteStore(tmp_path / "s.db"))


# --- the change feed ----------------------------------------------------------------------


def _event(name: str) -> ChangeEvent:
    return ChangeEvent(op="create", type=DP, mesh="m", name=name, resource=None)


async def test_a_consumer_that_falls_behind_gets_one_resync() -> None:
    feed = ChangeFeed(max_pending=3)
    slow, fast = feed.subscribe(), feed.subscribe()
    for n in range(3):
        feed.publish(_event(str(n)))
    assert [e.name for e in fast.drain()] == ["0", "1", "2"]
    feed.publish(_event("3"))  # slow has 3 pending: it loses them and must reload
    feed.publish(_event("4"))
    assert slow.drain() == [RESYNC, _event("4")]
    assert [e.name for e in fast.drain()] == ["3", "4"]


async def test_resync_reaches_every_consumer_and_close_ends_them() -> None:
    feed = ChangeFeed()
    subs = [feed.subscribe(), feed.subscribe(types=["Mesh"])]
    feed.resync()
    assert [await s.next() for s in subs] == [RESYNC, RESYNC]
    assert RESYNC.is_resync
    feed.close()
    assert [await s.next() for s in subs] == [None, None]
    assert len(feed) == 0


async def test_following_calls_the_handler_and_survives_its_errors() -> None:
    store = MemoryStore()
    seen: list[str] = []

    def handle(event: ChangeEvent) -> None:
        if event.name == "bad":
            raise RuntimeError("handler bug")
        seen.append(event.name)

    async with following(store, handle):
        for name in ("a", "bad", "b"):
            await store.put(DP, "m", name, dp_spec("m", name))

        async def both_seen() -> bool:
            return seen == ["a", "b"]

        await eventually(both_seen, "the handler saw a and b", within=5, interval=0.01)
    await store.put(DP, "m", "c", dp_spec("m", "c"))  # no longer followed
    assert seen == ["a", "b"]
    await store.close()


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

    sub = s.changes()
    try:
        await s.put(DP, "m", "a", dp_spec("m", "a"))
        for event in sub.drain():
            listener(event)
        await s.put(DP, "m", "a", dp_spec("m", "a", 2))
        for event in sub.drain():
            listener(event)
        await s.delete(DP, "m", "a")
        for event in sub.drain():
            listener(event)
    finally:
        await s.close()
    assert seen_by_other_connection == [1, 2, None]


def test_sqlite_unopenable_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        SqliteStore(tmp_path / "missing-dir" / "kumadp.db")


# --- open_store -------------------------------------------------------------------------


async def test_open_store_memory() -> None:
    s = await open_store("memory", None)
    assert isinstance(s, MemoryStore)
    await s.close()


async def test_open_store_sqlite_creates_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    s = await open_store("sqlite", data_dir)
    try:
        assert isinstance(s, SqliteStore)
        await s.put(MESH, "", "m", {"type": MESH, "name": "m"})
    finally:
        await s.close()
    assert (data_dir / "kumadp.db").is_file()


async def test_open_store_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown store kind 'etcd'.*memory, sqlite, postgres"):
        await open_store("etcd", None)


async def test_open_store_sqlite_needs_dir() -> None:
    with pytest.raises(ValueError, match="data directory"):
        await open_store("sqlite", None)
