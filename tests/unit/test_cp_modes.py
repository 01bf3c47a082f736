"""What each control-plane mode refuses or adds: API writes, bootstraps, the DP port, token
minting, the ``kuma.io/zone`` tag, mTLS without a CA in a zone, zone overviews and the
global inventory."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from kumadp.cp.api import create_app
from kumadp.cp.api.insights import insight_routes
from kumadp.cp.api.zones import token_refusals, zone_routes
from kumadp.cp.bootstrap import BootstrapError, BootstrapParams, BootstrapService
from kumadp.cp.ca import MeshCAs
from kumadp.cp.certs import dataplane_uris
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.generate.policies import rbac
from kumadp.cp.mesh_state import MeshStateBuilder
from kumadp.cp.mode_guards import (
    GLOBAL_REFUSES_DATAPLANES,
    RefusingBootstrap,
    RefusingDpServer,
    WriteGuard,
)
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.store import MemoryStore
from kumadp.cp.tokens import ISSUE_ON_GLOBAL
from kumadp.resources import parse_dataplane
from kumadp.resources.policies import (
    ALLOW,
    DENY,
    MESH,
    MESH_SUBSET,
    From,
    MeshTrafficPermission,
    TargetRef,
)
from kumadp.resources.zones import stamp_zone_tag
from kumadp.wire import agent_pb2, agent_pb2_grpc
from kumadp.xds.cache import SnapshotCache
from testkit.procs import until
from tests.unit.test_api import assert_error, dp_doc, mesh_doc
from tests.unit.test_generate_mtls import _allows, _caller

BASE_URL = "http://127.0.0.1:5681"  # a loopback caller: an admin


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await ensure_default_mesh(store)
    return store


async def client_for(store: MemoryStore, mode: str, zone: str | None = None) -> httpx.AsyncClient:
    extra = [*(token_refusals(ISSUE_ON_GLOBAL) if mode == "zone" else []), *zone_routes(store)]
    extra += insight_routes(store, None, SnapshotCache())
    app = create_app(
        store,
        RefusingBootstrap() if mode == "global" else None,
        extra_routes=extra,
        guard=WriteGuard(mode, zone),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


@pytest.fixture
async def zone_api(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(store, "zone", "zone-a") as client:
        yield client


@pytest.fixture
async def global_api(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(store, "global") as client:
        yield client


async def test_a_zone_refuses_writes_of_what_global_owns(zone_api: httpx.AsyncClient) -> None:
    for url, doc in [
        ("/meshes/other", mesh_doc("other")),
        (
            "/meshes/default/meshtrafficpermissions/deny",
            {"type": "MeshTrafficPermission", "spec": {}},
        ),
    ]:
        body = assert_error(await zone_api.put(url, json=doc), 400)
        assert "apply it on the global control plane" in body["details"]
    body = assert_error(await zone_api.delete("/meshes/default"), 400)
    assert body["details"].startswith("zone control plane: Mesh is managed by the global")
    assert (await zone_api.get("/meshes/default")).status_code == 200  # reads are fine
    for url in ("/tokens/dataplane", "/tokens/dataplane/revoke"):
        body = assert_error(await zone_api.post(url, json={"name": "x"}), 400)
        assert body["details"] == "zone control plane: generate tokens on the global control plane"


async def test_a_zone_stamps_its_zone_on_every_inbound(
    zone_api: httpx.AsyncClient, store: MemoryStore
) -> None:
    resp = await zone_api.put("/meshes/default/dataplanes/web-1", json=dp_doc())
    assert resp.status_code == 201, resp.text
    stored = await store.get("Dataplane", "default", "web-1")
    assert stored is not None
    assert stored.spec["networking"]["inbound"][0]["tags"]["kuma.io/zone"] == "zone-a"

    liar = dp_doc(name="web-2")
    liar["networking"]["inbound"][0]["tags"]["kuma.io/zone"] = "zone-b"
    body = assert_error(await zone_api.put("/meshes/default/dataplanes/web-2", json=liar), 400)
    assert body["causes"] == [
        {
            "field": 'networking.inbound[0].tags["kuma.io/zone"]',
            "message": 'must be "zone-a" (the zone of this control plane), not "zone-b"',
        }
    ]


async def test_global_refuses_dataplanes(global_api: httpx.AsyncClient) -> None:
    body = assert_error(
        await global_api.put("/meshes/default/dataplanes/web-1", json=dp_doc()), 400
    )
    assert "belong to the zones" in body["details"]
    resp = await global_api.post("/bootstrap", json={"mesh": "default", "name": "web-1"})
    body = assert_error(resp, 422)
    assert body["details"] == GLOBAL_REFUSES_DATAPLANES
    # meshes and policies are written here
    assert (await global_api.put("/meshes/payments", json=mesh_doc("payments"))).status_code == 201


async def test_the_global_dp_port_refuses_ads_and_agent_calls() -> None:
    import asyncio

    server = RefusingDpServer(address="127.0.0.1", port=0, tls=None)
    stop = asyncio.Event()
    task = asyncio.ensure_future(server.run(stop))
    try:
        await until(lambda: server.bound_port is not None, "the DP port listening")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel:
            ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = ads.DeltaAggregatedResources()
            with pytest.raises(grpc.aio.AioRpcError) as ads_error:
                # the refusal may come before the write is done: either raises it
                await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url="x"))
                await call.read()
            agent = agent_pb2_grpc.AgentChannelStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as leave_error:
                await agent.Leave(agent_pb2.LeaveRequest(mesh="default", name="x"))
        for error in (ads_error.value, leave_error.value):
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error.details() == GLOBAL_REFUSES_DATAPLANES
    finally:
        stop.set()
        await task


async def test_a_zone_bootstrap_stamps_the_zone_tag(store: MemoryStore) -> None:
    service = BootstrapService(
        store, BootstrapParams(xds_port=5678), DataplaneRegistry(store), zone="zone-a"
    )
    body = {"mesh": "default", "name": "web-1", "dataplaneResource": json.dumps(dp_doc())}
    await service.handle(body, "cp.example")
    stored = await store.get("Dataplane", "default", "web-1")
    assert stored is not None
    assert stored.spec["networking"]["inbound"][0]["tags"]["kuma.io/zone"] == "zone-a"
    liar = dp_doc(name="web-2")
    liar["networking"]["inbound"][0]["tags"]["kuma.io/zone"] = "zone-b"
    with pytest.raises(
        BootstrapError,
        match=r'dataplaneResource: networking\.inbound\[0\]\.tags\["kuma\.io/zone"\]',
    ):
        await service.handle({**body, "name": "web-2", "dataplaneResource": json.dumps(liar)}, "h")


def test_the_zone_tag_is_usable_in_mesh_subset_rules() -> None:
    dataplane = stamp_zone_tag(parse_dataplane(dp_doc()), "zone-a")
    assert "kuma://kuma.io/zone/zone-a" in dataplane_uris(dataplane)  # what its certificate says
    only_zone_a = MeshTrafficPermission(
        "default",
        "zone-a-only",
        TargetRef(MESH),
        (
            From(TargetRef(MESH), DENY),
            From(TargetRef(MESH_SUBSET, tags={"kuma.io/zone": "zone-a"}), ALLOW),
        ),
    )
    inbound = dataplane.networking.inbound[0]
    rules = rbac.rbac_rules(rbac.rules_for([only_zone_a], dataplane, inbound), "default")
    assert _allows(rules, _caller("web", **{"kuma.io/zone": "zone-a"}))
    assert not _allows(rules, _caller("web", **{"kuma.io/zone": "zone-b"}))
    assert not _allows(rules, _caller("web"))
    # and as a target: a policy for zone-a's inbounds only
    for_zone_b = replace(
        only_zone_a, target_ref=TargetRef(MESH_SUBSET, tags={"kuma.io/zone": "zone-b"})
    )
    assert inbound.tags["kuma.io/zone"] == "zone-a"
    assert not rbac.rules_for([for_zone_b], dataplane, inbound)


async def test_a_zone_waits_for_its_intermediate_ca_and_never_serves_plaintext(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    mesh: dict[str, Any] = {
        "type": "Mesh",
        "name": "secure",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
    }
    await store.put("Mesh", "", "secure", mesh)
    cas = MeshCAs(store, create=False)
    builder = MeshStateBuilder(store, DataplaneRegistry(store), cas=cas, ca_from_global=True)
    with caplog.at_level(logging.WARNING):
        state = await builder.build("secure")
        await builder.build("secure")
    # mTLS stays on (a config that needs certificates), identities wait for the CA
    assert state is not None and state.mtls is not None and state.ca is None and state.ca_pending
    waits = [r for r in caplog.records if "waits for its intermediate CA" in r.message]
    assert len(waits) == 1  # said once, not on every rebuild
    from kumadp.resources import parse_mesh

    assert await cas.ca_for(parse_mesh(mesh)) is None  # never a CA made in a zone
    assert not await store.list("MeshCA")


async def test_zone_overviews_and_the_global_inventory(
    global_api: httpx.AsyncClient, store: MemoryStore
) -> None:
    await store.put("Zone", "", "zone-a", {"type": "Zone", "name": "zone-a", "enabled": True})
    sub = {"id": "1", "globalInstanceId": "g", "connectTime": "2026-01-01T00:00:00Z"}
    await store.put(
        "ZoneInsight",
        "",
        "zone-a",
        {"type": "ZoneInsight", "name": "zone-a", "subscriptions": [sub]},
    )
    listed = (await global_api.get("/zones+insights")).json()
    assert listed["total"] == 1 and listed["next"] is None
    (item,) = listed["items"]
    assert item["type"] == "ZoneOverview" and item["name"] == "zone-a"
    assert item["zone"] == {"enabled": True}
    assert item["zoneInsight"] == {"subscriptions": [sub]}
    assert (await global_api.get("/zones+insights/zone-a")).json()["name"] == "zone-a"
    assert (await global_api.get("/zones/zone-a")).json()["enabled"] is True
    assert_error(await global_api.get("/zones+insights/nope"), 404)

    # a zone's dataplane and its insight, as KDS stores them at global
    labels = {"kuma.io/origin": "zone", "kuma.io/zone": "zone-a", "kuma.io/display-name": "web-1"}
    doc = {**dp_doc(name="web-1-0123456789abcdef"), "labels": labels}
    await store.put("Dataplane", "default", doc["name"], doc)
    insight = {
        "type": "DataplaneInsight",
        "mesh": "default",
        "name": doc["name"],
        "labels": labels,
        "subscriptions": [sub],
    }
    await store.put("DataplaneInsight", "default", doc["name"], insight)
    (overview,) = (await global_api.get("/meshes/default/dataplanes+insights")).json()["items"]
    assert overview["labels"]["kuma.io/zone"] == "zone-a"
    assert overview["dataplaneInsight"]["online"] is True
