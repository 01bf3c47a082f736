"""The global CP's view of its zones: who holds each zone name, whether it is Online.

A zone CP's connection is a ``Session`` (its instance id and the connection's session id
come with every call, see ``kumadp.wire.kds``). The first session of an unknown zone
creates its ``Zone`` resource (``enabled: true``); every session is a subscription in the
zone's ``ZoneInsight`` (``zone_insights``).

- **Online** = the session has an open stream and its heartbeat is fresh: the zone calls
  ``HealthCheck`` every ``health_interval`` and a session silent for ``health_timeout`` is
  marked Offline (its subscription gets a disconnect time and its streams are ended), so a
  zone CP that vanishes without closing its connection shows Offline within that bound.
- **One holder per zone name.** A second zone CP instance claiming a zone name held by a
  live session is refused (``ZoneRefused``, the zone retries with backoff); once the holder
  is silent past the timeout, the next claim takes over. A new session of the same
  instance (it reconnected) replaces its old one. Never two sessions flapping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kumadp.cp.kds.zone_insights import ZoneInsights
from kumadp.cp.store.base import ConflictError, Store
from kumadp.resources.zones import ZONE_TYPE, Zone

log = logging.getLogger(__name__)

DEFAULT_HEALTH_TIMEOUT = 20.0
MAX_HEALTH_INTERVAL = 5.0


class ZoneRefused(Exception):
    """A zone CP may not hold this zone name now; the message says why."""


@dataclass(frozen=True)
class ZoneIdentity:
    """Who is calling, from the call's metadata (never from the payload)."""

    zone: str
    instance: str
    session: str
    version: str = ""


@dataclass
class Session:
    identity: ZoneIdentity
    subscription: str  # the ZoneInsight subscription id
    last_heartbeat: float
    streams: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # superseded or timed out
    reason: str = ""


