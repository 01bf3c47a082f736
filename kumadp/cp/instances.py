"""The control plane instances sharing a store, and this one's id.

Each instance of a shared store (PostgreSQL) keeps a ``ControlPlaneInstance`` record up to
date (a heartbeat every ``heartbeat`` seconds; removed on a graceful stop): its id, where
its DP server is reached, when it started. An instance is *live* while its heartbeat is
younger than ``ttl``. Others read these records to learn:

- which instances to list (``GET /control-planes``, ``kumadp ctl get control-planes``);
- which DP servers a bootstrap's ADS cluster lists, so an Envoy can reach another instance
  when its own one dies;
- whose connections and insight subscriptions are still real (the leader's clean-up).

Heartbeats are written with the writer's clock and read with the reader's: instances on
several machines need their clocks in sync to well within ``ttl`` (NTP).

On a store only one instance uses (memory, SQLite) nothing is written: this instance is the
only live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from kumadp.cp.store.base import Store, StoredResource
from kumadp.lifecycle import stopped_within
from kumadp.resources.registry import CONTROL_PLANE_INSTANCE_TYPE

log = logging.getLogger(__name__)

INSTANCE_TYPE = CONTROL_PLANE_INSTANCE_TYPE


def _format(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class InstanceInfo:
    id: str
    dp_server: str = ""  # "host:port" Envoys and agents reach its DP server at ("": unknown)
    api: str = ""  # "host:port" of its HTTP API
    mode: str = "standalone"
    version: str = ""
    started: datetime | None = None
    heartbeat: datetime | None = None

    def to_spec(self) -> dict[str, object]:
        spec: dict[str, object] = {
            "type": INSTANCE_TYPE,
            "name": self.id,
            "dpServer": self.dp_server,
            "apiServer": self.api,
            "mode": self.mode,
            "version": self.version,
        }
        if self.started is not None:
            spec["startTime"] = _format(self.started)
        if self.heartbeat is not None:
            spec["heartbeatTime"] = _format(self.heartbeat)
        return spec

    @classmethod
    def from_stored(cls, stored: StoredResource) -> InstanceInfo:
        spec = stored.spec
        return cls(
            id=stored.name,
            dp_server=str(spec.get("dpServer") or ""),
            api=str(spec.get("apiServer") or ""),
            mode=str(spec.get("mode") or ""),
            version=str(spec.get("version") or ""),
            started=_parse(spec.get("startTime")),
            heartbeat=_parse(spec.get("heartbeatTime")) or stored.modification_time,
        )


class Instances:
    """Component: this instance's heartbeat, and who is live (see the module docstring)."""

    name = "instances"

    def __init__(
        self,
        store: Store,
        me: InstanceInfo,
        *,
        shared: bool,
        heartbeat: float = 2.0,
        ttl: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._clock = clock
        self.me = replace(me, started=me.started or clock())
        self.shared = shared
        self.heartbeat = heartbeat
        self.ttl = ttl

    @property
    def instance_id(self) -> str:
        return self.me.id

    async def run(self, stop: asyncio.Event) -> None:
        if not self.shared:
            await stop.wait()
            return
        try:
            while not stop.is_set():
                try:
                    await self._beat()
                except Exception as exc:
                    log.warning("writing this instance's heartbeat failed: %s", exc)
                await stopped_within(stop, self.heartbeat)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._store.delete(INSTANCE_TYPE, "", self.me.id)

    async def _beat(self) -> None:
        info = replace(self.me, heartbeat=self._clock())
        await self._store.put(INSTANCE_TYPE, "", self.me.id, info.to_spec())

    async def all(self) -> list[tuple[InstanceInfo, bool]]:
        """Every instance on record with whether it is live (this one first)."""
        if not self.shared:
            return [(replace(self.me, heartbeat=self._clock()), True)]
        now = self._clock()
        found = [InstanceInfo.from_stored(s) for s in await self._store.list(INSTANCE_TYPE)]
        out = [(replace(self.me, heartbeat=now), True)]
        for info in found:
            if info.id == self.me.id:
                continue
            live = info.heartbeat is not None and now - info.heartbeat <= timedelta(
                seconds=self.ttl
            )
            out.append((info, live))
        return out

    async def live(self) -> list[InstanceInfo]:
        """The live instances, this one first."""
        return [info for info, live in await self.all() if live]

    async def live_ids(self) -> set[str]:
        return {info.id for info in await self.live()}


__all__ = ["INSTANCE_TYPE", "InstanceInfo", "Instances"]
