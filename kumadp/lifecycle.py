"""Components with one lifecycle, supervised together, and the one retry mechanism.

A component is an object with a ``name`` and ``async run(stop)``: it starts, does its work
until ``stop`` is set, cleans up and returns. Returning early (or raising) while ``stop`` is
not set is a failure: the supervisor then stops every other component and re-raises, so no
failure is silent.

Retries: ``Backoff`` is the one delay policy (capped exponential, jittered, reset after a
success or a stable run). Two ways to use it: ``Resilient`` restarts a *component* that may
fail transiently; ``retry`` repeats one *call* until it succeeds, ``stop`` is set or a
deadline passes (the bootstrap request, binding a port). A scheduler that waits for several
reasons at once (certificate rotation: the renewal time, an identity change, a retry) takes
its retry delays from a ``Backoff`` directly.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Component(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


class ComponentFailed(Exception):
    def __init__(self, name: str, cause: BaseException | None) -> None:
        self.component = name
        self.cause = cause
        reason = f"{type(cause).__name__}: {cause}" if cause else "exited unexpectedly"
        super().__init__(f"component {name!r} failed: {reason}")


async def guard(
    component: Component,
    own_stop: asyncio.Event,
    stop: asyncio.Event,
    failures: list[ComponentFailed],
) -> None:
    """Run ``component`` until ``own_stop``; a failure (raising, or returning while
    ``own_stop`` is unset) is logged, recorded in ``failures`` and sets ``stop`` so that
    everything else stops too. The one place supervisors turn a component's end into a
    verdict (``supervise`` here, the CP's phased runtime)."""
    try:
        await component.run(own_stop)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("component %s failed: %s", component.name, exc, exc_info=exc)
        failures.append(ComponentFailed(component.name, exc))
        stop.set()
        return
    if not own_stop.is_set():
        log.error("component %s exited unexpectedly", component.name)
        failures.append(ComponentFailed(component.name, None))
        stop.set()


async def supervise(components: Sequence[Component], stop: asyncio.Event) -> None:
    """Run all components until ``stop`` is set. The first component that fails (raises, or
    returns while ``stop`` is unset) sets ``stop`` for the others, and its failure is raised
    as ``ComponentFailed`` once every component has returned."""
    failures: list[ComponentFailed] = []

    async with asyncio.TaskGroup() as tg:
        for component in components:
            tg.create_task(guard(component, stop, stop, failures), name=component.name)
    if failures:
        raise failures[0]


def cancel_point() -> None:
    """Raise ``CancelledError`` if this task was asked to stop. grpc.aio can swallow a
    cancellation that lands while a unary call completes (its call task returns the answer,
    and the caller's ``cancel()`` is spent on it): a loop of unary calls that should end on
    cancel checks here after each call."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``: True when it is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
    except TimeoutError:
        return False
    return True


class Backoff:
    """Capped exponential backoff with jitter.

    ``next()`` is the delay before the next attempt: the current step times a random factor
    in ``[1 - jitter, 1 + jitter)``; the step then doubles, up to ``maximum``. ``reset()``
    starts over from ``initial`` (after a success). With ``stable_after``, ``next(ran_for)``
    starts over by itself when the attempt that just ended had run that long: a stable run,
    not a crash loop.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        jitter: float = 0.5,
        stable_after: float | None = None,
    ) -> None:
        if initial < 0 or maximum < 0:
            raise ValueError("backoff: delays must not be negative")
        if not 0 <= jitter <= 1:
            raise ValueError("backoff: jitter must be between 0 and 1")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.stable_after = stable_after
        self._step = initial

    @property
    def step(self) -> float:
        """The delay the next attempt waits before jitter."""
        return self._step

    def reset(self) -> None:
        self._step = self.initial

    def next(self, ran_for: float | None = None) -> float:
        if self.stable_after is not None and ran_for is not None and ran_for >= self.stable_after:
            self.reset()
        delay = self._step * (1 + random.uniform(-self.jitter, self.jitter))
        self._step = min(self._step * 2, self.maximum)
        return delay


RetryHook = Callable[[BaseException | None, float], None]


class Resilient:
    """Restart ``inner`` with backoff whenever it fails, until ``stop`` is set.

    A failure is ``inner`` raising, or returning while ``stop`` is unset. ``on_retry(error,
    delay)`` (``error`` None for a return) is told of each one before the wait, e.g. to log
    it in the component's own words and count it; without it a warning is logged. The default
    backoff: 0.2 s doubling up to 10 s, jittered, reset after a run of 30 s.
    """

    def __init__(
        self,
        inner: Component,
        *,
        backoff: Backoff | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.backoff = backoff or Backoff(0.2, 10.0, stable_after=30.0)
        self._on_retry = on_retry

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            error: Exception | None = None
            try:
                await self.inner.run(stop)
                if stop.is_set():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
            delay = self.backoff.next(ran_for=loop.time() - started)
            if self._on_retry is not None:
                self._on_retry(error, delay)
            elif error is None:
                log.warning("%s exited; restarting in %.1fs", self.name, delay)
            else:
                log.warning("%s failed (%s); restarting in %.1fs", self.name, error, delay)
            await stopped_within(stop, delay)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    retry_on: tuple[type[Exception], ...],
    stop: asyncio.Event | None = None,
    deadline: float | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
) -> T | None:
    """Await ``attempt()`` until it returns, and return what it returned.

    An exception in ``retry_on`` is a failure worth another try: ``on_retry(error, delay)`` is
    told, then the next attempt comes after ``backoff.next()`` seconds (cut short at
    ``deadline``, an event-loop time). Any other exception propagates at once. Once
    ``deadline`` has passed, the last failure is raised; when ``stop`` is set first, the
    result is None. A success leaves ``backoff`` reset for the caller's next use.
    """
    loop = asyncio.get_running_loop()
    while True:
        try:
            result = await attempt()
        except retry_on as exc:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise
            delay = backoff.next()
            if remaining is not None:
                delay = min(delay, remaining)
            if on_retry is not None:
                on_retry(exc, delay)
            if stop is None:
                await asyncio.sleep(delay)
            elif await stopped_within(stop, delay):
                return None
            continue
        backoff.reset()
        return result
