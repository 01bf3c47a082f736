"""``LeaderOnly``: run a component only while this instance is the leader.

The composition root wraps the components that must run once among all instances sharing
a store (``leader_only(election, [a, b, ...])``). While this instance leads, the inner
component runs (restarted with backoff if it fails: a database hiccup must not take the
control plane down); when leadership is lost it is told to stop (and cancelled after
``stop_timeout``), and started afresh when this instance leads again. The inner component
writes through ``election.fenced(store)``, so even a write already under way when the lease
was lost is refused by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from kumadp.cp.election import AlwaysLeader, Election
from kumadp.lifecycle import Backoff, Component, Resilient

log = logging.getLogger(__name__)


class LeaderOnly:
    """Component: ``inner`` while this instance leads (see the module docstring)."""

    def __init__(self, inner: Component, election: Election, *, stop_timeout: float = 5.0) -> None:
        self.inner = inner
        self.name = inner.name
        self._election = election
        self._stop_timeout = stop_timeout
        self.runs = 0  # how many times the inner component was started

    async def run(self, stop: asyncio.Event) -> None:
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                leading = asyncio.ensure_future(self._election.wait_for(True))
                await asyncio.wait({leading, stopped}, return_when=asyncio.FIRST_COMPLETED)
                leading.cancel()
                if stop.is_set():
                    return
                await self._lead(stopped)
        finally:
            stopped.cancel()

    async def _lead(self, stopped: asyncio.Future[Any]) -> None:
        self.runs += 1
        inner_stop = asyncio.Event()
        resilient = Resilient(self.inner, backoff=Backoff(0.2, 5.0, stable_after=30.0))
        task: asyncio.Future[Any] = asyncio.create_task(
            resilient.run(inner_stop), name=f"{self.name}-as-leader"
        )
        lost: asyncio.Future[Any] = asyncio.ensure_future(self._election.wait_for(False))
        log.info("%s: started (this instance leads)", self.name)
        try:
            await asyncio.wait({task, lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if lost.done() and not stopped.done():
                log.info("%s: stopping (this instance no longer leads)", self.name)
        finally:
            lost.cancel()
            inner_stop.set()
            _, pending = await asyncio.wait({task}, timeout=self._stop_timeout)
            if pending:
                log.warning(
                    "%s did not stop within %.1fs; cancelling it", self.name, self._stop_timeout
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            elif not task.cancelled() and task.exception() is not None:
                log.error("%s failed: %s", self.name, task.exception())


def leader_only(election: Election, components: Iterable[Component]) -> tuple[Component, ...]:
    """Each of ``components`` wrapped in ``LeaderOnly`` (for one line in a phase list). The
    only instance on its store (``AlwaysLeader``) runs them as they are."""
    if isinstance(election, AlwaysLeader):
        return tuple(components)
    return tuple(LeaderOnly(c, election) for c in components)


__all__ = ["LeaderOnly", "leader_only"]
