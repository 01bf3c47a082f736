"""The delta xDS protocol logic against a fake stream and fake callbacks: no network."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeAlias

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2

from kumadp.xds import nack, types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.delta import DeltaServer, Nack
from kumadp.xds.snapshot import Snapshot
from kumadp.xds.stream import Code, StreamRejected

NODE = "default.web-1"
TIMEOUT = 5.0

Request: TypeAlias = discovery_pb2.DeltaDiscoveryRequest
Response: TypeAlias = discovery_pb2.DeltaDiscoveryResponse


class FakeStream:
    """Requests pushed by the test, responses collected; ``settled()`` returns once every
    pushed request was taken by the server. ``gate`` holds every send while it is clear."""

    def __init__(self) -> None:
        self.metadata: dict[str, str] = {}
        self._requests: asyncio.Queue[Request | None] = asyncio.Queue()
        self._sent: asyncio.Queue[Response] = asyncio.Queue()
        self._idle = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
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
        await self.gate.wait()
        if self.fail_send is not None:
            raise self.fail_send
        self._sent.put_nowait(response)

    async def next_response(self) -> Response:
        return await asyncio.wait_for(self._sent.get(), TIMEOUT)

    async def settled(self) -> None:
        await asyncio.wait_for(self._idle.wait(), TIMEOUT)
        for _ in range(5):  # let the send side run what the last request made due
            await asyncio.sleep(0)

    def unread(self) -> list[Response]:
        out = []
        while not self._sent.empty():
            out.append(self._sent.get_nowait())
        return out


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.reject: StreamRejected | None = None

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None:
        self.events.append(("open", stream_id, node_id))
        if self.reject is not None:
            raise self.reject

    async def on_stream_closed(self, stream_id: int, node_id: str) -> None:
        self.events.append(("closed", stream_id, node_id))

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.events.append(("ack", type_url, version))

    def on_nack(self, node_id: str, rejected: Nack) -> None:
        self.events.append(("nack", rejected))

    def on_response_sent(self, node_id: str, response: Response) -> None:
        self.events.append(("sent", response.type_url, response.nonce))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind]


def clusters(**ports: int) -> list[cluster_pb2.Cluster]:
    out = []
    for name, port in sorted(ports.items()):
        cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
        cluster.load_assignment.cluster_name = name
        lb = cluster.load_assignment.endpoints.add().lb_endpoints.add()
        lb.endpoint.address.socket_address.address = "127.0.0.1"
        lb.endpoint.address.socket_address.port_value = port
        out.append(cluster)
    return out


def snapshot(listeners: Iterable[str] = ("l1",), **ports: int) -> Snapshot:
    return Snapshot.build(
        {
            types.CLUSTER: clusters(**ports),
            types.LISTENER: [listener_pb2.Listener(name=n) for n in listeners],
        }
    )


def subscribe(
    type_url: str,
    names: Iterable[str] = (),
    *,
    initial: Mapping[str, str] | None = None,
    node: bool = False,
    unsubscribe: Iterable[str] = (),
) -> Request:
    request = Request(
        type_url=type_url,
        resource_names_subscribe=list(names),
        resource_names_unsubscribe=list(unsubscribe),
        initial_resource_versions=dict(initial or {}),
    )
    if node:
        request.node.id = NODE
    return request


def ack(response: Response) -> Request:
    return Request(type_url=response.type_url, response_nonce=response.nonce)


def got(response: Response) -> dict[str, str]:
    """name -> version of the resources a response carries."""
    return {r.name: r.version for r in response.resources}


class Harness:
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.callbacks = Recorder()
        self.server = DeltaServer(self.cache, self.callbacks)
        self.stream = FakeStream()
        self.task: asyncio.Task[None] | None = None

    def start(self, stream: FakeStream | None = None) -> FakeStream:
        stream = stream or FakeStream()
        self.stream = stream
        self.task = asyncio.ensure_future(self.server.handle_stream(stream))
        return stream


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        if harness.task is not None and not harness.task.done():
            harness.task.cancel()
            await asyncio.gather(harness.task, return_exceptions=True)


async def test_wildcard_gets_everything_then_only_changes(h: Harness) -> None:
    first = snapshot(a=1, b=2)
    h.cache.set_snapshot(NODE, first)
    h.start()
    h.stream.push(subscribe(types.CLUSTER, ["*"], node=True))
    initial = await h.stream.next_response()
    versions = first.resource_versions(types.CLUSTER)
    assert got(initial) == dict(versions) and list(initial.removed_resources) == []
    assert initial.system_version_info == first.versions[types.CLUSTER]
    h.stream.push(ack(initial))
    await h.stream.settled()
    assert h.callbacks.of("ack") == [("ack", types.CLUSTER, first.versions[types.CLUSTER])]

    # b moves, c is new, a is unchanged: only b and c travel
    second = snapshot(a=1, b=3, c=4)
    h.cache.set_snapshot(NODE, second)
    changed = await h.stream.next_response()
    assert set(got(changed)) == {"b", "c"} and list(changed.removed_resources) == []
    assert got(changed)["b"] != versions["b"]
    h.stream.push(ack(changed))

    # a is gone, and only that is said; a listener change sends nothing for clusters
    h.cache.set_snapshot(NODE, snapshot(b=3, c=4))
    removed = await h.stream.next_response()
    assert got(removed) == {} and list(removed.removed_resources) == ["a"]
    h.stream.push(ack(removed))
    h.cache.set_snapshot(NODE, snapshot(["l2"], b=3, c=4))
    await h.stream.settled()
    assert h.stream.unread() == []  # not subscribed to listeners
    assert len(h.callbacks.of("ack")) == 3


async def test_first_response_is_sent_even_when_empty(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot())
    h.start()
    h.stream.push(subscribe(types.CLUSTER, node=True))  # legacy wildcard: names nothing
    response = await h.stream.next_response()
    assert got(response) == {} and list(response.removed_resources) == []
    await h.stream.settled()
    assert h.stream.unread() == []


async def test_reconnect_with_initial_versions_sends_only_the_difference(h: Harness) -> None:
    old = snapshot(a=1, b=2, gone=3)
    known = dict(old.resource_versions(types.CLUSTER))
    h.cache.set_snapshot(NODE, snapshot(a=1, b=20, new=4))
    h.start()
    h.stream.push(subscribe(types.CLUSTER, ["*"], initial=known, node=True))
    response = await h.stream.next_response()
    assert set(got(response)) == {"b", "new"}
    assert list(response.removed_resources) == ["gone"]

    # nothing changed while away: the first answer is empty, and nothing follows
    other = h.start(FakeStream())
    current = h.cache.get_snapshot(NODE)
    assert current is not None
    other.push(
        subscribe(
            types.CLUSTER, ["*"], initial=dict(current.resource_versions(types.CLUSTER)), node=True
        )
    )
    empty = await other.next_response()
    assert got(empty) == {} and list(empty.removed_resources) == []


async def test_nack_names_resources_is_reported_and_not_resent(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.cache.set_snapshot(NODE, snapshot(a=1, b=2))
    h.start()
    h.stream.push(subscribe(types.CLUSTER, ["*"], node=True))
    first = await h.stream.next_response()
    h.stream.push(ack(first))
    h.cache.set_snapshot(NODE, snapshot(a=10, b=20))
    pushed = await h.stream.next_response()
    assert set(got(pushed)) == {"a", "b"}

    caplog.set_level(logging.WARNING, logger="kumadp.xds.delta")
    reply = ack(pushed)
    reply.error_detail.CopyFrom(nack.nack_status("1 of 2 rejected", {"b": "port 20 refused"}))
    h.stream.push(reply)
    await h.stream.settled()
    ((_, rejected),) = h.callbacks.of("nack")
    assert rejected == Nack(
        type_url=types.CLUSTER,
        version=h.cache.get_snapshot(NODE).versions[types.CLUSTER],  # type: ignore[union-attr]
        nonce=pushed.nonce,
        message="1 of 2 rejected",
        resources={"b": "port 20 refused"},
    )
    assert "port 20 refused" not in caplog.text and "resources: b" in caplog.text
    assert h.stream.unread() == []  # the rejected version is not sent again

    # a later change of b is sent; a, unchanged, is not
    h.cache.set_snapshot(NODE, snapshot(a=10, b=21))
    fixed = await h.stream.next_response()
    assert set(got(fixed)) == {"b"}


async def test_explicit_names_subscribe_and_unsubscribe(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot(a=1, b=2, c=3))
    h.start()
    h.stream.push(subscribe(types.CLUSTER, ["a"], node=True))
    assert set(got(await h.stream.next_response())) == {"a"}
    h.stream.push(subscribe(types.CLUSTER, ["b", "missing"]))
    assert set(got(await h.stream.next_response())) == {"b"}
    h.stream.push(subscribe(types.CLUSTER, unsubscribe=["a"]))
    await h.stream.settled()
    h.cache.set_snapshot(NODE, snapshot(a=10, b=2, c=30))
    await h.stream.settled()
    assert h.stream.unread() == []  # neither a (unsubscribed) nor c (never asked)
    h.stream.push(subscribe(types.CLUSTER, ["a"]))  # asked again: sent again
    assert set(got(await h.stream.next_response())) == {"a"}


async def test_pipelined_responses_are_acked_by_nonce(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot(a=1))
    h.start()
    h.stream.push(subscribe(types.CLUSTER, ["*"], node=True))
    first = await h.stream.next_response()
    second_snapshot = snapshot(a=2)
    h.cache.set_snapshot(NODE, second_snapshot)
    second = await h.stream.next_response()
    h.stream.push(ack(second))
    h.stream.push(ack(first))  # late, but a nonce of ours: still this response's ACK
    h.stream.push(Request(type_url=types.CLUSTER, response_nonce="nobody-sent-this"))
    await h.stream.settled()
    assert [e[2] for e in h.callbacks.of("ack")] == [
        second_snapshot.versions[types.CLUSTER],
        first.system_version_info,
    ]


async def test_types_go_out_in_snapshot_order(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot(a=1))
    h.start()
    h.stream.push(subscribe(types.LISTENER, node=True))
    h.stream.push(subscribe(types.CLUSTER))
    for _ in range(2):
        await h.stream.next_response()
    h.cache.set_snapshot(NODE, snapshot(["l2"], a=2))
    pushed = [await h.stream.next_response() for _ in range(2)]
    assert [r.type_url for r in pushed] == [types.CLUSTER, types.LISTENER]
    assert list(pushed[1].removed_resources) == ["l1"]


async def test_receive_side_drains_while_sending_is_stuck(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot(a=1))
    h.start()
    h.stream.push(subscribe(types.CLUSTER, ["*"], node=True))
    first = await h.stream.next_response()
    h.stream.gate.clear()  # the client stops reading: every send now blocks
    for port in range(2, 50):
        h.cache.set_snapshot(NODE, snapshot(a=port))
        await asyncio.sleep(0)
    for _ in range(500):
        h.stream.push(ack(first))
    await h.stream.settled()  # every request was read although nothing can be sent
    assert len(h.callbacks.of("ack")) == 1
    h.stream.gate.set()
    sent = [await h.stream.next_response()]
    await h.stream.settled()
    sent += h.stream.unread()
    # at most the response stuck in the send, then the newest state: no backlog
    assert 1 <= len(sent) <= 2
    last = h.cache.get_snapshot(NODE)
    assert last is not None
    assert got(sent[-1]) == dict(last.resource_versions(types.CLUSTER))


async def test_refused_and_malformed_streams(h: Harness) -> None:
    h.start()
    h.stream.push(subscribe(types.CLUSTER))  # no node id
    assert h.task is not None
    with pytest.raises(StreamRejected) as info:
        await asyncio.wait_for(h.task, TIMEOUT)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert h.callbacks.events == []

    h.callbacks.reject = StreamRejected(Code.UNAUTHENTICATED, "bad token")
    h.start(FakeStream()).push(subscribe(types.CLUSTER, node=True))
    with pytest.raises(StreamRejected):
        await asyncio.wait_for(h.task, TIMEOUT)
    assert h.callbacks.of("closed") == []

    only_clusters = DeltaServer(h.cache, h.callbacks, type_urls=[types.CLUSTER])
    h.callbacks.reject = None
    stream = FakeStream()
    stream.push(subscribe(types.CLUSTER, node=True))
    stream.push(subscribe(types.SECRET))
    with pytest.raises(StreamRejected, match=r"only serves .*Cluster, not .*Secret"):
        await asyncio.wait_for(only_clusters.handle_stream(stream), TIMEOUT)
    assert len(h.callbacks.of("closed")) == 1  # opened, then closed once


async def test_closed_exactly_once_on_eof_cancel_and_send_failure(h: Harness) -> None:
    h.cache.set_snapshot(NODE, snapshot(a=1))
    h.start()
    h.stream.push(subscribe(types.CLUSTER, node=True))
    await h.stream.next_response()
    h.stream.push(None)
    assert h.task is not None
    await asyncio.wait_for(h.task, TIMEOUT)

    h.start(FakeStream()).push(subscribe(types.CLUSTER, node=True))
    await h.stream.next_response()
    h.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h.task

    h.start(FakeStream())
    h.stream.fail_send = ConnectionResetError("gone")
    h.stream.push(subscribe(types.CLUSTER, node=True))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(h.task, TIMEOUT)
    assert [e[1] for e in h.callbacks.of("closed")] == [1, 2, 3]
    assert h.server.open_streams == 0
