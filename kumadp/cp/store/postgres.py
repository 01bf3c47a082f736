"""The PostgreSQL store: several control plane instances on one database.

- Documents as JSON text in ``kumadp_resources`` (key order kept, as the other backends), one
  row per ``(type, mesh, name)`` with its version and times.
- ``put`` reads the row ``FOR UPDATE`` and writes in the same transaction, so versions are
  strictly sequential across instances and ``expected_version`` (compare-and-swap) holds
  between them; two creates racing on one key: the second sees the first and conflicts
  or updates.
- Change events: a NOTIFY in the writing transaction, heard by every instance (this one
  too) after the commit (``kumadp.cp.store.postgres_feed``).
- A connection pool (psycopg 3, ``--postgres-max-open-connections`` minus the listener's and
  the leader lease's);
  a pooled connection is checked before use, so a restarted PostgreSQL costs failed calls
  only while it is down.
- Leader-only writes (``kumadp.cp.store.fence``) run their fence inside the write's
  transaction: it commits only while this instance holds the leader lease
  (``kumadp.cp.store.postgres_election``).

``open()`` must be awaited before use: it connects, checks the schema version (see
``kumadp.cp.store.postgres_schema``) and starts listening.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from kumadp.cp.store.base import StoredResource, StoreError
from kumadp.cp.store.feed import ChangeFeed, ChangeSubscription
from kumadp.cp.store.fence import Fence, current_fence
from kumadp.cp.store.memory import canonical_json, check_expected_version, encode_spec
from kumadp.cp.store.postgres_feed import ChangeListener, encode_change
from kumadp.cp.store.postgres_schema import CHANGES_CHANNEL, RESOURCES_TABLE, check_schema
from kumadp.cp.store.postgres_settings import PostgresSettings

log = logging.getLogger(__name__)

POOL_WAIT = 3.0  # seconds
_T = RESOURCES_TABLE
_KEY = "type=%s AND mesh=%s AND name=%s"


class _Retry(Exception):
    """A concurrent create won the race: read again."""


class PostgresStore:
    """A ``Store`` on PostgreSQL; see the module docstring."""

    def __init__(self, settings: PostgresSettings, *, open_timeout: float = 30.0) -> None:
        from psycopg_pool import AsyncConnectionPool

        settings.check()
        self.settings = settings
        self._conninfo = settings.conninfo()
        self._open_timeout = open_timeout
        self._pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=max(1, settings.max_open_connections - 2),
            open=False,
            check=AsyncConnectionPool.check_connection,
            name="kumadp-store",
            # a call waits this long for a connection, then fails (database down: the API
            # answers 503 and components retry, instead of hanging)
            timeout=POOL_WAIT,
        )
        self._feed = ChangeFeed()
        self._listener = ChangeListener(self._conninfo, self._feed, self.get)
        self._state = "new"  # new -> open -> closed

    @property
    def conninfo(self) -> str:
        return self._conninfo

    @property
    def listening(self) -> bool:
        """Whether change events are being heard right now."""
        return self._listener.connected

    async def open(self) -> None:
        """Connect, check the schema, start listening. Raises StoreError (one line)."""
        from psycopg_pool import PoolTimeout

        if self._state != "new":
            return
        where = self.settings.describe()
        try:
            await self._pool.open(wait=True, timeout=self._open_timeout)
        except PoolTimeout:
            await self._pool.close()
            self._state = "closed"
            raise StoreError(
                f"cannot connect to PostgreSQL at {where} within {self._open_timeout:.0f}s"
            ) from None
        try:
            async with self.connection() as conn:
                await check_schema(conn)
            await self._listener.start()
        except BaseException:
            await self._pool.close()
            self._state = "closed"
            raise
        self._state = "open"
        log.info("opened the PostgreSQL store %s", where)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; database failures become one-line StoreErrors."""
        import psycopg
        from psycopg_pool import PoolTimeout

        if self._state == "closed":
            raise StoreError("store is closed")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(f"PostgreSQL unavailable: {exc}") from exc
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"PostgreSQL: {first}") from exc

    # -- reads -----------------------------------------------------------------------------
    async def get(self, type: str, mesh: str, name: str) -> StoredResource | None:
        async with self.connection() as conn:
            cur = await conn.execute(
                f"SELECT spec, version, creation_time, modification_time FROM {_T} WHERE {_KEY}",
                (type, mesh, name),
            )
            row = await cur.fetchone()
        return _resource(type, mesh, name, row) if row else None

    async def list(self, type: str, mesh: str | None = None) -> list[StoredResource]:
        columns = "mesh, name, spec, version, creation_time, modification_time"
        async with self.connection() as conn:
            if mesh is None:
                cur = await conn.execute(
                    f"SELECT {columns} FROM {_T} WHERE type=%s ORDER BY mesh, name", (type,)
                )
            else:
                cur = await conn.execute(
                    f"SELECT {columns} FROM {_T} WHERE type=%s AND mesh=%s ORDER BY name",
                    (type, mesh),
                )
            rows = await cur.fetchall()
        return [_resource(type, r[0], r[1], r[2:]) for r in rows]

    # -- writes ----------------------------------------------------------------------------
    async def put(
        self,
        type: str,
        mesh: str,
        name: str,
        spec: dict[str, Any],
        expected_version: int | None = None,
    ) -> tuple[StoredResource, bool]:
        fence = current_fence()
        text = encode_spec(spec)
        new_spec = json.loads(text)
        while True:
            try:
                return await self._put_once(
                    (type, mesh, name), text, new_spec, expected_version, fence
                )
            except _Retry:
                continue

    async def _put_once(
        self,
        key: tuple[str, str, str],
        text: str,
        new_spec: dict[str, Any],
        expected_version: int | None,
        fence: Fence | None,
    ) -> tuple[StoredResource, bool]:
        type, mesh, name = key
        async with self.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT spec, version, creation_time, modification_time FROM {_T} "
                f"WHERE {_KEY} FOR UPDATE",
                key,
            )
            row = await cur.fetchone()
            current = _resource(type, mesh, name, row) if row else None
            check_expected_version(type, mesh, name, current, expected_version)
            if current is not None and canonical_json(current.spec) == canonical_json(new_spec):
                return current, False
            if fence is not None:
                await fence(conn)
            now = datetime.now(UTC)
            if current is None:
                stored = StoredResource(type, mesh, name, new_spec, 1, now, now)
                cur = await conn.execute(
                    f"INSERT INTO {_T} (type, mesh, name, spec, version, creation_time, "
                    "modification_time) VALUES (%s, %s, %s, %s, 1, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (*key, text, now, now),
                )
                if cur.rowcount == 0:
                    raise _Retry
                op = "create"
            else:
                stored = StoredResource(
                    type, mesh, name, new_spec, current.version + 1, current.creation_time, now
                )
                await conn.execute(
                    f"UPDATE {_T} SET spec=%s, version=%s, modification_time=%s WHERE {_KEY}",
                    (text, stored.version, now, *key),
                )
                op = "update"
            await _notify(conn, encode_change(op, stored, key))
        return stored, current is None

    async def delete(self, type: str, mesh: str, name: str) -> bool:
        fence = current_fence()
        key = (type, mesh, name)
        async with self.connection() as conn, conn.transaction():
            if fence is not None:
                await fence(conn)
            cur = await conn.execute(f"DELETE FROM {_T} WHERE {_KEY}", key)
            if cur.rowcount == 0:
                return False
            await _notify(conn, encode_change("delete", None, key))
        return True

    # -- the feed and the end ----------------------------------------------------------------
    def changes(self, types: Iterable[str] | None = None) -> ChangeSubscription:
        return self._feed.subscribe(types)

    async def close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        self._feed.close()
        await self._listener.stop()
        await self._pool.close()
        log.debug("closed the PostgreSQL store")


async def _notify(conn: Any, payload: str) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, payload))


def _resource(type: str, mesh: str, name: str, row: Any) -> StoredResource:
    spec, version, created, modified = row
    return StoredResource(
        type=type,
        mesh=mesh,
        name=name,
        spec=json.loads(spec),
        version=int(version),
        creation_time=created.astimezone(UTC),
        modification_time=modified.astimezone(UTC),
    )


__all__ = ["PostgresStore"]
