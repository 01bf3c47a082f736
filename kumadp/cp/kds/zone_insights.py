"""ZoneInsight: the global CP's record of each zone's KDS connections, in Kuma's shape.

``subscriptions[]`` (the last ``MAX_SUBSCRIPTIONS``): ``id``, ``globalInstanceId``,
``zoneInstanceId``, ``connectTime``, ``disconnectTime`` (absent while connected),
``status{lastUpdateTime, total, stat{<type>{responsesSent, responsesAcknowledged,
responsesRejected}}}`` and ``version{kumaCp{version}}``. Per type, the counters describe
that type's stream: for global -> zone types the responses the global CP sent and the
zone's ACKs and NACKs; for zone -> global types the zone's responses and the global CP's
answers.

Kept in memory and written to the store (type ``ZoneInsight``, named after the zone): a
connect or disconnect at once, counters at most once per ``persist_interval``. ``load``
closes the subscriptions a previous run of the global CP left open.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kumadp.cp.insights import format_time, is_online
from kumadp.cp.store.base import Store
from kumadp.resources.zones import ZONE_INSIGHT_TYPE

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 10
COUNTERS = ("responsesSent", "responsesAcknowledged", "responsesRejected")


def _counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


@dataclass
class _Entry:
    doc: dict[str, Any] = field(default_factory=dict)  # without type/name
    dirty: bool = False
    urgent: bool = False  # a connect or disconnect: written at once
    persisted_at: float | None = None


class ZoneInsights:
    """The ZoneInsight of every zone. Use from the event loop's thread only."""

    def __init__(
        self,
        store: Store,
        instance_id: str,
        *,
        persist_interval: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self.instance_id = instance_id
        self._interval = persist_interval
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._wake = asyncio.Event()

    # -- queries ---------------------------------------------------------------------------
    def get(self, zone: str) -> dict[str, Any] | None:
        entry = self._entries.get(zone)
        return copy.deepcopy(entry.doc) if entry is not None else None

    # -- events ----------------------------------------------------------------------------
    def connected(self, zone: str, zone_instance: str, version: str) -> str:
        """A zone CP connected: a new subscription; returns its id."""
        now = format_time(self._clock())
        sub: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "globalInstanceId": self.instance_id,
            "zoneInstanceId": zone_instance,
            "connectTime": now,
            "status": {"lastUpdateTime": now, "total": _counters(), "stat": {}},
            "version": {"kumaCp": {"version": version}},
        }
        entry = self._entries.setdefault(zone, _Entry())
        subs: list[dict[str, Any]] = entry.doc.setdefault("subscriptions", [])
        for old in subs:  # at most one open subscription per zone
            old.setdefault("disconnectTime", now)
        subs.append(sub)
        del subs[:-MAX_SUBSCRIPTIONS]
        self._changed(entry, urgent=True)
        return str(sub["id"])

    def disconnected(self, zone: str, sub_id: str) -> None:
        sub = self._subscription(zone, sub_id)
        if sub is not None and not sub.get("disconnectTime"):
            sub["disconnectTime"] = format_time(self._clock())
            self._changed(self._entries[zone], urgent=True)

    def count(self, zone: str, sub_id: str, type_name: str, *counters: str) -> None:
        sub = self._subscription(zone, sub_id)
        if sub is None:
            return
        status = sub["status"]
        stat = status["stat"].setdefault(type_name, _counters())
        for counter in counters:
            status["total"][counter] += 1
            stat[counter] += 1
        status["lastUpdateTime"] = format_time(self._clock())
        self._changed(self._entries[zone])

    # -- persistence -----------------------------------------------------------------------
    async def load(self) -> None:
        """Read the stored insights; subscriptions left open by an earlier run are closed
        at this start's time."""
        now = format_time(self._clock())
        for stored in await self._store.list(ZONE_INSIGHT_TYPE):
            doc = {k: v for k, v in stored.spec.items() if k not in ("type", "mesh", "name")}
            subs = [s for s in doc.get("subscriptions") or () if isinstance(s, dict)]
            doc["subscriptions"] = subs
            entry = _Entry(doc)
            if is_online(doc):
                for sub in subs:
                    sub.setdefault("disconnectTime", now)
                self._changed(entry, urgent=True)
            self._entries.setdefault(stored.name, entry)

    async def run(self, stop: asyncio.Event) -> None:
        """Write what is due until ``stop``; everything on the way out."""
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                due = await self.flush()
                self._wake.clear()
                wake = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({wake, stop_task}, timeout=due, return_when="FIRST_COMPLETED")
                wake.cancel()
        finally:
            stop_task.cancel()
            try:
                await self.flush(force=True)
            except Exception:
                log.exception("writing the zone insights on stop failed")

    async def flush(self, *, force: bool = False) -> float | None:
        """Write what is due; the seconds until the next write is due (None: nothing)."""
        now = asyncio.get_running_loop().time()
        next_due: float | None = None
        for zone, entry in list(self._entries.items()):
            if not entry.dirty:
                continue
            if not (force or entry.urgent) and entry.persisted_at is not None:
                wait = entry.persisted_at + self._interval - now
                if wait > 0:
                    next_due = wait if next_due is None else min(next_due, wait)
                    continue
            entry.dirty = entry.urgent = False
            entry.persisted_at = now
            doc = {"type": ZONE_INSIGHT_TYPE, "name": zone, **copy.deepcopy(entry.doc)}
            try:
                await self._store.put(ZONE_INSIGHT_TYPE, "", zone, doc)
            except Exception:
                entry.dirty = True
                log.exception("writing the insight of zone %s failed", zone)
                next_due = self._interval
        return next_due

    def forget(self, zone: str) -> None:
        self._entries.pop(zone, None)

    # -- internals -------------------------------------------------------------------------
    def _changed(self, entry: _Entry, *, urgent: bool = False) -> None:
        entry.dirty = True
        entry.urgent = entry.urgent or urgent
        self._wake.set()

    def _subscription(self, zone: str, sub_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(zone)
        for sub in entry.doc.get("subscriptions", ()) if entry is not None else ():
            if sub.get("id") == sub_id:
                return sub  # type: ignore[no-any-return]
        return None


__all__ = ["COUNTERS", "MAX_SUBSCRIPTIONS", "ZoneInsights"]
