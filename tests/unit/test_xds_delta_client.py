"""The delta client against the delta server: in memory, then over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from kumadp.xds import types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.delta import DeltaServer, Nack, NoopDeltaCallbacks
from kumadp.xds.delta_client import DeltaClient, Update
from kumadp.xds.grpc_adapter import GrpcClientStream, add_ads_to_server
from testkit.procs import until
from tests.unit.test_xds_delta import NODE, TIMEOUT, snapshot

Request = discovery_pb2.DeltaDiscoveryRequest
Response = discovery_pb2.DeltaDiscoveryResponse


class Pipe:
    """One in-memory stream: ``client`` and ``server`` are its two ends."""

    def __init__(self) -> None:
        self.up: asyncio.Queue[Request | None] = asyncio.Queue()
        self.down: asyncio.Queue[Response | None] = asyncio.Queue()
        self.client = _End(self.up, self.down)
        self.server = _End(self.down, self.up)

    def close(self) -> None:
        self.up.put_nowait(None)
        self.down.put_nowait(None)


class _End:
    def __init__(self, outgoing: asyncio.Queue[Any], incoming: asyncio.Queue[Any]) -> None:
        self._out, self._in = outgoing, incoming
        self.metadata: dict[str, str] = {}

    async def send(self, message: Any) -> None:
        self._out.put_nowait(message)

    async def _messages(self) -> AsyncIterator[Any]:
        while (message := await self._in.get()) is not None:
            yield message

    requests = responses = _messages


class Server(NoopDeltaCallbacks):
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.server = DeltaServer(self.cache, self)
        self.acks: list[str] = []
        self.nacks: list[Nack] = []

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.acks.append(version)

    def on_nack(self, node_id: str, rejected: Nack) -> None:
        self.nacks.append(rejected)


class Handler:
    """Applies clusters to a dict; refuses clusters named in ``refuse``."""

    def __init__(self, refuse: Mapping[str, str] | None = None) -> None:
        self.applied: dict[str, int] = {}
        self.updates: list[Update] = []
        self.refuse = dict(refuse or {})
        self.fail: Exception | None = None
        self.changed = asyncio.Event()

    async def apply(self, update: Update) -> Mapping[str, str]:
        self.updates.append(update)
        self.changed.set()
        if self.fail is not None:
            raise self.fail
        for name in update.removed:
            self.applied.pop(name, None)
        if update.complete is not None:
            for name in set(self.applied) - update.complete:
                del self.applied[name]  # gone upstream while away
        failed = {n: self.refuse[n] for n in update.changed if n in self.refuse}
        for name, resource in update.changed.items():
            if name not in failed:
                cluster = cluster_pb2.Cluster()
                resource.resource.Unpack(cluster)
                lb = cluster.load_assignment.endpoints[0].lb_endpoints[0]
                self.applied[name] = lb.endpoint.address.socket_address.port_value
        return failed

    async def next(self) -> Update:
        await asyncio.wait_for(self.changed.wait(), TIMEOUT)
        self.changed.clear()
        return self.updates[-1]


@contextlib.asynccontextmanager
async def connected(server: Server, client: DeltaClient) -> AsyncIterator[Pipe]:
    pipe = Pipe()
    tasks = [
        asyncio.ensure_future(server.server.handle_stream(pipe.server)),
        asyncio.ensure_future(client.run(pipe.client)),
    ]
    try:
        yield pipe
    finally:
        pipe.close()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)


def node() -> base_pb2.Node:
    return base_pb2.Node(id=NODE)


async def test_one_rejected_resource_does_not_hold_up_the_others() -> None:
    server, handler = Server(), Handler(refuse={"b": "mesh payments does not exist"})
    server.cache.set_snapshot(NODE, snapshot(a=1, b=2, c=3))
    client = DeltaClient(node(), [types.CLUSTER], handler)
    async with connected(server, client):
        first = await handler.next()
        assert first.complete == {"a", "b", "c"}
        await until(lambda: server.nacks, "the NACK")
        (rejected,) = server.nacks
        assert rejected.resources == {"b": "mesh payments does not exist"}
        assert handler.applied == {"a": 1, "c": 3}
        assert set(client.versions(types.CLUSTER)) == {"a", "c"}  # b was not accepted

        handler.refuse.clear()
        server.cache.set_snapshot(NODE, snapshot(a=1, b=5, c=3))
        update = await handler.next()
        assert set(update.changed) == {"b"} and update.complete is None
        await until(lambda: server.acks, "the ACK")
        assert handler.applied == {"a": 1, "b": 5, "c": 3}
        assert client.acks == 1 and client.nacks == 1


async def test_reconnect_sends_only_what_changed_and_removes_what_went() -> None:
    server, handler = Server(), Handler()
    server.cache.set_snapshot(NODE, snapshot(a=1, b=2, c=3))
    client = DeltaClient(node(), [types.CLUSTER], handler)
    async with connected(server, client):
        await handler.next()
        await until(lambda: server.acks, "the ACK")
    # while the client is away, b changes and c goes
    server.cache.set_snapshot(NODE, snapshot(a=1, b=20))
    async with connected(server, client):
        update = await handler.next()
        assert set(update.changed) == {"b"} and update.removed == ("c",)
        assert update.complete == {"a", "b"}
        await until(lambda: len(server.acks) == 2, "the ACK after the reconnect")
    assert handler.applied == {"a": 1, "b": 20}


async def test_replies_are_reported_to_the_observer() -> None:
    server, handler = Server(), Handler(refuse={"b": "no"})
    server.cache.set_snapshot(NODE, snapshot(a=1, b=2))
    replies: list[tuple[str, bool]] = []
    client = DeltaClient(
        node(), [types.CLUSTER], handler, on_reply=lambda t, ok: replies.append((t, ok))
    )
    async with connected(server, client):
        await until(lambda: server.nacks, "the NACK")
        server.cache.set_snapshot(NODE, snapshot(a=1, b=2, c=3))
        await until(lambda: server.acks, "the ACK")
    assert replies == [(types.CLUSTER, False), (types.CLUSTER, True)]


async def test_a_handler_failure_rejects_the_whole_update() -> None:
    server, handler = Server(), Handler()
    handler.fail = RuntimeError("store unavailable")
    server.cache.set_snapshot(NODE, snapshot(a=1))
    client = DeltaClient(node(), [types.CLUSTER], handler)
    async with connected(server, client):
        await until(lambda: server.nacks, "the NACK")
    (rejected,) = server.nacks
    assert rejected.message == "store unavailable" and rejected.resources == {}
    assert client.versions(types.CLUSTER) == {}


async def test_over_grpc() -> None:
    server, handler = Server(), Handler()
    server.cache.set_snapshot(NODE, snapshot(a=1))
    grpc_server = grpc.aio.server()
    add_ads_to_server(grpc_server, None, server.server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.DeltaAggregatedResources()
            client = DeltaClient(node(), [types.CLUSTER], handler)
            task = asyncio.ensure_future(client.run(GrpcClientStream(call)))
            try:
                await handler.next()
                await until(lambda: server.acks, "the ACK over gRPC")
                server.cache.set_snapshot(NODE, snapshot(a=2))
                await until(lambda: handler.applied == {"a": 2}, "the change over gRPC")
                sotw = stub.StreamAggregatedResources()
                try:
                    await asyncio.wait_for(sotw.read(), TIMEOUT)
                    raise AssertionError("state of the world should not be served")
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
            finally:
                call.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await grpc_server.stop(grace=None)


async def test_a_peer_that_does_not_read_replies_does_not_stop_the_applying() -> None:
    """Replies go through a sender of their own: while the peer reads none of them, the
    client still reads and applies what the server sends."""
    handler = Handler()
    responses: asyncio.Queue[Response | None] = asyncio.Queue()
    stalled = asyncio.Event()

    class Stalled:
        sent = 0

        async def send(self, request: Request) -> None:
            self.sent += 1
            if self.sent > 1:  # the subscription goes out; no reply ever does
                stalled.set()
                await asyncio.Event().wait()

        async def responses(self) -> AsyncIterator[Response]:
            while (response := await responses.get()) is not None:
                yield response

    client = DeltaClient(node(), [types.CLUSTER], handler)
    task = asyncio.ensure_future(client.run(Stalled()))
    try:
        for version in range(1, 6):
            snap = snapshot(a=version)
            res = discovery_pb2.Resource(
                name="a", version=str(version), resource=snap.packed(types.CLUSTER)["a"]
            )
            responses.put_nowait(
                Response(type_url=types.CLUSTER, nonce=str(version), resources=[res])
            )
        await until(lambda: handler.applied.get("a") == 5, "every response applied")
        assert stalled.is_set()
    finally:
        responses.put_nowait(None)
        await asyncio.wait_for(task, TIMEOUT)
