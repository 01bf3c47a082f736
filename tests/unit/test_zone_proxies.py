"""Zone ingresses and egresses on a zone CP: admission at bootstrap (zone tokens, each
refusal naming the failed check), their bootstrap, their xDS streams and their lifetime."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from kumadp.cp.bootstrap import BootstrapError, BootstrapParams, BootstrapService, ErrorKind
from kumadp.cp.insights import InsightStore
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.store import MemoryStore
from kumadp.cp.zone_proxies import ZoneProxies, zone_proxy_name
from kumadp.cp.zone_proxy_streams import ZoneProxyStreams
from kumadp.cp.zone_tokens import ZoneTokens
from kumadp.xds.stream import Code, StreamRejected
from testkit.procs import until

ZI: dict[str, Any] = {
    "type": "ZoneIngress",
    "name": "zi-1",
    "networking": {
        "address": "10.0.0.1",
        "port": 10001,
        "advertisedAddress": "203.0.113.1",
        "advertisedPort": 10001,
    },
}
ZE: dict[str, Any] = {
    "type": "ZoneEgress",
    "name": "ze-1",
    "networking": {"address": "127.0.0.1", "port": 10002},
}


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


@pytest.fixture
async def tokens(store: MemoryStore) -> AsyncIterator[ZoneTokens]:
    found = ZoneTokens(store)
    yield found
    found.close()


@pytest.fixture
async def proxies(store: MemoryStore, tokens: ZoneTokens) -> AsyncIterator[ZoneProxies]:
    found = ZoneProxies(store, "zone-b", tokens, deregistration_delay=0.05)
    yield found
    found.close()


def _service(store: MemoryStore, proxies: ZoneProxies) -> BootstrapService:
    return BootstrapService(
        store, BootstrapParams(xds_port=5678), DataplaneRegistry(store), zone="zone-b",
        zone_proxies=proxies,
    )  # fmt: skip


def _body(doc: dict[str, Any], proxy_type: str, token: str = "") -> dict[str, Any]:
    body = {"name": doc["name"], "proxyType": proxy_type, "dataplaneResource": json.dumps(doc)}
    return {**body, "dataplaneToken": token} if token else body


def test_zone_proxy_node_ids() -> None:
    assert zone_proxy_name(".zi-1") == "zi-1"
    assert zone_proxy_name("default.web-1") is None
    assert zone_proxy_name(".") is None


async def test_an_ingress_with_its_zone_token_gets_a_bootstrap_without_sds(
    store: MemoryStore, tokens: ZoneTokens, proxies: ZoneProxies
) -> None:
    token = await tokens.issue("zone-b", ["ingress"])
    response = await _service(store, proxies).handle(_body(ZI, "ingress", token), "cp.example")
    bootstrap = yaml.safe_load(base64.b64decode(response["bootstrap"]))
    assert bootstrap["node"]["id"] == ".zi-1"
    assert bootstrap["node"]["metadata"]["dataplane.proxyType"] == "ingress"
    assert [c["name"] for c in bootstrap["static_resources"]["clusters"]] == ["ads_cluster"]
    stored = await store.get("ZoneIngress", "", "zi-1")
    assert stored is not None
    assert stored.spec["zone"] == "zone-b"  # the zone CP sets it
    assert stored.spec["labels"]["kumadp.io/lifecycle"] == "agent"
    assert await proxies.proxy_type_of("zi-1") == "ingress"


@pytest.mark.parametrize(
    ("issue", "proxy_type", "doc", "kind", "message"),
    [
        (None, "ingress", ZI, ErrorKind.INVALID, "zone ingress zi-1: no zone token (mint one"),
        (
            ("zone-a", ["ingress"]),
            "ingress",
            ZI,
            ErrorKind.UNAUTHORIZED,
            "zone ingress zi-1: token is for zone zone-a, not zone-b",
        ),
        (
            ("zone-b", ["egress"]),
            "ingress",
            ZI,
            ErrorKind.UNAUTHORIZED,
            "zone ingress zi-1: token scope is [egress], not ingress",
        ),
        (
            ("zone-b", ["ingress"]),
            "egress",
            ZE,
            ErrorKind.UNAUTHORIZED,
            "zone egress ze-1: token scope is [ingress], not egress",
        ),
        (
            ("zone-b", ["ingress"]),
            "ingress",
            {**ZI, "zone": "zone-c"},
            ErrorKind.INVALID,
            'dataplaneResource: zone: must be "zone-b" (the zone of this control plane)',
        ),
        (
            ("zone-b", ["ingress"]),
            "ingress",
            ZE,
            ErrorKind.INVALID,
            'dataplaneResource: type: must be "ZoneIngress" for proxyType ingress, '
            'not "ZoneEgress"',
        ),
    ],
)
async def test_refusals_say_which_check_failed(
    store: MemoryStore,
    tokens: ZoneTokens,
    proxies: ZoneProxies,
    issue: tuple[str, list[str]] | None,
    proxy_type: str,
    doc: dict[str, Any],
    kind: ErrorKind,
    message: str,
) -> None:
    token = await tokens.issue(*issue) if issue else ""
    with pytest.raises(BootstrapError) as info:
        await _service(store, proxies).handle(_body(doc, proxy_type, token), "h")
    assert info.value.kind is kind
    assert info.value.message.startswith(message), info.value.message
    assert await store.list("ZoneIngress") == [] and await store.list("ZoneEgress") == []


async def test_a_dataplane_token_is_no_zone_token(store: MemoryStore, proxies: ZoneProxies) -> None:
    from kumadp.cp.tokens import TokenIssuer

    issuer = TokenIssuer(store)
    try:
        token = await issuer.issue("default", "zi-1", proxy_type="ingress")
    finally:
        issuer.close()
    with pytest.raises(BootstrapError, match="zone ingress zi-1: unknown signing key"):
        await _service(store, proxies).handle(_body(ZI, "ingress", token), "h")


async def test_standalone_and_name_clashes_are_refused(
    store: MemoryStore, tokens: ZoneTokens, proxies: ZoneProxies
) -> None:
    standalone = BootstrapService(
        store, BootstrapParams(xds_port=5678), zone_proxies=ZoneProxies(store, None, tokens)
    )
    with pytest.raises(BootstrapError, match="proxyType: ingress needs a zone control plane"):
        await standalone.handle(_body(ZI, "ingress"), "h")
    token = await tokens.issue("zone-b", ["ingress", "egress"])
    await _service(store, proxies).handle(_body(ZE | {"name": "edge"}, "egress", token), "h")
    with pytest.raises(BootstrapError, match='name: a ZoneEgress named "edge" runs in this zone'):
        await _service(store, proxies).handle(_body(ZI | {"name": "edge"}, "ingress", token), "h")
    copy = {**ZI, "name": "zi-9-abc", "zone": "zone-c", "labels": {"kuma.io/origin": "global"}}
    copy["labels"]["kuma.io/zone"] = "zone-c"
    await store.put("ZoneIngress", "", "zi-9-abc", copy)
    with pytest.raises(BootstrapError, match='"zi-9-abc" is the copy of an ingress of zone-c'):
        mine = copy | {"labels": {}, "zone": "zone-b"}
        await _service(store, proxies).handle(_body(mine, "ingress", token), "h")


class _Reconciler:
    def __init__(self) -> None:
        self.connected: dict[str, str] = {}

    async def zone_proxy_connected(self, name: str, proxy_type: str) -> bool:
        self.connected[name] = proxy_type
        return True

    def zone_proxy_disconnected(self, name: str) -> None:
        self.connected.pop(name, None)


async def test_streams_are_authenticated_and_the_proxy_goes_with_its_last_stream(
    store: MemoryStore, tokens: ZoneTokens, proxies: ZoneProxies
) -> None:
    token = await tokens.issue("zone-b", ["ingress"])
    await _service(store, proxies).handle(_body(ZI, "ingress", token), "h")
    reconciler = _Reconciler()
    insights = InsightStore(store, insight_type="ZoneIngressInsight", resource_type="ZoneIngress")
    streams = ZoneProxyStreams(proxies, reconciler, {"ingress": insights})
    with pytest.raises(StreamRejected) as refused:
        await streams.on_stream_open(1, "nobody", {})
    assert refused.value.code is Code.NOT_FOUND
    other = await tokens.issue("zone-a", ["ingress"])
    with pytest.raises(StreamRejected, match="token is for zone zone-a, not zone-b") as refused:
        await streams.on_stream_open(2, "zi-1", {"authorization": f"Bearer {other}"})
    assert refused.value.code is Code.UNAUTHENTICATED

    await streams.on_stream_open(3, "zi-1", {"authorization": token})
    assert reconciler.connected == {"zi-1": "ingress"}
    streams.on_response_sent("zi-1", "type.googleapis.com/envoy.config.listener.v3.Listener")
    streams.on_ack("zi-1", "type.googleapis.com/envoy.config.listener.v3.Listener")
    insight = insights.get(("", "zi-1"))
    assert insight is not None and insight["online"]
    assert insight["subscriptions"][0]["status"]["lds"]["responsesAcknowledged"] == 1

    await streams.on_stream_closed(3, "zi-1")
    assert reconciler.connected == {}
    assert not (insights.get(("", "zi-1")) or {}).get("online")
    # gone for the deregistration delay: deleted (it came from an agent)
    await until(_gone(store, "zi-1"), "the ingress deregistered", within=5)


def _gone(store: MemoryStore, name: str) -> Any:
    async def check() -> bool:
        return await store.get("ZoneIngress", "", name) is None

    return check


async def test_leave_removes_the_proxy_at_once(
    store: MemoryStore, tokens: ZoneTokens, proxies: ZoneProxies
) -> None:
    token = await tokens.issue("zone-b", ["egress"])
    await _service(store, proxies).handle(_body(ZE, "egress", token), "h")
    proxies.stream_opened("ze-1")
    assert await proxies.leave("ze-1") is True
    assert await store.get("ZoneEgress", "", "ze-1") is None
    assert await proxies.leave("ze-1") is False


async def test_without_token_auth_no_token_is_needed(
    store: MemoryStore, tokens: ZoneTokens
) -> None:
    proxies = ZoneProxies(store, "zone-b", tokens, auth=False)
    try:
        await _service(store, proxies).handle(_body(ZI, "ingress"), "h")
        assert await store.get("ZoneIngress", "", "zi-1") is not None
    finally:
        proxies.close()


async def test_the_reconciler_serves_a_zone_ingress_and_follows_the_zone(
    store: MemoryStore,
) -> None:
    import asyncio

    from envoy.config.listener.v3.listener_pb2 import Listener

    from kumadp.cp.reconcile import Reconciler
    from kumadp.xds import types
    from kumadp.xds.cache import SnapshotCache

    await store.put("Mesh", "", "default", {"type": "Mesh", "name": "default"})
    await store.put("ZoneIngress", "", "zi-1", {**ZI, "zone": "zone-b"})
    cache = SnapshotCache()
    registry = DataplaneRegistry(store)
    reconciler = Reconciler(store, cache, registry, debounce=0.001, zone="zone-b")
    assert not await reconciler.zone_proxy_connected("nope", "ingress")
    assert await reconciler.zone_proxy_connected("zi-1", "ingress")
    snapshot = cache.get_snapshot(".zi-1")
    assert snapshot is not None and not snapshot.resources(types.LISTENER)  # nothing to serve

    def sni_chains() -> list[str]:
        found = cache.get_snapshot(".zi-1")
        listeners = found.resources(types.LISTENER) if found is not None else {}
        return [
            name
            for listener in listeners.values()
            if isinstance(listener, Listener)
            for chain in listener.filter_chains
            for name in chain.filter_chain_match.server_names
        ]

    stop = asyncio.Event()
    task = asyncio.ensure_future(reconciler.run(stop))
    await asyncio.sleep(0)  # let it subscribe to the change feed
    try:
        doc = {
            "type": "Dataplane",
            "mesh": "default",
            "name": "backend-1",
            "networking": {
                "address": "10.0.2.1",
                "inbound": [{"port": 10002, "tags": {"kuma.io/service": "backend"}}],
            },
        }
        await store.put("Dataplane", "default", "backend-1", doc)
        await until(lambda: sni_chains() == ["backend{mesh=default}"], "the ingress routes it")
        await store.delete("Dataplane", "default", "backend-1")
        await until(lambda: sni_chains() == [], "gone with its instance")
    finally:
        stop.set()
        await task
    registry.close()
