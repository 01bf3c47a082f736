"""DataplaneInsight: the control plane's view of every dataplane, Kuma's shape where Kuma has
one.

- ``subscriptions[]`` (the last ``MAX_SUBSCRIPTIONS`` ADS streams): ``id``,
  ``controlPlaneInstanceId``, ``connectTime``, ``disconnectTime`` (absent while open),
  ``status{lastUpdateTime, total, cds, eds, lds, rds}`` each with ``responsesSent``,
  ``responsesAcknowledged``, ``responsesRejected`` (integers; Kuma's protojson prints them as
  strings), and ``version{kumaDp, envoy}`` from the Envoy node metadata the bootstrap set.
- ``mTLS{certificateExpirationTime, lastCertificateRegeneration, certificateRegenerations,
  issuedBackend}`` from the agent's report.
- ``agent``: everything else the agent reports (kumadp only), with ``reportTime``.
- ``lastNack{type, version, error, time}`` once Envoy has rejected something.

Stream events come from the DP server's xDS callbacks, the agent's part from
``ReportInsight``. The state lives in memory and is written to the store as resource type
``DataplaneInsight`` at most once per ``persist_interval`` per dataplane, so a restarted CP
shows the last known state (``load`` marks the subscriptions that were open as disconnected
at the new CP's start). A dataplane's insight goes when its Dataplane is deleted.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kumadp.cp.insight_merge import merged_views, write_merged
from kumadp.cp.registration import NodeKey
from kumadp.cp.store.base import ChangeEvent, Store
from kumadp.cp.store.feed import following
from kumadp.resources.model import DATAPLANE_TYPE
from kumadp.resources.registry import DATAPLANE_INSIGHT_TYPE
from kumadp.timefmt import format_time, parse_time
from kumadp.xds import types as xds_types

log = logging.getLogger(__name__)

INSIGHT_TYPE = DATAPLANE_INSIGHT_TYPE
MAX_SUBSCRIPTIONS = 5
XDS_TYPES = ("cds", "eds", "lds", "rds")
MTLS_FIELDS = (
    "certificateExpirationTime",
    "lastCertificateRegeneration",
    "certificateRegenerations",
    "issuedBackend",
)


def control_plane_instance_id() -> str:
    """``<hostname>-<pid>``: tells apart the CPs (and the restarts of one) a DP talked to."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _counters() -> dict[str, int]:
    return {"responsesSent": 0, "responsesAcknowledged": 0, "responsesRejected": 0}


def is_online(insight: Mapping[str, Any]) -> bool:
    """Kuma's rule: a subscription with a connect time and no disconnect time."""
    for sub in insight.get("subscriptions") or ():
        if isinstance(sub, dict) and sub.get("connectTime") and not sub.get("disconnectTime"):
            return True
    return False


@dataclass
class _Entry:
    doc: dict[str, Any] = field(default_factory=dict)  # the insight without type/mesh/name
    dirty: bool = False
    persisted_at: float | None = None  # loop time of the last write