class ZoneRegistry:
    """Component: sessions, claims and heartbeats of every zone; writes Zone and
    ZoneInsight resources."""

    name = "zone-registry"

    def __init__(
        self,
        store: Store,
        instance_id: str,
        *,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        insights: ZoneInsights | None = None,
    ) -> None:
        if health_timeout <= 0:
            raise ValueError("the zone health check timeout must be longer than 0")
        self._store = store
        self.health_timeout = health_timeout
        self._clock = clock
        self.insights = insights or ZoneInsights(store, instance_id)
        self._sessions: dict[str, Session] = {}  # zone -> its current session
        self._wake = asyncio.Event()

    @property
    def health_interval(self) -> float:
        """How often zones are asked to send a heartbeat (several per timeout)."""
        return min(MAX_HEALTH_INTERVAL, self.health_timeout / 4)

    # -- queries ---------------------------------------------------------------------------
    def online(self, zone: str) -> bool:
        session = self._sessions.get(zone)
        return session is not None and self._live(session)

    def session(self, zone: str) -> Session | None:
        return self._sessions.get(zone)

    def _live(self, session: Session) -> bool:
        fresh = self._clock() - session.last_heartbeat <= self.health_timeout
        return session.streams > 0 and fresh and not session.ended.is_set()

    # -- streams and heartbeats ------------------------------------------------------------
    async def open_stream(self, identity: ZoneIdentity) -> Session:
        """A stream of ``identity`` opens: join its session, or start one (creating the
        Zone on its first connection). Raises ZoneRefused."""
        current = self._sessions.get(identity.zone)
        if current is not None and current.identity.session == identity.session:
            if current.ended.is_set():
                raise ZoneRefused(f"this connection of zone {identity.zone} was {current.reason}")
            current.streams += 1
            return current
        if current is not None:
            if current.identity.instance != identity.instance and self._live(current):
                raise ZoneRefused(
                    f'zone "{identity.zone}" is already connected from another zone control '
                    f"plane (instance {current.identity.instance}); a second one with the "
                    "same zone name is refused until the first stops"
                )
            why = (
                "replaced by a new connection"
                if (current.identity.instance == identity.instance)
                else f"taken over by instance {identity.instance} (no heartbeat)"
            )
            self._end(current, why)
        # registered before any await: a second stream of this connection joins it
        subscription = self.insights.connected(identity.zone, identity.instance, identity.version)
        session = Session(identity, subscription, self._clock(), streams=1)
        self._sessions[identity.zone] = session
        self._wake.set()
        await self._ensure_zone(identity.zone)
        log.info(
            "zone %s connected (instance %s, kumadp %s)",
            identity.zone, identity.instance, identity.version or "?",
        )  # fmt: skip
        return session

    def close_stream(self, session: Session) -> None:
        session.streams = max(0, session.streams - 1)
        if session.streams == 0 and self._sessions.get(session.identity.zone) is session:
            self._end(session, "disconnected")

    def heartbeat(self, identity: ZoneIdentity) -> None:
        """A ``HealthCheck`` call. Raises ZoneRefused when the caller's connection is not
        the zone's current one (it was replaced, or another instance holds the zone)."""
        current = self._sessions.get(identity.zone)
        if current is None:
            return  # its streams are (re)opening; they make the claim
        if current.identity.session == identity.session:
            if current.ended.is_set():
                raise ZoneRefused(f"this connection of zone {identity.zone} was {current.reason}")
            current.last_heartbeat = self._clock()
            self._wake.set()
            return
        if current.identity.instance == identity.instance:
            raise ZoneRefused(
                f"this connection of zone {identity.zone} was replaced by a newer one"
            )
        if self._live(current):
            raise ZoneRefused(
                f'zone "{identity.zone}" is held by another zone control plane '
                f"(instance {current.identity.instance})"
            )

    def count(self, session: Session, type_name: str, *counters: str) -> None:
        self.insights.count(session.identity.zone, session.subscription, type_name, *counters)

    # -- the component ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Marks silent zones Offline (waking at the earliest deadline, no polling tick) and
        writes the insights."""
        await self.insights.load()
        writer_stop = asyncio.Event()  # set after the sessions are ended: their last write
        writer = asyncio.ensure_future(self.insights.run(writer_stop))
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                due = self._expire()
                wake = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({wake, stop_task}, timeout=due, return_when="FIRST_COMPLETED")
                wake.cancel()
        finally:
            stop_task.cancel()
            for session in list(self._sessions.values()):
                self._end(session, "ended: the global control plane is stopping")
            writer_stop.set()
            await writer

    def _expire(self) -> float | None:
        """End the sessions whose heartbeat is stale; seconds until the next deadline."""
        now = self._clock()
        next_due: float | None = None
        for session in list(self._sessions.values()):
            if session.ended.is_set():
                continue
            left = session.last_heartbeat + self.health_timeout - now
            if left < 0:
                log.warning(
                    "zone %s: no heartbeat for %.1fs: marked Offline",
                    session.identity.zone, now - session.last_heartbeat,
                )  # fmt: skip
                self._end(session, f"timed out (no heartbeat for {self.health_timeout:g}s)")
            else:
                next_due = left if next_due is None else min(next_due, left)
        return None if next_due is None else next_due + 0.01

    def _end(self, session: Session, reason: str) -> None:
        if not session.ended.is_set():
            session.reason = reason
            session.ended.set()
            self.insights.disconnected(session.identity.zone, session.subscription)
            if reason == "disconnected":
                log.info("zone %s disconnected", session.identity.zone)
        if self._sessions.get(session.identity.zone) is session:
            del self._sessions[session.identity.zone]

    async def _ensure_zone(self, zone: str) -> None:
        if await self._store.get(ZONE_TYPE, "", zone) is not None:
            return
        try:
            await self._store.put(ZONE_TYPE, "", zone, Zone(name=zone).to_dict(), 0)
        except ConflictError:
            return
        log.info('created Zone "%s" at its first connection', zone)


__all__ = [
    "DEFAULT_HEALTH_TIMEOUT",
    "Session",
    "ZoneIdentity",
    "ZoneRefused",
    "ZoneRegistry",
]
