"""Readiness: the agent's ``GET /ready`` endpoint and the checker that feeds it.

``Readiness`` holds the state: ``NOT_READY`` until Envoy is LIVE and has received its
listeners, then ``READY``; ``TERMINATING`` (sticky) once shutdown starts. ``ReadinessChecker``
polls Envoy's admin API (every 0.2 s until ready, then every 1 s). ``ReadinessServer``
answers 200 ``READY`` or 503 ``NOT_READY`` / ``TERMINATING`` in text/plain on loopback
(``kumadp.agent.httpserver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from typing import Protocol

from kumadp.agent.httpserver import HttpServer, Request, Response

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    NOT_READY = "NOT_READY"
    READY = "READY"
    TERMINATING = "TERMINATING"


class Readiness:
    """READY needs Envoy ready (``set_ready``) and no *blocker*: other components block
    readiness with a reason (an expired certificate, no name table yet) and unblock it."""

    def __init__(self) -> None:
        self._envoy_ready = False
        self._terminating = False
        self._blockers: dict[str, str] = {}
        self._last_logged = State.NOT_READY

    @property
    def state(self) -> State:
        if self._terminating:
            return State.TERMINATING
        if self._envoy_ready and not self._blockers:
            return State.READY
        return State.NOT_READY

    @property
    def reasons(self) -> list[str]:
        """Why the agent is not ready (empty when READY)."""
        if self._terminating:
            return ["shutting down"]
        reasons = [] if self._envoy_ready else ["Envoy is not LIVE with its listeners yet"]
        return reasons + [f"{key}: {reason}" for key, reason in sorted(self._blockers.items())]

    def set_ready(self, ready: bool) -> None:
        self._envoy_ready = ready
        self._log_change()

    def block(self, key: str, reason: str) -> None:
        if self._blockers.get(key) != reason:
            log.warning("readiness blocked by %s: %s", key, reason)
        self._blockers[key] = reason
        self._log_change()

    def unblock(self, key: str) -> None:
        if self._blockers.pop(key, None) is not None:
            log.info("readiness no longer blocked by %s", key)
        self._log_change()

    def set_terminating(self) -> None:
        self._terminating = True
        self._log_change()

    def _log_change(self) -> None:
        state = self.state
        if state is not self._last_logged:
            log.info("readiness: %s", state)
            self._last_logged = state


class AdminProbe(Protocol):
    async def server_state(self) -> str: ...

    async def listeners_received(self) -> bool: ...


class ReadinessChecker:
    name = "readiness-checker"

    def __init__(
        self,
        readiness: Readiness,
        admin: AdminProbe,
        *,
        initial_interval: float = 0.2,
        interval: float = 1.0,
    ) -> None:
        self.readiness = readiness
        self._admin = admin
        self._initial_interval = initial_interval
        self._interval = interval

    async def check(self) -> bool:
        try:
            state = await self._admin.server_state()
            if state != "LIVE":
                return False
            return await self._admin.listeners_received()
        except Exception as exc:
            log.debug("readiness check failed: %s", exc)
            return False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and self.readiness.state is not State.TERMINATING:
            ready = await self.check()
            self.readiness.set_ready(ready)
            interval = self._interval if ready else self._initial_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        await stop.wait()


class ReadinessServer:
    """Serves ``/ready`` on ``host:port`` (port 0: any free port, see ``port`` once
    ``started`` is set): 200 ``READY`` or 503 ``NOT_READY`` / ``TERMINATING`` in text/plain;
    ``/ready?verbose`` adds the reasons, one a line. A taken port fails the component."""

    name = "readiness-server"

    def __init__(
        self,
        readiness: Readiness,
        port: int,
        host: str = "127.0.0.1",
        *,
        read_timeout: float = 5.0,
    ) -> None:
        self.readiness = readiness
        self.host = host
        self.port = port
        self.started = asyncio.Event()
        self._http = HttpServer(
            "readiness server", "/ready", self._ready, host, port, read_timeout=read_timeout
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self._http.listen()
        self.port = self._http.port
        self.started.set()
        log.info("readiness server listening on %s:%d", self.host, self.port)
        await self._http.serve(stop)

    async def _ready(self, request: Request) -> Response:
        state = self.readiness.state
        body = state.value
        if "verbose" in request.query:
            body += "".join(f"\n{reason}" for reason in self.readiness.reasons)
        return Response(200 if state is State.READY else 503, body.encode())
