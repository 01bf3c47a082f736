"""The one retry mechanism: ``Backoff`` and the ``Resilient`` wrapper."""

from __future__ import annotations

import asyncio

import pytest

from kumadp.lifecycle import Backoff, Resilient, cancel_point, retry, stopped_within
from testkit.procs import until


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 4.0, jitter=0.0)
    assert [backoff.next() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_backoff_jitter_stays_in_its_band() -> None:
    backoff = Backoff(1.0, 1.0, jitter=0.5)
    delays = [backoff.next() for _ in range(200)]
    assert all(0.5 <= d <= 1.5 for d in delays)
    assert len(set(delays)) > 1


def test_backoff_starts_over_after_a_stable_run() -> None:
    backoff = Backoff(1.0, 8.0, jitter=0.0, stable_after=30.0)
    assert [backoff.next(ran_for=1.0) for _ in range(3)] == [1.0, 2.0, 4.0]
    assert backoff.next(ran_for=29.0) == 8.0
    assert backoff.next(ran_for=30.0) == 1.0  # it had run long enough: not a crash loop


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Backoff(-1.0, 1.0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(1.0, 1.0, jitter=2.0)


class Flaky:
    """Fails ``failures`` times (raising, or returning when ``raise_`` is False), then runs
    until stopped."""

    name = "flaky"

    def __init__(self, failures: int, *, raise_: bool = True) -> None:
        self.failures = failures
        self.raise_ = raise_
        self.runs = 0

    async def run(self, stop: asyncio.Event) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            if self.raise_:
                raise RuntimeError(f"failure {self.runs}")
            return
        await stop.wait()


async def test_resilient_restarts_with_backoff_and_reports_each_failure() -> None:
    inner = Flaky(3)
    seen: list[tuple[str | None, float]] = []
    resilient = Resilient(
        inner,
        backoff=Backoff(0.01, 0.02, jitter=0.0),
        on_retry=lambda error, delay: seen.append((str(error) if error else None, delay)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(resilient.run(stop))
    await until(lambda: inner.runs >= 4 or task.done(), "4 runs", within=5)
    assert not task.done()
    assert seen == [("failure 1", 0.01), ("failure 2", 0.02), ("failure 3", 0.02)]
    assert resilient.name == "flaky"
    stop.set()
    await asyncio.wait_for(task, 5)
    assert inner.runs == 4


async def test_resilient_counts_an_early_return_as_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = Flaky(1, raise_=False)
    resilient = Resilient(inner, backoff=Backoff(0.01, 0.01, jitter=0.0))
    stop = asyncio.Event()
    task = asyncio.create_task(resilient.run(stop))
    await until(lambda: inner.runs >= 2 or task.done(), "2 runs", within=5)
    assert not task.done()
    assert "flaky exited; restarting in" in caplog.text
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_resilient_stops_while_waiting_to_restart() -> None:
    inner = Flaky(100)
    resilient = Resilient(inner, backoff=Backoff(60.0, 60.0))
    stop = asyncio.Event()
    task = asyncio.create_task(resilient.run(stop))
    await until(lambda: inner.runs >= 1, "the first run", within=5)
    stop.set()
    await asyncio.wait_for(task, 5)  # not the 60 s backoff
    assert inner.runs == 1


async def test_stopped_within() -> None:
    stop = asyncio.Event()
    assert await stopped_within(stop, 0.01) is False
    stop.set()
    assert await stopped_within(stop, 60.0) is True


class Attempts:
    """An attempt that fails with ``errors`` in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_retry_waits_the_backoff_between_failures_and_returns_the_result() -> None:
    attempt = Attempts(OSError("one"), OSError("two"))
    backoff = Backoff(0.01, 0.02, jitter=0.0)
    seen: list[tuple[str, float]] = []
    result = await retry(
        attempt, backoff, retry_on=(OSError,), on_retry=lambda e, d: seen.append((str(e), d))
    )
    assert result == "done" and attempt.calls == 3
    assert seen == [("one", 0.01), ("two", 0.02)]
    assert backoff.step == 0.01  # reset by the success


async def test_retry_lets_other_errors_through_at_once() -> None:
    attempt = Attempts(ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        await retry(attempt, Backoff(0.01, 0.01), retry_on=(OSError,))
    assert attempt.calls == 1


async def test_retry_gives_up_at_the_deadline_with_the_last_failure() -> None:
    loop = asyncio.get_running_loop()
    attempt = Attempts(*(OSError(f"failure {i}") for i in range(1000)))
    delays: list[float] = []
    started = loop.time()
    with pytest.raises(OSError, match="failure") as info:
        await retry(
            attempt,
            Backoff(0.05, 10.0, jitter=0.0),
            retry_on=(OSError,),
            deadline=started + 0.5,
            on_retry=lambda _, d: delays.append(d),
        )
    assert 0.5 <= loop.time() - started < 2.0
    assert str(info.value) == f"failure {attempt.calls - 1}"  # the last one, not the first
    assert delays[:3] == [0.05, 0.1, 0.2] and len(delays) >= 4 and delays[3] < 0.4  # cut short


async def test_retry_returns_none_when_stopped_while_waiting() -> None:
    attempt = Attempts(*(OSError("busy") for _ in range(10)))
    stop = asyncio.Event()
    task = asyncio.create_task(retry(attempt, Backoff(60.0, 60.0), retry_on=(OSError,), stop=stop))
    await until(lambda: attempt.calls >= 1, "the first attempt", within=5)
    stop.set()
    assert await asyncio.wait_for(task, 5) is None  # not the 60 s backoff
    assert attempt.calls == 1


async def test_a_loop_of_calls_that_swallow_cancellation_still_ends_on_cancel() -> None:
    """As grpc.aio's unary calls can: the cancel lands in the call, which returns an answer
    anyway; ``cancel_point`` after the call ends the loop (without it, it never ends)."""
    calls = 0

    async def swallowing_call() -> str:
        nonlocal calls
        calls += 1
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            return "answer"
        return "answer"

    async def heartbeats() -> None:
        while True:
            await swallowing_call()
            cancel_point()

    task = asyncio.ensure_future(heartbeats())
    await until(lambda: calls >= 2, "a few calls")
    task.cancel()
    await asyncio.wait_for(asyncio.wait({task}), 2)
    assert task.cancelled()
