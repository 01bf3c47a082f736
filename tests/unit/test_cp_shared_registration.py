"""Registration with several instances on one store (two registries over one store stand
for two CP instances): pending across instances, agents moving between instances, the
leader's deregistration, and insights written by several instances."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from kumadp.cp.deregistration import Deregistrar
from kumadp.cp.insight_janitor import InsightJanitor
from kumadp.cp.insight_merge import merge_insight, write_merged
from kumadp.cp.instances import InstanceInfo, Instances
from kumadp.cp.registration import LIFECYCLE_AGENT, LIFECYCLE_LABEL
from kumadp.cp.shared_registration import (
    CONNECTION_TYPE,
    PENDING_TYPE,
    SharedDataplaneRegistry,
    connected_instances,
)
from kumadp.cp.store import MemoryStore
from kumadp.resources.model import DATAPLANE_TYPE

KEY = ("default", "web-1")
INSIGHT = "DataplaneInsight"


def dataplane(agent: bool = True) -> dict[str, object]:
    labels = {LIFECYCLE_LABEL: LIFECYCLE_AGENT} if agent else {}
    return {"type": DATAPLANE_TYPE, "mesh": "default", "name": "web-1", "labels": labels}


async def heartbeat(store: MemoryStore, instance: str, age: float = 0.0) -> None:
    beat = datetime.now(UTC) - timedelta(seconds=age)
    info = InstanceInfo(instance, started=beat, heartbeat=beat)
    await store.put("ControlPlaneInstance", "", instance, info.to_spec())


async def test_pending_on_one_instance_cleared_by_the_other() -> None:
    store = MemoryStore()
    a = SharedDataplaneRegistry(store, "a")
    b = SharedDataplaneRegistry(store, "b")
    await a.registering(KEY)  # the bootstrap on a...
    await store.put(DATAPLANE_TYPE, *KEY, dataplane())
    assert await b.pending("default") == {"web-1"}  # ...every instance sees it pending
    b.stream_opened(KEY)  # ...its Envoy on b
    b.listeners_acked(KEY)
    assert await b.flush()
    assert await a.pending("default") == set()
    record = await store.get(CONNECTION_TYPE, *KEY)
    assert set(connected_instances(record)) == {"b"}
    b.listeners_acked(KEY)  # later LDS ACKs write nothing
    assert await b.flush() and b.writes == 1


async def test_a_dataplane_moving_between_instances_is_never_deregistered() -> None:
    store = MemoryStore()
    await heartbeat(store, "a")
    await heartbeat(store, "b")
    a = SharedDataplaneRegistry(store, "a")
    b = SharedDataplaneRegistry(store, "b")
    leader = Deregistrar(store, Instances(store, InstanceInfo("a"), shared=True), delay=0.05)
    await store.put(DATAPLANE_TYPE, *KEY, dataplane())
    a.stream_opened(KEY)
    await a.flush()
    b.stream_opened(KEY)  # the agent reconnected to b before a noticed its stream gone
    await b.flush()
    a.stream_closed(KEY)
    await a.flush()
    for _ in range(3):
        await leader.sweep_once()
        await asyncio.sleep(0.06)
    assert await store.get(DATAPLANE_TYPE, *KEY) is not None
    assert set(connected_instances(await store.get(CONNECTION_TYPE, *KEY))) == {"b"}
    b.stream_closed(KEY)  # gone everywhere: deregistered after the delay
    await b.flush()
    await leader.sweep_once()
    assert await store.get(DATAPLANE_TYPE, *KEY) is not None  # not before the delay
    await asyncio.sleep(0.06)
    await leader.sweep_once()
    assert await store.get(DATAPLANE_TYPE, *KEY) is None
    assert await store.get(CONNECTION_TYPE, *KEY) is None
    assert leader.deregistered == 1


async def test_connections_of_a_dead_instance_count_for_nothing() -> None:
    store = MemoryStore()
    await heartbeat(store, "a")
    await heartbeat(store, "dead", age=60)
    dead = SharedDataplaneRegistry(store, "dead")
    await store.put(DATAPLANE_TYPE, *KEY, dataplane())
    await store.put(DATAPLANE_TYPE, "default", "api-made", {**dataplane(False), "name": "api-made"})
    dead.stream_opened(KEY)
    dead.stream_opened(("default", "api-made"))
    await dead.flush()
    leader = Deregistrar(store, Instances(store, InstanceInfo("a"), shared=True), delay=0)
    await leader.sweep_once()
    assert await store.get(DATAPLANE_TYPE, *KEY) is None
    assert await store.get(DATAPLANE_TYPE, "default", "api-made") is not None  # not an agent's


async def test_a_graceful_stop_leaves_every_record_and_leave_removes_everything() -> None:
    store = MemoryStore()
    a = SharedDataplaneRegistry(store, "a")
    await a.registering(KEY)
    await store.put(DATAPLANE_TYPE, *KEY, dataplane())
    a.stream_opened(KEY)
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    await asyncio.sleep(0.05)
    assert set(connected_instances(await store.get(CONNECTION_TYPE, *KEY))) == {"a"}
    stop.set()
    await asyncio.wait_for(task, 5)
    assert connected_instances(await store.get(CONNECTION_TYPE, *KEY)) == {}
    assert await a.leave(KEY)
    for kind in (DATAPLANE_TYPE, PENDING_TYPE, CONNECTION_TYPE):
        assert await store.get(kind, *KEY) is None


def sub(instance: str, connect: str, disconnect: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"id": f"{instance}-{connect}", "controlPlaneInstanceId": instance}
    out["connectTime"] = connect
    if disconnect:
        out["disconnectTime"] = disconnect
    return out


def test_each_instance_owns_its_part_of_an_insight() -> None:
    stored = {
        "subscriptions": [sub("a", "2026-01-01T00:00:01Z")],
        "agent": {"reportTime": "2026-01-01T00:00:05Z", "dns": 1},
        "mTLS": {"issuedBackend": "ca-1"},
    }
    local = {
        "subscriptions": [sub("b", "2026-01-01T00:00:02Z")],
        "agent": {"reportTime": "2026-01-01T00:00:03Z", "dns": 0},  # older than stored
    }
    merged = merge_insight(stored, local, "b", keep=5)
    assert [s["controlPlaneInstanceId"] for s in merged["subscriptions"]] == ["a", "b"]
    assert merged["agent"]["dns"] == 1 and merged["mTLS"] == {"issuedBackend": "ca-1"}
    newer = {"agent": {"reportTime": "2026-01-01T00:00:09Z", "dns": 2}}
    merged = merge_insight(merged, newer, "a", keep=5)
    assert merged["agent"]["dns"] == 2 and "mTLS" not in merged
    assert [s["controlPlaneInstanceId"] for s in merged["subscriptions"]] == ["b"]


async def test_two_instances_write_one_insight_and_the_janitor_closes_a_dead_ones() -> None:
    store = MemoryStore()
    await heartbeat(store, "a")
    await heartbeat(store, "b", age=60)
    await store.put(DATAPLANE_TYPE, *KEY, dataplane())
    await asyncio.gather(
        write_merged(
            store, INSIGHT, KEY, {"subscriptions": [sub("a", "2026-01-01T00:00:01Z")]}, "a", 5
        ),
        write_merged(
            store, INSIGHT, KEY, {"subscriptions": [sub("b", "2026-01-01T00:00:02Z")]}, "b", 5
        ),
    )
    stored = await store.get(INSIGHT, *KEY)
    assert stored is not None and len(stored.spec["subscriptions"]) == 2
    janitor = InsightJanitor(store, Instances(store, InstanceInfo("a"), shared=True))
    await store.put(
        INSIGHT, "default", "gone", {"type": INSIGHT, "mesh": "default", "name": "gone"}
    )
    await janitor.sweep_once()
    stored = await store.get(INSIGHT, *KEY)
    assert stored is not None
    by_instance = {s["controlPlaneInstanceId"]: s for s in stored.spec["subscriptions"]}
    assert "disconnectTime" not in by_instance["a"] and "disconnectTime" in by_instance["b"]
    assert await store.get(INSIGHT, "default", "gone") is None
    assert janitor.closed_subscriptions == 1
