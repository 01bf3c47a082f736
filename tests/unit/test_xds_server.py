"""The ADS protocol logic against a fake stream and fake callbacks: no network."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeAlias

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from kumadp.agent.sds import SDS
from kumadp.xds import types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.server import AdsServer
from kumadp.xds.snapshot import Snapshot
from kumadp.xds.stream import Code, StreamRejected

NODE = "default.web-1"
TIMEOUT = 5.0

Request: TypeAlias = discovery_pb2.DiscoveryRequest
Response: TypeAlias = discovery_pb2.DiscoveryResponse


# -- fakes -----------------------------------------------------------------------------------
class FakeStream:
    """Requests are pushed by the test; responses are collected. ``settled()`` returns once
    the server has handled every pushed request and is waiting for the next one."""

    def __init__(self, metadata: Mapping[str, str] | None = None) -> None:
        self.metadata = dict(metadata or {})
        self.responses: list[Response] = []
        self._requests: asyncio.Queue[Request | None] = asyncio.Queue()
        self._sent: asyncio.Queue[Response] = asyncio.Queue()
        self._idle = asyncio.Event()
        self.fail_send: Exception | None = None

    def push(self, request: Request | None) -> None:
        self._idle.clear()
        self._requests.put_nowait(request)

    async def requests(self) -> AsyncIterator[Request]:
        while True:
            if self._requests.empty():
                self._idle.set()
            request = await self._requests.get()
            if request is None:
                return
            yield request

    async def send(self, response: Response) -> None:
        if self.fail_send is not None:
            raise self.fail_send
        self.responses.append(response)
        self._sent.put_nowait(response)

    async def next_response(self) -> Response:
        return await asyncio.wait_for(self._sent.get(), TIMEOUT)

    async def settled(self) -> None:
        await asyncio.wait_for(self._idle.wait(), TIMEOUT)

    def unread(self) -> list[Response]:
        out = []
        while not self._sent.empty():
            out.append(self._sent.get_nowait())
        return out


class FakeCallbacks:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.reject: StreamRejected | None = None
        self.on_open_snapshot: tuple[SnapshotCache, Snapshot] | None = None

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None:
        self.events.append(("open", stream_id, node_id, node.cluster, dict(metadata)))
        if self.reject is not None:
            raise self.reject
        if self.on_open_snapshot is not None:
            cache, snapshot = self.on_open_snapshot
            cache.set_snapshot(node_id, snapshot)

    async def on_stream_closed(self, stream_id: int, node_id: str) -> None:
        self.events.append(("closed", stream_id, node_id))

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.events.append(("ack", node_id, type_url, version))

    def on_nack(self, node_id: str, type_url: str, version: str, error_detail: str) -> None:
        self.events.append(("nack", node_id, type_url, version, error_detail))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind]


# -- resources ------------------------------------------------------------------------------
def snapshot(
    services: Iterable[str] = ("backend", "web"), port: int = 8080, listener: str = "l1"
) -> Snapshot:
    clusters, assignments = [], []
    for name in services:
        cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
        cluster.eds_cluster_config.eds_config.ads.SetInParent()
        clusters.append(cluster)
        cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        address = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
        address.address, address.port_value = "127.0.0.1", port
        assignments.append(cla)
    return Snapshot.build(
        {
            types.CLUSTER: clusters,
            types.ENDPOINT: assignments,
            types.LISTENER: [listener_pb2.Listener(name=listener)],
            types.ROUTE: [route_pb2.RouteConfiguration(name=n) for n in ("r1", "r2")],
        }
    )


def request(
    type_url: str,
    *,
    version: str = "",
    nonce: str = "",
    names: Iterable[str] = (),
    error: str | None = None,
    node: bool = False,
) -> Request:
    req = Request(type_url=type_url, version_info=version, response_nonce=nonce)
    req.resource_names.extend(names)
    if node:
        req.node.id = NODE
        req.node.cluster = "web"
    if error is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def ack(response: Response, names: Iterable[str] = ()) -> Request:
    return request(
        response.type_url, version=response.version_info, nonce=response.nonce, names=names
    )


def names_in(response: Response) -> list[str]:
    out = []
    for packed in response.resources:
        if packed.type_url == types.ENDPOINT:
            cla = endpoint_pb2.ClusterLoadAssignment()
            packed.Unpack(cla)
            out.append(cla.cluster_name)
        else:
            message = {
                types.CLUSTER: cluster_pb2.Cluster,
                types.LISTENER: listener_pb2.Listener,
                types.ROUTE: route_pb2.RouteConfiguration,
            }[packed.type_url]()
            packed.Unpack(message)
            out.append(message.name)
    return out


class Harness:
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.callbacks = FakeCallbacks()
        self.server = AdsServer(self.cache, self.callbacks)
        self.stream = FakeStream({"authorization": "Bearer t"})
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.server.handle_stream(self.stream))

    async def subscribe_all(self) -> dict[str, Response]:
        """The usual Envoy start: CDS, then EDS for the clusters, LDS, then RDS; all ACKed."""
        got: dict[str, Response] = {}
        self.stream.push(request(types.CLUSTER, node=True))
        got[types.CLUSTER] = await self.stream.next_response()
        self.stream.push(request(types.ENDPOINT, names=["backend", "web"]))
        got[types.ENDPOINT] = await self.stream.next_response()
        self.stream.push(ack(got[types.CLUSTER]))
        self.stream.push(request(types.LISTENER))
        got[types.LISTENER] = await self.stream.next_response()
        self.stream.push(ack(got[types.ENDPOINT], names=["backend", "web"]))
        self.stream.push(request(types.ROUTE, names=["r1"]))
        got[types.ROUTE] = await self.stream.next_response()
        self.stream.push(ack(got[types.LISTENER]))
        self.stream.push(ack(got[types.ROUTE], names=["r1"]))
        await self.stream.settled()
        return got


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        if harness.task is not None and not harness.task.done():
            harness.task.cancel()
            await asyncio.gather(harness.task, return_exceptions=True)


# -- tests ------------------------------------------------------------------------------------
async def test_initial_push_and_acks(h: Harness) -> None:
    snap = snapshot()
    h.cache.set_snapshot(NODE, snap)
    h.start()
    got = await h.subscribe_all()
    for type_url in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE):
        assert got[type_url].version_info == snap.versions[type_url]
        assert got[type_url].type_url == type_url
    assert names_in(got[types.CLUSTER]) == ["backend", "web"]
    assert names_in(got[types.ENDPOINT]) == ["backend", "web"]
    assert names_in(got[types.LISTENER]) == ["l1"]
    assert names_in(got[types.ROUTE]) == ["r1"]  # only what was asked for
    assert len({r.nonce for r in got.values()}) == 4
    assert h.callbacks.of("open") == [("open", 1, NODE, "web", {"authorization": "Bearer t"})]
    assert sorted(h.callbacks.of("ack")) == sorted(
        ("ack", NODE, url, snap.versions[url]) for url in got
    )
    assert h.stream.unread() == []  # nothing beyond one answer per type


async def test_waits_for_the_snapshot_created_on_stream_open(h: Harness) -> None:
    h.callbacks.on_open_snapshot = (h.cache, snapshot())
    h.start()
    h.stream.push(request(types.CLUSTER, node=True))
    response = await h.stream.next_response()
    assert names_in(response) == ["backend", "web"]


async def test_waits_for_a_snapshot_that_comes_later(h: Harness) -> None:
    h.start()
    h.stream.push(request(types.CLUSTER, node=True))
    h.stream.push(request(types.LISTENER))
    await h.stream.settled()
    assert h.stream.responses == []
    snap = snapshot()
    h.cache.set_snapshot(NODE, snap)
    first, second = await h.stream.next_response(), await h.stream.next_response()
    assert [first.type_url, second.type_url] == [types.CLUSTER, types.LISTENER]


async def test_ack_with_current_version_sends_nothing(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    got = await h.subscribe_all()
    h.stream.push(ack(got[types.CLUSTER]))
    await h.stream.settled()
    assert h.stream.unread() == []


async def test_nack_is_logged_once_reported_and_not_resent(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    got = await h.subscribe_all()
    bad = snapshot(listener="bad")
    h.cache.set_snapshot(NODE, bad)
    pushed = await h.stream.next_response()
    assert pushed.type_url == types.LISTENER and pushed.version_info == bad.versions[types.LISTENER]
    caplog.set_level(logging.WARNING, logger="kumadp.xds.server")
    nack = request(
        types.LISTENER,
        version=got[types.LISTENER].version_info,  # Envoy reports its last good version
        nonce=pushed.nonce,
        error="listener bad: invalid",
    )
    h.stream.push(nack)
    h.stream.push(nack)  # the same NACK again: reported, but not logged again
    await h.stream.settled()
    assert h.stream.unread() == []  # the rejected version is not sent again
    # a later request with the latest nonce, no error and the old version is no ACK
    h.stream.push(
        request(types.LISTENER, version=got[types.LISTENER].version_info, nonce=pushed.nonce)
    )
    await h.stream.settled()
    assert h.stream.unread() == []
    assert [e for e in h.callbacks.of("ack") if e[2] == types.LISTENER] == [
        ("ack", NODE, types.LISTENER, got[types.LISTENER].version_info)
    ]
    assert (
        h.callbacks.of("nack")
        == [("nack", NODE, types.LISTENER, bad.versions[types.LISTENER], "listener bad: invalid")]
        * 2
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "listener bad: invalid" in warnings[0].getMessage()
    assert NODE in warnings[0].getMessage()
    # a new version is sent
    fixed = snapshot(listener="fixed")
    h.cache.set_snapshot(NODE, fixed)
    again = await h.stream.next_response()
    assert again.type_url == types.LISTENER
    assert again.version_info == fixed.versions[types.LISTENER]
    assert names_in(again) == ["fixed"]


async def test_stale_nonce_is_ignored(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    got = await h.subscribe_all()
    h.cache.set_snapshot(NODE, snapshot(port=9090))
    pushed = await h.stream.next_response()
    assert pushed.type_url == types.ENDPOINT
    acks_before = len(h.callbacks.of("ack"))
    # answers to the previous response, even with new names or an error, are stale
    h.stream.push(ack(got[types.ENDPOINT], names=["backend"]))
    h.stream.push(
        request(types.ENDPOINT, nonce=got[types.ENDPOINT].nonce, error="old", names=["web"])
    )
    h.stream.push(request(types.ENDPOINT, nonce="no-such-nonce", names=["backend"]))
    await h.stream.settled()
    assert h.stream.unread() == []
    assert len(h.callbacks.of("ack")) == acks_before
    assert h.callbacks.of("nack") == []
    h.stream.push(ack(pushed, names=["backend", "web"]))
    await h.stream.settled()
    assert h.callbacks.of("ack")[-1] == ("ack", NODE, types.ENDPOINT, pushed.version_info)


async def test_new_snapshot_pushes_only_changed_types(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    got = await h.subscribe_all()
    moved = snapshot(port=9090)
    h.cache.set_snapshot(NODE, moved)
    pushed = await h.stream.next_response()
    assert pushed.type_url == types.ENDPOINT
    assert pushed.version_info == moved.versions[types.ENDPOINT]
    assert names_in(pushed) == ["backend", "web"]
    assert pushed.nonce not in {r.nonce for r in got.values()}
    h.stream.push(ack(pushed, names=["backend", "web"]))
    await h.stream.settled()
    assert h.stream.unread() == []


async def test_push_follows_ads_order(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    await h.subscribe_all()
    h.cache.set_snapshot(NODE, snapshot(services=["backend"], port=1, listener="l2"))
    pushed = [await h.stream.next_response() for _ in range(3)]
    assert [r.type_url for r in pushed] == [types.CLUSTER, types.ENDPOINT, types.LISTENER]
    assert names_in(pushed[0]) == ["backend"]
    # EDS still answers the names asked for, that exist
    assert names_in(pushed[1]) == ["backend"]


async def test_eds_subscription_change_answers_without_new_version(h: Harness) -> None:
    snap = snapshot(services=["a", "b", "c"])
    h.cache.set_snapshot(NODE, snap)
    h.start()
    h.stream.push(request(types.CLUSTER, node=True))
    cds = await h.stream.next_response()
    h.stream.push(request(types.ENDPOINT, names=["a"]))
    eds = await h.stream.next_response()
    assert names_in(eds) == ["a"]
    h.stream.push(ack(cds))
    h.stream.push(ack(eds, names=["a", "c"]))  # Envoy learned about a new EDS cluster
    again = await h.stream.next_response()
    assert again.version_info == eds.version_info == snap.versions[types.ENDPOINT]
    assert names_in(again) == ["a", "c"]
    assert again.nonce != eds.nonce
    h.stream.push(ack(again, names=["a", "c"]))
    await h.stream.settled()
    assert h.stream.unread() == []
    # the same version ACKed twice (once with new names) is reported once
    assert [e for e in h.callbacks.of("ack") if e[2] == types.ENDPOINT] == [
        ("ack", NODE, types.ENDPOINT, snap.versions[types.ENDPOINT])
    ]


async def test_first_request_without_names_is_wildcard(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    h.stream.push(request(types.ENDPOINT, node=True))
    assert names_in(await h.stream.next_response()) == ["backend", "web"]


async def test_reconnect_with_current_version_is_not_answered(h: Harness) -> None:
    snap = snapshot()
    h.cache.set_snapshot(NODE, snap)
    h.start()
    h.stream.push(request(types.CLUSTER, node=True, version=snap.versions[types.CLUSTER]))
    h.stream.push(request(types.LISTENER, version="old"))
    response = await h.stream.next_response()
    await h.stream.settled()
    assert response.type_url == types.LISTENER
    assert h.stream.unread() == []


async def test_stream_closed_exactly_once_when_client_leaves(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    await h.subscribe_all()
    h.stream.push(None)
    assert h.task is not None
    await asyncio.wait_for(h.task, TIMEOUT)
    assert h.callbacks.of("closed") == [("closed", 1, NODE)]


async def test_stream_closed_exactly_once_when_cancelled(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    await h.subscribe_all()
    assert h.task is not None
    h.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h.task
    assert h.callbacks.of("closed") == [("closed", 1, NODE)]


async def test_stream_closed_exactly_once_when_sending_fails(h: Harness) -> None:
    h.start()
    h.stream.push(request(types.CLUSTER, node=True))
    await h.stream.settled()
    h.stream.fail_send = ConnectionResetError("gone")
    h.cache.set_snapshot(NODE, snapshot())
    assert h.task is not None
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(h.task, TIMEOUT)
    assert h.callbacks.of("closed") == [("closed", 1, NODE)]


async def test_rejected_stream_sends_nothing_and_is_not_closed(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.callbacks.reject = StreamRejected(Code.UNAUTHENTICATED, "bad token")
    h.start()
    h.stream.push(request(types.CLUSTER, node=True))
    assert h.task is not None
    with pytest.raises(StreamRejected) as info:
        await asyncio.wait_for(h.task, TIMEOUT)
    assert info.value.code is Code.UNAUTHENTICATED
    assert h.stream.responses == []
    assert h.callbacks.of("closed") == []


async def test_first_request_needs_a_node_id(h: Harness) -> None:
    h.start()
    h.stream.push(request(types.CLUSTER))
    assert h.task is not None
    with pytest.raises(StreamRejected) as info:
        await asyncio.wait_for(h.task, TIMEOUT)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert h.callbacks.events == []


async def test_stream_ids_are_unique(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    for _ in range(2):
        stream = FakeStream()
        stream.push(request(types.CLUSTER, node=True))
        stream.push(None)
        await asyncio.wait_for(h.server.handle_stream(stream), TIMEOUT)
    assert [e[1] for e in h.callbacks.of("closed")] == [1, 2]


async def test_sds_options_version_the_selection_and_wait_for_names() -> None:
    """The agent's SDS configuration of the same server (``kumadp.agent.sds.SDS``)."""

    def secrets(*names: str, ca: bytes = b"ca") -> Snapshot:
        made = []
        for name in names:
            secret = secret_pb2.Secret(name=name)
            secret.validation_context.trusted_ca.inline_bytes = ca + name.encode()
            made.append(secret)
        return Snapshot.build({types.SECRET: made})

    cache, callbacks = SnapshotCache(), FakeCallbacks()
    server = AdsServer(cache, callbacks, SDS)
    stream = FakeStream()
    task = asyncio.ensure_future(server.handle_stream(stream))
    try:
        stream.push(Request(resource_names=["a"]))  # no node id, no type URL: fine for SDS
        await stream.settled()
        cache.set_snapshot("", secrets("b"))
        stream.push(Request(resource_names=["a"]))  # asks again, after the snapshot
        await stream.settled()
        assert stream.responses == []  # "a" does not exist yet: the stream waits
        assert server.subscribed_names(types.SECRET) == {"a"} and server.open_streams == 1

        cache.set_snapshot("", secrets("a", "b"))
        first = await stream.next_response()
        assert first.type_url == types.SECRET and len(first.resources) == 1
        stream.push(ack(first, names=["a"]))
        cache.set_snapshot("", secrets("a", "b", ca=b"other"))
        second = await stream.next_response()  # "a" changed
        stream.push(ack(second, names=["a"]))
        cache.set_snapshot("", secrets("a", "b", "c", ca=b"other"))  # only "c" is new
        stream.push(ack(second, names=["a"]))  # answered if anything were due
        await stream.settled()
        assert stream.unread() == []  # what this stream asked for did not change

        stream.push(Request(type_url=types.CLUSTER, resource_names=["x"]))
        with pytest.raises(StreamRejected) as info:
            await asyncio.wait_for(task, TIMEOUT)
        assert info.value.code is Code.INVALID_ARGUMENT
        assert server.open_streams == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
