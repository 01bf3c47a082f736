"""Run components together and stop them in phases, in order.

Every component starts at once (one ``asyncio.TaskGroup``), as under
``kumadp.lifecycle.supervise``, and the first failure stops everything and is raised as
``ComponentFailed``. What differs is the stop: when ``stop`` is set, the phases are stopped
one after the other, each one's components together, each phase bounded in time (what is
still running then is cancelled, with a warning). The shutdown order is written once, as the
list of phases the composition root gives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from kumadp.lifecycle import Component, ComponentFailed, guard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    """Components that stop together; ``name`` is what the shutdown log says."""

    name: str
    components: tuple[Component, ...]
    timeout: float = 5.0


async def run_in_phases(phases: Sequence[Phase], stop: asyncio.Event) -> None:
    """Run every phase's components until ``stop``; then stop the phases in order."""
    failures: list[ComponentFailed] = []

    async with asyncio.TaskGroup() as tg:
        started: list[tuple[Phase, asyncio.Event, list[asyncio.Task[None]]]] = []
        for phase in phases:
            phase_stop = asyncio.Event()
            tasks = [
                tg.create_task(guard(c, phase_stop, stop, failures), name=c.name)
                for c in phase.components
            ]
            started.append((phase, phase_stop, tasks))
        await stop.wait()
        for number, (phase, phase_stop, tasks) in enumerate(started, start=1):
            log.info("shutdown %d/%d: %s", number, len(started), phase.name)
            phase_stop.set()
            if not tasks:
                continue
            _, pending = await asyncio.wait(tasks, timeout=phase.timeout)
            for task in pending:
                log.warning(
                    "%s did not stop within %.1f s; cancelling it", task.get_name(), phase.timeout
                )
                task.cancel()
            if pending:
                await asyncio.wait(pending)
    if failures:
        raise failures[0]


__all__ = ["Phase", "run_in_phases"]
