"""Leader election: the lease on a real PostgreSQL (take-over, hand-over, fencing of a
paused leader), ``LeaderOnly`` and the single instance that always leads."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest

from kumadp.cp.election import AlwaysLeader
from kumadp.cp.runtime.leader_only import LeaderOnly, leader_only
from kumadp.cp.store import MemoryStore
from kumadp.cp.store.base import NotLeaderError
from kumadp.cp.store.fence import FencedStore
from kumadp.cp.store.postgres import PostgresStore
from kumadp.cp.store.postgres_election import PostgresElection
from kumadp.cp.store.postgres_schema import migrate_up
from kumadp.cp.store.postgres_settings import PostgresSettings
from testkit.leader_probe import PROBE_TYPE
from testkit.postgres import PostgresServer
from testkit.procs import ManagedProcess, until, wait_until

LEASE = 1.0


@pytest.fixture
async def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.dsn(postgres_server.database())
    await migrate_up(dsn)
    return dsn


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(PostgresSettings(dsn=dsn))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


class Running:
    """An election running as a task, stopped (gracefully) by ``stop()``."""

    def __init__(self, election: PostgresElection) -> None:
        self.election = election
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(election.run(self.stop_event))

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 5)


async def test_one_leader_and_a_hand_over_on_stop(store: PostgresStore) -> None:
    a = Running(PostgresElection(store, "a", lease=LEASE))
    await until(lambda: a.election.is_leader, "a leads", within=5)
    b = Running(PostgresElection(store, "b", lease=LEASE))
    try:
        await asyncio.sleep(LEASE)  # b had time to try: it must not lead while a renews
        assert not b.election.is_leader
        assert await b.election.leader_id() == "a"
        started = time.monotonic()
        await a.stop()  # releases the lease: b follows at its next attempt
        await until(lambda: b.election.is_leader, "b leads", within=5)
        assert time.monotonic() - started < 1.5
        assert await a.election.leader_id() == "b"
        assert b.election.term == 2
    finally:
        await b.stop()


async def test_a_leader_that_stops_renewing_is_replaced_after_the_lease(
    store: PostgresStore,
) -> None:
    a = Running(PostgresElection(store, "a", lease=LEASE))
    await until(lambda: a.election.is_leader, "a leads", within=5)
    a.task.cancel()  # like a process that died: no release, no renewal
    await asyncio.gather(a.task, return_exceptions=True)
    b = Running(PostgresElection(store, "b", lease=LEASE))
    try:
        started = time.monotonic()
        await until(lambda: b.election.is_leader, "b leads", within=5)
        assert time.monotonic() - started < LEASE + 1.0
        assert not a.election.is_leader  # its own deadline passed too
    finally:
        await b.stop()


async def test_the_store_refuses_a_stale_leaders_write(store: PostgresStore) -> None:
    """The fence in the write's transaction: a leader whose lease was taken over cannot
    write, even if it believes it still leads."""
    a = Running(PostgresElection(store, "a", lease=LEASE))
    await until(lambda: a.election.is_leader, "a leads", within=5)
    believes_it_leads = FencedStore(store, lambda: True, a.election._fence)
    spec = {"type": PROBE_TYPE, "name": "p", "n": 1}
    await believes_it_leads.put(PROBE_TYPE, "", "p", spec)
    a.task.cancel()
    await asyncio.gather(a.task, return_exceptions=True)
    a.election._term = 1  # it still thinks it holds term 1...
    a.election._deadline = time.monotonic() + 60  # ...for a long while
    b = Running(PostgresElection(store, "b", lease=LEASE))
    try:
        await until(lambda: b.election.is_leader, "b leads", within=5)
        with pytest.raises(NotLeaderError, match="lost the leader lease"):
            await believes_it_leads.put(PROBE_TYPE, "", "p", {**spec, "n": 2})
        with pytest.raises(NotLeaderError):
            await believes_it_leads.delete(PROBE_TYPE, "", "p")
        got = await store.get(PROBE_TYPE, "", "p")
        assert got is not None and got.spec["n"] == 1
        await b.election.fenced(store).put(PROBE_TYPE, "", "p", {**spec, "n": 3})
    finally:
        await b.stop()


async def test_a_paused_leader_cannot_write_after_losing_the_lease(
    store: PostgresStore, dsn: str, tmp_path: object
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    probe = ManagedProcess(
        "probe", [sys.executable, "-m", "testkit.leader_probe", dsn, "paused"], tmp_path
    )
    b: Running | None = None
    try:
        wait_until(lambda: "wrote 3" in probe.output(), what="the probe writes", proc=probe)
        probe.signal(signal.SIGSTOP)
        b = Running(PostgresElection(store, "b", lease=LEASE))
        await until(lambda: b is not None and b.election.is_leader, "b leads", within=10)
        got = await store.get(PROBE_TYPE, "", "probe")
        assert got is not None
        last_written = got.spec["n"]
        probe.signal(signal.SIGCONT)
        wait_until(
            lambda: "refused" in probe.output().split(f"wrote {last_written}\n")[-1],
            what="the woken probe's write refused",
            proc=probe,
        )
        await asyncio.sleep(0.3)  # it keeps trying every 50 ms: none gets through
        got = await store.get(PROBE_TYPE, "", "probe")
        assert got is not None and got.spec["n"] == last_written, probe.tail()
    finally:
        probe.signal(signal.SIGCONT)
        probe.stop(timeout=5)
        if b is not None:
            await b.stop()


# -- LeaderOnly --------------------------------------------------------------------------


class FakeElection:
    name = "leader-election"
    instance_id = "me"

    def __init__(self) -> None:
        self.leading = asyncio.Event()
        self.following = asyncio.Event()
        self.following.set()

    def lead(self, yes: bool) -> None:
        (self.leading if yes else self.following).set()
        (self.following if yes else self.leading).clear()

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    async def wait_for(self, leader: bool) -> None:
        await (self.leading if leader else self.following).wait()

    async def leader_id(self) -> str | None:
        return "me" if self.is_leader else None

    def fenced(self, store: object) -> object:
        return store

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()


class Job:
    name = "job"

    def __init__(self) -> None:
        self.running = False
        self.starts = 0

    async def run(self, stop: asyncio.Event) -> None:
        self.running = True
        self.starts += 1
        try:
            await stop.wait()
        finally:
            self.running = False


async def test_leader_only_runs_while_leading() -> None:
    election, job = FakeElection(), Job()
    wrapped = LeaderOnly(job, election)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(wrapped.run(stop))
    await asyncio.sleep(0.05)
    assert not job.running
    election.lead(True)
    await until(lambda: job.running, "job started")
    election.lead(False)
    await until(lambda: not job.running, "job stopped")
    election.lead(True)
    await until(lambda: job.running, "job started again")
    assert job.starts == 2
    stop.set()
    await asyncio.wait_for(task, 5)
    assert not job.running


async def test_a_single_instance_always_leads_and_runs_jobs_as_they_are() -> None:
    election, job = AlwaysLeader("me"), Job()
    assert election.is_leader and await election.leader_id() == "me"
    assert leader_only(election, [job]) == (job,)
    store = MemoryStore()
    assert election.fenced(store) is store
