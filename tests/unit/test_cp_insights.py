"""DataplaneInsight in the CP: stream events, the agent's report, persistence, the API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.agent_service import MAX_INSIGHT_BYTES, AgentChannelService
from kumadp.cp.api import create_app
from kumadp.cp.api.insights import insight_routes
from kumadp.cp.auth import DpAuth
from kumadp.cp.ca import MeshCAs
from kumadp.cp.dp_server import XdsCallbacks, node_version
from kumadp.cp.insights import INSIGHT_TYPE, MAX_SUBSCRIPTIONS, InsightStore, is_online
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.store.memory import MemoryStore
from kumadp.cp.tokens import TokenIssuer
from kumadp.wire import agent_pb2
from kumadp.xds import types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.server import AdsServer
from testkit.procs import until
from tests.unit.test_xds_server import FakeStream
from tests.unit.test_xds_server import snapshot as make_snapshot

KEY = ("default", "web-1")
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
VERSION = {
    "kumaDp": {"version": "0.1.0", "gitTag": "v0.1.0"},
    "envoy": {"version": "1.40.0", "build": "abc/1.40.0/Clean/RELEASE/BoringSSL"},
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def dp_doc(name: str = "web-1", mesh: str = "default", port: int = 10001) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}],
        },
    }


async def store_with(*names: str) -> MemoryStore:
    store = MemoryStore()
    await store.put("Mesh", "", "default", {"type": "Mesh", "name": "default"})
    for i, name in enumerate(names):
        await store.put("Dataplane", "default", name, dp_doc(name, port=10001 + i))
    return store


def status(insight: dict[str, Any], index: int = -1) -> dict[str, Any]:
    return insight["subscriptions"][index]["status"]  # type: ignore[no-any-return]


# -- the in-memory model ------------------------------------------------------------------
async def test_stream_lifecycle_counters_and_online() -> None:
    clock = Clock()
    insights = InsightStore(await store_with("web-1"), instance_id="cp-1", clock=clock)
    assert insights.get(KEY) is None
    insights.stream_opened(7, KEY, VERSION)
    insight = insights.get(KEY)
    assert insight is not None and insight["online"] is True
    sub = insight["subscriptions"][0]
    assert sub["controlPlaneInstanceId"] == "cp-1"
    assert sub["connectTime"] == "2025-01-02T03:04:05.000000Z"
    assert "disconnectTime" not in sub
    assert sub["version"] == VERSION
    zero = {"responsesSent": 0, "responsesAcknowledged": 0, "responsesRejected": 0}
    assert sub["status"] == {
        "lastUpdateTime": sub["connectTime"],
        "total": zero,
        "cds": zero,
        "eds": zero,
        "lds": zero,
        "rds": zero,
    }

    clock.advance(1)
    for url in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE):
        insights.response_sent(KEY, url)
        insights.acked(KEY, url)
    insights.response_sent(KEY, types.LISTENER)
    insights.nacked(KEY, types.LISTENER, "v2", "cannot bind 127.0.0.1:80: Address in use")
    s = status(insights.get(KEY) or {})
    assert s["lastUpdateTime"] == "2025-01-02T03:04:06.000000Z"
    assert s["total"] == {"responsesSent": 5, "responsesAcknowledged": 4, "responsesRejected": 1}
    assert s["lds"] == {"responsesSent": 2, "responsesAcknowledged": 1, "responsesRejected": 1}
    assert s["cds"] == {"responsesSent": 1, "responsesAcknowledged": 1, "responsesRejected": 0}
    assert (insights.get(KEY) or {})["lastNack"] == {
        "type": "lds",
        "version": "v2",
        "error": "cannot bind 127.0.0.1:80: Address in use",
        "time": "2025-01-02T03:04:06.000000Z",
    }

    clock.advance(1)
    insights.stream_closed(7)
    insight = insights.get(KEY) or {}
    assert insight["online"] is False
    assert insight["subscriptions"][0]["disconnectTime"] == "2025-01-02T03:04:07.000000Z"
    insights.stream_closed(7)  # twice: ignored
    insights.acked(KEY, types.CLUSTER)  # no open subscription: nothing to count
    assert status(insights.get(KEY) or {})["total"]["responsesAcknowledged"] == 4


async def test_events_go_to_the_newest_open_subscription_and_only_five_are_kept() -> None:
    insights = InsightStore(await store_with("web-1"), clock=Clock())
    insights.stream_opened(1, KEY)
    insights.stream_opened(2, KEY)  # a reconnect before the old stream noticed
    insights.acked(KEY, types.CLUSTER)
    insight = insights.get(KEY) or {}
    assert status(insight, 0)["cds"]["responsesAcknowledged"] == 0
    assert status(insight, 1)["cds"]["responsesAcknowledged"] == 1
    insights.stream_closed(2)
    assert insights.online(KEY)  # stream 1 is still open
    insights.stream_closed(1)
    assert not insights.online(KEY)
    for stream in range(3, 10):
        insights.stream_opened(stream, KEY)
        insights.stream_closed(stream)
    subs = (insights.get(KEY) or {})["subscriptions"]
    assert len(subs) == MAX_SUBSCRIPTIONS
    assert len({s["id"] for s in subs}) == MAX_SUBSCRIPTIONS


def test_online_rule() -> None:
    assert not is_online({})
    assert not is_online({"subscriptions": [{"connectTime": "x", "disconnectTime": "y"}]})
    assert is_online(
        {"subscriptions": [{"connectTime": "x", "disconnectTime": "y"}, {"connectTime": "z"}]}
    )


async def test_agent_report_merges_mtls_and_agent() -> None:
    clock = Clock()
    insights = InsightStore(await store_with("web-1"), clock=clock)
    insights.stream_opened(1, KEY, VERSION)
    mtls = {
        "certificateExpirationTime": "2025-01-03T03:04:05Z",
        "lastCertificateRegeneration": "2025-01-02T03:04:05Z",
        "certificateRegenerations": 1,
        "issuedBackend": "ca-1",
    }
    insights.report(
        KEY, {"mTLS": {**mtls, "junk": 1}, "readiness": {"state": "READY", "reasons": []}}
    )
    insight = insights.get(KEY) or {}
    assert insight["mTLS"] == mtls
    assert insight["agent"] == {
        "readiness": {"state": "READY", "reasons": []},
        "reportTime": "2025-01-02T03:04:05.000000Z",
    }
    assert insight["online"] is True and len(insight["subscriptions"]) == 1
    insights.report(KEY, {"mTLS": None, "dns": {"tableVersion": "3"}})  # mTLS turned off
    insight = insights.get(KEY) or {}
    assert "mTLS" not in insight
    assert insight["agent"]["dns"] == {"tableVersion": "3"} and "readiness" not in insight["agent"]


def test_node_version_from_metadata() -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"version": VERSION, "features": ["bind-outbounds"]})
    assert node_version(base_pb2.Node(id="default.web-1", metadata=metadata)) == VERSION
    assert node_version(base_pb2.Node(id="default.web-1")) == {}


# -- persistence --------------------------------------------------------------------------
async def test_persisted_and_reloaded_as_disconnected() -> None:
    store = await store_with("web-1", "web-2")
    clock = Clock()
    first = InsightStore(store, instance_id="cp-1", clock=clock)
    first.stream_opened(1, KEY, VERSION)
    first.acked(KEY, types.LISTENER)
    first.report(KEY, {"readiness": {"state": "READY", "reasons": []}})
    first.stream_opened(2, ("default", "web-2"))
    await first.flush()
    stored = await store.get(INSIGHT_TYPE, *KEY)
    assert stored is not None
    assert stored.spec["type"] == INSIGHT_TYPE and stored.spec["name"] == "web-1"
    assert stored.spec["subscriptions"][0]["status"]["lds"]["responsesAcknowledged"] == 1
    assert "online" not in stored.spec

    # at most once per interval: a change right after a write waits
    first.acked(KEY, types.CLUSTER)
    due = await first.flush()
    assert due is not None and 0 < due <= 1.0
    stored = await store.get(INSIGHT_TYPE, *KEY)
    assert stored is not None
    assert stored.spec["subscriptions"][0]["status"]["cds"]["responsesAcknowledged"] == 0
    await first.flush(force=True)

    await store.delete("Dataplane", "default", "web-2")  # gone while the CP was down
    clock.advance(60)
    second = InsightStore(store, instance_id="cp-2", clock=clock)
    assert await second.load() == 1
    insight = second.get(KEY) or {}
    assert insight["online"] is False
    assert insight["subscriptions"][0]["disconnectTime"] == "2025-01-02T03:05:05.000000Z"
    assert insight["subscriptions"][0]["status"]["cds"]["responsesAcknowledged"] == 1
    assert insight["agent"]["readiness"]["state"] == "READY"
    assert await store.get(INSIGHT_TYPE, "default", "web-2") is None

    second.stream_opened(1, KEY, VERSION)  # the agent reconnects to the new CP
    insight = second.get(KEY) or {}
    assert insight["online"] is True
    assert [s["controlPlaneInstanceId"] for s in insight["subscriptions"]] == ["cp-1", "cp-2"]


async def test_component_writes_and_forgets_deleted_dataplanes() -> None:
    store = await store_with("web-1")
    insights = InsightStore(store, persist_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(insights.run(stop))
    try:
        insights.stream_opened(1, KEY)
        await until(lambda: store.get(INSIGHT_TYPE, *KEY), "insight written")
        await store.delete("Dataplane", *KEY)
        await until(_forgotten(insights), "insight forgotten (through the change feed)")
        await until(_absent(store), "insight deleted")
        insights.stream_closed(1)  # the stream of a deleted dataplane ends: ignored
        assert insights.get(KEY) is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def _forgotten(insights: InsightStore) -> Any:
    async def check() -> bool:
        return insights.get(KEY) is None

    return check


def _absent(store: MemoryStore) -> Any:
    async def check() -> bool:
        return await store.get(INSIGHT_TYPE, *KEY) is None

    return check


# -- the xDS callbacks feed it ------------------------------------------------------------
class FakeReconciler:
    async def node_connected(self, key: Any, features: Any = frozenset()) -> bool:
        return True

    def node_disconnected(self, key: Any) -> None:
        return None


async def test_ads_stream_feeds_insights() -> None:
    store = await store_with("web-1")
    insights = InsightStore(store)
    lifecycle = DataplaneRegistry(store)
    callbacks = XdsCallbacks(lifecycle, FakeReconciler(), None, insights)  # type: ignore[arg-type]
    cache = SnapshotCache()
    cache.set_snapshot("default.web-1", make_snapshot(services=("c1",)))
    server = AdsServer(cache, callbacks)
    stream = FakeStream()
    metadata = struct_pb2.Struct()
    metadata.update({"version": VERSION})
    node = base_pb2.Node(id="default.web-1", metadata=metadata)
    stream.push(discovery_pb2.DiscoveryRequest(node=node, type_url=types.CLUSTER))
    task = asyncio.create_task(server.handle_stream(stream))
    try:
        cds = await stream.next_response()
        stream.push(discovery_pb2.DiscoveryRequest(type_url=types.LISTENER))
        lds = await stream.next_response()
        stream.push(
            discovery_pb2.DiscoveryRequest(
                type_url=types.CLUSTER, version_info=cds.version_info, response_nonce=cds.nonce
            )
        )
        nack = discovery_pb2.DiscoveryRequest(type_url=types.LISTENER, response_nonce=lds.nonce)
        nack.error_detail.message = "Address already in use"
        stream.push(nack)
        await stream.settled()
        insight = insights.get(KEY) or {}
        assert insight["online"] is True
        s = status(insight)
        assert s["cds"] == {"responsesSent": 1, "responsesAcknowledged": 1, "responsesRejected": 0}
        assert s["lds"] == {"responsesSent": 1, "responsesAcknowledged": 0, "responsesRejected": 1}
        assert insight["lastNack"]["error"] == "Address already in use"
        assert insight["subscriptions"][0]["version"] == VERSION
    finally:
        stream.push(None)
        await asyncio.wait_for(task, 5)
        lifecycle.close()
    assert (insights.get(KEY) or {})["online"] is False


# -- ReportInsight ------------------------------------------------------------------------
class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class FakeContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


async def agent_service(
    store: MemoryStore, insights: InsightStore, auth: str = "none"
) -> AgentChannelService:
    async def refresh(mesh: str) -> None:
        return None

    return AgentChannelService(
        store=store,
        registrations=DataplaneRegistry(store),
        auth=DpAuth(auth, TokenIssuer(store)),
        cas=MeshCAs(store),
        hub=AgentHub(),
        refresh_agent_state=refresh,
        insights=insights,
    )


def report(doc: Any, name: str = "web-1") -> agent_pb2.InsightReport:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    return agent_pb2.InsightReport(mesh="default", name=name, insight_json=text)


async def test_report_insight_rpc() -> None:
    store = await store_with("web-1")
    insights = InsightStore(store)
    service = await agent_service(store, insights)
    ctx: Any = FakeContext()
    await service.ReportInsight(report({"readiness": {"state": "READY"}}), ctx)
    assert (insights.get(KEY) or {})["agent"]["readiness"] == {"state": "READY"}
    for bad, reason in [
        ("{not json", "insight_json: Expecting property name"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"x": "a" * MAX_INSIGHT_BYTES}), "larger than"),
        ("[" * 100_000 + "]" * 100_000, "insight_json"),
    ]:
        with pytest.raises(Aborted) as caught:
            await service.ReportInsight(report(bad), ctx)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert reason in caught.value.details
    with pytest.raises(Aborted) as caught:
        await service.ReportInsight(report({}, name="ghost"), ctx)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert insights.get(("default", "ghost")) is None


async def test_report_insight_needs_a_token() -> None:
    store = await store_with("web-1")
    insights = InsightStore(store)
    service = await agent_service(store, insights, auth="dpToken")
    with pytest.raises(Aborted) as caught:
        await service.ReportInsight(report({}), FakeContext())  # type: ignore[arg-type]
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert insights.get(KEY) is None


# -- the API ------------------------------------------------------------------------------
@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, InsightStore, SnapshotCache]]:
    store = await store_with("web-1", "web-2")
    insights = InsightStore(store, clock=Clock())
    cache = SnapshotCache()
    app = create_app(store, extra_routes=insight_routes(store, insights, cache))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5681") as client:
        yield client, insights, cache


async def test_api_list_and_overview(
    api: tuple[httpx.AsyncClient, InsightStore, SnapshotCache],
) -> None:
    client, insights, _ = api
    insights.stream_opened(1, KEY, VERSION)
    insights.acked(KEY, types.CLUSTER)
    insights.report(
        KEY,
        {
            "mTLS": {"certificateExpirationTime": "2025-01-03T03:04:05Z"},
            "config": {"lastAppliedTime": "2000-01-01T00:00:00Z"},
        },
    )
    r = await client.get("/meshes/default/dataplanes+insights")
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2 and body["next"] is None
    web1, web2 = body["items"]
    assert list(web1)[:6] == [
        "type",
        "mesh",
        "name",
        "creationTime",
        "modificationTime",
        "dataplane",
    ]
    assert web1["type"] == "DataplaneOverview" and web1["name"] == "web-1"
    assert web1["dataplane"] == {"networking": dp_doc()["networking"]}
    insight = web1["dataplaneInsight"]
    assert insight["online"] is True
    assert insight["subscriptions"][0]["status"]["cds"]["responsesAcknowledged"] == 1
    assert insight["mTLS"] == {"certificateExpirationTime": "2025-01-03T03:04:05Z"}
    assert insight["agent"]["config"]["secondsSinceLastApplied"] > 0
    assert web2["dataplaneInsight"] == {"subscriptions": [], "online": False}

    r = await client.get("/dataplanes+insights", params={"size": 1})
    assert r.json()["total"] == 2 and len(r.json()["items"]) == 1
    assert "offset=1" in r.json()["next"]
    r = await client.get("/meshes/default/dataplanes+insights", params={"online": "true"})
    assert [i["name"] for i in r.json()["items"]] == ["web-1"]
    r = await client.get("/meshes/default/dataplanes+insights", params={"online": "false"})
    assert [i["name"] for i in r.json()["items"]] == ["web-2"]
    r = await client.get("/meshes/default/dataplanes+insights", params={"online": "maybe"})
    assert r.status_code == 400 and r.json()["causes"][0]["field"] == "online"
    r = await client.get("/meshes/other/dataplanes+insights")
    assert r.status_code == 404 and r.json()["details"] == 'Mesh "other" not found'

    r = await client.get("/meshes/default/dataplanes/web-1/_overview")
    assert r.status_code == 200
    assert r.json()["dataplaneInsight"]["online"] is True
    r = await client.get("/meshes/default/dataplanes/nope/_overview")
    assert r.status_code == 404
    assert r.json()["title"] == "Not Found" and "nope" in r.json()["details"]


async def test_api_config(api: tuple[httpx.AsyncClient, InsightStore, SnapshotCache]) -> None:
    client, _, cache = api
    r = await client.get("/meshes/default/dataplanes/web-1/_config")
    assert r.status_code == 404 and "web-1" in r.json()["details"]
    snapshot = make_snapshot(services=("c1",))
    cache.set_snapshot("default.web-1", snapshot)
    r = await client.get("/meshes/default/dataplanes/web-1/_config")
    assert r.status_code == 200
    body = r.json()
    assert body["versions"]["cds"] == snapshot.version(types.CLUSTER)
    assert body["versions"]["lds"] == snapshot.version(types.LISTENER)
    assert [c["name"] for c in body["cds"]] == ["c1"]
    assert [listener["name"] for listener in body["lds"]] == ["l1"]
    assert [e["cluster_name"] for e in body["eds"]] == ["c1"]
    assert [r["name"] for r in body["rds"]] == ["r1", "r2"]
