"""The store's change feed: how every consumer learns about committed changes.

The contract (``Store.changes()``), the same for every backend:

- an event is delivered only after its change is committed, so a consumer that reads the
  store on an event sees that change (or a later one);
- delivery is at least once: a consumer must tolerate an event it already saw;
- events of one resource ``(type, mesh, name)`` arrive in commit order; events of different
  resources may interleave in any order;
- ``RESYNC`` (``op == "resync"``) means "events may have been lost: reload everything you
  derived from the store". A backend sends it when it cannot vouch for the feed (a lost
  database connection, a consumer that fell ``max_pending`` events behind);
- a subscription sees the changes committed after it was made: subscribe first, then read
  the initial state;
- a subscription made with ``types`` gets the events of those types only (and every
  ``RESYNC``): a backend may filter at the source.

Consumers iterate a ``ChangeSubscription`` (``async for event in sub``), or take what is
pending without waiting (``sub.drain()``: caches that invalidate on use). Events are
delivered on the event loop; backends publish from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

from kumadp.cp.store.records import RESYNC, ChangeEvent

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 100_000


class ChangeSubscription:
    """One consumer's queue of change events (see the module docstring)."""

    def __init__(
        self,
        on_close: Callable[[ChangeSubscription], None] | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        types: Iterable[str] | None = None,
    ) -> None:
        self.types = frozenset(types) if types is not None else None  # None: every type
        self._pending: deque[ChangeEvent] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._on_close = on_close
        self._max_pending = max_pending
        # A store layer above the backend (``kumadp.cp.secrets``) may rewrite each event.
        self.transform: Callable[[ChangeEvent], ChangeEvent] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, event: ChangeEvent) -> None:
        """Backend side: queue ``event``. A consumer too far behind gets one ``RESYNC``
        instead of what it missed."""
        if self._closed or (
            self.types is not None and not event.is_resync and event.type not in self.types
        ):
            return
        if self.transform is not None and not event.is_resync:
            event = self.transform(event)
        if len(self._pending) >= self._max_pending:
            log.warning("a store change consumer fell behind; asking it to resync")
            self._pending.clear()
            event = RESYNC
        self._pending.append(event)
        self._ready.set()

    def drain(self) -> list[ChangeEvent]:
        """Every pending event, without waiting."""
        events = list(self._pending)
        self._pending.clear()
        self._ready.clear()
        return events

    async def next(self) -> ChangeEvent | None:
        """The next event, waiting for it; None once the subscription is closed."""
        while not self._pending:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._pending.popleft()

    def __aiter__(self) -> AsyncIterator[ChangeEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChangeEvent]:
        while (event := await self.next()) is not None:
            yield event

    def close(self) -> None:
        """Stop receiving; a waiting ``next()`` returns None. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self._ready.set()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> ChangeSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ChangeFeed:
    """Backend helper: the subscriptions of one store, fed after each commit."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._subscriptions: list[ChangeSubscription] = []
        self._max_pending = max_pending

    def subscribe(self, types: Iterable[str] | None = None) -> ChangeSubscription:
        sub = ChangeSubscription(self._remove, self._max_pending, types)
        self._subscriptions.append(sub)
        return sub

    def publish(self, event: ChangeEvent) -> None:
        for sub in list(self._subscriptions):
            sub.push(event)

    def resync(self) -> None:
        """Tell every consumer to reload (events may have been lost)."""
        self.publish(RESYNC)

    def close(self) -> None:
        for sub in list(self._subscriptions):
            sub.close()

    def __len__(self) -> int:
        return len(self._subscriptions)

    def _remove(self, sub: ChangeSubscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)


class ChangeSource(Protocol):
    def changes(self, types: Iterable[str] | None = None) -> ChangeSubscription: ...


@contextlib.asynccontextmanager
async def following(
    store: ChangeSource,
    handle: Callable[[ChangeEvent], None],
    types: Iterable[str] | None = None,
) -> AsyncIterator[ChangeSubscription]:
    """Call ``handle`` for every change (of ``types``, if given) while the block runs
    (subscribed on entry, so the block may read the initial state first). A failing
    ``handle`` is logged, never fatal."""
    sub = store.changes(types)

    async def pump() -> None:
        async for event in sub:
            try:
                handle(event)
            except Exception:
                log.exception("handling store change %s failed", event)

    task = asyncio.create_task(pump(), name="store-changes")
    try:
        yield sub
    finally:
        sub.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_changes(
    changes: ChangeSubscription, stop: asyncio.Future[Any]
) -> list[ChangeEvent] | None:
    """The next change and whatever came with it, for a component's loop; None once
    ``stop`` (a future of ``stop.wait()``) is done or the store closed."""
    next_event = asyncio.ensure_future(changes.next())
    await asyncio.wait({next_event, stop}, return_when=asyncio.FIRST_COMPLETED)
    if not next_event.done():
        next_event.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await next_event
        return None
    first = next_event.result()
    if first is None:
        return None  # the store closed
    return [first, *changes.drain()]


__all__ = [
    "DEFAULT_MAX_PENDING",
    "ChangeFeed",
    "ChangeSource",
    "ChangeSubscription",
    "following",
    "next_changes",
]
