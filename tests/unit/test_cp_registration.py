"""Registration + reconciler: store changes become snapshots; pending, leave and deregistration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.dp_server import XdsCallbacks
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.registration import LIFECYCLE_AGENT, LIFECYCLE_LABEL, DataplaneRegistry
from kumadp.cp.store.memory import MemoryStore
from kumadp.resources.model import DATAPLANE_TYPE
from kumadp.xds import types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.stream import StreamRejected
from testkit.procs import until


def _dp(name: str, service: str, port: int, *, agent: bool = False, outbound: str = "") -> dict:
    doc: dict = {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {"port": port, "servicePort": port + 1000, "tags": {"kuma.io/service": service}}
            ],
        },
    }
    if outbound:
        doc["networking"]["outbound"] = [{"port": 10000, "tags": {"kuma.io/service": outbound}}]
    if agent:
        doc["labels"] = {LIFECYCLE_LABEL: LIFECYCLE_AGENT}
    return doc


@dataclass
class Env:
    store: MemoryStore
    cache: SnapshotCache
    lifecycle: DataplaneRegistry
    reconciler: Reconciler

    def endpoints(self, node_id: str, cluster: str) -> set[int]:
        snapshot = self.cache.get_snapshot(node_id)
        assert snapshot is not None
        cla = snapshot.resources(types.ENDPOINT)[cluster]
        return {
            lb.endpoint.address.socket_address.port_value
            for group in cla.endpoints
            for lb in group.lb_endpoints
        }


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    store = MemoryStore()
    await ensure_default_mesh(store)
    cache = SnapshotCache()
    holder: list[Reconciler] = []
    lifecycle = DataplaneRegistry(
        store, deregistration_delay=0.05, on_readiness_change=lambda m: holder[0].mark_dirty(m)
    )
    reconciler = Reconciler(store, cache, lifecycle, debounce=0.001)
    holder.append(reconciler)
    stop = asyncio.Event()
    task = asyncio.create_task(reconciler.run(stop))
    try:
        yield Env(store, cache, lifecycle, reconciler)
    finally:
        stop.set()
        await task
        lifecycle.close()


async def _connect(env: Env, name: str) -> None:
    env.lifecycle.stream_opened(("default", name))
    assert await env.reconciler.node_connected(("default", name))


async def test_store_changes_are_pushed_without_polling(env: Env) -> None:
    await env.store.put(
        DATAPLANE_TYPE, "default", "web-1", _dp("web-1", "web", 20001, outbound="backend")
    )
    await _connect(env, "web-1")
    assert env.endpoints("default.web-1", "backend") == set()
    await env.store.put(DATAPLANE_TYPE, "default", "b-1", _dp("b-1", "backend", 20002))
    await until(lambda: env.endpoints("default.web-1", "backend") == {20002})
    await env.store.delete(DATAPLANE_TYPE, "default", "b-1")
    await until(lambda: env.endpoints("default.web-1", "backend") == set())


async def test_agent_registered_dataplane_is_an_endpoint_only_after_its_listeners_ack(
    env: Env,
) -> None:
    await env.store.put(
        DATAPLANE_TYPE, "default", "web-1", _dp("web-1", "web", 20001, outbound="backend")
    )
    await _connect(env, "web-1")
    env.lifecycle.registered(("default", "b-1"), created=True)
    await env.store.put(DATAPLANE_TYPE, "default", "b-1", _dp("b-1", "backend", 20002, agent=True))
    await _connect(env, "b-1")
    # b-1 gets its own config, but nobody sends it traffic yet.
    assert env.cache.get_snapshot("default.b-1") is not None
    await env.reconciler.reconcile_mesh("default")  # a full pass, as after any change
    assert env.endpoints("default.web-1", "backend") == set()
    env.lifecycle.listeners_acked(("default", "b-1"))
    await until(lambda: env.endpoints("default.web-1", "backend") == {20002})


async def test_leave_removes_at_once_but_keeps_the_leaving_envoys_config(env: Env) -> None:
    await env.store.put(
        DATAPLANE_TYPE, "default", "web-1", _dp("web-1", "web", 20001, outbound="backend")
    )
    await env.store.put(
        DATAPLANE_TYPE, "default", "b-1", _dp("b-1", "backend", 20002, agent=True, outbound="web")
    )
    await _connect(env, "web-1")
    await _connect(env, "b-1")
    await until(lambda: env.endpoints("default.web-1", "backend") == {20002})
    leaving = env.cache.get_snapshot("default.b-1")
    assert await env.lifecycle.leave(("default", "b-1"))
    await until(lambda: env.endpoints("default.web-1", "backend") == set())
    assert env.cache.get_snapshot("default.b-1") is leaving


async def test_dropped_agent_is_deregistered_after_the_delay_unless_it_returns(env: Env) -> None:
    for name, port in (("b-1", 20002), ("b-2", 20003)):
        await env.store.put(DATAPLANE_TYPE, "default", name, _dp(name, "backend", port, agent=True))
        await _connect(env, name)
    env.lifecycle.stream_closed(("default", "b-1"))
    env.lifecycle.stream_closed(("default", "b-2"))
    env.lifecycle.stream_opened(("default", "b-2"))  # came back in time

    async def names() -> set[str]:
        return {r.name for r in await env.store.list(DATAPLANE_TYPE, "default")}

    async def only_b2() -> bool:
        return await names() == {"b-2"}

    await until(only_b2, "only b-2 stored", within=2, interval=0.01)


async def test_dataplane_created_through_the_api_is_never_deregistered(env: Env) -> None:
    await env.store.put(DATAPLANE_TYPE, "default", "db-1", _dp("db-1", "db", 20004))
    await _connect(env, "db-1")
    env.lifecycle.stream_closed(("default", "db-1"))
    # Wait until the deregistration timer has fired and its check has run...
    await until(lambda: not env.lifecycle._timers and not env.lifecycle._tasks)
    # ... and it left the dataplane alone.
    assert await env.store.get(DATAPLANE_TYPE, "default", "db-1") is not None


async def test_unknown_node_is_refused(env: Env) -> None:
    env.lifecycle.stream_opened(("default", "ghost"))
    assert not await env.reconciler.node_connected(("default", "ghost"))


# --- issue 16, item 6: a registration without a stream, and a stream without a registration


async def _names(env: Env) -> set[str]:
    return {r.name for r in await env.store.list(DATAPLANE_TYPE, "default")}


async def test_a_bootstrap_whose_stream_never_comes_is_deregistered(env: Env) -> None:
    await env.store.put(DATAPLANE_TYPE, "default", "b-1", _dp("b-1", "backend", 20002, agent=True))
    env.lifecycle.registered(("default", "b-1"), created=True)  # and no stream ever opens
    await env.store.put(DATAPLANE_TYPE, "default", "b-2", _dp("b-2", "backend", 20003, agent=True))
    env.lifecycle.registered(("default", "b-2"), created=True)
    await _connect(env, "b-2")  # its Envoy connected in time
    await until(lambda: not env.lifecycle._timers and not env.lifecycle._tasks)
    assert await _names(env) == {"b-2"}


def _node(name: str, resource: dict | None) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    if resource is not None:
        metadata.update({"dataplane.resource": json.dumps(resource)})
    return base_pb2.Node(id=f"default.{name}", metadata=metadata)


async def test_a_stream_re_registers_an_agent_dataplane_that_is_gone(env: Env) -> None:
    callbacks = XdsCallbacks(env.lifecycle, env.reconciler)
    resource = _dp("b-1", "backend", 20002, agent=True)
    await callbacks.on_stream_open(1, "default.b-1", _node("b-1", resource), {})
    stored = await env.store.get(DATAPLANE_TYPE, "default", "b-1")
    assert stored is not None and stored.spec == resource
    assert env.lifecycle.is_pending(("default", "b-1"))  # an endpoint once its listeners ACK
    assert env.cache.get_snapshot("default.b-1") is not None


@pytest.mark.parametrize("resource", [None, _dp("db-1", "db", 20004), _dp("x", "db", 1)])
async def test_a_stream_does_not_bring_back_what_an_agent_did_not_register(
    env: Env, resource: dict | None
) -> None:
    """No resource in the metadata, one created through the API (deleted there: it stays
    deleted), or one of another name: the stream is refused as before."""
    callbacks = XdsCallbacks(env.lifecycle, env.reconciler)
    with pytest.raises(StreamRejected, match="not known to this control plane"):
        await callbacks.on_stream_open(1, "default.db-1", _node("db-1", resource), {})
    assert await _names(env) == set()
