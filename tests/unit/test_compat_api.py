"""Kuma's HTTP API paths and shapes (issue 16, item 5): overview filters and paths, 404 for a
missing mesh, the index ids, ``/_resources``, ``/policies``, ``/who-am-i``, ``/config``,
``/global-insights``, a dataplane's ``xds``/``stats``/``clusters`` (read through its agent)
and ``_rules``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.api import create_app
from kumadp.cp.api.insights import insight_routes
from kumadp.cp.api.inspect import inspect_routes
from kumadp.cp.api.meta import display_names, meta_routes
from kumadp.cp.api.rules import rules_routes
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.insights import InsightStore
from kumadp.cp.instance import CpInstance
from kumadp.cp.runtime.config import ControlPlaneConfig
from kumadp.cp.runtime.kuma_config import config_document
from kumadp.cp.store import MemoryStore
from kumadp.resources.registry import REGISTRY
from kumadp.wire import agent_pb2
from kumadp.xds.cache import SnapshotCache

BASE = "http://127.0.0.1:5681"


def dp(name: str, service: str, version: str = "v1", address: str = "10.0.0.1") -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "labels": {"app": service},
        "networking": {
            "address": address,
            "inbound": [
                {
                    "port": 10001,
                    "name": "main",
                    "servicePort": 8080,
                    "tags": {"kuma.io/service": service, "version": version},
                },
                {"port": 10002, "servicePort": 8081, "tags": {"kuma.io/service": f"{service}-adm"}},
            ],
        },
    }


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await ensure_default_mesh(store)
    await store.put("Dataplane", "default", "backend-1", dp("backend-1", "backend"))
    await store.put("Dataplane", "default", "backend-2", dp("backend-2", "backend", "v2"))
    await store.put("Dataplane", "default", "web-1", dp("web-1", "web"))
    return store


@pytest.fixture
def hub() -> AgentHub:
    return AgentHub()


def app_for(store: MemoryStore, hub: AgentHub, instance: CpInstance | None = None) -> Any:
    config = ControlPlaneConfig(store="memory", api_port=5681, dp_auth="none")
    routes = [
        *insight_routes(store, InsightStore(store), SnapshotCache()),
        *meta_routes(store, config_document(config)),
        *inspect_routes(store, hub),
        *rules_routes(store),
    ]
    return create_app(store, extra_routes=routes, instance=instance)


@pytest.fixture
async def client(store: MemoryStore, hub: AgentHub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_for(store, hub, CpInstance(store, "cp-1")))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


@pytest.fixture
async def remote(store: MemoryStore, hub: AgentHub) -> AsyncIterator[httpx.AsyncClient]:
    """A client from another host."""
    transport = httpx.ASGITransport(app=app_for(store, hub), client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


# --- dataplanes+insights --------------------------------------------------------------------


async def test_overview_paths_and_filters(client: httpx.AsyncClient) -> None:
    everyone = ["backend-1", "backend-2", "web-1"]
    assert names(await client.get("/meshes/default/dataplanes+insights")) == everyone
    assert names(await client.get("/meshes/default/dataplanes/_overview")) == everyone
    tagged = await client.get(
        "/meshes/default/dataplanes+insights", params={"tag": "kuma.io/service:backend"}
    )
    assert names(tagged) == ["backend-1", "backend-2"]
    both = await client.get(
        "/meshes/default/dataplanes+insights",
        params=[("tag", "kuma.io/service:back"), ("tag", "version:v2")],  # fuzzy, ANDed
    )
    assert names(both) == ["backend-2"]
    assert names(await client.get("/dataplanes+insights", params={"name": "end-"})) == [
        "backend-1",
        "backend-2",
    ]
    assert names(await client.get("/dataplanes+insights", params={"gateway": "true"})) == []
    assert names(await client.get("/dataplanes+insights", params={"gateway": "false"})) == everyone


async def test_one_overview(client: httpx.AsyncClient) -> None:
    for path in (
        "/meshes/default/dataplanes+insights/web-1",
        "/meshes/default/dataplanes/web-1/_overview",
    ):
        body = (await client.get(path)).json()
        assert body["type"] == "DataplaneOverview" and body["name"] == "web-1"
    missing = await client.get("/meshes/default/dataplanes+insights/nope")
    assert missing.status_code == 404


async def test_a_missing_mesh_is_a_404_everywhere(client: httpx.AsyncClient) -> None:
    for path in (
        "/meshes/nope/dataplanes",
        "/meshes/nope/meshtrafficpermissions",
        "/meshes/nope/dataplanes+insights",
        "/meshes/nope/dataplanes/_overview",
        "/meshes/nope/dataplanes/x/_rules",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        body = response.json()
        assert body["status"] == 404 and body["detail"] == 'Mesh "nope" not found'


# --- the index and the API about itself ------------------------------------------------------


async def test_index_has_instance_and_cluster_ids(store: MemoryStore, hub: AgentHub) -> None:
    ids = []
    for instance in ("cp-1", "cp-2"):  # two instances on one store: one cluster
        transport = httpx.ASGITransport(app=app_for(store, hub, CpInstance(store, instance)))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            index = (await c.get("/")).json()
        assert index["instanceId"] == instance
        ids.append(index["clusterId"])
    assert ids[0] == ids[1] and len(ids[0]) == 36


async def test_resources_and_policies(client: httpx.AsyncClient) -> None:
    resources = {r["name"]: r for r in (await client.get("/_resources")).json()["resources"]}
    assert set(resources) == {t.name for t in REGISTRY.served()}
    assert {"Dataplane", "Mesh", "MeshTrafficPermission", "MeshTimeout", "Zone"} <= set(resources)
    assert resources["MeshTrafficPermission"] == {
        "includeInFederation": True,
        "name": "MeshTrafficPermission",
        "path": "meshtrafficpermissions",
        "pluralDisplayName": "Mesh Traffic Permissions",
        "policy": {
            "hasFromTargetRef": True,
            "hasRulesTargetRef": False,
            "hasToTargetRef": False,
            "isFromAsRules": False,
            "isTargetRef": True,
        },
        "readOnly": False,
        "scope": "Mesh",
        "shortName": "mtp",
        "singularDisplayName": "Mesh Traffic Permission",
    }
    assert resources["Mesh"]["shortName"] == "m" and resources["Mesh"]["scope"] == "Global"
    policies = {p["name"]: p for p in (await client.get("/policies")).json()["policies"]}
    assert sorted(policies) == sorted(t.name for t in REGISTRY.policies())
    mtp, retry, timeout = (
        policies[n] for n in ("MeshTrafficPermission", "MeshRetry", "MeshTimeout")
    )
    assert mtp["isInbound"] is True and mtp["isOutbound"] is False
    assert retry["isInbound"] is False and retry["isOutbound"] is True
    assert timeout["isInbound"] is True and timeout["isOutbound"] is True
    assert display_names("Mesh") == ("Mesh", "Meshes")


async def test_who_am_i_and_config(client: httpx.AsyncClient, remote: httpx.AsyncClient) -> None:
    assert (await client.get("/who-am-i")).json() == {
        "name": "mesh-system:admin",
        "groups": ["mesh-system:admin", "mesh-system:authenticated"],
    }
    assert (await remote.get("/who-am-i")).json()["name"] == "mesh-system:anonymous"
    config = (await client.get("/config")).json()
    assert config["apiServer"]["http"]["port"] == 5681
    assert config["dpServer"]["authn"]["dpProxy"]["type"] == "none"
    assert config["store"]["type"] == "memory"
    assert (await remote.get("/config")).status_code == 401  # anonymous: needs an admin


async def test_global_insights(client: httpx.AsyncClient) -> None:
    body = (await client.get("/global-insights")).json()
    assert body["type"] == "GlobalInsights" and body["creationTime"].endswith("Z")
    assert body["resources"] == {
        "Mesh": {"total": 1},
        "Zone": {"total": 0},
        "ZoneIngress": {"total": 0},
        "ZoneEgress": {"total": 0},
    }


# --- inspecting a dataplane --------------------------------------------------------------------


async def test_rules_of_a_dataplane(client: httpx.AsyncClient) -> None:
    policy = {
        "type": "MeshTrafficPermission",
        "spec": {
            "targetRef": {"kind": "Dataplane", "labels": {"app": "backend"}, "sectionName": "main"},
            "from": [
                {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}}
            ],
        },
    }
    put = await client.put("/meshes/default/meshtrafficpermissions/no-web", json=policy)
    assert put.status_code == 201, put.text
    body = (await client.get("/meshes/default/dataplanes/backend-1/_rules")).json()
    assert body["resource"] == {
        "labels": {"app": "backend"},
        "mesh": "default",
        "name": "backend-1",
        "type": "Dataplane",
    }
    (mtp,) = [r for r in body["rules"] if r["type"] == "MeshTrafficPermission"]
    main, admin = mtp["fromRules"]
    assert main["inbound"] == {
        "port": 10001,
        "name": "main",
        "tags": {"kuma.io/service": "backend", "version": "v1"},
    }
    assert [
        (r["conf"]["action"], r["origin"][0]["resourceMeta"]["name"]) for r in main["rules"]
    ] == [
        ("Allow", "allow-all-default"),
        ("Deny", "no-web"),
    ]
    assert [r["origin"][0]["resourceMeta"]["name"] for r in admin["rules"]] == ["allow-all-default"]


async def test_envoy_admin_is_read_through_the_agent(
    client: httpx.AsyncClient, remote: httpx.AsyncClient, hub: AgentHub
) -> None:
    # no agent watching: 503 with the reason
    response = await client.get("/meshes/default/dataplanes/web-1/stats")
    assert response.status_code == 503
    assert response.json()["detail"] == (
        "dataplane default.web-1 has no agent connected to this control plane"
    )
    asked: list[str] = []

    async def agent() -> None:  # the agent's side of Watch: answers every admin request
        async for update in hub.watch("default", "web-1", []):
            if update.HasField("admin_request"):
                request = update.admin_request
                asked.append(request.path)
                body = b'{"configs": []}' if "config_dump" in request.path else b"a.b: 1\n"
                reply = agent_pb2.AdminResponse(id=request.id, status=200, body=body)
                assert hub.answer_admin("default", "web-1", reply)

    task = asyncio.create_task(agent())
    try:
        await asyncio.sleep(0)
        xds = await client.get("/meshes/default/dataplanes/web-1/xds", params={"include": "eds"})
        assert xds.status_code == 200 and xds.json() == {"configs": []}
        stats = await client.get("/meshes/default/dataplanes/web-1/stats")
        assert stats.text == "a.b: 1\n" and stats.headers["content-type"].startswith("text/plain")
        assert (await client.get("/meshes/default/dataplanes/web-1/clusters")).status_code == 200
        assert asked == ["/config_dump?include_eds", "/stats", "/clusters"]
        assert (await remote.get("/meshes/default/dataplanes/web-1/xds")).status_code == 401
        # an answer for another dataplane is not taken
        assert not hub.answer_admin("default", "backend-1", agent_pb2.AdminResponse(id="x"))
    finally:
        task.cancel()
