"""Components with one lifecycle, supervised together.

A component is an object with a ``name`` and ``async run(stop)``: it starts, does its work
until ``stop`` is set, cleans up and returns. Returning early (or raising) while ``stop`` is
not set is a failure: the supervisor then stops every other component and re-raises, so no
failure is silent. ``Resilient`` wraps a component that may fail transiently and restarts it
with capped exponential backoff that resets after a stable run.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


class ComponentFailed(Exception):
    def __init__(self, name: str, cause: BaseException | None) -> None:
        self.component = name
        self.cause = cause
        reason = f"{type(cause).__name__}: {cause}" if cause else "exited unexpectedly"
        super().__init__(f"component {name!r} failed: {reason}")


async def supervise(components: Sequence[Component], stop: asyncio.Event) -> None:
    """Run all components until ``stop`` is set. The first component that fails (raises, or
    returns while ``stop`` is unset) sets ``stop`` for the others, and its failure is raised
    as ``ComponentFailed`` once every component has returned."""
    failures: list[ComponentFailed] = []

    async def guard(component: Component) -> None:
        try:
            await component.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("component %s failed: %s", component.name, exc, exc_info=exc)
            failures.append(ComponentFailed(component.name, exc))
            stop.set()
            return
        if not stop.is_set():
            log.error("component %s exited unexpectedly", component.name)
            failures.append(ComponentFailed(component.name, None))
            stop.set()

    async with asyncio.TaskGroup() as tg:
        for component in components:
            tg.create_task(guard(component), name=component.name)
    if failures:
        raise failures[0]


class Resilient:
    """Restart ``inner`` with backoff whenever it fails, until ``stop`` is set."""

    def __init__(
        self,
        inner: Component,
        *,
        initial_backoff: float = 0.2,
        max_backoff: float = 10.0,
        stable_after: float = 30.0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self._initial = initial_backoff
        self._max = max_backoff
        self._stable_after = stable_after

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._initial
        while not stop.is_set():
            started = loop.time()
            try:
                await self.inner.run(stop)
                if stop.is_set():
                    return
                log.warning("%s exited; restarting", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s failed (%s); restarting", self.name, exc)
            if loop.time() - started >= self._stable_after:
                backoff = self._initial
            delay = backoff * (0.5 + random.random())
            backoff = min(backoff * 2, self._max)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
