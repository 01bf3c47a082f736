"""The one place kumadp handles POSIX signals (agent and control plane).

``SignalWatcher`` counts SIGTERM/SIGINT (the shutdown sequence reacts to the first, second
and third) and calls ``on_drain`` on SIGUSR2. Handlers are installed on the running loop
and the previous ones restored on exit. Outside the main thread (some test runners) nothing
is installed; ``notify()`` simulates a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], Any] | int | None


class SignalWatcher:
    def __init__(self, on_drain: Callable[[], None] | None = None) -> None:
        self.count = 0
        self.last_signal: str | None = None
        self.on_drain = on_drain
        self._changed = asyncio.Event()
        self._installed: dict[int, _Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> SignalWatcher:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        wanted: list[tuple[int, Callable[..., None], tuple[Any, ...]]] = [
            (s, self.notify, (s,)) for s in TERMINATION_SIGNALS
        ]
        wanted.append((signal.SIGUSR2, self._drain, ()))
        for signum, callback, args in wanted:
            previous = signal.getsignal(signum)
            try:
                loop.add_signal_handler(signum, callback, *args)
            except (ValueError, RuntimeError, NotImplementedError) as exc:
                log.debug("cannot handle signal %s here: %s", signum, exc)
                continue
            self._installed[signum] = previous

    def restore(self) -> None:
        if self._loop is None:
            return
        for signum, previous in self._installed.items():
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_signal_handler(signum)
            with contextlib.suppress(ValueError, TypeError, OSError):
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._installed.clear()

    def notify(self, signum: int = signal.SIGTERM) -> None:
        """Record a termination signal (what the real handler does)."""
        self.count += 1
        self.last_signal = signal.Signals(signum).name
        log.info("received %s (%d)", self.last_signal, self.count)
        self._changed.set()

    async def wait(self, count: int = 1) -> None:
        """Return once ``count`` termination signals have arrived in total."""
        while self.count < count:
            self._changed.clear()
            await self._changed.wait()

    def _drain(self) -> None:
        log.info("received SIGUSR2: draining inbound listeners")
        if self.on_drain is not None:
            self.on_drain()
