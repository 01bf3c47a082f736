"""Which control plane instance is the leader, for the jobs that must run once.

Several instances may share one store (PostgreSQL). Jobs that must not run twice (VIP
allocation, CA provisioning, deregistration of dropped dataplanes, insight cleanup; in zone
mode the KDS client and the zone ingresses' ``availableServices``) run on the leader only,
under ``kumadp.cp.runtime.leader_only.LeaderOnly``, and write through ``fenced(store)``: a
write refused (``NotLeaderError``) once the lease is lost, even by a leader that was paused
(SIGSTOP) while another took over.

- ``AlwaysLeader``: a store only one instance uses (memory, SQLite): this instance leads.
- ``kumadp.cp.store.postgres_election.PostgresElection``: a lease row renewed by the leader,
  taken over by another instance once it expires.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from kumadp.cp.store.base import Store


class Election(Protocol):
    name: str
    instance_id: str

    @property
    def is_leader(self) -> bool:
        """True while this instance holds a valid lease (checked against the clock)."""
        ...

    async def wait_for(self, leader: bool) -> None:
        """Return once ``is_leader == leader``."""
        ...

    async def leader_id(self) -> str | None:
        """The instance holding the lease now, as the store says (None: nobody)."""
        ...

    def fenced(self, store: Store) -> Store:
        """``store`` for leader-only writes (see the module docstring)."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """Component: take, keep and, on stop, hand over the lease."""
        ...


class AlwaysLeader:
    """The only instance on its store: always the leader."""

    name = "leader-election"

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id

    @property
    def is_leader(self) -> bool:
        return True

    async def wait_for(self, leader: bool) -> None:
        if not leader:
            await asyncio.Event().wait()  # never

    async def leader_id(self) -> str | None:
        return self.instance_id

    def fenced(self, store: Store) -> Store:
        return store

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()


__all__ = ["AlwaysLeader", "Election"]
