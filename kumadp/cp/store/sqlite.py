"""The default, durable store: one SQLite file (``<data-dir>/kumadp.db``).

WAL journal with ``synchronous=FULL``: a write that returned survives a crash of the process
or the machine. Each call runs synchronously inside its coroutine (a point query on a local
file takes microseconds) under a lock, so the store is safe even if a caller uses it from
several threads; change events go to the change feed after the commit, on the caller's (event
loop) thread.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kumadp.cp.store.base import (
    ChangeEvent,
    StoredResource,
    StoreError,
)
from kumadp.cp.store.feed import ChangeFeed, ChangeSubscription
from kumadp.cp.store.memory import canonical_json, check_expected_version, encode_spec

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    type TEXT NOT NULL,
    mesh TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    version INTEGER NOT NULL,
    creation_time TEXT NOT NULL,
    modification_time TEXT NOT NULL,
    PRIMARY KEY (type, mesh, name)
) WITHOUT ROWID
"""

_COLUMNS = "type, mesh, name, spec, version, creation_time, modification_time"

_Row = tuple[str, str, str, str, int, str, str]


def _from_row(row: _Row) -> StoredResource:
    type_, mesh, name, spec, version, created, modified = row
    return StoredResource(
        type=type_,
        mesh=mesh,
        name=name,
        spec=json.loads(spec),
        version=version,
        creation_time=_parse_time(created),
        modification_time=_parse_time(modified),
    )


def _format_time(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class SqliteStore:
    """A ``Store`` in one SQLite file, created with its schema on open.

    ``put`` of a spec identical to the stored one (same JSON up to key order) is a no-op: it
    returns the existing resource with ``created=False``, keeps its version and emits no
    event (so an idempotent re-apply does not push config to every proxy).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._feed = ChangeFeed()
        try:
            # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE).
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite store {self.path}: {e}") from e
        try:
            self._init_schema(conn)
        except BaseException as e:
            conn.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open SQLite store {self.path}: {e}") from e
            raise
        self._conn: sqlite3.Connection | None = conn
        log.debug("opened SQLite store %s", self.path)

    @staticmethod
    def _init_schema(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {found} is newer than this kumadp supports "
                f"({SCHEMA_VERSION})"
            )
        conn.execute(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is closed")
        return self._conn

    def _get_locked(
        self, conn: sqlite3.Connection, type: str, mesh: str, name: str
    ) -> StoredResource | None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM resources WHERE type=? AND mesh=? AND name=?",
            (type, mesh, name),
        ).fetchone()
        return _from_row(row) if row is not None else None

    async def get(self, type: str, mesh: str, name: str) -> StoredResource | None:
        with self._lock:
            return self._get_locked(self._connection(), type, mesh, name)

    async def list(self, type: str, mesh: str | None = None) -> list[StoredResource]:
        with self._lock:
            conn = self._connection()
            if mesh is None:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM resources WHERE type=? ORDER BY mesh, name",
                    (type,),
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM resources WHERE type=? AND mesh=? ORDER BY name",
                    (type, mesh),
                ).fetchall()
        return [_from_row(r) for r in rows]

    async def put(
        self,
        type: str,
        mesh: str,
        name: str,
        spec: dict[str, Any],
        expected_version: int | None = None,
    ) -> tuple[StoredResource, bool]:
        text = encode_spec(spec)
        new_spec = json.loads(text)
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = self._get_locked(conn, type, mesh, name)
                check_expected_version(type, mesh, name, current, expected_version)
                if current is not None and canonical_json(current.spec) == canonical_json(new_spec):
                    conn.execute("ROLLBACK")
                    return current, False
                now = datetime.now(UTC)
                if current is None:
                    stored = StoredResource(type, mesh, name, new_spec, 1, now, now)
                    conn.execute(
                        f"INSERT INTO resources ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (type, mesh, name, text, 1, _format_time(now), _format_time(now)),
                    )
                else:
                    stored = StoredResource(
                        type, mesh, name, new_spec, current.version + 1, current.creation_time, now
                    )
                    conn.execute(
                        "UPDATE resources SET spec=?, version=?, modification_time=? "
                        "WHERE type=? AND mesh=? AND name=?",
                        (text, stored.version, _format_time(now), type, mesh, name),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        created = current is None
        self._feed.publish(
            ChangeEvent(
                op="create" if created else "update",
                type=type,
                mesh=mesh,
                name=name,
                resource=stored,
            )
        )
        return stored, created

    async def delete(self, type: str, mesh: str, name: str) -> bool:
        with self._lock:
            cursor = self._connection().execute(
                "DELETE FROM resources WHERE type=? AND mesh=? AND name=?", (type, mesh, name)
            )
            deleted = cursor.rowcount > 0
        if deleted:
            self._feed.publish(
                ChangeEvent(op="delete", type=type, mesh=mesh, name=name, resource=None)
            )
        return deleted

    def changes(self, types: Iterable[str] | None = None) -> ChangeSubscription:
        return self._feed.subscribe(types)

    async def close(self) -> None:
        self._feed.close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                log.debug("closed SQLite store %s", self.path)


__all__ = ["SqliteStore"]
