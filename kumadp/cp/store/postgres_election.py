"""Leader election on PostgreSQL: a lease row with a term, renewed by the leader.

One row in ``kumadp_leader_lease``: ``holder``, ``term``, ``expires_at``. Every instance runs
one statement every ``lease / 3`` seconds (candidates every 0.5 s at most) on a connection of
its own (a busy pool never delays a renewal): take the row when it has expired or is already
ours, pushing ``expires_at`` to the database's now + ``lease``; the term grows by one each
time the holder changes. The database's clock decides expiry, so the instances' clocks need
not agree.

This instance counts itself leader until its local deadline (when the renewal was *sent* +
90 % of the lease): a leader that cannot renew (database gone, process paused) steps down
before the row expires, and nobody takes over before it does. Leader-only writes carry a
fence: in their own transaction they re-read the row ``FOR SHARE`` and commit only if it still
names this holder and term and has not expired. A paused leader that wakes up after another
took over has a past local deadline and a stale term: its writes are refused twice over.

On a graceful stop the leader releases the row (expires it now), so another instance takes
over within half a second instead of a whole lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from kumadp.cp.store.base import NotLeaderError, Store
from kumadp.cp.store.fence import FencedStore
from kumadp.cp.store.postgres import PostgresStore
from kumadp.cp.store.postgres_schema import LEASE_TABLE
from kumadp.lifecycle import stopped_within

log = logging.getLogger(__name__)

LEASE_NAME = "control-plane-leader"
SAFETY = 0.9  # the share of the lease this instance trusts its own renewal for

_ACQUIRE = f"""
INSERT INTO {LEASE_TABLE} AS l (name, holder, term, expires_at)
VALUES (%(name)s, %(me)s, 1, clock_timestamp() + %(lease)s * interval '1 second')
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    term = CASE WHEN l.holder = EXCLUDED.holder THEN l.term ELSE l.term + 1 END,
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp()
RETURNING term
"""
_RELEASE = f"""
UPDATE {LEASE_TABLE} SET expires_at = clock_timestamp()
WHERE name = %(name)s AND holder = %(me)s AND term = %(term)s
"""
_FENCE = f"""
SELECT 1 FROM {LEASE_TABLE}
WHERE name = %(name)s AND holder = %(me)s AND term = %(term)s
  AND expires_at > clock_timestamp()
FOR SHARE
"""
_LEADER = f"SELECT holder FROM {LEASE_TABLE} WHERE name = %s AND expires_at > clock_timestamp()"


class PostgresElection:
    """Component: the lease of this instance (see the module docstring)."""

    name = "leader-election"

    def __init__(self, store: PostgresStore, instance_id: str, *, lease: float = 3.0) -> None:
        if lease <= 0:
            raise ValueError("leader lease must be positive")
        self._store = store
        self.instance_id = instance_id
        self.lease = lease
        self._conn: Any = None
        self._term: int | None = None
        self._deadline = 0.0  # time.monotonic() until which this instance may lead
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()
        self.terms_won = 0

    # -- what others ask -------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._term is not None and time.monotonic() < self._deadline

    @property
    def term(self) -> int | None:
        return self._term if self.is_leader else None

    async def wait_for(self, leader: bool) -> None:
        await (self._leading if leader else self._following).wait()

    async def leader_id(self) -> str | None:
        async with self._store.connection() as conn:
            cur = await conn.execute(_LEADER, (LEASE_NAME,))
            row = await cur.fetchone()
        return str(row[0]) if row else None

    def fenced(self, store: Store) -> Store:
        return FencedStore(store, lambda: self.is_leader, self._fence)

    async def _fence(self, conn: Any) -> None:
        term = self.term
        if term is None:
            raise NotLeaderError("write refused: this instance is not the leader")
        cur = await conn.execute(_FENCE, {"name": LEASE_NAME, "me": self.instance_id, "term": term})
        if await cur.fetchone() is None:
            raise NotLeaderError(
                f"write refused: this instance lost the leader lease (term {term})"
            )

    # -- the component ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self._attempt()
                if self.is_leader:
                    wait = min(self.lease / 3, self._deadline - time.monotonic())
                else:
                    wait = min(0.5, self.lease / 3)
                await stopped_within(stop, max(wait, 0.01))
                self._check_deadline()
        finally:
            await self._release()
            await self._close()

    async def _attempt(self) -> None:
        sent = time.monotonic()
        budget = (self._deadline - sent) if self.is_leader else self.lease / 2
        try:
            async with asyncio.timeout(max(budget, 0.1)):
                conn = await self._connection()
                cur = await conn.execute(
                    _ACQUIRE, {"name": LEASE_NAME, "me": self.instance_id, "lease": self.lease}
                )
                row = await cur.fetchone()
        except Exception as exc:
            level = logging.WARNING if self._term is not None else logging.DEBUG
            log.log(level, "leader lease: cannot reach PostgreSQL (%s)", exc or "timeout")
            await self._close()
            self._check_deadline()
            return
        if row is None:
            self._step_down("another instance holds the lease")
            return
        term = int(row[0])
        self._deadline = sent + self.lease * SAFETY
        if self._term != term:
            self._term = term
            self.terms_won += 1
            log.info("this instance (%s) is the leader now (term %d)", self.instance_id, term)
        self._following.clear()
        self._leading.set()

    def _check_deadline(self) -> None:
        if self._term is not None and time.monotonic() >= self._deadline:
            self._step_down("its lease was not renewed in time")

    def _step_down(self, why: str) -> None:
        if self._term is not None:
            log.warning("this instance (%s) is no longer the leader: %s", self.instance_id, why)
        self._term = None
        self._leading.clear()
        self._following.set()

    async def _release(self) -> None:
        term, self._term = self._term, None
        self._leading.clear()
        self._following.set()
        if term is None or self._conn is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._conn.execute(
                    _RELEASE, {"name": LEASE_NAME, "me": self.instance_id, "term": term}
                )
                log.info("released the leader lease (term %d)", term)

    async def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._store.conninfo, autocommit=True
            )
        return self._conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


__all__ = ["LEASE_NAME", "PostgresElection"]
