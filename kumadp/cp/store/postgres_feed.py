"""The PostgreSQL store's change feed: LISTEN/NOTIFY, so that every instance hears of every
write, its own included.

A write sends ``NOTIFY kumadp_changes`` in its own transaction, so PostgreSQL delivers it
only after the commit, to every listening session, in commit order. The payload is a small
JSON object (``encode_change``): the operation, the key, the version and times and, when the
whole fits in PostgreSQL's 8000-byte limit, the document itself; a larger document is read
back from the table (``fetch``), which then may already be newer (allowed by the feed
contract: "that change or a later one").

One dedicated connection listens. When it is lost (PostgreSQL restarted, network cut: TCP
keepalives tell within seconds), the listener reconnects with backoff, LISTENs again and then
publishes ``RESYNC``: whatever was committed meanwhile was not heard, so every consumer
reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kumadp.cp.store.base import ChangeEvent, StoredResource, StoreError
from kumadp.cp.store.feed import ChangeFeed
from kumadp.cp.store.postgres_schema import CHANGES_CHANNEL
from kumadp.lifecycle import Backoff

log = logging.getLogger(__name__)

MAX_PAYLOAD = 7900  # bytes; PostgreSQL refuses a NOTIFY payload of 8000 or more

Fetch = Callable[[str, str, str], Awaitable[StoredResource | None]]


def encode_change(op: str, stored: StoredResource | None, key: tuple[str, str, str]) -> str:
    """The NOTIFY payload of a committed change (``stored`` None for a delete)."""
    type_, mesh, name = key
    doc: dict[str, Any] = {"o": op, "t": type_, "m": mesh, "n": name}
    if stored is None:
        return json.dumps(doc, separators=(",", ":"))
    doc["v"] = stored.version
    doc["c"] = stored.creation_time.isoformat()
    doc["u"] = stored.modification_time.isoformat()
    with_spec = json.dumps({**doc, "s": stored.spec}, separators=(",", ":"), ensure_ascii=False)
    if len(with_spec.encode()) <= MAX_PAYLOAD:
        return with_spec
    return json.dumps(doc, separators=(",", ":"))


async def decode_change(payload: str, fetch: Fetch) -> ChangeEvent | None:
    """The change event of a NOTIFY payload; None when it is not one of ours, or when a
    large document was deleted before it could be read (its delete event follows)."""
    try:
        doc = json.loads(payload)
        op, type_, mesh, name = doc["o"], doc["t"], doc["m"], doc["n"]
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed change notification")
        return None
    if op == "delete":
        return ChangeEvent(op="delete", type=type_, mesh=mesh, name=name, resource=None)
    if op not in ("create", "update"):
        return None
    if "s" in doc:
        resource: StoredResource | None = StoredResource(
            type=type_,
            mesh=mesh,
            name=name,
            spec=doc["s"],
            version=int(doc["v"]),
            creation_time=_time(doc["c"]),
            modification_time=_time(doc["u"]),
        )
    else:
        resource = await fetch(type_, mesh, name)
        if resource is None:
            return None
    return ChangeEvent(op=op, type=type_, mesh=mesh, name=name, resource=resource)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


class ChangeListener:
    """LISTENs on its own connection and publishes to ``feed``; see the module docstring."""

    def __init__(self, conninfo: str, feed: ChangeFeed, fetch: Fetch) -> None:
        self._conninfo = conninfo
        self._feed = feed
        self._fetch = fetch
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(0.1, 2.0, jitter=0.2)
        self.connected = False
        self.reconnects = 0

    async def start(self) -> None:
        """Listen before returning (a write after this is heard); raises StoreError."""
        try:
            await self._listen()
        except Exception as exc:
            raise StoreError(f"cannot listen for changes on PostgreSQL: {exc}") from exc
        self._task = asyncio.create_task(self._run(), name="postgres-change-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_connection()

    async def _listen(self) -> None:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        try:
            await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self.connected = True

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        self.connected = False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._pump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lost the PostgreSQL change-event connection (%s); reconnecting", exc)
            await self._close_connection()
            await self._reconnect()

    async def _pump(self) -> None:
        async for notify in self._conn.notifies():
            event = await decode_change(notify.payload, self._fetch)
            if event is not None:
                self._feed.publish(event)
        raise StoreError("the notification stream ended")

    async def _reconnect(self) -> None:
        self._backoff.reset()
        while True:
            await asyncio.sleep(self._backoff.next())
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("PostgreSQL not reachable yet for change events: %s", exc)
                continue
            self.reconnects += 1
            log.info("listening for PostgreSQL change events again; every consumer resyncs")
            self._feed.resync()
            return


__all__ = ["MAX_PAYLOAD", "ChangeListener", "decode_change", "encode_change"]