class InsightStore:
    """Per-dataplane insights of one CP. Use from the event loop's thread only."""

    name = "insights"

    def __init__(
        self,
        store: Store,
        *,
        instance_id: str | None = None,
        persist_interval: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shared: bool = False,
        insight_type: str = INSIGHT_TYPE,
        resource_type: str = DATAPLANE_TYPE,
    ) -> None:
        """``insight_type`` of ``resource_type``: DataplaneInsight by default; a zone CP
        keeps ZoneIngressInsight and ZoneEgressInsight in stores of their own (keys
        ``("", name)``)."""
        self._store = store
        self.insight_type = insight_type
        self.resource_type = resource_type
        if insight_type != INSIGHT_TYPE:
            self.name = f"{insight_type.lower()}s"  # the component: zoneingressinsights
        # Several instances on the store: each writes only its part (kumadp.cp.insight_merge)
        self.shared = shared
        self.instance_id = instance_id or control_plane_instance_id()
        self._interval = persist_interval
        self._clock = clock
        self._entries: dict[NodeKey, _Entry] = {}
        self._streams: dict[int, tuple[NodeKey, str]] = {}  # stream id -> (key, sub id)
        self._deleted: set[NodeKey] = set()  # to delete from the store
        self._resync = False  # the change feed asked for a reload
        self._wake = asyncio.Event()
        self.started_at = clock()

    # -- queries ---------------------------------------------------------------------------
    def get(self, key: NodeKey) -> dict[str, Any] | None:
        """A copy of the insight with ``online``; None when nothing is known."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        out = copy.deepcopy(entry.doc)
        out["online"] = is_online(out)
        return out

    def keys(self) -> list[NodeKey]:
        return sorted(self._entries)

    async def views(self, mesh: str | None) -> dict[NodeKey, dict[str, Any]]:
        """Every insight of ``mesh`` (None: every mesh) with ``online``, for the API."""
        if not self.shared:
            keys = [k for k in self._entries if mesh is None or k[0] == mesh]
            return {k: v for k in keys if (v := self.get(k)) is not None}
        local = {k: e.doc for k, e in self._entries.items()}
        found = await merged_views(
            self._store, self.insight_type, mesh, local, self.instance_id, MAX_SUBSCRIPTIONS
        )
        return {k: {**doc, "online": is_online(doc)} for k, doc in found.items()}

    def online(self, key: NodeKey) -> bool:
        entry = self._entries.get(key)
        return entry is not None and is_online(entry.doc)

    # -- xDS stream events -----------------------------------------------------------------
    def stream_opened(
        self, stream_id: int, key: NodeKey, version: Mapping[str, Any] | None = None
    ) -> None:
        now = format_time(self._clock())
        entry = self._entry(key)
        sub: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "controlPlaneInstanceId": self.instance_id,
            "connectTime": now,
            "status": {"lastUpdateTime": now, "total": _counters()}
            | {t: _counters() for t in XDS_TYPES},
            "version": _version(version),
        }
        subs: list[dict[str, Any]] = entry.doc.setdefault("subscriptions", [])
        subs.append(sub)
        del subs[:-MAX_SUBSCRIPTIONS]
        self._streams[stream_id] = (key, sub["id"])
        self._changed(key, entry)

    def stream_closed(self, stream_id: int) -> None:
        found = self._streams.pop(stream_id, None)
        if found is None:
            return
        key, sub_id = found
        sub = self._subscription(key, sub_id)
        if sub is None:
            return
        sub["disconnectTime"] = format_time(self._clock())
        self._changed(key, self._entries[key])

    def response_sent(self, key: NodeKey, type_url: str) -> None:
        self._count(key, type_url, "responsesSent")

    def acked(self, key: NodeKey, type_url: str) -> None:
        self._count(key, type_url, "responsesAcknowledged")

    def nacked(self, key: NodeKey, type_url: str, version: str, error: str) -> None:
        if not self._count(key, type_url, "responsesRejected"):
            return
        entry = self._entries[key]
        entry.doc["lastNack"] = {
            "type": xds_types.SHORT_NAMES.get(type_url, type_url),
            "version": version,
            "error": error,
            "time": format_time(self._clock()),
        }

    # -- the agent's report ----------------------------------------------------------------
    def report(self, key: NodeKey, report: Mapping[str, Any]) -> None:
        """Merge what the agent reported: ``mTLS`` (Kuma's fields) and everything else as
        ``agent`` (replaced as a whole, with ``reportTime``)."""
        entry = self._entry(key)
        mtls = report.get("mTLS")
        if isinstance(mtls, dict):
            kept = {k: mtls[k] for k in MTLS_FIELDS if mtls.get(k) is not None}
            if kept:
                entry.doc["mTLS"] = kept
            else:
                entry.doc.pop("mTLS", None)
        elif "mTLS" in report:
            entry.doc.pop("mTLS", None)
        agent = {k: v for k, v in report.items() if k != "mTLS"}
        agent["reportTime"] = format_time(self._clock())
        entry.doc["agent"] = agent
        self._changed(key, entry)

    # -- persistence -----------------------------------------------------------------------
    async def load(self) -> int:
        """Read the stored insights (call before any stream opens). Subscriptions left open
        by a previous CP are closed at this CP's start time; insights of dataplanes no longer
        stored are deleted. Returns how many were loaded. Shared: nothing to load (the
        leader's janitor closes the subscriptions of instances that are gone)."""
        if self.shared:
            return 0
        started = format_time(self.started_at)
        live = {(r.mesh, r.name) for r in await self._store.list(self.resource_type)}
        loaded = 0
        for stored in await self._store.list(self.insight_type):
            key = (stored.mesh, stored.name)
            if key not in live:
                await self._store.delete(self.insight_type, *key)
                continue
            doc = {k: v for k, v in stored.spec.items() if k not in ("type", "mesh", "name")}
            subs = [s for s in doc.get("subscriptions") or () if isinstance(s, dict)]
            changed = False
            for sub in subs:
                if sub.get("connectTime") and not sub.get("disconnectTime"):
                    sub["disconnectTime"] = started
                    changed = True
            doc["subscriptions"] = subs
            current = self._entries.get(key)
            if current is not None:  # a stream came first: keep its subscriptions last
                doc["subscriptions"] = (subs + current.doc.get("subscriptions", []))[
                    -MAX_SUBSCRIPTIONS:
                ]
                doc.update({k: v for k, v in current.doc.items() if k != "subscriptions"})
                changed = True
            self._entries[key] = entry = _Entry(doc)
            if changed:
                self._changed(key, entry)
            loaded += 1
        if loaded:
            log.info("loaded %d dataplane insights", loaded)
        return loaded

    async def run(self, stop: asyncio.Event) -> None:
        """Component: writes changed insights to the store (at most once per interval per
        dataplane) and forgets those of deleted dataplanes; flushes on stop."""
        async with following(self._store, self._on_store_change, (self.resource_type,)):
            stop_task = asyncio.ensure_future(stop.wait())
            try:
                while not stop.is_set():
                    if self._resync:
                        await self._forget_missing()
                    due = await self.flush()
                    self._wake.clear()
                    waits: set[asyncio.Future[Any]] = {stop_task}
                    wake = asyncio.ensure_future(self._wake.wait())
                    waits.add(wake)
                    await asyncio.wait(waits, timeout=due, return_when=asyncio.FIRST_COMPLETED)
                    wake.cancel()
            finally:
                stop_task.cancel()
                try:
                    await self.flush(force=True)
                except Exception:
                    log.exception("writing the dataplane insights on stop failed")

    async def _forget_missing(self) -> None:
        """After a store resync: forget the insights of dataplanes that are gone."""
        self._resync = False
        present = {(r.mesh, r.name) for r in await self._store.list(self.resource_type)}
        for key in [k for k in self._entries if k not in present]:
            self.forget(key)

    async def flush(self, *, force: bool = False) -> float | None:
        """Write what is due; returns the seconds until the next write is due (None: none)."""
        loop_now = asyncio.get_running_loop().time()
        deleted, self._deleted = self._deleted, set()
        for key in deleted:
            if key not in self._entries:
                await self._store.delete(self.insight_type, *key)
        next_due: float | None = None
        for key, entry in list(self._entries.items()):
            if not entry.dirty:
                continue
            if not force and entry.persisted_at is not None:
                wait = entry.persisted_at + self._interval - loop_now
                if wait > 0:
                    next_due = wait if next_due is None else min(next_due, wait)
                    continue
            entry.dirty = False
            entry.persisted_at = loop_now
            spec = {"type": self.insight_type, "mesh": key[0], "name": key[1], **entry.doc}
            try:
                if self.shared:
                    await write_merged(
                        self._store,
                        self.insight_type,
                        key,
                        spec,
                        self.instance_id,
                        MAX_SUBSCRIPTIONS,
                    )
                else:
                    await self._store.put(self.insight_type, key[0], key[1], copy.deepcopy(spec))
            except Exception as exc:
                entry.dirty = True
                log.warning("writing the insight of %s.%s failed: %s", *key, exc)
                next_due = self._interval
        return next_due

    def forget(self, key: NodeKey) -> None:
        """The dataplane is gone: drop its insight (and, soon, the stored copy)."""
        self._entries.pop(key, None)
        for stream_id, (k, _) in list(self._streams.items()):
            if k == key:
                del self._streams[stream_id]
        self._deleted.add(key)
        self._wake.set()

    # -- internals -------------------------------------------------------------------------
    def _on_store_change(self, event: ChangeEvent) -> None:
        if event.is_resync:
            self._resync = True
            self._wake.set()
        elif event.type == self.resource_type and event.op == "delete":
            self.forget((event.mesh, event.name))

    def _entry(self, key: NodeKey) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
            self._deleted.discard(key)
        return entry

    def _changed(self, key: NodeKey, entry: _Entry) -> None:
        entry.dirty = True
        self._wake.set()

    def _subscription(self, key: NodeKey, sub_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        for sub in entry.doc.get("subscriptions", ()):
            if sub.get("id") == sub_id:
                return sub  # type: ignore[no-any-return]
        return None

    def _current(self, key: NodeKey) -> dict[str, Any] | None:
        """The newest open subscription of the node (ACKs carry no stream id)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        for sub in reversed(entry.doc.get("subscriptions", ())):
            if not sub.get("disconnectTime"):
                return sub  # type: ignore[no-any-return]
        return None

    def _count(self, key: NodeKey, type_url: str, counter: str) -> bool:
        sub = self._current(key)
        if sub is None:
            return False
        status = sub["status"]
        status["total"][counter] += 1
        short = xds_types.SHORT_NAMES.get(type_url)
        if short in XDS_TYPES:
            status[short][counter] += 1
        status["lastUpdateTime"] = format_time(self._clock())
        self._changed(key, self._entries[key])
        return True


def _version(version: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{kumaDp, envoy}`` from the node metadata's ``version`` (only objects kept)."""
    if not isinstance(version, Mapping):
        return {}
    return {
        k: dict(v) for k, v in version.items() if k in ("kumaDp", "envoy") and isinstance(v, dict)
    }


__all__ = [
    "INSIGHT_TYPE",
    "MAX_SUBSCRIPTIONS",
    "InsightStore",
    "control_plane_instance_id",
    "format_time",
    "is_online",
    "parse_time",
]
