"""The global CP's zone registry: Online/Offline by heartbeat, one holder per zone name, and
the Zone and ZoneInsight it writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from kumadp.cp.kds.zone_insights import ZoneInsights
from kumadp.cp.kds.zones import ZoneIdentity, ZoneRefused, ZoneRegistry
from kumadp.cp.store import MemoryStore
from testkit.procs import until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry(store: MemoryStore, clock: Clock, timeout: float = 20.0) -> ZoneRegistry:
    insights = ZoneInsights(store, "global-1", persist_interval=0.01)
    return ZoneRegistry(store, "global-1", health_timeout=timeout, clock=clock, insights=insights)


def who(instance: str = "a-1", session: str = "s-1", zone: str = "zone-a") -> ZoneIdentity:
    return ZoneIdentity(zone=zone, instance=instance, session=session, version="0.1.0")


async def test_online_while_streams_are_open_and_heartbeats_fresh() -> None:
    store, clock = MemoryStore(), Clock()
    zones = registry(store, clock)
    assert zones.health_interval == 5.0
    down = await zones.open_stream(who())
    up = await zones.open_stream(who())
    assert up is down and down.streams == 2 and zones.online("zone-a")
    zone = await store.get("Zone", "", "zone-a")
    assert zone is not None and zone.spec == {"type": "Zone", "name": "zone-a", "enabled": True}

    clock.now += 15
    zones.heartbeat(who())
    clock.now += 15
    assert zones.online("zone-a")  # 15 s since the last heartbeat
    clock.now += 6
    assert not zones.online("zone-a")  # 21 s: stale


async def test_a_silent_zone_is_marked_offline_by_the_watchdog() -> None:
    store = MemoryStore()
    insights = ZoneInsights(store, "global-1", persist_interval=0.01)
    zones = ZoneRegistry(store, "global-1", health_timeout=0.2, insights=insights)
    assert zones.health_interval == pytest.approx(0.05)
    stop = asyncio.Event()
    task = asyncio.ensure_future(zones.run(stop))
    try:
        session = await zones.open_stream(who())
        started = asyncio.get_running_loop().time()
        await until(lambda: session.ended.is_set(), "the session timed out", within=2)
        assert 0.2 <= asyncio.get_running_loop().time() - started < 1.0
        assert "timed out" in session.reason and not zones.online("zone-a")

        async def closed() -> bool:
            stored = await store.get("ZoneInsight", "", "zone-a")
            return stored is not None and bool(
                stored.spec["subscriptions"][0].get("disconnectTime")
            )

        await until(closed, "the subscription closed in the store")
    finally:
        stop.set()
        await task


async def test_a_second_instance_is_refused_while_the_first_is_live() -> None:
    store, clock = MemoryStore(), Clock()
    zones = registry(store, clock)
    first = await zones.open_stream(who("a-1", "s-1"))
    with pytest.raises(ZoneRefused, match="already connected from another zone control plane"):
        await zones.open_stream(who("a-2", "s-9"))
    with pytest.raises(ZoneRefused, match="held by another zone control plane"):
        zones.heartbeat(who("a-2", "s-9"))
    assert not first.ended.is_set() and zones.online("zone-a")
    # the first goes silent: the next claim takes over, and the first cannot come back
    clock.now += 21
    second = await zones.open_stream(who("a-2", "s-9"))
    assert first.ended.is_set() and "taken over by instance a-2" in first.reason
    zones.heartbeat(who("a-2", "s-9"))
    with pytest.raises(ZoneRefused):
        await zones.open_stream(who("a-1", "s-2"))
    with pytest.raises(ZoneRefused, match="held by another"):
        zones.heartbeat(who("a-1", "s-1"))
    assert zones.session("zone-a") is second


async def test_a_reconnect_of_the_same_instance_replaces_its_old_connection() -> None:
    store, clock = MemoryStore(), Clock()
    zones = registry(store, clock)
    old = await zones.open_stream(who("a-1", "s-1"))
    new = await zones.open_stream(who("a-1", "s-2"))  # the link was cut; a new connection
    assert old.ended.is_set() and old.reason == "replaced by a new connection"
    assert zones.session("zone-a") is new and zones.online("zone-a")
    with pytest.raises(ZoneRefused, match="was replaced"):
        zones.heartbeat(who("a-1", "s-1"))
    zones.close_stream(old)  # the old streams finishing do not end the new session
    assert zones.online("zone-a")
    zones.close_stream(new)
    assert not zones.online("zone-a")


async def test_zone_insight_subscriptions_in_kumas_shape() -> None:
    store = MemoryStore()
    times = iter(datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(60))
    insights = ZoneInsights(store, "global-1", clock=lambda: next(times))
    ids = []
    for n in range(12):
        ids.append(insights.connected("zone-a", f"a-{n}", "0.1.0"))
        insights.disconnected("zone-a", ids[-1])
    live = insights.connected("zone-a", "a-12", "0.1.0")
    insights.count("zone-a", live, "Mesh", "responsesSent")
    insights.count("zone-a", live, "Mesh", "responsesAcknowledged")
    insights.count("zone-a", live, "Dataplane", "responsesSent", "responsesRejected")
    await insights.flush(force=True)
    stored = await store.get("ZoneInsight", "", "zone-a")
    assert stored is not None
    subs = stored.spec["subscriptions"]
    assert len(subs) == 10  # the last 10
    last = subs[-1]
    assert set(last) == {
        "id",
        "globalInstanceId",
        "zoneInstanceId",
        "connectTime",
        "status",
        "version",
    }
    assert last["status"]["total"] == {
        "responsesSent": 2,
        "responsesAcknowledged": 1,
        "responsesRejected": 1,
    }
    assert last["status"]["stat"]["Mesh"]["responsesAcknowledged"] == 1
    assert last["version"] == {"kumaCp": {"version": "0.1.0"}}
    assert all(s.get("disconnectTime") for s in subs[:-1])

    # a new run of the global CP closes what the previous one left open
    reloaded = ZoneInsights(store, "global-2")
    await reloaded.load()
    doc = reloaded.get("zone-a")
    assert doc is not None and all(s.get("disconnectTime") for s in doc["subscriptions"])


class SlowStore(MemoryStore):
    """Reads that yield to the loop, as a real database's do."""

    async def get(self, type: str, mesh: str, name: str) -> Any:
        await asyncio.sleep(0.01)
        return await super().get(type, mesh, name)


async def test_two_streams_of_a_new_connection_share_one_session() -> None:
    store, clock = SlowStore(), Clock()
    zones = registry(store, clock)
    down, up = await asyncio.gather(zones.open_stream(who()), zones.open_stream(who()))
    assert down is up and down.streams == 2
    doc = zones.insights.get("zone-a")
    assert doc is not None and len(doc["subscriptions"]) == 1
